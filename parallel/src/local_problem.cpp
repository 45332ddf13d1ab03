#include "ptycho/parallel/local_problem.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/parallel/migrate.hpp"

#include <utility>

namespace ptycho {

LocalProblem::LocalProblem(LocalScan scan, std::shared_ptr<const MpiCollective> coll, int num_modes, int batch,
                           const ReconState& state, int shift_quantum)
    : m_scan(std::move(scan)), m_coll(std::move(coll)), m_batch(batch), m_ws(m_scan, num_modes, batch, shift_quantum) {
  PTYCHO_THROW_IF(!m_coll, "LocalProblem: no collective");
  set_state(state);
}

void LocalProblem::set_state(const ReconState& state) {
  m_ws.set_positions(state.positions);
  m_ws.set_probe(state.probe);
}

void LocalProblem::set_probe(const CView3& probe) { m_ws.set_probe(probe); }

Engine& LocalProblem::start_engine(const EngineOptions& opt, ReconState& state) {
  m_engine.reset();  // the one before lets go of its buffers first
  m_engine = make_engine(opt, m_ws, *m_coll, state);
  return *m_engine;
}

std::unique_ptr<LocalProblem> LocalProblem::migrated(const Decomposition& dec, ReconState& state, long& moved) const {
  PTYCHO_THROW_IF(m_engine, "LocalProblem::migrated: engine '" << m_engine->name() << "' is still running");
  FrameSet mine;
  mine.index = m_scan.index;
  mine.positions = state.positions;
  mine.counts = Kokkos::create_mirror_view_and_copy(HostSpace(), m_scan.frames);
  moved = 0;
  FrameSet now = migrate_frames(m_coll->comm(), dec, mine, moved);
  if (moved == 0) return nullptr;
  const int m = m_scan.frame_size;
  LocalScan scan = m_scan;
  scan.index = std::move(now.index);
  state.positions = std::move(now.positions);
  scan.frames = RView3(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::frames"), scan.num_local(), m, m);
  Kokkos::deep_copy(scan.frames, now.counts);
  return std::make_unique<LocalProblem>(std::move(scan), m_coll, m_ws.num_modes(), m_batch, state,
                                        m_ws.shift_quantum());
}

}  // namespace ptycho
