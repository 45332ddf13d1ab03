#include "ptycho/io/trace.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"

namespace ptycho::io {

void write_trace(const std::string& path, const std::vector<TracePoint>& points) {
  silence_hdf5_errors();
  PTYCHO_THROW_IF(points.empty(), "write_trace: no points");
  const TracePoint& first = points.front();
  const hsize_t t = points.size(), k = first.probe_modes.extent(0), m = first.probe_modes.extent(1),
                n = first.positions_px.size();
  std::vector<long> iteration;
  std::vector<std::string> engine;
  std::vector<double> cost, probe_error, position_error, coherence, occupancy, positions;
  std::vector<cfloat> modes;
  modes.reserve(t * k * m * m);
  for (const TracePoint& p : points) {
    PTYCHO_THROW_IF(p.probe_modes.extent(0) != k || p.probe_modes.extent(1) != m || p.probe_modes.extent(2) != m ||
                        p.positions_px.size() != n,
                    "write_trace: the points differ in modes, frame size or positions");
    iteration.push_back(p.iteration);
    engine.push_back(p.engine);
    cost.push_back(p.cost);
    probe_error.push_back(p.mismatch.probe_error_pct);
    position_error.push_back(p.mismatch.position_error_nm);
    coherence.push_back(p.mismatch.partial_coherence_nm);
    for (hsize_t j = 0; j < k; ++j)
      occupancy.push_back(j < p.mismatch.occupancy.size() ? p.mismatch.occupancy[j] : 0.0);
    for (hsize_t j = 0; j < k; ++j)
      for (hsize_t r = 0; r < m; ++r)
        for (hsize_t c = 0; c < m; ++c) modes.push_back(p.probe_modes(j, r, c));
    for (const Position& q : p.positions_px) {
      positions.push_back(q.row);
      positions.push_back(q.col);
    }
  }
  AtomicFile out(path);
  H5File f = H5File::create(out.temp_path(), path);
  f.write("/iteration", H5T_NATIVE_LONG, H5T_STD_I64LE, {t}, iteration.data());
  f.write_strings("/engine", engine);
  f.write("/cost", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t}, cost.data());
  {
    H5Id mem = make_complex_type();
    H5Id file = make_complex64_file_type();
    f.write("/probe_modes", mem.get(), file.get(), {t, k, m, m}, modes.data());
  }
  f.write("/positions_px", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t, n, 2}, positions.data());
  f.write("/probe_error_pct", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t}, probe_error.data());
  f.write("/position_error_nm", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t}, position_error.data());
  f.write("/partial_coherence_nm", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t}, coherence.data());
  f.write("/occupancy", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {t, k}, occupancy.data());
  f.write_attribute("/", "program", std::string("ptycho reconstruct --trace"));
  f.close();
  out.commit();
}

}  // namespace ptycho::io
