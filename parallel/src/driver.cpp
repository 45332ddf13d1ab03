#include "ptycho/parallel/driver.hpp"
#include "ptycho/parallel/migrate.hpp"

#include "ptycho/core/error.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
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
      errno = 0;
      const long long n = std::strtoll(count.c_str(), &end, 10);
      PTYCHO_INPUT_ERROR_IF(count.empty() || *end != '\0' || errno == ERANGE || n < 0 || n > kMaxIterations ||
                                !std::isdigit(static_cast<unsigned char>(count[0])),
                            "--engines: '" << item << "': the iteration count must be a whole number from 0 to "
                                           << kMaxIterations);
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
  const int m = info.geometry.frame_size;
  m_dec = decompose_for(info, options, m_comm.size());
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
  m_state.background = RView2("ptycho::background", m, m);  // zeros: no background until an engine refines one
  m_state.positions.clear();
  for (long g : m_scan.index) m_state.positions.push_back(m_info.positions[g]);
  m_ws = std::make_unique<Workspace>(m_scan, kmodes, m_options.batch);
  m_ws->set_positions(m_state.positions);
  m_ws->set_probe(m_state.probe);
}

namespace {

/// An archive whose names all get a prefix ("engine/"): the running engine's
/// state lives in a group of its own.
class PrefixedArchive final : public StateArchive {
 public:
  PrefixedArchive(StateArchive& inner, std::string prefix) : m_inner(inner), m_prefix(std::move(prefix)) {}
  bool loading() const override { return m_inner.loading(); }
  void values(const std::string& n, std::vector<double>& v) override { m_inner.values(m_prefix + n, v); }
  void text(const std::string& n, std::string& v) override { m_inner.text(m_prefix + n, v); }
  void object_field(const std::string& n, const CView2& f) override { m_inner.object_field(m_prefix + n, f); }
  void frame_field(const std::string& n, const CView3& f) override { m_inner.frame_field(m_prefix + n, f); }
  void frame_values(const std::string& n, std::vector<double>& v, int per) override {
    m_inner.frame_values(m_prefix + n, v, per);
  }
  void shared_field(const std::string& n, const CView3& f) override { m_inner.shared_field(m_prefix + n, f); }
  void set_local_frames(const std::vector<long>& g) override { m_inner.set_local_frames(g); }
  bool contains(const std::string& n) override { return m_inner.contains(m_prefix + n); }

 private:
  StateArchive& m_inner;
  std::string m_prefix;
};

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + items[i];
  return s;
}

/// Whether an engine of the chain refines a background (only then is one in checkpoints).
bool uses_background(const ReconstructOptions& options) {
  for (const auto& e : options.chain)
    if (e.background != BackgroundMode::none) return true;
  return false;
}

/// The background (M, M) as a shared field of the archive: a (1, M, M)
/// complex array whose real part is b (the archive stores complex fields).
void archive_background(StateArchive& ar, const RView2& background) {
  const long m = long(background.extent(0));
  auto b = Kokkos::create_mirror_view_and_copy(HostSpace(), background);
  HostCView3 field("ptycho::background_field", 1, m, m);
  for (long r = 0; r < m; ++r)
    for (long c = 0; c < m; ++c) field(0, r, c) = cfloat(b(r, c), 0.0f);
  CView3 dev = Kokkos::create_mirror_view_and_copy(MemSpace(), field);
  ar.shared_field("run/background", dev);
  if (!ar.loading()) return;
  Kokkos::deep_copy(field, dev);
  for (long r = 0; r < m; ++r)
    for (long c = 0; c < m; ++c) b(r, c) = field(0, r, c).real();
  Kokkos::deep_copy(background, b);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

}  // namespace

std::string DistributedReconstruction::chain_text() const {
  std::vector<std::string> items;
  for (const auto& e : m_options.chain) items.push_back(e.name + ":" + std::to_string(e.iterations));
  return join(items);
}

void DistributedReconstruction::save(StateArchive& ar) const {
  ar.set_local_frames(m_scan.index);
  std::string chain = chain_text();
  ar.text("run/chain", chain);
  std::vector<double> position = {double(m_engine_index), double(m_engine_iteration), double(m_state.iteration),
                                  double(m_state.probe.extent(0))};
  ar.values("run/position", position);
  ar.object_field("run/object", m_state.object);
  ar.shared_field("run/probe", m_state.probe);
  if (uses_background(m_options)) archive_background(ar, m_state.background);
  std::vector<double> flat;
  for (const Position& q : m_state.positions) flat.insert(flat.end(), {q.row, q.col});
  ar.frame_values("run/positions", flat, 2);
  std::vector<double> costs = m_state.cost_history;
  ar.values("run/cost_history", costs);
  std::string engines = join(m_state.engine_history);
  ar.text("run/engine_history", engines);
  if (m_engine) {
    std::string name = m_engine->name();
    ar.text("engine/name", name);
    PrefixedArchive engine_ar(ar, "engine/");
    m_engine->checkpoint(engine_ar);
  }
}

void DistributedReconstruction::restore(StateArchive& ar) {
  PTYCHO_THROW_IF(!m_ws, "restore: set_data was not called");
  PTYCHO_THROW_IF(!ar.loading(), "restore: the archive is not open for reading");
  ar.set_local_frames(m_scan.index);
  std::string chain;
  ar.text("run/chain", chain);
  PTYCHO_INPUT_ERROR_IF(chain != chain_text(), "the checkpoint was written by the chain '"
                                                   << chain << "', this run's chain is '" << chain_text()
                                                   << "' (resume with the same engines, or start afresh)");
  std::vector<double> position;
  ar.values("run/position", position);
  PTYCHO_INPUT_ERROR_IF(position.size() != 4, "the checkpoint's run/position holds " << position.size()
                                                                                     << " values, expected 4");
  PTYCHO_INPUT_ERROR_IF(long(position[3]) != long(m_state.probe.extent(0)),
                        "the checkpoint has " << long(position[3]) << " probe modes, this run "
                                              << m_state.probe.extent(0) << " (--probe-modes must match)");
  const int index = int(position[0]), done_in_engine = int(position[1]);
  PTYCHO_INPUT_ERROR_IF(index < 0 || index > int(m_options.chain.size()) ||
                            (index < int(m_options.chain.size()) &&
                             (done_in_engine < 0 || done_in_engine >= m_options.chain[index].iterations)),
                        "the checkpoint's place in the chain (engine " << index << ", iteration " << done_in_engine
                                                                       << ") is not in '" << chain_text() << "'");
  ar.object_field("run/object", m_state.object);
  ar.shared_field("run/probe", m_state.probe);
  if (uses_background(m_options)) archive_background(ar, m_state.background);
  std::vector<double> flat;
  ar.frame_values("run/positions", flat, 2);
  for (size_t j = 0; j < m_state.positions.size(); ++j) m_state.positions[j] = {flat[2 * j], flat[2 * j + 1]};
  ar.values("run/cost_history", m_state.cost_history);
  std::string engines;
  ar.text("run/engine_history", engines);
  m_state.engine_history = split(engines);
  m_state.iteration = long(position[2]);
  m_engine.reset();  // it would hold on to the workspace that migrate() may replace
  // The checkpoint's positions may lie in other ranks' tiles (refined, or
  // written on another rank count): their frames go there first, and the
  // engine's per-frame state below is read for the frames held after that.
  if (migrate() == 0) {
    m_ws->set_positions(m_state.positions);
    m_ws->set_probe(m_state.probe);
  }
  ar.set_local_frames(m_scan.index);
  m_engine_index = index;
  m_engine_iteration = done_in_engine;
  m_engine.reset();
  if (done_in_engine > 0) {
    // Mid-engine: the engine is rebuilt on the restored state, then takes
    // back its private state.
    m_engine = make_engine(m_options.chain[index], *m_ws, *m_coll, m_state);
    std::string name;
    ar.text("engine/name", name);
    PTYCHO_INPUT_ERROR_IF(name != m_engine->name(),
                          "the checkpoint holds the state of engine '" << name << "', expected '" << m_engine->name()
                                                                       << "'");
    PrefixedArchive engine_ar(ar, "engine/");
    m_engine->checkpoint(engine_ar);
  }
}

void DistributedReconstruction::finish_engine() {
  m_engine.reset();
  ++m_engine_index;
  m_engine_iteration = 0;
  // Between engines (and at the end) the modes become the eigenmodes of
  // their mutual coherence. Not during an engine: DM, RAAR and sDR keep an
  // exit wave per mode, tied to the mode it was made with.
  if (m_state.probe.extent(0) > 1) {
    auto modes = Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.probe);
    orthogonalize_modes(modes);
    Kokkos::deep_copy(m_state.probe, modes);
    m_ws->set_probe(m_state.probe);
  }
  // No engine keeps per-frame state now: frames whose refined centres left
  // this rank's tile move to their owners.
  migrate();
}

long DistributedReconstruction::migrate() {
  FrameSet mine;
  mine.index = m_scan.index;
  mine.positions = m_state.positions;
  mine.counts = Kokkos::create_mirror_view_and_copy(HostSpace(), m_scan.frames);
  long moved = 0;
  FrameSet now = migrate_frames(m_comm.get(), m_dec, mine, moved);
  if (moved == 0) return 0;
  const int m = m_scan.frame_size;
  m_scan.index = std::move(now.index);
  m_state.positions = std::move(now.positions);
  m_scan.frames = RView3(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::frames"), m_scan.num_local(), m, m);
  Kokkos::deep_copy(m_scan.frames, now.counts);
  // The workspace's per-frame caches follow the new frame list.
  m_ws = std::make_unique<Workspace>(m_scan, int(m_state.probe.extent(0)), m_options.batch);
  m_ws->set_positions(m_state.positions);
  m_ws->set_probe(m_state.probe);
  m_frames_migrated += moved;
  return moved;
}

void DistributedReconstruction::run(const std::function<void(const Progress&)>& progress) {
  RunControl control;
  control.progress = progress;
  run(control);
}

RunEnd DistributedReconstruction::run(const RunControl& control) {
  PTYCHO_THROW_IF(!m_ws, "run: set_data was not called");
  long total = 0;
  for (const auto& e : m_options.chain) total += e.iterations;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  const int num_engines = int(m_options.chain.size());
  while (m_engine_index < num_engines) {
    const EngineOptions& e = m_options.chain[m_engine_index];
    if (e.iterations == 0) {
      ++m_engine_index;
      continue;
    }
    if (!m_engine) m_engine = make_engine(e, *m_ws, *m_coll, m_state);
    const auto engine_start = clock::now();
    const int first = m_engine_iteration + 1;
    for (int it = first; it <= e.iterations; ++it) {
      const std::string name = m_engine->name();
      const double cost = m_engine->iterate(m_state);
      check_finite(name, it, e.iterations, cost);
      m_engine_iteration = it;
      ++m_state.iteration;
      m_state.cost_history.push_back(cost);
      m_state.engine_history.push_back(name);
      if (it == e.iterations) finish_engine();
      const double spent = seconds_since(engine_start);
      Progress p;
      p.engine = name;
      p.iteration = it;
      p.iterations = e.iterations;
      p.total_done = m_state.iteration;
      p.total = total;
      p.cost = cost;
      p.seconds_per_iteration = spent / (it - first + 1);
      p.eta_seconds = p.seconds_per_iteration * (total - m_state.iteration);
      if (control.progress) control.progress(p);
      // Stop requests are agreed on by all ranks, so all write and stop together.
      double stop = control.stop_requested && control.stop_requested() ? 1.0 : 0.0;
      if (control.stop_requested) m_coll->max(&stop, 1);
      const bool due = control.checkpoint_every > 0 && m_state.iteration % control.checkpoint_every == 0 &&
                       m_state.iteration < total;
      if ((due || stop > 0) && control.write_checkpoint) {
        check_finite(name, it, e.iterations, cost, true);  // never a checkpoint of a broken state
        control.write_checkpoint([this](StateArchive& ar) { save(ar); });
      }
      if (stop > 0) {
        m_seconds += seconds_since(start);
        return RunEnd::stopped;
      }
      if (!m_engine) break;  // the engine finished
    }
  }
  m_seconds += seconds_since(start);
  if (!m_state.cost_history.empty())
    check_finite(m_state.engine_history.back(), m_engine_iteration, m_engine_iteration, m_state.cost_history.back(),
                 true);
  return RunEnd::finished;
}

void DistributedReconstruction::check_finite(const std::string& engine, int iteration, int iterations, double cost,
                                             bool whole_state) const {
  // Checked rank by rank and agreed on (one collective max).
  const char* what = !std::isfinite(cost) ? "the cost" : nullptr;
  double bad = what ? 1.0 : 0.0;
  if (!what && whole_state) {
    const auto finite_view = [](const auto& view) {
      auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), view);
      const auto* p = host.data();
      for (size_t i = 0; i < host.size(); ++i)
        if (!std::isfinite(p[i].real()) || !std::isfinite(p[i].imag())) return false;
      return true;
    };
    bool positions = true;
    for (const Position& q : m_state.positions) positions &= std::isfinite(q.row) && std::isfinite(q.col);
    bad = finite_view(m_state.object) && finite_view(m_state.probe) && positions ? 0.0 : 2.0;
  }
  m_coll->max(&bad, 1);  // every rank stops together, with the same message
  if (bad > 1) what = "the object, the probe or the positions";
  if (bad > 0 && !what) what = "the cost";
  PTYCHO_NUMERICAL_ERROR_IF(bad > 0, engine << " iteration " << iteration << " of " << iterations << ": " << what
                                            << " is no longer finite (cost " << cost
                                            << "): the reconstruction diverged");
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

HostRView2 DistributedReconstruction::background() const {
  return Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.background);
}

double DistributedReconstruction::background_mean() const {
  return ptycho::background_mean(m_state.background, m_scan.valid);
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
