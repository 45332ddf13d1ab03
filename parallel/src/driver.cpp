#include "ptycho/parallel/driver.hpp"

#include "ptycho/core/error.hpp"

#include <chrono>
#include <cmath>
#include <random>
#include <sstream>

namespace ptycho {

std::vector<EngineOptions> parse_chain(const std::string& chain, const EngineOptions& base) {
  std::vector<EngineOptions> out;
  std::stringstream ss(chain);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const auto colon = item.find(':');
    EngineOptions e = base;
    e.name = item.substr(0, colon);
    if (colon != std::string::npos) {
      const std::string count = item.substr(colon + 1);
      char* end = nullptr;
      const long n = std::strtol(count.c_str(), &end, 10);
      PTYCHO_INPUT_ERROR_IF(count.empty() || *end != '\0' || n < 0,
                            "--engines: '" << item << "': the iteration count must be a whole number >= 0");
      e.iterations = static_cast<int>(n);
    }
    bool known = false;
    for (const auto& name : engine_names()) known |= name == e.name;
    std::string names;
    for (const auto& name : engine_names()) names += (names.empty() ? "" : ", ") + name;
    PTYCHO_INPUT_ERROR_IF(!known, "--engines: unknown engine '" << e.name << "' (known: " << names << ")");
    out.push_back(e);
  }
  PTYCHO_INPUT_ERROR_IF(out.empty(), "--engines: empty chain '" << chain << "' (example: dm:100,ml:200)");
  return out;
}

DistributedReconstruction::DistributedReconstruction(MPI_Comm comm, const ScanInfo& info,
                                                     const ReconstructOptions& options)
    : m_comm(comm), m_info(info), m_options(options) {
  const int m = info.geometry.frame_size;
  m_dec = decompose(info.positions, info.object_rows, info.object_cols, m, m_comm.size(), options.decomposition);
  const int me = m_comm.rank();
  m_scan.frame_size = m;
  m_scan.object_rows = info.object_rows;
  m_scan.object_cols = info.object_cols;
  m_scan.owned = m_dec.owned[me];
  m_scan.extent = m_dec.extent[me];
  m_scan.index = m_dec.positions_of[me];
  m_scan.total_frames = info.num_frames;
  m_coll = std::make_unique<MpiCollective>(m_comm.get(), m_dec);
}

void DistributedReconstruction::set_data(const Dataset& data) {
  const int m = m_scan.frame_size;
  const long n = m_scan.num_local();
  PTYCHO_THROW_IF(long(data.frame_index.size()) != n, "set_data: got " << data.frame_index.size() << " frames for "
                                                                      << n << " positions");
  m_scan.frames = RView3("ptycho::frames", n, m, m);
  Kokkos::deep_copy(m_scan.frames, data.frames);
  m_scan.valid = RView2("ptycho::valid", m, m);
  auto valid = Kokkos::create_mirror_view(m_scan.valid);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) valid(r, c) = (data.mask.size() && data.mask(r, c)) ? 0.0f : 1.0f;
  Kokkos::deep_copy(m_scan.valid, valid);

  // Probe modes: the guess, and further modes as weak, smooth variations of
  // it (orthogonalised by refinement), each with a few % of the power.
  const int kmodes = std::max(1, m_options.probe_modes);
  m_state.probe = CView3("ptycho::probe", kmodes, m, m);
  auto hp = Kokkos::create_mirror_view(m_state.probe);
  for (int k = 0; k < kmodes; ++k)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        const cfloat p = data.probe(r, c);
        if (k == 0) {
          hp(k, r, c) = p;
        } else {
          const double x = (c - m / 2) / double(m), y = (r - m / 2) / double(m);
          const double ph = 2 * M_PI * (k * x + (k % 2 ? y : -y));
          hp(k, r, c) = p * cfloat(0.1f * std::cos(ph), 0.1f * std::sin(ph));
        }
      }
  Kokkos::deep_copy(m_state.probe, hp);
  m_nominal_probe = HostCView2("ptycho::nominal_probe", m, m);
  Kokkos::deep_copy(m_nominal_probe, data.probe);
  m_state.object = CView2("ptycho::object", m_scan.extent.rows, m_scan.extent.cols);
  Kokkos::deep_copy(m_state.object, cfloat(1, 0));
  m_state.positions.clear();
  for (long g : m_scan.index) m_state.positions.push_back(m_info.positions[g]);
  m_ws = std::make_unique<Workspace>(m_scan, kmodes, m_options.batch);
  m_ws->set_positions(m_state.positions);
  m_ws->set_probe(m_state.probe);
}

void DistributedReconstruction::run(const std::function<void(const Progress&)>& progress) {
  PTYCHO_THROW_IF(!m_ws, "run: set_data was not called");
  long total = 0;
  for (const auto& e : m_options.chain) total += e.iterations;
  long done = 0;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (const auto& e : m_options.chain) {
    if (e.iterations == 0) continue;
    auto engine = make_engine(e, *m_ws, *m_coll, m_state);
    const auto engine_start = clock::now();
    for (int it = 1; it <= e.iterations; ++it) {
      const double cost = engine->iterate(m_state);
      ++done;
      ++m_state.iteration;
      m_state.cost_history.push_back(cost);
      m_state.engine_history.push_back(engine->name());
      const double spent = std::chrono::duration<double>(clock::now() - engine_start).count();
      Progress p;
      p.engine = engine->name();
      p.iteration = it;
      p.iterations = e.iterations;
      p.total_done = done;
      p.total = total;
      p.cost = cost;
      p.seconds_per_iteration = spent / it;
      p.eta_seconds = p.seconds_per_iteration * (total - done);
      if (progress) progress(p);
    }
    // Between engines (and at the end) the modes become the eigenmodes of
    // their mutual coherence. Not during an engine: DM, RAAR and sDR keep an
    // exit wave per mode, tied to the mode it was made with.
    if (m_state.probe.extent(0) > 1) {
      auto modes = Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.probe);
      orthogonalize_modes(modes);
      Kokkos::deep_copy(m_state.probe, modes);
      m_ws->set_probe(m_state.probe);
    }
  }
  m_seconds = std::chrono::duration<double>(clock::now() - start).count();
}

HostCView2 DistributedReconstruction::owned_object() const {
  auto all = Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.object);
  const Rect o = m_dec.owned_in_local(m_comm.rank());
  HostCView2 out("ptycho::owned_object", o.rows, o.cols);
  for (long r = 0; r < o.rows; ++r)
    for (long c = 0; c < o.cols; ++c) out(r, c) = all(o.row0 + r, o.col0 + c);
  return out;
}

Mismatch DistributedReconstruction::mismatch() const {
  auto modes = probe();
  orthogonalize_modes(modes);
  return estimate_mismatch(m_nominal_probe, modes, m_info.positions, all_positions(),
                           m_info.geometry.object_pixel_m());
}

HostCView3 DistributedReconstruction::probe() const {
  return Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.probe);
}

std::vector<Position> DistributedReconstruction::all_positions() const {
  // Each rank contributes its positions at their global indices; a sum fills the rest.
  std::vector<double> flat(2 * m_info.num_frames, 0.0);
  for (size_t i = 0; i < m_scan.index.size(); ++i) {
    flat[2 * m_scan.index[i]] = m_state.positions[i].row;
    flat[2 * m_scan.index[i] + 1] = m_state.positions[i].col;
  }
  m_coll->sum(flat.data(), flat.size());
  std::vector<Position> out(m_info.num_frames);
  for (long j = 0; j < m_info.num_frames; ++j) out[j] = {flat[2 * j], flat[2 * j + 1]};
  return out;
}

}  // namespace ptycho
