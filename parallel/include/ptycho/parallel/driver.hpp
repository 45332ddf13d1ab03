#pragma once
/// The distributed reconstruction: decomposes the object over the ranks of a
/// communicator, gives each rank its positions, runs an engine chain on the
/// local tiles, and hands back this rank's owned tile, the shared probe and
/// all positions. It knows nothing of files: jobs/ reads the frames each rank
/// needs (my_frames()) and writes the result.
///
/// DistributedReconstruction is the facade over two parts: a ChainRunner
/// (chain_runner.hpp: the chain's position, checkpoints, progress, stopping),
/// which owns the state and the rank's LocalProblem (local_problem.hpp: the
/// local frames, workspace, collective and running engine).
#include "ptycho/core/dataset.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/probe_modes.hpp"
#include "ptycho/core/rank_layout.hpp"
#include "ptycho/parallel/chain_runner.hpp"
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
  int batch = 0;                     ///< frames per batched FFT; 0: default_batch (core/memory.hpp)
  /// The low-memory mode's bound on the shifted-probe cache: sub-pixel
  /// shifts rounded to 1/shift_quantum px, min(n, q^2) cached probes per
  /// mode (Workspace). 0: exact shifts, one cached probe per frame and mode.
  int shift_quantum = 0;
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

/// A reconstruction over the ranks of a communicator (see the file comment).
/// Call set_data() once, then run() (after restore(), to resume); the
/// results are read on every rank.
class DistributedReconstruction {
 public:
  /// Collective over `comm`: decomposes `info`'s object grid and positions.
  DistributedReconstruction(MPI_Comm comm, const ScanInfo& info, const ReconstructOptions& options);

  const Decomposition& decomposition() const { return m_dec; }
  /// Global indices of the frames this rank must load, ascending.
  const std::vector<long>& my_frames() const { return m_dec.positions_of[m_comm.rank()]; }
  /// This rank's share as results and checkpoints place it in their global
  /// datasets: the object grid, its owned tile and extent, and my_frames().
  RankLayout layout() const;
  /// Global indices of the frames this rank holds now, ascending: my_frames()
  /// until refined positions cross tile boundaries and their frames migrate.
  /// Valid until the next run() or restore() (a migration replaces the
  /// LocalProblem that holds them): copy it to keep it.
  const std::vector<long>& local_frames() const;
  /// Frames that changed rank so far (over all ranks).
  long frames_migrated() const;

  /// Takes this rank's frames (in my_frames() order), the mask and the probe
  /// guess, and sets up the local state: flat object, K probe modes
  /// (probe_modes_from_guess, core/first_guess.hpp). On a host memory space
  /// the frames are shared with `data`, not copied: the caller must not
  /// change them while the reconstruction lives.
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
  long iterations_done() const { return state().iteration; }
  /// The chain as text, e.g. "dm:60,ml:120" (what a checkpoint must match).
  std::string chain_text() const;

  /// This rank's owned tile of the object and its rectangle [global px].
  HostCView2 owned_object() const;
  const Rect& owned() const { return m_dec.owned[m_comm.rank()]; }
  /// A copy of the probe modes (K, M, M), scaled to counts.
  HostCView3 probe() const;
  /// The detector background b (M, M) [counts per pixel and frame], the same
  /// on every rank; zeros unless an engine refined it (see background.hpp). A copy.
  HostRView2 background() const;
  /// Its mean over the valid detector pixels.
  double background_mean() const;
  /// All positions [object px], input order, gathered from every rank.
  std::vector<Position> all_positions() const;
  /// The state the engines refine (empty before set_data()).
  const ReconState& state() const;
  /// The model mismatch: the refined probe against the guess it started
  /// from, the refined positions against the nominal ones, and the partial
  /// coherence from the mode occupancy. Collective (gathers the positions).
  Mismatch mismatch() const;
  /// Seconds spent in run() so far.
  double seconds() const;

 private:
  Comm m_comm;
  ScanInfo m_info;
  ReconstructOptions m_options;
  Decomposition m_dec;
  std::shared_ptr<const MpiCollective> m_coll;  ///< this rank's, over m_dec
  HostCView2 m_nominal_probe;                   ///< the guess set_data() got
  std::unique_ptr<ChainRunner> m_runner;        ///< made by set_data()
  /// The runner; throws naming `what` if set_data() was not called.
  ChainRunner& runner(const char* what) const;
};

}  // namespace ptycho
