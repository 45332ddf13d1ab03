#include "ptycho/parallel/driver.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/first_guess.hpp"
#include "ptycho/core/memory.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
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
    if (e.name == kLearnedEngine) {
      // nn:MODEL names a model file (it cannot hold ',' or start with a digit);
      // the network's guess is one step.
      e.iterations = 1;
      if (colon != std::string::npos) {
        e.model = item.substr(colon + 1);
        PTYCHO_INPUT_ERROR_IF(e.model.empty() || std::isdigit(static_cast<unsigned char>(e.model[0])),
                              "--engines: '" << item << "': nn takes a model file (nn:MODEL), or nothing for the "
                                             << "shipped model; not an iteration count");
      }
    } else if (colon != std::string::npos) {
      const std::string count = item.substr(colon + 1);
      char* end = nullptr;
      errno = 0;
      const long long n = std::strtoll(count.c_str(), &end, 10);
      PTYCHO_INPUT_ERROR_IF(
          count.empty() || *end != '\0' || errno == ERANGE || n < 0 || n > kMaxIterations ||
              !std::isdigit(static_cast<unsigned char>(count[0])),
          "--engines: '" << item << "': the iteration count must be a whole number from 0 to " << kMaxIterations);
      e.iterations = static_cast<int>(n);
    }
    bool known = e.name == kLearnedEngine;
    for (const auto& name : engine_names()) known |= name == e.name;
    std::string names;
    for (const auto& name : engine_names()) names += (names.empty() ? "" : ", ") + name;
    names += std::string(", ") + kLearnedEngine;
    PTYCHO_INPUT_ERROR_IF(!known, "--engines: unknown engine '" << e.name << "' (known: " << names << ")");
    out.push_back(e);
  }
  PTYCHO_INPUT_ERROR_IF(out.empty(), "--engines: empty chain '" << chain << "' (example: dm:100,ml:200)");
  check_chain(out);
  return out;
}

void check_chain(const std::vector<EngineOptions>& chain) {
  struct Refinement {
    const char* option;
    const char* what;
    bool EngineOptions::*asked;  ///< null: background (an enum)
    bool EngineSupport::*supported;
  };
  const Refinement refinements[] = {
      {"--refine-positions", "positions", &EngineOptions::refine_positions, &EngineSupport::positions},
      {"--refine-probe", "the probe", &EngineOptions::refine_probe, &EngineSupport::probe},
      {"--background", "a background", nullptr, &EngineSupport::background},
  };
  for (const EngineOptions& e : chain) {
    PTYCHO_INPUT_ERROR_IF(e.refine_positions && e.position_gate > 0 && e.position_method != PositionMethod::annealing,
                          "--position-gate: the position test searches by annealing; it needs --position-method "
                          "annealing (engine '"
                              << e.name << "')");
    // nn makes the first guess; the refinements asked of the chain are done
    // by the engines after it (a chain of nn alone must not ask for any).
    if (e.name == kLearnedEngine && chain.size() > 1) continue;
    const EngineSupport support = engine_support(e.name);
    for (const Refinement& r : refinements) {
      const bool asked = r.asked ? e.*r.asked : e.background != BackgroundMode::none;
      if (!asked || support.*r.supported) continue;
      std::string able;
      for (const auto& name : engine_names())
        if (engine_support(name).*r.supported) able += (able.empty() ? "" : ", ") + name;
      PTYCHO_INPUT_ERROR_IF(true, r.option << ": engine '" << e.name << "' does not refine " << r.what
                                           << " (engines that do: " << (able.empty() ? "none" : able) << ")");
    }
  }
}

int position_margin(const std::vector<EngineOptions>& chain, long cap) {
  double shift = 0;
  for (const EngineOptions& e : chain)
    if (e.refine_positions && e.iterations > 0) {
      PTYCHO_INPUT_ERROR_IF(!(e.max_position_shift >= 0), "--max-position-shift: must be >= 0, got "
                                                              << e.max_position_shift << " (engine '" << e.name
                                                              << "')");
      shift = std::max(shift, e.max_position_shift);
    }
  const double limit = double(std::max(0L, std::min<long>(cap, 1L << 20)));
  return int(std::min(std::ceil(shift), limit));
}

Decomposition decompose_for(const ScanInfo& info, const ReconstructOptions& options, int nranks) {
  // Positions refined within an engine stay inside the halo (see position_margin).
  DecompositionOptions dopt = options.decomposition;
  dopt.refine_margin =
      std::max(dopt.refine_margin, position_margin(options.chain, std::max(info.object_rows, info.object_cols)));
  return decompose(info.positions, info.object_rows, info.object_cols, info.geometry.frame_size, nranks, dopt);
}

DistributedReconstruction::DistributedReconstruction(MPI_Comm comm, const ScanInfo& info,
                                                     const ReconstructOptions& options)
    : m_comm(comm), m_info(info), m_options(options) {
  m_dec = decompose_for(info, options, m_comm.size());
  m_coll = std::make_shared<const MpiCollective>(m_comm.get(), m_dec);
}

void DistributedReconstruction::set_data(const Dataset& data) {
  const int me = m_comm.rank();
  const int m = m_info.geometry.frame_size;
  LocalScan scan;
  scan.frame_size = m;
  scan.object_rows = m_info.object_rows;
  scan.object_cols = m_info.object_cols;
  scan.owned = m_dec.owned[me];
  scan.extent = m_dec.extent[me];
  scan.index = m_dec.positions_of[me];
  scan.total_frames = m_info.num_frames;
  const long n = scan.num_local();
  PTYCHO_THROW_IF(long(data.frame_index.size()) != n,
                  "set_data: got " << data.frame_index.size() << " frames for " << n << " positions");
  // On a host memory space the scan shares the caller's frames (read-only
  // for the engines) rather than copying them: a rank holds its frames once,
  // also while it loads them. A device space gets its own copy.
  scan.frames = Kokkos::create_mirror_view_and_copy(MemSpace(), data.frames);
  scan.valid = RView2("ptycho::valid", m, m);
  auto valid = Kokkos::create_mirror_view(scan.valid);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) valid(r, c) = (data.mask.size() && data.mask(r, c)) ? 0.0f : 1.0f;
  Kokkos::deep_copy(scan.valid, valid);

  ReconState state;
  const int kmodes = std::max(1, m_options.probe_modes);
  state.probe = Kokkos::create_mirror_view_and_copy(MemSpace(), probe_modes_from_guess(data.probe, kmodes));
  m_nominal_probe = HostCView2("ptycho::nominal_probe", m, m);
  Kokkos::deep_copy(m_nominal_probe, data.probe);
  state.object = CView2("ptycho::object", scan.extent.rows, scan.extent.cols);
  Kokkos::deep_copy(state.object, cfloat(1, 0));
  // Zeros, or the data's background guess (a dark): used only by engines that refine a background.
  state.background = RView2("ptycho::background", m, m);
  if (data.background.size() > 0) {
    PTYCHO_THROW_IF(data.background.extent(0) != size_t(m) || data.background.extent(1) != size_t(m),
                    "set_data: a background of " << data.background.extent(0) << " x " << data.background.extent(1)
                                                 << " for frames of " << m << " x " << m);
    auto b = Kokkos::create_mirror_view(state.background);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) b(r, c) = valid(r, c) > 0 ? std::max(data.background(r, c), 0.0f) : 0.0f;
    Kokkos::deep_copy(state.background, b);
  }
  for (long g : scan.index) state.positions.push_back(m_info.positions[g]);
  m_runner.reset();  // a second set_data starts afresh
  const int batch = batch_or_default(m_options.batch, m, m_options.probe_modes);
  m_runner = std::make_unique<ChainRunner>(m_options.chain, m_dec, m_coll, std::move(scan), std::move(state), batch,
                                           m_options.shift_quantum);
}

ChainRunner& DistributedReconstruction::runner(const char* what) const {
  PTYCHO_THROW_IF(!m_runner, what << ": set_data was not called");
  return *m_runner;
}

RankLayout DistributedReconstruction::layout() const {
  RankLayout l;
  l.object_rows = m_info.object_rows;
  l.object_cols = m_info.object_cols;
  l.owned = m_dec.owned[m_comm.rank()];
  l.extent = m_dec.extent[m_comm.rank()];
  l.frames = my_frames();
  l.total_frames = m_info.num_frames;
  l.frame_size = m_info.geometry.frame_size;
  return l;
}

const std::vector<long>& DistributedReconstruction::local_frames() const {
  return m_runner ? m_runner->problem().scan().index : my_frames();
}

long DistributedReconstruction::frames_migrated() const { return m_runner ? m_runner->frames_migrated() : 0; }

const ReconState& DistributedReconstruction::state() const {
  static const ReconState empty;
  return m_runner ? m_runner->state() : empty;
}

double DistributedReconstruction::seconds() const { return m_runner ? m_runner->seconds() : 0.0; }

std::string DistributedReconstruction::chain_text() const { return ptycho::chain_text(m_options.chain); }

void DistributedReconstruction::save(StateArchive& ar) const { runner("save").save(ar); }

void DistributedReconstruction::restore(StateArchive& ar) { runner("restore").restore(ar); }

void DistributedReconstruction::run(const std::function<void(const Progress&)>& progress) {
  RunControl control;
  control.progress = progress;
  run(control);
}

RunEnd DistributedReconstruction::run(const RunControl& control) { return runner("run").run(control); }

HostCView2 DistributedReconstruction::owned_object() const {
  auto all = Kokkos::create_mirror_view_and_copy(HostSpace(), runner("owned_object").state().object);
  const Rect o = m_dec.owned_in_local(m_comm.rank());
  HostCView2 out("ptycho::owned_object", o.rows, o.cols);
  for (long r = 0; r < o.rows; ++r)
    for (long c = 0; c < o.cols; ++c) out(r, c) = all(o.row0 + r, o.col0 + c);
  return out;
}

Mismatch DistributedReconstruction::mismatch() const {
  auto modes = probe();
  orthogonalize_modes(modes);
  return estimate_mismatch(m_nominal_probe, modes, m_info.positions, all_positions(), m_info.geometry.object_pixel_m());
}

HostRView2 DistributedReconstruction::background() const {
  const auto& b = runner("background").state().background;  // a copy, as probe() gives
  HostRView2 copy(Kokkos::view_alloc(std::string("ptycho::background_copy"), Kokkos::WithoutInitializing), b.extent(0),
                  b.extent(1));
  Kokkos::deep_copy(copy, b);
  return copy;
}

double DistributedReconstruction::background_mean() const {
  const ChainRunner& r = runner("background_mean");
  return ptycho::background_mean(r.state().background, r.problem().scan().valid);
}

HostCView3 DistributedReconstruction::probe() const {
  // A copy, never the state itself: create_mirror_view_and_copy returns the
  // view it is given when that is already in host memory, and a caller that
  // changes what it gets (mismatch() orthogonalises it) must not change the
  // run.
  const CView3& p = runner("probe").state().probe;
  HostCView3 copy(Kokkos::view_alloc(std::string("ptycho::probe_copy"), Kokkos::WithoutInitializing), p.extent(0),
                  p.extent(1), p.extent(2));
  Kokkos::deep_copy(copy, p);
  return copy;
}

std::vector<Position> DistributedReconstruction::all_positions() const {
  const ChainRunner& r = runner("all_positions");
  const std::vector<long>& index = r.problem().scan().index;
  const std::vector<Position>& positions = r.state().positions;
  // Each rank contributes its positions at their global indices; a sum fills the rest.
  std::vector<double> flat(2 * m_info.num_frames, 0.0);
  for (size_t i = 0; i < index.size(); ++i) {
    flat[2 * index[i]] = positions[i].row;
    flat[2 * index[i] + 1] = positions[i].col;
  }
  m_coll->sum(flat.data(), flat.size());
  std::vector<Position> out(m_info.num_frames);
  for (long j = 0; j < m_info.num_frames; ++j) out[j] = {flat[2 * j], flat[2 * j + 1]};
  return out;
}

}  // namespace ptycho
