#include "ptycho/parallel/chain_runner.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/probe_modes.hpp"

#include <chrono>
#include <cmath>
#include <sstream>
#include <utility>

namespace ptycho {

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
  void frame_field(const std::string& n, const HalfCView3& f) override { m_inner.frame_field(m_prefix + n, f); }
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

std::string chain_text(const std::vector<EngineOptions>& chain) {
  std::vector<std::string> items;
  for (const auto& e : chain)
    items.push_back(e.name == kLearnedEngine ? (e.model.empty() ? e.name : e.name + ":" + e.model)
                                             : e.name + ":" + std::to_string(e.iterations));
  return join(items);
}

ChainRunner::ChainRunner(std::vector<EngineOptions> chain, Decomposition dec, std::shared_ptr<const MpiCollective> coll,
                         LocalScan scan, ReconState state, int batch, int shift_quantum)
    : m_chain(std::move(chain)), m_dec(std::move(dec)), m_state(std::move(state)) {
  m_problem =
      std::make_unique<LocalProblem>(std::move(scan), std::move(coll), int(m_state.probe.extent(0)), batch, m_state,
                                     shift_quantum);
}

bool ChainRunner::uses_background() const {
  for (const auto& e : m_chain)
    if (e.background != BackgroundMode::none) return true;
  return false;
}

void ChainRunner::save(StateArchive& ar) const {
  ar.set_local_frames(m_problem->scan().index);
  std::string chain = chain_text(m_chain);
  ar.text("run/chain", chain);
  std::vector<double> position = {double(m_engine_index), double(m_engine_iteration), double(m_state.iteration),
                                  double(m_state.probe.extent(0))};
  ar.values("run/position", position);
  ar.object_field("run/object", m_state.object);
  ar.shared_field("run/probe", m_state.probe);
  if (uses_background()) archive_background(ar, m_state.background);
  std::vector<double> flat;
  for (const Position& q : m_state.positions) flat.insert(flat.end(), {q.row, q.col});
  ar.frame_values("run/positions", flat, 2);
  std::vector<double> costs = m_state.cost_history;
  ar.values("run/cost_history", costs);
  std::vector<double> verdict = {double(m_state.position_verdict), m_state.position_gain};
  ar.values("run/position_test", verdict);
  std::string engines = join(m_state.engine_history);
  ar.text("run/engine_history", engines);
  if (Engine* engine = m_problem->engine()) {
    std::string name = engine->name();
    ar.text("engine/name", name);
    PrefixedArchive engine_ar(ar, "engine/");
    engine->checkpoint(engine_ar);
  }
}

void ChainRunner::restore(StateArchive& ar) {
  PTYCHO_THROW_IF(!ar.loading(), "restore: the archive is not open for reading");
  ar.set_local_frames(m_problem->scan().index);
  const std::string expected = chain_text(m_chain);
  std::string chain;
  ar.text("run/chain", chain);
  PTYCHO_INPUT_ERROR_IF(chain != expected, "the checkpoint was written by the chain '"
                                               << chain << "', this run's chain is '" << expected
                                               << "' (resume with the same engines, or start afresh)");
  std::vector<double> position;
  ar.values("run/position", position);
  PTYCHO_INPUT_ERROR_IF(position.size() != 4,
                        "the checkpoint's run/position holds " << position.size() << " values, expected 4");
  PTYCHO_INPUT_ERROR_IF(long(position[3]) != long(m_state.probe.extent(0)),
                        "the checkpoint has " << long(position[3]) << " probe modes, this run "
                                              << m_state.probe.extent(0) << " (--probe-modes must match)");
  const int index = int(position[0]), done_in_engine = int(position[1]);
  PTYCHO_INPUT_ERROR_IF(
      index < 0 || index > int(m_chain.size()) ||
          (index < int(m_chain.size()) && (done_in_engine < 0 || done_in_engine >= m_chain[index].iterations)),
      "the checkpoint's place in the chain (engine " << index << ", iteration " << done_in_engine << ") is not in '"
                                                     << expected << "'");
  ar.object_field("run/object", m_state.object);
  ar.shared_field("run/probe", m_state.probe);
  if (uses_background()) archive_background(ar, m_state.background);
  std::vector<double> flat;
  ar.frame_values("run/positions", flat, 2);
  for (size_t j = 0; j < m_state.positions.size(); ++j) m_state.positions[j] = {flat[2 * j], flat[2 * j + 1]};
  ar.values("run/cost_history", m_state.cost_history);
  if (ar.contains("run/position_test")) {  // (checkpoints from before the position gate have none)
    std::vector<double> verdict;
    ar.values("run/position_test", verdict);
    PTYCHO_INPUT_ERROR_IF(verdict.size() != 2 || std::abs(verdict[0]) > 1,
                          "the checkpoint's run/position_test is not a verdict and a gain");
    m_state.position_verdict = int(verdict[0]);
    m_state.position_gain = verdict[1];
  }
  std::string engines;
  ar.text("run/engine_history", engines);
  m_state.engine_history = split(engines);
  m_state.iteration = long(position[2]);
  m_problem->end_engine();
  // The checkpoint's positions may lie in other ranks' tiles (refined, or
  // written on another rank count): their frames go there first, and the
  // engine's per-frame state below is read for the frames held after that.
  if (migrate() == 0) m_problem->set_state(m_state);
  ar.set_local_frames(m_problem->scan().index);
  m_engine_index = index;
  m_engine_iteration = done_in_engine;
  if (done_in_engine > 0) {
    // Mid-engine: the engine is rebuilt on the restored state, then takes
    // back its private state.
    Engine& engine = m_problem->start_engine(m_chain[index], m_state);
    std::string name;
    ar.text("engine/name", name);
    PTYCHO_INPUT_ERROR_IF(name != engine.name(), "the checkpoint holds the state of engine '" << name << "', expected '"
                                                                                              << engine.name() << "'");
    PrefixedArchive engine_ar(ar, "engine/");
    engine.checkpoint(engine_ar);
  }
}

void ChainRunner::finish_engine() {
  m_problem->end_engine();
  ++m_engine_index;
  m_engine_iteration = 0;
  // Between engines (and at the end) the modes become the eigenmodes of
  // their mutual coherence. Not during an engine: DM, RAAR and sDR keep an
  // exit wave per mode, tied to the mode it was made with.
  if (m_state.probe.extent(0) > 1) {
    auto modes = Kokkos::create_mirror_view_and_copy(HostSpace(), m_state.probe);
    orthogonalize_modes(modes);
    Kokkos::deep_copy(m_state.probe, modes);
    m_problem->set_probe(m_state.probe);
  }
  // No engine keeps per-frame state now: frames whose refined centres left
  // this rank's tile move to their owners.
  migrate();
}

long ChainRunner::migrate() {
  long moved = 0;
  std::unique_ptr<LocalProblem> next = m_problem->migrated(m_dec, m_state, moved);
  if (!next) return 0;
  m_problem = std::move(next);
  m_frames_migrated += moved;
  return moved;
}

RunEnd ChainRunner::run(const RunControl& control) {
  long total = 0;
  for (const auto& e : m_chain) total += e.iterations;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  const int num_engines = int(m_chain.size());
  while (m_engine_index < num_engines) {
    const EngineOptions& e = m_chain[m_engine_index];
    if (e.iterations == 0) {
      ++m_engine_index;
      continue;
    }
    if (!m_problem->engine()) m_problem->start_engine(e, m_state);
    const auto engine_start = clock::now();
    const int first = m_engine_iteration + 1;
    for (int it = first; it <= e.iterations; ++it) {
      // (finish_engine may replace the problem, and with it the engine)
      Engine& engine = *m_problem->engine();
      const std::string name = engine.name();
      const double cost = engine.iterate(m_state);
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
      if (control.stop_requested) m_problem->collective().max(&stop, 1);
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
      if (!m_problem->engine()) break;  // the engine finished
    }
  }
  m_seconds += seconds_since(start);
  if (!m_state.cost_history.empty())
    check_finite(m_state.engine_history.back(), m_engine_iteration, m_engine_iteration, m_state.cost_history.back(),
                 true);
  return RunEnd::finished;
}

void ChainRunner::check_finite(const std::string& engine, int iteration, int iterations, double cost,
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
  m_problem->collective().max(&bad, 1);  // every rank stops together, with the same message
  if (bad > 1) what = "the object, the probe or the positions";
  if (bad > 0 && !what) what = "the cost";
  PTYCHO_NUMERICAL_ERROR_IF(bad > 0, engine << " iteration " << iteration << " of " << iterations << ": " << what
                                            << " is no longer finite (cost " << cost
                                            << "): the reconstruction diverged");
}

}  // namespace ptycho
