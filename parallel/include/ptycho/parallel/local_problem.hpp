#pragma once
/// One rank's local problem: the frames it holds and their place in the
/// object, the engines' workspace built on them, the collective over the
/// decomposition, and the engine that runs on them.
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/mpi_collective.hpp"

#include <memory>

namespace ptycho {

/// What one rank reconstructs on: its LocalScan (frames, positions' global
/// indices, tile), the Workspace built on that scan, the MpiCollective of the
/// decomposition, and the running engine.
///
/// Ownership. A LocalProblem is built whole and never patched: migration
/// (migrated()) makes a new one, which replaces the old one, and the old
/// one's scan, workspace and engine go with it. The engine is made against a
/// problem (start_engine) and owned by it, so it cannot outlive the
/// workspace and collective it refers to. The collective is shared with the
/// problem's successors (it depends on the decomposition only, which
/// migration keeps). The ReconState an engine refines belongs to the caller
/// and must outlive the problem. Not copyable or movable: the workspace
/// refers to the scan held here.
class LocalProblem {
 public:
  /// Takes `scan` (frames and valid pixels set) and builds its workspace
  /// for `num_modes` probe modes and FFT batches of `batch` frames, then sets
  /// the workspace's positions and probe from `state` (set_state). The
  /// collective is this rank's over the decomposition the scan belongs to.
  /// `shift_quantum`: the workspace's (Workspace; 0: exact shifts).
  LocalProblem(LocalScan scan, std::shared_ptr<const MpiCollective> coll, int num_modes, int batch,
               const ReconState& state, int shift_quantum = 0);
  LocalProblem(const LocalProblem&) = delete;
  LocalProblem& operator=(const LocalProblem&) = delete;

  const LocalScan& scan() const { return m_scan; }
  const Workspace& workspace() const { return m_ws; }
  const MpiCollective& collective() const { return *m_coll; }

  /// Refreshes the workspace from `state`: patch origins and shift ramps
  /// from state.positions (one per local frame, in scan().index order),
  /// then the shifted probes from state.probe.
  void set_state(const ReconState& state);
  /// Refreshes the workspace's shifted probes from `probe` (K, M, M).
  void set_probe(const CView3& probe);

  /// Makes engine `opt`, bound to this problem's workspace and collective,
  /// starting from `state` (which must outlive this problem); ends the
  /// engine that ran before, if any.
  Engine& start_engine(const EngineOptions& opt, ReconState& state);
  /// The running engine, or null.
  Engine* engine() const { return m_engine.get(); }
  /// Ends the running engine (its private state goes with it).
  void end_engine() { m_engine.reset(); }

  /// Collective over the collective's communicator: every frame whose
  /// position (state.positions) has left this rank's tile of `dec` goes to
  /// the rank that owns it now (parallel/migrate.hpp), with its counts. If
  /// any frame moved on any rank, returns the problem of the frames this rank
  /// holds afterwards and puts their positions in state.positions (in its
  /// scan's order); otherwise returns null and changes nothing. `moved` is
  /// set to the frames that changed rank, over all ranks. No engine may be
  /// running (engines keep per-frame state).
  std::unique_ptr<LocalProblem> migrated(const Decomposition& dec, ReconState& state, long& moved) const;

 private:
  LocalScan m_scan;
  std::shared_ptr<const MpiCollective> m_coll;
  int m_batch;
  Workspace m_ws;                    ///< refers to m_scan
  std::unique_ptr<Engine> m_engine;  ///< refers to m_ws and m_coll: declared after them, destroyed first
};

}  // namespace ptycho
