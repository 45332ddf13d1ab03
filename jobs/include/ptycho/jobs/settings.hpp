#pragma once
/// The settings of a reconstruction: every setting of `ptycho reconstruct`,
/// read from a TOML job file, from the command line, from Python keyword
/// arguments, or a mix (ptycho::Settings is ReconstructJob).
///
/// Each setting has one name in two spellings: the job-file key `probe_modes`
/// is the command-line option `--probe-modes` (see option_name). A job file is
/// a flat TOML table of such keys:
///
///   input = "scan.cxi"        # paths are relative to the job file's folder
///   engines = "dm:100,ml:200"
///   probe_modes = 2
///
/// The command line overrides the file key by key: read_job_file fills a job
/// from the file, then copy_setting copies each option the user gave.
///
/// Every error is a ptycho::InputError that names where the value came from
/// (`job.toml:4: probe_modes: ...` or `--probe-modes: ...`) and what is
/// expected; an unknown key names the nearest valid key.
///
/// Each setting is declared once: a field here, and a line in the key table
/// of jobs/lib/settings.cpp (key, field, help text, check). That one line
/// makes the job-file key, the command-line option (add_settings_options),
/// the Python keyword (apply_keyword), the validation and the help text; the
/// default is the field's initial value.
#include "ptycho/core/engine.hpp"
#include "ptycho/io/cxi.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace CLI {
class App;
}

namespace ptycho::jobs {

/// The largest number of incoherent probe modes.
inline constexpr int kMaxProbeModes = 32;
/// The largest batch of frames per FFT.
inline constexpr int kMaxBatch = 4096;
/// The low-memory mode's shift quantum: shifts rounded to 1/8 px, 64 cached probes per mode at most.
inline constexpr int kLowMemoryShiftQuantum = 8;
/// When reconstruct switches the low-memory mode on by itself, ML keeps far
/// fields in this share of the memory that is left (memory_headroom): the
/// estimate is a model, and other processes may take some of the node's.
inline constexpr double kFarFieldShareOfHeadroom = 0.75;
/// The largest position shift limit [object px].
inline constexpr double kMaxPositionShift = 256;

/// The default engine chain: Poisson maximum likelihood, the most accurate
/// engine for data whose forward model is known (see README, "Engines").
inline constexpr const char* kDefaultChain = "ml:200";

/// ML's total-variation prior is on in jobs unless set (README,
/// "Regularisation"): measured, it raises every case of the public and dev
/// tiers, standard and blind.
inline constexpr double kDefaultTv = 1e-2;

/// The blind preset's position gate (EngineOptions::position_gate): the
/// positions are refined only if a test of annealing steps on the frozen
/// object lowers the misfit by more than this fraction. Measured after 20
/// RAAR iterations (README, "Blind tier"): 15 to 20 % where the positions
/// are wrong by 4.5 nm or more, 0.1 to 0.7 % where they are right to 1 nm.
inline constexpr double kPositionGate = 0.05;

/// The engine parameters a job starts from: the library's, with TV on.
inline EngineOptions job_engine_defaults() {
  EngineOptions o;
  o.tv = kDefaultTv;
  return o;
}

/// Everything `ptycho reconstruct` can be told. The defaults are the
/// program's defaults; a setting nobody set keeps its default and has no
/// entry in `origin`.
struct ReconstructJob {
  std::string input;                    ///< the scan (CXI)
  std::string output;                   ///< the result (HDF5); empty: INPUT-stem_ptycho.h5 in the working folder
  std::string engines = kDefaultChain;  ///< engine chain, e.g. "dm:100,ml:200"
  int probe_modes = 1;                  ///< K incoherent probe modes
  bool refine_probe = false;
  std::string likelihood = "poisson";  ///< ML noise model: poisson or gaussian
  std::string position_method = "gradient";  ///< position refinement: gradient or annealing
  std::string background = "none";     ///< detector background refined by every engine: none, constant or pixel
  int batch = 0;                       ///< frames per batched FFT; 0: default_batch (core/memory.hpp)
  int progress_every = 10;             ///< a progress line every this many iterations
  std::string previews;                ///< folder for PNG previews; empty: none
  std::string log_json;                ///< JSON-lines progress log; empty: none
  std::string trace;                   ///< HDF5 trace of probe, positions and mismatch (io/trace.hpp); empty: none
  std::string preset;                  ///< standard or blind: defaults for what the job does not set
  std::string checkpoint;              ///< checkpoint file; empty: OUTPUT-stem.checkpoint.h5 beside the output
  int checkpoint_every = 0;            ///< iterations between checkpoints; 0: only when stopped by a signal
  std::string resume;                  ///< checkpoint to resume from; empty: the checkpoint file, if it exists
  std::string max_memory;              ///< per-rank memory limit ("8G"); empty: the node's available memory
  /// Start from the probe in this file (a scan with a probe, or a result)
  /// instead of the scan's own or an estimate; empty: none.
  std::string probe_from;
  /// A plain HDF5 input described here instead of read by its format
  /// (io::Description): the frames' and positions' datasets, the positions'
  /// order, unit and signs, the geometry, an optional mask.
  std::string frames_dataset;
  std::string positions_dataset;
  std::string positions_order = "xy";
  std::string positions_unit = "m";
  bool negate_x = false;
  bool negate_y = false;
  double energy_kev = 0;
  double distance_m = 0;
  double pixel_size_m = 0;
  std::string mask_dataset;
  /// Reconstruct the two halves of the scan (frames of even and of odd
  /// index) into OUTPUT-stem.half1.h5 and .half2.h5, and their FRC.
  bool halves = false;
  /// Low-memory mode: sub-pixel shifts rounded to 1/kLowMemoryShiftQuantum
  /// px, so that each rank caches at most kLowMemoryShiftQuantum^2 shifted
  /// probes per mode instead of one per frame (Workspace).
  bool low_memory = false;
  /// The detector's frames turned on reading (io::Orientation): transposed,
  /// then flipped up-down, then left-right.
  bool transpose = false;
  bool flip_y = false;
  bool flip_x = false;
  /// Engine parameters shared by the chain (name and iterations come from `engines`;
  /// likelihood, position_method and refine_probe from the fields above).
  EngineOptions base = job_engine_defaults();

  /// Set on the branches of a `halves` job: 1 or 2, the half this run reconstructs (0: the whole scan).
  int half = 0;

  /// The job file this job was read from, as given; empty if none.
  std::string job_file;
  /// Where each setting that is not a default came from, by key:
  /// "job.toml:4" for a job file's line, "--probe-modes" for an option.
  std::map<std::string, std::string> origin;

  /// How an error names setting `key`: "job.toml:4: probe_modes",
  /// "--probe-modes", or the bare key for a default.
  std::string where(const std::string& key) const;
};

/// The [slurm] table of a job file: how `ptycho submit` asks SLURM for the
/// job. `ptycho reconstruct` skips the table; every other table is an error.
///
///   [slurm]
///   nodes = 2            # --nodes
///   tasks = 64           # --ntasks: MPI ranks in all
///   time = "04:00:00"    # --time
///   partition = "gpu"    # --partition (optional)
///   account = "p1234"    # --account (optional)
///   signal_seconds = 120 # USR1 this long before the time limit: checkpoint, requeue
///   sbatch_options = ["--exclusive"]  # anything else, passed as given
struct SlurmSettings {
  int nodes = 1;
  int tasks = 1;
  std::string time;  ///< empty: the partition's default
  std::string partition;
  std::string account;
  int signal_seconds = 120;
  std::vector<std::string> sbatch_options;
  /// Where each setting came from ("job.toml:12"), by key.
  std::map<std::string, std::string> origin;
};

/// The keys of the [slurm] table.
const std::vector<std::string>& slurm_keys();

/// Reads the [slurm] table of job file `path` (defaults if it has none).
/// Throws InputError naming file, line and key on an unknown key (with the
/// nearest valid one) or a bad value.
SlurmSettings read_slurm_settings(const std::string& path);

/// The keys of a job file, in the order of the README's table.
const std::vector<std::string>& job_file_keys();

/// The command-line option of job-file key `key`: "probe_modes" gives
/// "--probe-modes". (`input` is the positional argument on the command line.)
std::string option_name(const std::string& key);

/// Whether `path` should be read as a job file rather than as a CXI scan: a
/// `.toml` extension says yes; HDF5's signature (at offset 0, 512, 1024, ...)
/// or an HDF5 extension (.cxi, .h5, .hdf5, .nxs) says no; any other file is
/// taken as a job file.
bool is_job_file(const std::string& path);

/// Reads the job file `path` onto `defaults`: checks every key (known, of the
/// right type, a valid value) and sets it, recording its line in `origin`.
/// Relative paths in the file are taken relative to the file's folder.
/// Throws InputError on a malformed file (`path:line:column: ...`), an
/// unknown key (with the nearest valid key), or a bad value.
ReconstructJob read_job_file(const std::string& path, const ReconstructJob& defaults = {});

/// Copies setting `key` from `from` into `to` and records its origin as the
/// command-line option. Throws ptycho::Error on an unknown key.
void copy_setting(const std::string& key, const ReconstructJob& from, ReconstructJob& to);

/// The io::Description the job's described-input keys make (empty if it sets no frames_dataset).
io::Description description_of(const ReconstructJob& job);

/// `path` read as `read` says, or, if `path` is a job file, the job's input
/// read as its keys say: its orientation (unless `read` turns the frames
/// already), its described HDF5 and its probe_from. Checks the job's settings.
struct ScanToRead {
  std::string path;
  io::ReadOptions read;
};
ScanToRead scan_to_read(const std::string& path, io::ReadOptions read);

/// Checks the value of every setting that has an origin (defaults are valid);
/// throws InputError naming the first bad one by job.where(key).
void check_settings(const ReconstructJob& job);

/// The settings as a JSON object, one member per key (for the result's
/// provenance and the log).
nlohmann::json to_json(const ReconstructJob& job);

/// Adds one command-line option per key to `app`, bound to the fields of
/// `job` (`--probe-modes` for probe_modes; `-o,--output`; `input` becomes
/// `--input`, since the scan is the positional argument), with the key's help
/// text and, for numbers, its default.
void add_settings_options(CLI::App& app, ReconstructJob& job);

/// The help text of setting `key`. Throws ptycho::Error on an unknown key.
std::string setting_help(const std::string& key);

/// A setting's value as another language gives it (Python's bool, int, float, str).
using SettingValue = std::variant<bool, long long, double, std::string>;

/// Sets `key` from `value` with the job file's type rules and checks, and
/// records `where` as its origin ("keyword argument"). Throws InputError
/// "`where`: key: problem" on an unknown key (with the nearest one), a value
/// of the wrong type, or a bad value.
void apply_keyword(ReconstructJob& job, const std::string& key, const SettingValue& value, const std::string& where);

/// Applies the job's preset: defaults for every setting it leaves unset (no
/// origin). standard (or none): nothing. blind: raar:150,ml:200 with probe
/// refinement and 3 modes (held 5 iterations: the object forms first); and,
/// unless refine_positions is set, positions refined behind the position gate
/// (kPositionGate): after 20 iterations they are tested, and refined (by
/// annealing, at most 3 px from where each engine starts) only if the test
/// finds them wrong. One chain, one run.
void apply_preset(ReconstructJob& job);

/// The engine options the job's chain starts from: job.base with the
/// settings held outside it (refine_probe, likelihood, position_method,
/// background) filled in.
EngineOptions engine_base(const ReconstructJob& job);

/// The optimal-string-alignment edit distance: insertions, deletions,
/// substitutions and swaps of neighbouring characters, each costing 1.
std::size_t edit_distance(const std::string& a, const std::string& b);

/// The candidate nearest to `word` by edit_distance (the first of equals);
/// empty if there are no candidates.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace ptycho::jobs

namespace ptycho {
/// The settings of a reconstruction (see the file comment).
using Settings = jobs::ReconstructJob;
}  // namespace ptycho
