#pragma once
/// The distributed reconstruction: decomposes the object over the ranks of a
/// communicator, gives each rank its positions, runs an engine chain on the
/// local tiles, and hands back this rank's owned tile, the shared probe and
/// all positions. It knows nothing of files: jobs/ reads the frames each rank
/// needs (my_frames()) and writes the result.
#include "ptycho/core/dataset.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/probe_modes.hpp"
#include "ptycho/parallel/comm.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/mpi_collective.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ptycho {

/// Options of a whole reconstruction.
struct ReconstructOptions {
  std::vector<EngineOptions> chain;  ///< engines, run in order; state carries over
  int probe_modes = 1;               ///< K incoherent probe modes
  int batch = 16;                    ///< frames per batched FFT
  /// The decomposition; DistributedReconstruction raises its refine_margin
  /// to position_margin(chain) when that is larger.
  DecompositionOptions decomposition;
};

/// The most iterations one engine of a chain may run.
inline constexpr int kMaxIterations = 10000000;

/// Parses an engine chain "dm:100,ml:200" into engine options (each a copy of
/// `base` with its name and iteration count). Throws InputError on bad syntax,
/// an iteration count outside [0, kMaxIterations], and (check_chain) when an
/// engine is asked for a refinement it cannot do.
std::vector<EngineOptions> parse_chain(const std::string& chain, const EngineOptions& base);

/// Throws InputError, before any work, if an engine of `chain` is asked for
/// a refinement it does not support (engine_support: positions, probe,
/// background), naming the option, the engine and the engines that can, e.g.
/// "--refine-positions: engine 'epie' does not refine positions (engines
/// that do: dm, raar, ml)". Engines would otherwise ignore the option.
void check_chain(const std::vector<EngineOptions>& chain);

/// The halo margin [object px] beyond the frames' reach that `chain` needs:
/// the largest max_position_shift of its engines that refine positions,
/// rounded up (0 if none refines positions). Within an engine a position
/// moves at most that far (per axis) from where it started, and it starts in
/// its rank's tile (frames migrate between engines), so with this margin it
/// never reads outside the tile's extent. Capped at `cap` (a margin beyond
/// the grid's size changes nothing: extents are clipped to the grid).
int position_margin(const std::vector<EngineOptions>& chain, long cap = 1L << 20);

/// The decomposition DistributedReconstruction makes of `info` over `nranks`
/// ranks (its halo margin raised to position_margin): what each rank will
/// hold, known before anything is allocated.
Decomposition decompose_for(const ScanInfo& info, const ReconstructOptions& options, int nranks);

/// What the progress callback sees (on every rank; print on rank 0).
struct Progress {
  std::string engine;
  int iteration = 0;          ///< within this engine, from 1
  int iterations = 0;         ///< of this engine
  long total_done = 0;        ///< over the chain
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

class DistributedReconstruction {
 public:
  /// Collective over `comm`: decomposes `info`'s object grid and positions.
  DistributedReconstruction(MPI_Comm comm, const ScanInfo& info, const ReconstructOptions& options);

  const Decomposition& decomposition() const { return m_dec; }
  /// Global indices of the frames this rank must load, ascending.
  const std::vector<long>& my_frames() const { return m_dec.positions_of[m_comm.rank()]; }
  /// Global indices of the frames this rank holds now, ascending: my_frames()
  /// until refined positions cross tile boundaries and their frames migrate.
  const std::vector<long>& local_frames() const { return m_scan.index; }
  /// Frames that changed rank so far (over all ranks).
  long frames_migrated() const { return m_frames_migrated; }

  /// Takes this rank's frames (in my_frames() order), the mask and the probe
  /// guess, and sets up the local state: flat object, K probe modes.
  void set_data(const Dataset& data);

  /// Runs the chain (or what is left of it after restore()); `progress` is
  /// called after every iteration.
  void run(const std::function<void(const Progress&)>& progress);
  /// Runs the chain as `control` says; returns whether it finished or stopped
  /// on request (after writing a checkpoint).
  RunEnd run(const RunControl& control);

  /// Saves the whole state (collective): the position in the chain, object,
  /// probe, positions, the background if the chain refines one, histories
  /// (under "run/") and the running engine's own
  /// state (under "engine/"). Independent of the rank count.
  void save(StateArchive& ar) const;
  /// Restores what save() wrote (collective), after set_data(): run() then
  /// goes on from there, on this rank count. Throws InputError if the
  /// checkpoint belongs to another chain or setup.
  void restore(StateArchive& ar);
  /// Iterations done over the chain (after restore(): those of the checkpoint).
  long iterations_done() const { return m_state.iteration; }
  /// The chain as text, e.g. "dm:60,ml:120" (what a checkpoint must match).
  std::string chain_text() const;

  /// This rank's owned tile of the object and its rectangle [global px].
  HostCView2 owned_object() const;
  const Rect& owned() const { return m_scan.owned; }
  /// The probe modes (K, M, M), scaled to counts.
  HostCView3 probe() const;
  /// The detector background b (M, M) [counts per pixel and frame], the same
  /// on every rank; zeros unless an engine refined it (see background.hpp).
  HostRView2 background() const;
  /// Its mean over the valid detector pixels.
  double background_mean() const;
  /// All positions [object px], input order, gathered from every rank.
  std::vector<Position> all_positions() const;
  const ReconState& state() const { return m_state; }
  /// The model mismatch: the refined probe against the guess it started
  /// from, the refined positions against the nominal ones, and the partial
  /// coherence from the mode occupancy. Collective (gathers the positions).
  Mismatch mismatch() const;
  double seconds() const { return m_seconds; }

 private:
  Comm m_comm;
  ScanInfo m_info;
  ReconstructOptions m_options;
  Decomposition m_dec;
  LocalScan m_scan;
  ReconState m_state;
  std::unique_ptr<MpiCollective> m_coll;
  std::unique_ptr<Workspace> m_ws;
  HostCView2 m_nominal_probe;
  double m_seconds = 0;
  /// Where the chain stands: engine m_engine_index has done m_engine_iteration
  /// iterations; m_engine is its instance while it runs.
  int m_engine_index = 0;
  int m_engine_iteration = 0;
  std::unique_ptr<Engine> m_engine;
  long m_frames_migrated = 0;
  /// After an engine's last iteration: orthogonal modes, frames to the ranks
  /// that own their positions now, on to the next engine.
  void finish_engine();
  /// Collective: frames whose positions left this rank's tile go to their
  /// owners (parallel/migrate.hpp); if any frame moved anywhere, the local
  /// scan and the workspace are rebuilt. Returns the frames moved over all ranks.
  long migrate();
  /// Throws NumericalError naming the engine and iteration if `cost` is not
  /// finite, or (with `whole_state`, collective) if any value of the object,
  /// probe or positions is not.
  void check_finite(const std::string& engine, int iteration, int iterations, double cost,
                    bool whole_state = false) const;
};

}  // namespace ptycho
