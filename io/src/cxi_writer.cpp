#include "ptycho/io/cxi_writer.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "scan_writer_detail.hpp"

#include <cmath>

namespace ptycho::io {

namespace {

/// Writes a contiguous complex array of `dims` as complex64.
void write_complex(H5File& f, const std::string& path, const cfloat* data, const std::vector<hsize_t>& dims) {
  H5Id mem = make_complex_type();
  H5Id file = make_complex64_file_type();
  f.write(path, mem.get(), file.get(), dims, data);
}

void write_positions(H5File& f, const std::string& path, const std::vector<Position>& positions) {
  static_assert(sizeof(Position) == 2 * sizeof(double), "Position must be two packed doubles");
  f.write(path, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(positions.size()), 2}, positions.data());
}

}  // namespace

namespace detail {

void write_cxi_metadata(H5File& f, const CxiMetadata& meta) {
  const DetectorGeometry& g = meta.geometry;
  const int m = g.frame_size;
  const size_t n = meta.x_m.size();
  PTYCHO_THROW_IF(meta.y_m.size() != n, "write_cxi_metadata: " << n << " x but " << meta.y_m.size() << " y positions");
  PTYCHO_THROW_IF(!(g.energy_j > 0) || !(g.distance_m > 0) || !(g.pixel_x_m > 0) || !(g.pixel_y_m > 0),
                  "write_cxi_metadata: invalid geometry");
  f.write_scalar("/cxi_version", 150L);
  f.create_group("/entry_1");
  f.write_attribute("/entry_1", "NX_class", std::string("NXentry"));
  f.write_string("/entry_1/program_name", meta.program_name);

  f.write_string("/entry_1/instrument_1/name", meta.instrument_name);  // PyNX's CXI loader needs a name
  f.write_scalar("/entry_1/instrument_1/source_1/energy", g.energy_j);
  f.write_attribute("/entry_1/instrument_1/source_1/energy", "units", std::string("J"));
  if (meta.probe.size() > 0) {
    HostCView2 probe(Kokkos::view_alloc(std::string("ptycho::probe_out"), Kokkos::WithoutInitializing), m, m);
    Kokkos::deep_copy(probe, meta.probe);
    write_complex(f, "/entry_1/instrument_1/source_1/probe", probe.data(), {hsize_t(m), hsize_t(m)});
    // Where ptychodus looks for the probe.
    f.soft_link("/entry_1/instrument_1/source_1/probe", "/entry_1/instrument_1/source_1/illumination");
  }
  f.write_scalar("/entry_1/instrument_1/detector_1/distance", g.distance_m);
  f.write_scalar("/entry_1/instrument_1/detector_1/x_pixel_size", g.pixel_x_m);
  f.write_scalar("/entry_1/instrument_1/detector_1/y_pixel_size", g.pixel_y_m);
  // The CXI default, written out: rows along -y, columns along -x.
  const double basis[6] = {0, -g.pixel_y_m, 0, -g.pixel_x_m, 0, 0};
  f.write("/entry_1/instrument_1/detector_1/basis_vectors", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {2, 3}, basis);
  if (meta.dark.size() > 0) {
    // CXI's name (cdtools reads it) and PyNX's.
    f.write("/entry_1/instrument_1/detector_1/data_dark", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {hsize_t(m), hsize_t(m)},
            meta.dark.data());
    f.soft_link("/entry_1/instrument_1/detector_1/data_dark", "/entry_1/instrument_1/detector_1/dark");
  }
  if (meta.mask.size() > 0) {
    std::vector<std::uint32_t> mask(size_t(m) * m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) mask[size_t(r) * m + c] = meta.mask(r, c) ? 1u : 0u;
    f.write("/entry_1/instrument_1/detector_1/mask", H5T_NATIVE_UINT32, H5T_STD_U32LE, {hsize_t(m), hsize_t(m)},
            mask.data());
  }

  // Translation [m], x along columns, y along rows: (3, N) = (x, y, z) rows
  // in geometry_1, where PyNX reads it, and (N, 3) in data_1, where
  // ptychodus and cdtools read it. A scan of 3 frames or fewer, which PyNX
  // refuses anyway, keeps (N, 3) in both, so that the shape tells them apart.
  const bool by_rows = n > 3;
  std::vector<double> rows(3 * n, 0.0), cols(3 * n, 0.0);
  for (size_t j = 0; j < n; ++j) {
    rows[j] = cols[3 * j + 0] = meta.x_m[j];
    rows[n + j] = cols[3 * j + 1] = meta.y_m[j];
  }
  if (by_rows)
    f.write("/entry_1/sample_1/geometry_1/translation", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {3, hsize_t(n)},
            rows.data());
  else
    f.write("/entry_1/sample_1/geometry_1/translation", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(n), 3},
            cols.data());
  f.write_attribute("/entry_1/sample_1/geometry_1/translation", "units", std::string("m"));
  f.write("/entry_1/data_1/translation", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(n), 3}, cols.data());
  f.write_attribute("/entry_1/data_1/translation", "units", std::string("m"));
}

void create_frames(H5File& f, const std::string& path, long n, int m) {
  const std::string context = f.where("cannot write " + path);
  H5Id dcpl = checked_id(H5Pcreate(H5P_DATASET_CREATE), context);
  const hsize_t chunk[3] = {1, hsize_t(m), hsize_t(m)};
  check_h5(H5Pset_chunk(dcpl.get(), 3, chunk), context);
  if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) check_h5(H5Pset_deflate(dcpl.get(), 4), context);
  f.write(path, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {hsize_t(n), hsize_t(m), hsize_t(m)}, nullptr, dcpl.get());
}

void write_frame_slab(H5File& f, const std::string& path, long first, const float* data, long count, int m) {
  if (count <= 0) return;
  const std::string context = f.where("cannot write " + path);
  H5Id dset = f.open_dataset(path);
  H5Id space = checked_id(H5Dget_space(dset.get()), context);
  const hsize_t start[3] = {hsize_t(first), 0, 0};
  const hsize_t extent[3] = {hsize_t(count), hsize_t(m), hsize_t(m)};
  check_h5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr), context);
  H5Id mem = checked_id(H5Screate_simple(3, extent, nullptr), context);
  check_h5(H5Dwrite(dset.get(), H5T_NATIVE_FLOAT, mem.get(), space.get(), H5P_DEFAULT, data), context);
}

}  // namespace detail

void write_cxi(const std::string& path, const CxiScan& scan) {
  silence_hdf5_errors();
  const long n = long(scan.frames.extent(0));
  const int m = scan.geometry.frame_size;
  PTYCHO_THROW_IF(n <= 0, "write_cxi: no frames");
  PTYCHO_THROW_IF(long(scan.frames.extent(1)) != m || long(scan.frames.extent(2)) != m,
                  "write_cxi: frames of " << scan.frames.extent(1) << " x " << scan.frames.extent(2)
                                          << " but the geometry says M = " << m);
  PTYCHO_THROW_IF(long(scan.positions_px.size()) != n,
                  "write_cxi: " << n << " frames but " << scan.positions_px.size() << " positions");
  PTYCHO_THROW_IF(scan.probe.size() > 0 && (long(scan.probe.extent(0)) != m || long(scan.probe.extent(1)) != m),
                  "write_cxi: a probe of " << scan.probe.extent(0) << " x " << scan.probe.extent(1) << " for frames of "
                                           << m << " x " << m);
  PTYCHO_THROW_IF(scan.mask.size() > 0 && (long(scan.mask.extent(0)) != m || long(scan.mask.extent(1)) != m),
                  "write_cxi: a mask of " << scan.mask.extent(0) << " x " << scan.mask.extent(1) << " for frames of "
                                          << m << " x " << m);
  const DetectorGeometry& g = scan.geometry;
  detail::CxiMetadata meta;
  meta.geometry = g;
  meta.probe = scan.probe;
  meta.mask = scan.mask;
  meta.program_name = scan.program_name;
  meta.instrument_name = "ptycho simulate";
  const double dx = g.object_pixel_x_m(), dy = g.object_pixel_y_m();
  for (long j = 0; j < n; ++j) {
    meta.x_m.push_back(scan.positions_px[j].col * dx);
    meta.y_m.push_back(scan.positions_px[j].row * dy);
  }

  AtomicFile out(path);
  H5File f = H5File::create(out.temp_path(), path);
  detail::write_cxi_metadata(f, meta);
  const std::string frames_path = "/entry_1/instrument_1/detector_1/data";
  detail::create_frames(f, frames_path, n, m);
  HostRView3 frames(Kokkos::view_alloc(std::string("ptycho::frames_out"), Kokkos::WithoutInitializing), n, m, m);
  Kokkos::deep_copy(frames, scan.frames);
  detail::write_frame_slab(f, frames_path, 0, frames.data(), n, m);
  f.soft_link(frames_path, "/entry_1/data_1/data");
  f.close();
  out.commit();
}

void write_truth(const std::string& path, const TruthData& truth) {
  silence_hdf5_errors();
  PTYCHO_THROW_IF(truth.object.size() == 0, "write_truth: no object");
  PTYCHO_THROW_IF(truth.probe_modes.size() == 0, "write_truth: no probe modes");
  AtomicFile out(path);
  H5File f = H5File::create(out.temp_path(), path);
  {
    HostCView2 obj(Kokkos::view_alloc(std::string("ptycho::object_out"), Kokkos::WithoutInitializing),
                   truth.object.extent(0), truth.object.extent(1));
    Kokkos::deep_copy(obj, truth.object);
    write_complex(f, "/object", obj.data(), {hsize_t(obj.extent(0)), hsize_t(obj.extent(1))});
  }
  {
    const HostCView3& p = truth.probe_modes;
    HostCView3 modes(Kokkos::view_alloc(std::string("ptycho::probe_modes_out"), Kokkos::WithoutInitializing),
                     p.extent(0), p.extent(1), p.extent(2));
    Kokkos::deep_copy(modes, p);
    write_complex(f, "/probe_modes", modes.data(), {hsize_t(p.extent(0)), hsize_t(p.extent(1)), hsize_t(p.extent(2))});
  }
  write_positions(f, "/positions_px", truth.positions_px);
  write_positions(f, "/nominal_positions_px", truth.nominal_positions_px);
  if (truth.background.size() > 0) {
    HostRView2 bg(Kokkos::view_alloc(std::string("ptycho::background_out"), Kokkos::WithoutInitializing),
                  truth.background.extent(0), truth.background.extent(1));
    Kokkos::deep_copy(bg, truth.background);
    f.write("/background", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {hsize_t(bg.extent(0)), hsize_t(bg.extent(1))}, bg.data());
  }
  f.write_attribute("/", "probe_error_pct", truth.probe_error_pct);
  f.write_attribute("/", "position_error_nm", truth.position_error_nm);
  f.write_attribute("/", "partial_coherence_nm", truth.partial_coherence_nm);
  f.write_attribute("/", "photons_per_frame", truth.photons_per_frame);
  f.write_attribute("/", "scenes", truth.scenes);
  f.write_attribute("/", "pixel_size_m", truth.pixel_size_m);
  f.close();
  out.commit();
}

}  // namespace ptycho::io
