#pragma once
/// Running an engine chain on one rank: where the chain stands, the state it
/// refines, checkpoints, progress reports and stopping.
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/state_archive.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/local_problem.hpp"
#include "ptycho/parallel/mpi_collective.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ptycho {

/// What the progress callback sees (on every rank; print on rank 0).
struct Progress {
  std::string engine;
  int iteration = 0;    ///< within this engine, from 1
  int iterations = 0;   ///< of this engine
  long total_done = 0;  ///< over the chain
  long total = 0;
  double cost = 0;
  double seconds_per_iteration = 0;
  double eta_seconds = 0;
};

/// How run() is steered: progress reports, checkpoints and stopping.
struct RunControl {
  /// Called after every iteration (on every rank; print on rank 0).
  std::function<void(const Progress&)> progress;
  /// A checkpoint every this many iterations over the chain (0: none), and
  /// whenever a stop is requested.
  int checkpoint_every = 0;
  /// Polled after every iteration on every rank; if any rank says true, all
  /// ranks write a checkpoint and stop (one collective max per iteration).
  std::function<bool()> stop_requested;
  /// Writes a checkpoint (collective): called with the function that saves
  /// the whole state into an archive (see save()). Without it, no checkpoints
  /// are written (and a stop request just stops).
  std::function<void(const std::function<void(StateArchive&)>& save)> write_checkpoint;
};

/// How run() ended.
enum class RunEnd { finished, stopped };

/// The chain as text, e.g. "dm:60,ml:120" (what a checkpoint must match).
std::string chain_text(const std::vector<EngineOptions>& chain);

/// Runs an engine chain on one rank's LocalProblem (collectively with the
/// other ranks of the decomposition). It owns the ReconState the engines
/// refine, the current LocalProblem (with its engine), and where the chain
/// stands: which engine, and how many of its iterations are done. Between
/// engines, and after a restore, frames migrate to the ranks that own their
/// positions: the LocalProblem is then replaced as a whole
/// (LocalProblem::migrated), and the next engine is made against the new
/// one. Not copyable or movable (engines refer to the state held here).
class ChainRunner {
 public:
  /// Starts at the beginning of `chain`, from `state` (object over the
  /// scan's extent, probe modes, the positions of the scan's frames,
  /// background): builds the LocalProblem of `scan` (K = state.probe's modes,
  /// FFT batches of `batch` frames). `dec` is the decomposition the scan's
  /// tile belongs to (frames migrate to its owners); `coll` this rank's
  /// collective over it. `shift_quantum`: the workspace's (Workspace; 0:
  /// exact shifts).
  ChainRunner(std::vector<EngineOptions> chain, Decomposition dec, std::shared_ptr<const MpiCollective> coll,
              LocalScan scan, ReconState state, int batch, int shift_quantum = 0);
  ChainRunner(const ChainRunner&) = delete;
  ChainRunner& operator=(const ChainRunner&) = delete;

  /// Runs the chain, or what is left of it, as `control` says (collective);
  /// returns whether it finished or stopped on request (after writing a
  /// checkpoint). Throws NumericalError, on every rank, if the cost or (at
  /// checkpoints and at the end) the state stops being finite.
  RunEnd run(const RunControl& control);

  /// Saves the whole state (collective): the position in the chain, object,
  /// probe, positions, the background if the chain refines one, histories
  /// (under "run/") and the running engine's own state (under "engine/").
  /// Independent of the rank count.
  void save(StateArchive& ar) const;
  /// Restores what save() wrote (collective): run() then goes on from
  /// there, on this rank count. Frames first migrate to the owners of the
  /// checkpoint's positions. Throws InputError if the checkpoint belongs to
  /// another chain or setup.
  void restore(StateArchive& ar);

  const ReconState& state() const { return m_state; }
  const LocalProblem& problem() const { return *m_problem; }
  /// Frames that changed rank so far (over all ranks).
  long frames_migrated() const { return m_frames_migrated; }
  /// Seconds spent in run() so far.
  double seconds() const { return m_seconds; }

 private:
  std::vector<EngineOptions> m_chain;
  Decomposition m_dec;
  ReconState m_state;                       ///< engines refer to it: declared before the problem
  std::unique_ptr<LocalProblem> m_problem;  ///< never null
  int m_engine_index = 0;
  int m_engine_iteration = 0;
  long m_frames_migrated = 0;
  double m_seconds = 0;
  /// Whether an engine of the chain refines a background (only then is one in checkpoints).
  bool uses_background() const;
  /// After an engine's last iteration: orthogonal modes, frames to the ranks
  /// that own their positions now, on to the next engine.
  void finish_engine();
  /// Collective: migrates frames (LocalProblem::migrated); if any frame moved
  /// anywhere, the new problem replaces the old. Returns the frames moved
  /// over all ranks.
  long migrate();
  /// Throws NumericalError naming the engine and iteration if `cost` is not
  /// finite, or (with `whole_state`, collective) if any value of the object,
  /// probe or positions is not.
  void check_finite(const std::string& engine, int iteration, int iterations, double cost,
                    bool whole_state = false) const;
};

}  // namespace ptycho
