#pragma once
/// The library API of a reconstruction. `ptycho reconstruct`, job files, the
/// SLURM batch scripts (which run `ptycho reconstruct`) and the Python module
/// are all thin layers over it:
///
///   ptycho::Settings settings;                  // or jobs::read_job_file("job.toml")
///   jobs::apply_keyword(settings, "engines", std::string("dm:100,ml:200"), "keyword argument");
///   ptycho::Reconstruction r(MPI_COMM_WORLD, ptycho::Scan::from_file("scan.cxi"), settings);
///   r.run();                                    // or r.run(callbacks): progress, stopping
///   r.write_result("result.h5");                // collective, atomic
///   HostCView2 object = r.object();             // the whole object, on rank 0
///
/// Every member is collective over the communicator unless it says otherwise:
/// every rank calls it, in the same order.
///
/// One Reconstruction is one run of the settings' chain. run_job (job.hpp)
/// adds what a batch job needs around it: path checks, resuming from the
/// job's checkpoint, signals, the blind preset's position trial, progress
/// lines and the JSON log.
#include "ptycho/core/dataset.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/io/checkpoint.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/jobs/settings.hpp"
#include "ptycho/parallel/driver.hpp"

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ptycho {

/// A scan given as arrays in memory (the Python module's numpy arrays).
/// Every rank holds all of it; each takes its own frames.
struct ScanArrays {
  HostRView3 frames;              ///< (N, M, M) measured counts, zero frequency at the centre
  std::vector<double> y_m, x_m;   ///< probe positions [m], N each (the CXI translation's y and x)
  DetectorGeometry geometry;      ///< energy, distance and detector pixel size; frame_size is taken from `frames`
  View2<std::uint8_t, HostSpace> mask;  ///< (M, M): nonzero where a pixel is INVALID; empty: all valid
  HostCView2 probe;               ///< (M, M) probe guess; empty: estimated from the mean diffraction pattern
  std::string name = "arrays";    ///< how messages and the result's provenance name the scan
};

/// What a reconstruction reads: a CXI file (each rank reads its own frames
/// with parallel HDF5) or arrays in memory. A cheap handle: copies share the arrays.
class Scan {
 public:
  /// A CXI file (not opened until a Reconstruction is made).
  static Scan from_file(const std::string& path);
  /// Arrays, checked now (serial): throws InputError, naming `arrays.name`
  /// and the array, on shapes that disagree, a non-square or empty frame, a
  /// geometry that is not positive and finite, or positions that are not finite.
  static Scan from_arrays(ScanArrays arrays);

  /// Half of this scan: the frames of even (which = 0) or odd (which = 1)
  /// index, on the same object grid (so that two reconstructions of the
  /// halves can be compared pixel by pixel, as the FRC does). Frame i of the
  /// half is frame 2 i + which of the scan.
  Scan half(int which) const;
  /// This scan with its frames and mask turned as `o` says when they are
  /// read (io::Orientation: the detector's axes against the scan's).
  Scan oriented(const io::Orientation& o) const;
  const io::Orientation& orientation() const { return m_orientation; }
  /// This scan with its probe guess taken from `file` (io::ReadOptions::probe_file).
  /// Scans of arrays bring their own probe: for them this throws InputError.
  Scan with_probe_from(const std::string& file) const;
  /// This scan read as `d` describes it (a plain HDF5 file, io::Description).
  Scan described(const io::Description& d) const;

  bool in_memory() const { return m_arrays != nullptr; }
  /// The file, or the arrays' name.
  const std::string& name() const { return m_name; }
  /// The scan's metadata and positions on the object grid (serial, any rank;
  /// reads the file's header, not its frames).
  ScanInfo info() const;
  /// This rank's frames `my_frames` (ascending global indices), the mask and
  /// the probe guess scaled to the counts (collective: a probe estimated from
  /// the data needs every rank's frames).
  Dataset read(MPI_Comm comm, const std::vector<long>& my_frames) const;

 private:
  std::string m_name;
  std::shared_ptr<const ScanArrays> m_arrays;
  int m_half = -1;  ///< -1: every frame; 0 or 1: the frames of even or odd index
  io::Orientation m_orientation;
  std::string m_probe_from;
  io::Description m_description;
  ScanInfo full_info() const;
};

/// How run() is steered. Each callback is called on every rank.
struct RunCallbacks {
  /// After every iteration.
  std::function<void(const Progress&)> progress;
  /// Polled after every iteration; if any rank says true, the run writes a
  /// checkpoint (if the settings name one) and stops.
  std::function<bool()> stop_requested;
  /// After each checkpoint is written: its path, the iterations done, and
  /// the seconds the writing took.
  std::function<void(const std::string& path, long iteration, double seconds)> checkpoint_written;
};

class Reconstruction {
 public:
  /// Sets up a run of `settings` on `scan` (collective over `comm`, which is
  /// duplicated): checks the settings (check_settings, the chain and its
  /// refinements), estimates the memory each rank needs and checks it against
  /// settings.max_memory and each node's available memory, all before
  /// anything large is allocated; then decomposes the object over the ranks,
  /// reads each rank's frames and makes the first guess. If settings.resume
  /// names a checkpoint, the state is restored from it (the checkpoint must
  /// be of this scan and chain; any rank count). Throws InputError on bad
  /// settings or input, the same on every rank.
  Reconstruction(MPI_Comm comm, const Scan& scan, const Settings& settings);
  ~Reconstruction();
  Reconstruction(const Reconstruction&) = delete;
  Reconstruction& operator=(const Reconstruction&) = delete;

  /// Runs what is left of the chain. Writes a checkpoint to settings.checkpoint
  /// (if not empty) every settings.checkpoint_every iterations and when a stop
  /// is requested. Returns RunEnd::stopped if a stop was requested. Throws
  /// NumericalError if the state stops being finite (saying whether a
  /// checkpoint is kept).
  RunEnd run(const RunCallbacks& callbacks = {});

  const Settings& settings() const { return m_settings; }
  const ScanInfo& info() const { return m_info; }
  /// Why the run switched the low-memory mode on by itself: the default did
  /// not fit the memory (the node's, or max_memory) and the low-memory mode
  /// does. "" if it did not (the job set low_memory, or the default fits).
  const std::string& memory_note() const { return m_memory_note; }
  /// The scan's name (file path or arrays' name).
  const std::string& scan_name() const { return m_scan_name; }
  int rank() const;
  int ranks() const;

  // ---- the state: the first guess after construction, the result after run()

  /// The whole object (H, W), gathered on rank `root`; an empty view on the
  /// other ranks.
  HostCView2 object(int root = 0) const;
  /// This rank's owned tile of the object and where it lies (serial).
  HostCView2 object_tile() const;
  Rect object_tile_rect() const;
  /// The probe modes (K, M, M), scaled to counts (serial: every rank holds them).
  HostCView3 probe() const;
  /// All positions [object px] (row, col), input order.
  std::vector<Position> positions() const;
  /// The cost after each iteration, and each iteration's engine (serial).
  const std::vector<double>& cost_history() const;
  const std::vector<std::string>& engine_history() const;
  /// The refined detector background (M, M) [counts]; zeros if none is refined (serial).
  HostRView2 background() const;
  /// The estimated model mismatch: the refined probe against its guess, the
  /// refined positions against the nominal ones, the partial coherence.
  Mismatch mismatch() const;
  /// The position gate's verdict so far (EngineOptions::position_gate; the
  /// same on every rank): 0 not tested, +1 the positions are refined, -1
  /// they stay as given; and the test's relative drop of the misfit.
  int position_verdict() const;
  double position_gain() const;
  /// Iterations done over the chain; seconds spent iterating in this process (serial).
  long iterations_done() const;
  double seconds() const;
  /// Frames that moved to another rank with their refined positions (serial).
  long frames_migrated() const;

  // ---- output, from memory

  /// The result in the result contract (io/result.hpp): this rank's tile,
  /// everything else the same on every rank. `command_line` is recorded as
  /// provenance.
  io::ResultData result(const std::string& command_line = "") const;
  /// Writes result(command_line) to `path` (atomic). Refuses (InputError),
  /// before writing, a path that is the scan file or a folder, or whose
  /// folder cannot be written (jobs::PathPlan); creates a missing folder.
  void write_result(const std::string& path, const std::string& command_line = "") const;
  /// Writes a checkpoint of the whole state to `path` (atomic), from which a
  /// Reconstruction with settings.resume = path goes on, at any rank count.
  /// The same checks as write_result (it may replace the checkpoint resumed from).
  void write_checkpoint(const std::string& path) const;
  /// Rank 0 writes amplitude.png, phase.png, probe.png and cost.png into
  /// `folder` (which must exist).
  void write_previews(const std::string& folder) const;

 private:
  MPI_Comm m_comm = MPI_COMM_NULL;
  Settings m_settings;
  ScanInfo m_info;
  std::string m_scan_name;
  bool m_scan_in_memory = false;
  std::string m_input_abs;  ///< the scan file's absolute path (checkpoints record it); the name for arrays
  std::string m_memory_note;  ///< why the low-memory mode was switched on by itself ("" if it was not)
  int m_batch = 0;            ///< the frames per batched FFT in use (the job's, or default_batch's)
  std::unique_ptr<DistributedReconstruction> m_recon;
  RankLayout layout() const;
  void resume_from(const std::string& path);
  /// The run's own texts of a checkpoint: the scan it reconstructs and its
  /// low_memory setting.
  void save_run_texts(StateArchive& ar) const;
  void check_output(const std::string& path, const std::string& what, bool also_input = false) const;
};

/// Writes the previews of a whole object held on this rank (serial): what
/// Reconstruction::write_previews writes on rank 0.
void write_previews(const std::string& folder, const HostCView2& object, const HostCView3& probe_modes,
                    const std::vector<double>& costs, const std::vector<std::string>& engines);

}  // namespace ptycho
