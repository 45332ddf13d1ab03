#include "ptycho/jobs/settings.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/parallel/driver.hpp"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <type_traits>
#include <variant>

namespace ptycho::jobs {

namespace {

/// --preset learned: the network's guess, then the default ML (with its TV
/// prior; README, "Learned engines"). Since session 16 without the Gaussian
/// smoothness prior of earlier sessions, which TV made redundant on the
/// sparse tier and which cost 0.007 (public) and 0.02 (dev) on the standard
/// tiers.
constexpr const char* kLearnedChain = "nn,ml:200";

namespace fs = std::filesystem;

/// What a check finds wrong with a value, or "" if nothing.
template <class T>
using Check = std::function<std::string(const T&)>;

/// A field of ReconstructJob, as a function from the job to the field.
template <class T>
using Field = T& (*)(ReconstructJob&);

template <class T>
const T& read_field(Field<T> field, const ReconstructJob& job) {
  return field(const_cast<ReconstructJob&>(job));  // the accessor only names the member
}

/// One setting: its key and how to read, check, copy and report it.
struct KeySpec {
  std::string key;
  std::string help;  ///< the option's help text (README, --help, Python docstring)
  /// Sets `job`'s field from a TOML value (relative paths against `dir`);
  /// returns "" or what was expected (e.g. "a whole number") if the type is wrong.
  std::function<std::string(const toml::node& node, const fs::path& dir, ReconstructJob& job)> assign;
  /// What is wrong with the field's value in `job`, or "".
  std::function<std::string(const ReconstructJob& job)> check;
  std::function<void(const ReconstructJob& from, ReconstructJob& to)> copy;
  std::function<nlohmann::json(const ReconstructJob& job)> json;
  /// Adds the command-line option bound to the field of `job`.
  std::function<CLI::Option*(CLI::App& app, ReconstructJob& job)> add_option;
};

// ---- values in messages

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string format_value(int v) { return std::to_string(v); }
std::string format_value(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

/// A TOML value as written in the file (short), or its kind for tables and arrays.
std::string toml_text(const toml::node& node) {
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  std::ostringstream os;
  node.visit([&](const auto& v) { os << v; });
  std::string s = os.str();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// ---- TOML value -> field, by type; each returns "" or what was expected

std::string from_toml(const toml::node& node, int& out) {
  const auto* v = node.as_integer();
  if (!v) return "a whole number";
  if (v->get() < INT_MIN || v->get() > INT_MAX) return "a whole number that fits in 32 bits";
  out = static_cast<int>(v->get());
  return "";
}

std::string from_toml(const toml::node& node, unsigned& out) {
  const auto* v = node.as_integer();
  if (!v || v->get() < 0 || v->get() > std::int64_t(UINT_MAX))
    return "a whole number from 0 to " + std::to_string(UINT_MAX);
  out = static_cast<unsigned>(v->get());
  return "";
}

std::string from_toml(const toml::node& node, double& out) {
  if (const auto* f = node.as_floating_point()) {
    out = f->get();
    return "";
  }
  if (const auto* i = node.as_integer()) {
    out = static_cast<double>(i->get());
    return "";
  }
  return "a number";
}

std::string from_toml(const toml::node& node, bool& out) {
  const auto* v = node.as_boolean();
  if (!v) return "true or false";
  out = v->get();
  return "";
}

std::string from_toml(const toml::node& node, std::string& out) {
  const auto* v = node.as_string();
  if (!v) return "a string in quotes";
  out = v->get();
  return "";
}

// ---- checks

Check<int> at_least(int lo) {
  return [lo](const int& v) {
    return v >= lo ? "" : "must be at least " + std::to_string(lo) + ", got " + format_value(v);
  };
}

Check<int> int_range(int lo, int hi) {
  return [lo, hi](const int& v) {
    return v >= lo && v <= hi ? ""
                              : "must be from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                                    format_value(v);
  };
}

Check<int> power_of_two_up_to(int hi) {
  return [hi](const int& v) {
    return v >= 1 && v <= hi && (v & (v - 1)) == 0
               ? ""
               : "must be a power of 2 from 1 to " + std::to_string(hi) + ", got " + format_value(v);
  };
}

Check<double> finite() {
  return [](const double& v) { return std::isfinite(v) ? "" : "must be a finite number, got " + format_value(v); };
}

Check<double> non_negative() {
  return [](const double& v) {
    return std::isfinite(v) && v >= 0 ? "" : "must be a finite number >= 0, got " + format_value(v);
  };
}

Check<double> positive() {
  return [](const double& v) {
    return std::isfinite(v) && v > 0 ? "" : "must be a finite number > 0, got " + format_value(v);
  };
}

Check<double> in_range(double lo, double hi) {
  return [lo, hi](const double& v) {
    return v >= lo && v <= hi
               ? ""
               : "must be between " + format_value(lo) + " and " + format_value(hi) + ", got " + format_value(v);
  };
}

Check<std::string> one_of(std::vector<std::string> allowed) {
  return [allowed](const std::string& v) -> std::string {
    if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return "";
    std::string list;
    for (size_t i = 0; i < allowed.size(); ++i)
      list += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + quoted(allowed[i]);
    return "must be " + list + ", got " + quoted(v);
  };
}

/// An engine chain that parse_chain accepts; its message without the "--engines: " it starts with.
Check<std::string> engine_chain() {
  return [](const std::string& v) -> std::string {
    try {
      parse_chain(v, EngineOptions{});
    } catch (const InputError& e) {
      std::string message = e.what();
      const std::string prefix = "--engines: ";
      if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
      return message;
    }
    return "";
  };
}

/// A memory size that parse_bytes accepts.
Check<std::string> memory_size() {
  return [](const std::string& v) -> std::string {
    if (v.empty()) return "";
    try {
      parse_bytes(v, "");
    } catch (const InputError&) {
      return "expected a memory size such as 4G, 512M or 2.5GiB, got " + quoted(v);
    }
    return "";
  };
}

Check<std::string> non_empty() {
  return [](const std::string& v) { return v.empty() ? "must not be empty" : ""; };
}

/// The scan: an existing file that is not itself a job file.
Check<std::string> existing_scan() {
  return [](const std::string& v) -> std::string {
    if (v.empty()) return "must not be empty";
    std::error_code ec;
    if (!fs::is_regular_file(v, ec)) return "no such file: " + v;
    if (is_job_file(v)) return v + " is not a CXI (HDF5) file";
    return "";
  };
}

/// An existing regular file (a checkpoint, a probe).
Check<std::string> existing_checkpoint() {
  return [](const std::string& v) -> std::string {
    if (v.empty()) return "must not be empty";
    std::error_code ec;
    if (!fs::is_regular_file(v, ec)) return "no such file: " + v;
    return "";
  };
}

// ---- key builders

/// The option of a field: a flag for a bool (`--refine-probe` or
/// `--refine-probe=false`), else an option that takes a value; numbers show
/// their default in --help.
template <class T>
CLI::Option* bind_option(CLI::App& app, const std::string& key, T& field, const std::string& help) {
  if constexpr (std::is_same_v<T, bool>) {
    return app.add_flag(option_name(key), field, help);
  } else {
    CLI::Option* o = app.add_option(option_name(key), field, help);
    if constexpr (std::is_same_v<T, std::string>) {
      if (!field.empty()) o->capture_default_str();
    } else {
      o->capture_default_str();
    }
    return o;
  }
}

template <class T>
KeySpec make_key(std::string key, Field<T> field, std::string help, Check<T> check = {}) {
  KeySpec s;
  s.key = std::move(key);
  s.help = std::move(help);
  s.add_option = [field, key = s.key, help = s.help](CLI::App& app, ReconstructJob& job) {
    return bind_option(app, key, field(job), help);
  };
  s.assign = [field](const toml::node& node, const fs::path&, ReconstructJob& job) {
    return from_toml(node, field(job));
  };
  s.check = [field, check](const ReconstructJob& job) { return check ? check(read_field(field, job)) : ""; };
  s.copy = [field](const ReconstructJob& from, ReconstructJob& to) { field(to) = read_field(field, from); };
  s.json = [field](const ReconstructJob& job) { return nlohmann::json(read_field(field, job)); };
  return s;
}

/// A path: relative paths in a job file are relative to the file's folder.
KeySpec path_key(std::string key, Field<std::string> field, std::string help,
                 Check<std::string> check = non_empty()) {
  KeySpec s = make_key<std::string>(std::move(key), field, std::move(help), std::move(check));
  s.assign = [field](const toml::node& node, const fs::path& dir, ReconstructJob& job) -> std::string {
    std::string value;
    if (!from_toml(node, value).empty()) return "a path in quotes";
    const fs::path p(value);
    field(job) = value.empty() || p.is_absolute() || dir.empty() ? value : (dir / p).string();
    return "";
  };
  return s;
}

/// The settings, in the README's order. Each key is also an option, see option_name.
const std::vector<KeySpec>& specs() {
  using J = ReconstructJob;
  static const std::vector<KeySpec> table = {
      path_key(
          "input", [](J& j) -> std::string& { return j.input; },
          "the scan, overriding a job file's input (job arrays over many scans)", existing_scan()),
      path_key("output", [](J& j) -> std::string& { return j.output; },
               "result file (HDF5; default INPUT-stem_ptycho.h5)"),
      make_key<std::string>(
          "engines", [](J& j) -> std::string& { return j.engines; },
          "engine chain, e.g. dm:100,ml:200 (engines: dm raar sdr epie rpie mpie ml lsqml)", engine_chain()),
      make_key<int>(
          "probe_modes", [](J& j) -> int& { return j.probe_modes; }, "incoherent probe modes K",
          int_range(1, kMaxProbeModes)),
      make_key<bool>("refine_probe", [](J& j) -> bool& { return j.refine_probe; },
                     "refine the probe (--refine-probe=false overrides a job file)"),
      make_key<int>(
          "probe_hold", [](J& j) -> int& { return j.base.probe_hold; },
          "iterations of each engine before the probe is refined", at_least(0)),
      make_key<bool>("refine_positions", [](J& j) -> bool& { return j.base.refine_positions; },
                     "refine the positions (DM, RAAR, ML; the method: --position-method)"),
      make_key<int>(
          "position_hold", [](J& j) -> int& { return j.base.position_hold; },
          "iterations of each engine before positions move", at_least(0)),
      make_key<double>(
          "max_position_shift", [](J& j) -> double& { return j.base.max_position_shift; },
          "largest distance a position may move from its start [object px]", in_range(1e-3, kMaxPositionShift)),
      make_key<bool>("transpose", [](J& j) -> bool& { return j.transpose; },
                     "swap the frames' rows and columns as they are read (before any flip): for a detector "
                     "whose axes are the scan's swapped; check with the previews"),
      make_key<bool>("flip_y", [](J& j) -> bool& { return j.flip_y; },
                     "flip the frames and the mask up-down as they are read (after transpose)"),
      make_key<bool>("flip_x", [](J& j) -> bool& { return j.flip_x; },
                     "flip the frames and the mask left-right as they are read (after transpose and flip_y)"),
      make_key<double>(
          "position_gate", [](J& j) -> double& { return j.base.position_gate; },
          "test the positions before refining them: a few annealing steps on the frozen object; they are refined "
          "only if those lower the misfit by more than this fraction, else they stay as given (0: no test; needs "
          "position_method annealing)",
          in_range(0.0, 1.0)),
      make_key<bool>("fix_affine", [](J& j) -> bool& { return j.base.fix_affine; },
                     "position refinement keeps the scan's global scale, rotation and shear"),
      make_key<std::string>(
          "position_method", [](J& j) -> std::string& { return j.position_method; },
          "position refinement: gradient (Gauss-Newton) or annealing (the best of 4 trial shifts of a shrinking "
          "radius)",
          one_of({"gradient", "annealing"})),
      make_key<std::string>(
          "likelihood", [](J& j) -> std::string& { return j.likelihood; }, "ML noise model: poisson or gaussian",
          one_of({"poisson", "gaussian"})),
      make_key<std::string>(
          "background", [](J& j) -> std::string& { return j.background; },
          "detector background refined with the object by every engine: none, constant (one value) or pixel (one "
          "per detector pixel)",
          one_of({"none", "constant", "pixel"})),
      make_key<double>(
          "smoothness", [](J& j) -> double& { return j.base.smoothness; },
          "ML: weight of a Gaussian smoothness prior, relative to the data term (0 = off)", non_negative()),
      make_key<double>(
          "tv", [](J& j) -> double& { return j.base.tv; },
          "ML: weight of a total-variation prior, relative to the data term: flattens noise and keeps edges "
          "(piecewise-constant objects; 0 = off)",
          in_range(0, 1e6)),
      make_key<double>(
          "tv_epsilon", [](J& j) -> double& { return j.base.tv_epsilon; },
          "ML: the TV prior's smoothing, in units of the object's transmission (below it TV acts as a Gaussian "
          "smoothness prior)",
          in_range(1e-6, 1.0)),
      make_key<double>(
          "proximal", [](J& j) -> double& { return j.base.proximal; },
          "ML: weight of a pull toward the object the engine starts from (an nn stage's guess), relative to the "
          "data term, strongest where the scan's illumination is weak (0 = off)",
          non_negative()),
      make_key<int>(
          "nn_tune", [](J& j) -> int& { return j.base.tune_steps; },
          "nn: steps of physics-aware fine-tuning of the network on this scan before its guess (no ground truth; "
          "0 = off)",
          int_range(0, 100000)),
      make_key<double>(
          "nn_tune_rate", [](J& j) -> double& { return j.base.tune_rate; }, "nn: Adam's step size for --nn-tune",
          in_range(1e-8, 1)),
      make_key<int>(
          "nn_flips", [](J& j) -> int& { return j.base.flips; },
          "nn: average the network's output over this many symmetries of the square (1, 2, 4 or 8)",
          power_of_two_up_to(8)),
      make_key<double>(
          "beta", [](J& j) -> double& { return j.base.beta; }, "RAAR relaxation", finite()),
      make_key<double>(
          "sigma", [](J& j) -> double& { return j.base.sigma; }, "sDR: relaxed Fourier reflection (0 AP .. 1 DM)",
          in_range(0, 1)),
      make_key<double>(
          "tau", [](J& j) -> double& { return j.base.tau; }, "sDR: relaxed modulus constraint", positive()),
      make_key<double>(
          "sdr_step", [](J& j) -> double& { return j.base.sdr_step; }, "sDR: object step", positive()),
      make_key<int>(
          "batches", [](J& j) -> int& { return j.base.batches; }, "LSQ-ML: mini-batches per iteration",
          int_range(1, 1000000)),
      make_key<double>(
          "object_step", [](J& j) -> double& { return j.base.object_step; }, "PIE family: object step alpha",
          positive()),
      make_key<double>(
          "rpie_alpha", [](J& j) -> double& { return j.base.rpie_alpha; }, "rPIE/mPIE regularisation",
          non_negative()),
      make_key<double>(
          "momentum", [](J& j) -> double& { return j.base.momentum; }, "mPIE momentum eta", non_negative()),
      make_key<double>(
          "regularisation", [](J& j) -> double& { return j.base.regularisation; },
          "relative damping of object/probe divisions", non_negative()),
      make_key<unsigned>("seed", [](J& j) -> unsigned& { return j.base.seed; }, "random seed (PIE order)"),
      make_key<int>(
          "batch", [](J& j) -> int& { return j.batch; },
          "frames per batched FFT (0: as many per thread as stay in a core's cache: 1 of 256^2, 16 of 64^2)",
          int_range(0, kMaxBatch)),
      make_key<bool>("low_memory", [](J& j) -> bool& { return j.low_memory; },
                     "low-memory mode: round sub-pixel shifts to 1/8 px so that each rank keeps at most 64 shifted "
                     "probes per mode instead of one per frame (a shift error of 1/16 px at most); ML remakes its far "
                     "fields batch by batch instead of keeping them; DM and RAAR keep theirs in half precision"),
      make_key<int>(
          "progress_every", [](J& j) -> int& { return j.progress_every; }, "print progress every N iterations",
          at_least(1)),
      path_key("previews", [](J& j) -> std::string& { return j.previews; },
               "folder for PNG previews of amplitude, phase, probe and cost curve"),
      path_key("log_json", [](J& j) -> std::string& { return j.log_json; },
               "write the progress lines and a summary as JSON lines to this file"),
      path_key("trace", [](J& j) -> std::string& { return j.trace; },
               "record the probe modes, the positions and the estimated mismatch at every progress line in this "
               "HDF5 file (for diagnosis: examples/trace_vs_truth.py)"),
      make_key<bool>("halves", [](J& j) -> bool& { return j.halves; },
                     "reconstruct the two halves of the scan (frames of even and odd index) into OUTPUT-stem.half1.h5 "
                     "and OUTPUT-stem.half2.h5 instead of OUTPUT, and the resolution by their FRC "
                     "(OUTPUT-stem.frc.png and .frc.json; see ptycho analyze)"),
      make_key<std::string>(
          "preset", [](J& j) -> std::string& { return j.preset; },
          "standard, blind or learned: defaults for what is not set (blind: raar:150,ml:200, probe refined, 3 "
          "modes, positions tested after 20 iterations and refined by annealing only if the test finds them "
          "wrong; learned: nn,ml:200)",
          one_of({"standard", "blind", "learned"})),
      path_key("checkpoint", [](J& j) -> std::string& { return j.checkpoint; },
               "checkpoint file (default OUTPUT-stem.checkpoint.h5); a run that finds it resumes from it"),
      make_key<int>(
          "checkpoint_every", [](J& j) -> int& { return j.checkpoint_every; },
          "iterations between checkpoints (default: only on SIGTERM/SIGUSR1, which also stop the run with exit "
          "code 75)",
          at_least(1)),
      path_key(
          "resume", [](J& j) -> std::string& { return j.resume; }, "resume from this checkpoint (any rank count)",
          existing_checkpoint()),
      path_key("probe_from", [](J& j) -> std::string& { return j.probe_from; },
               "start from the probe in this file: a scan with a probe (CXI source_1/probe or illumination), a "
               "result, or a PtyPy .ptyr (modes' power folded into the first); default: the scan's probe, else an "
               "estimate",
               existing_checkpoint()),
      make_key<std::string>(
          "frames_dataset", [](J& j) -> std::string& { return j.frames_dataset; },
          "read the input as a plain HDF5 file whose frames are this dataset, (N, M, M) or (rows, columns, M, M); "
          "with positions_dataset, energy_kev, distance_m and pixel_size_m",
          non_empty()),
      make_key<std::string>(
          "positions_dataset", [](J& j) -> std::string& { return j.positions_dataset; },
          "described input: the positions, (N, 2) or (2, N) (a third coordinate is ignored)", non_empty()),
      make_key<std::string>(
          "positions_order", [](J& j) -> std::string& { return j.positions_order; },
          "described input: xy (x first: columns) or yx (y first: rows)", one_of({"xy", "yx"})),
      make_key<std::string>(
          "positions_unit", [](J& j) -> std::string& { return j.positions_unit; },
          "described input: the positions' unit: m, mm, um or nm", one_of({"m", "mm", "um", "nm"})),
      make_key<bool>("negate_x", [](J& j) -> bool& { return j.negate_x; },
                     "described input: the file's x runs against the object's columns (sample motion, say)"),
      make_key<bool>("negate_y", [](J& j) -> bool& { return j.negate_y; },
                     "described input: the file's y runs against the object's rows"),
      make_key<double>(
          "energy_kev", [](J& j) -> double& { return j.energy_kev; }, "described input: photon energy [keV]",
          in_range(0.01, 1e4)),
      make_key<double>(
          "distance_m", [](J& j) -> double& { return j.distance_m; },
          "described input: sample-detector distance [m]", in_range(1e-6, 1e3)),
      make_key<double>(
          "pixel_size_m", [](J& j) -> double& { return j.pixel_size_m; }, "described input: detector pixel [m]",
          in_range(1e-9, 1e-1)),
      make_key<std::string>(
          "mask_dataset", [](J& j) -> std::string& { return j.mask_dataset; },
          "described input: the mask, (M, M), nonzero = invalid (integer masks are CXI bit flags)", non_empty()),
      make_key<std::string>(
          "max_memory", [](J& j) -> std::string& { return j.max_memory; },
          "memory limit per rank, e.g. 4G; the run stops before reading the frames if its estimate is larger "
          "(default: what the node has available, shared by its ranks)",
          memory_size()),
  };
  return table;
}

const KeySpec* find_spec(const std::string& key) {
  for (const auto& s : specs())
    if (s.key == key) return &s;
  return nullptr;
}

/// The hint after "unknown key 'word'": the key that shares the longest
/// start with it (at least 4 characters, or all of a shorter word), else the
/// nearest key if it is a few edits away, else the list of keys.
std::string key_hint(const std::string& word) {
  const auto& keys = job_file_keys();
  std::string lower = word;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto shared_start = [&](const std::string& k) {
    size_t n = 0;
    while (n < k.size() && n < lower.size() && k[n] == lower[n]) ++n;
    return n;
  };
  std::vector<std::string> best_start;
  size_t longest = std::max<size_t>(3, std::min<size_t>(4, lower.size()));
  for (const auto& k : keys) {
    const size_t n = shared_start(k);
    if (n < longest) continue;
    if (n > longest && !best_start.empty()) best_start.clear();
    longest = n;
    best_start.push_back(k);
  }
  const std::string best = nearest(lower, best_start.empty() ? keys : best_start);
  const size_t close = std::max<size_t>(2, lower.size() / 3);
  if (!best_start.empty() || edit_distance(lower, best) <= close) return " (did you mean " + quoted(best) + "?)";
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
  return " (valid keys: " + list + ")";
}

/// Whether the file starts with HDF5's signature at 0, 512, 1024, 2048, ... (a user block may precede it).
bool has_hdf5_signature(const std::string& path) {
  static const char signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  for (std::streamoff offset = 0; offset + 8 <= size; offset = offset == 0 ? 512 : 2 * offset) {
    char bytes[8];
    in.seekg(offset);
    if (!in.read(bytes, 8)) return false;
    if (std::equal(bytes, bytes + 8, signature)) return true;
  }
  return false;
}

}  // namespace

std::string ReconstructJob::where(const std::string& key) const {
  const auto it = origin.find(key);
  if (it == origin.end()) return key;
  if (it->second.rfind("--", 0) == 0) return it->second;
  return it->second + ": " + key;
}

const std::vector<std::string>& job_file_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    for (const auto& s : specs()) out.push_back(s.key);
    return out;
  }();
  return keys;
}

std::string option_name(const std::string& key) {
  std::string name = "--" + key;
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

bool is_job_file(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".toml") return true;
  if (has_hdf5_signature(path)) return false;
  return !(ext == ".cxi" || ext == ".h5" || ext == ".hdf5" || ext == ".nxs" || ext == ".ptyd");
}

namespace {
/// toml++ 3.3 (Debian 12's) reaches __builtin_unreachable, undefined
/// behaviour, on many non-ASCII characters (U+00A1 to U+0499: é, µ, Greek,
/// Cyrillic) where it checks for whitespace (marzer/tomlplusplus#190): outside
/// strings and comments, where TOML allows no such character anyway, and
/// after a backslash (and whitespace) in a multi-line basic string. Throws
/// InputError `path:line:column: ...` for those before toml++ sees the text.
void check_non_ascii(const std::string& path, const std::string& s) {
  enum { outside, comment, basic, literal, ml_basic, ml_literal } state = outside;
  size_t line = 1, line_start = 0;
  auto fail_if = [&](bool bad, size_t at, const char* what) {
    PTYCHO_INPUT_ERROR_IF(bad, path << ":" << line << ":" << at - line_start + 1 << ": not a valid TOML job file: "
                                    << what);
  };
  auto at = [&](size_t i, const char* t) { return s.compare(i, std::strlen(t), t) == 0; };
  auto closing_quotes = [&](size_t& i, char q) {  // i at the first of three; up to two more belong to the string
    i += 2;
    for (int extra = 0; extra < 2 && i + 1 < s.size() && s[i + 1] == q; ++extra) ++i;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      if (state == comment || state == basic || state == literal) state = outside;  // toml++ reports an open string
      ++line;
      line_start = i + 1;
      continue;
    }
    switch (state) {
      case outside:
        fail_if(c >= 0x80, i, "a non-ASCII character outside a string or comment");
        if (c == '#') state = comment;
        else if (at(i, "\"\"\"")) state = ml_basic, i += 2;
        else if (c == '"') state = basic;
        else if (at(i, "'''")) state = ml_literal, i += 2;
        else if (c == '\'') state = literal;
        break;
      case comment:
        break;
      case basic:
        if (c == '\\' && i + 1 < s.size() && s[i + 1] != '\n') ++i;  // an escaped character
        else if (c == '"') state = outside;
        break;
      case literal:
        if (c == '\'') state = outside;
        break;
      case ml_basic:
        if (c == '\\') {
          // An escape, or a line-ending backslash that skips the whitespace
          // up to the next text: toml++ looks at the character after both.
          size_t j = i + 1;
          for (; j < s.size() && std::isspace(static_cast<unsigned char>(s[j])); ++j)
            if (s[j] == '\n') line = line + 1, line_start = j + 1;
          fail_if(j < s.size() && static_cast<unsigned char>(s[j]) >= 0x80, j,
                  "a non-ASCII character after a backslash in a multi-line string (write it as \\uXXXX)");
          i = j > i + 1 ? j - 1 : j;  // after the whitespace, or past the escaped character
        } else if (at(i, "\"\"\"")) {
          closing_quotes(i, '"');
          state = outside;
        }
        break;
      case ml_literal:
        if (at(i, "'''")) {
          closing_quotes(i, '\'');
          state = outside;
        }
        break;
    }
  }
}

/// Parses job file `path`; throws InputError `path:line:column: ...` if it is not valid TOML.
toml::table parse_job_file(const std::string& path) {
  std::error_code ec;
  PTYCHO_INPUT_ERROR_IF(!fs::is_regular_file(path, ec), path << ": no such job file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  PTYCHO_INPUT_ERROR_IF(!in, path << ": cannot read the job file");
  const std::string content = text.str();
  check_non_ascii(path, content);
  toml::table table;
  try {
    table = toml::parse(content, path);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    PTYCHO_INPUT_ERROR_IF(
        true, path << ":" << at.line << ":" << at.column << ": not a valid TOML job file: " << e.description());
  }
  return table;
}
}  // namespace

ReconstructJob read_job_file(const std::string& path, const ReconstructJob& defaults) {
  toml::table table = parse_job_file(path);
  ReconstructJob job = defaults;
  job.job_file = path;
  const fs::path dir = fs::path(path).parent_path();
  // The table is sorted by key; errors are reported in the order of the file.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (const auto& [key, node] : table) entries.emplace_back(&key, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& x, const auto& y) {
    return x.first->source().begin.line < y.first->source().begin.line;
  });
  // The [slurm] table is for `ptycho submit` (read_slurm_settings).
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [](const auto& e) { return e.first->str() == "slurm" && e.second->is_table(); }),
                entries.end());
  // Unknown keys first: a misspelt key is the likeliest mistake, and its
  // value would otherwise be silently ignored.
  for (const auto& [key, node] : entries) {
    const std::string name(key->str());
    PTYCHO_INPUT_ERROR_IF(!find_spec(name), path << ":" << key->source().begin.line << ": unknown key " << quoted(name)
                                                 << key_hint(name));
  }
  for (const auto& [key, node] : entries) {
    const std::string name(key->str());
    const KeySpec& spec = *find_spec(name);
    const std::string at = path + ":" + std::to_string(key->source().begin.line);
    const std::string expected = spec.assign(*node, dir, job);
    PTYCHO_INPUT_ERROR_IF(!expected.empty(),
                          at << ": " << name << ": expected " << expected << ", got " << toml_text(*node));
    job.origin[name] = at;
    const std::string problem = spec.check(job);
    PTYCHO_INPUT_ERROR_IF(!problem.empty(), at << ": " << name << ": " << problem);
  }
  return job;
}

const std::vector<std::string>& slurm_keys() {
  static const std::vector<std::string> keys = {"nodes",   "tasks",          "time",          "partition",
                                                "account", "signal_seconds", "sbatch_options"};
  return keys;
}

SlurmSettings read_slurm_settings(const std::string& path) {
  const toml::table table = parse_job_file(path);
  SlurmSettings s;
  const toml::node* node = table.get("slurm");
  if (!node) return s;
  const auto line_of = [&](const toml::node& n) { return path + ":" + std::to_string(n.source().begin.line); };
  PTYCHO_INPUT_ERROR_IF(!node->is_table(), line_of(*node) << ": slurm: expected a table ([slurm])");
  for (const auto& [key, value] : *node->as_table()) {
    const std::string name(key.str());
    const std::string at = path + ":" + std::to_string(key.source().begin.line);
    const std::string near = nearest(name, slurm_keys());
    PTYCHO_INPUT_ERROR_IF(std::find(slurm_keys().begin(), slurm_keys().end(), name) == slurm_keys().end(),
                          at << ": unknown key " << quoted("slurm." + name) << " in [slurm]"
                             << (edit_distance(name, near) <= 3 ? " (did you mean " + quoted(near) + "?)" : std::string())
                             << "; valid keys: nodes, tasks, time, partition, account, signal_seconds, sbatch_options");
    auto positive_int = [&](int& out) {
      const auto v = value.value<std::int64_t>();
      PTYCHO_INPUT_ERROR_IF(!v || *v < 1 || *v > INT_MAX,
                            at << ": slurm." << name << ": expected a whole number >= 1, got " << toml_text(value));
      out = int(*v);
    };
    auto text = [&](std::string& out) {
      const auto v = value.value<std::string>();
      PTYCHO_INPUT_ERROR_IF(!v || v->empty(),
                            at << ": slurm." << name << ": expected a non-empty string, got " << toml_text(value));
      out = *v;
    };
    if (name == "nodes") positive_int(s.nodes);
    if (name == "tasks") positive_int(s.tasks);
    if (name == "signal_seconds") positive_int(s.signal_seconds);
    if (name == "partition") text(s.partition);
    if (name == "account") text(s.account);
    if (name == "time") {
      text(s.time);
      // SLURM's forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
      const bool ok = std::all_of(s.time.begin(), s.time.end(),
                                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == ':' || c == '-'; });
      PTYCHO_INPUT_ERROR_IF(!ok || !std::isdigit(static_cast<unsigned char>(s.time.front())),
                            at << ": slurm.time: expected a SLURM time such as \"04:00:00\" or \"1-12:00:00\", got "
                               << toml_text(value));
    }
    if (name == "sbatch_options") {
      const toml::array* arr = value.as_array();
      PTYCHO_INPUT_ERROR_IF(!arr, at << ": slurm.sbatch_options: expected an array of strings, got " << toml_text(value));
      for (const auto& item : *arr) {
        const auto v = item.value<std::string>();
        PTYCHO_INPUT_ERROR_IF(!v || v->rfind("-", 0) != 0,
                              at << ": slurm.sbatch_options: expected sbatch options such as \"--exclusive\", got "
                                 << toml_text(item));
        s.sbatch_options.push_back(*v);
      }
    }
    s.origin[name] = at;
  }
  PTYCHO_INPUT_ERROR_IF(s.tasks < s.nodes, path << ": [slurm] asks for " << s.tasks << " tasks on " << s.nodes
                                               << " nodes: every node needs at least one task");
  return s;
}

void copy_setting(const std::string& key, const ReconstructJob& from, ReconstructJob& to) {
  const KeySpec* spec = find_spec(key);
  PTYCHO_THROW_IF(!spec, "copy_setting: unknown key '" << key << "'");
  spec->copy(from, to);
  to.origin[key] = option_name(key);
}

io::Description description_of(const ReconstructJob& job) {
  io::Description d;
  if (job.frames_dataset.empty()) return d;
  d.frames = job.frames_dataset;
  d.positions = job.positions_dataset;
  d.yx = job.positions_order == "yx";
  d.unit_m = job.positions_unit == "mm" ? 1e-3 : job.positions_unit == "um" ? 1e-6 : job.positions_unit == "nm" ? 1e-9 : 1.0;
  d.negate_x = job.negate_x;
  d.negate_y = job.negate_y;
  d.energy_j = job.energy_kev * 1e3 * kJoulePerEv;
  d.distance_m = job.distance_m;
  d.pixel_m = job.pixel_size_m;
  d.mask = job.mask_dataset;
  return d;
}

ScanToRead scan_to_read(const std::string& path, io::ReadOptions read) {
  if (!is_job_file(path)) return {path, read};
  const ReconstructJob job = read_job_file(path);
  check_settings(job);
  if (read.orientation.identity()) read.orientation = io::Orientation{job.transpose, job.flip_y, job.flip_x};
  read.description = description_of(job);
  read.probe_file = job.probe_from;
  return {job.input, read};
}

void check_settings(const ReconstructJob& job) {
  for (const auto& spec : specs()) {
    if (!job.origin.count(spec.key)) continue;
    const std::string problem = spec.check(job);
    PTYCHO_INPUT_ERROR_IF(!problem.empty(), job.where(spec.key) << ": " << problem);
  }
  // A described input names its frames, positions and geometry; the other
  // keys describe nothing without frames_dataset.
  if (!job.frames_dataset.empty()) {
    for (const char* key : {"positions_dataset", "energy_kev", "distance_m", "pixel_size_m"})
      PTYCHO_INPUT_ERROR_IF(!job.origin.count(key), job.where("frames_dataset")
                                                        << ": a described input also needs " << key);
  } else {
    for (const char* key : {"positions_dataset", "positions_order", "positions_unit", "negate_x", "negate_y",
                            "energy_kev", "distance_m", "pixel_size_m", "mask_dataset"})
      PTYCHO_INPUT_ERROR_IF(job.origin.count(key),
                            job.where(key) << ": describes a plain HDF5 input, which needs frames_dataset too");
  }
  // Refinements the chain's engines cannot do fail now, before any work
  // (check_chain).
  PTYCHO_INPUT_ERROR_IF(job.base.position_gate > 0 && job.base.refine_positions && job.position_method != "annealing",
                        job.where("position_gate") << ": the position test searches by annealing; set position_method "
                                                      "to annealing, or position_gate to 0");
  try {
    parse_chain(job.engines, engine_base(job));
  } catch (const InputError& e) {
    const std::string message = e.what();
    PTYCHO_INPUT_ERROR_IF(job.preset == "blind" && !job.origin.count("refine_positions") &&
                              message.rfind("--refine-positions", 0) == 0,
                          "preset blind: it refines positions where its test finds them wrong, and "
                              << message << "; set refine_positions to false, or use such engines");
    throw;
  }
}

nlohmann::json to_json(const ReconstructJob& job) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& spec : specs()) out[spec.key] = spec.json(job);
  return out;
}

void add_settings_options(CLI::App& app, ReconstructJob& job) {
  for (const auto& spec : specs()) {
    CLI::Option* o = nullptr;
    if (spec.key == "input") {
      // The scan is the positional argument; --input overrides a job file's.
      o = app.add_option("--input", job.input, spec.help)->check(CLI::ExistingFile);
    } else if (spec.key == "output") {
      o = app.add_option("-o,--output", job.output, spec.help);
    } else {
      o = spec.add_option(app, job);
    }
    PTYCHO_THROW_IF(!o, "add_settings_options: no option for key '" << spec.key << "'");
  }
}

std::string setting_help(const std::string& key) {
  const KeySpec* spec = find_spec(key);
  PTYCHO_THROW_IF(!spec, "setting_help: unknown key '" << key << "'");
  return spec->help;
}

void apply_keyword(ReconstructJob& job, const std::string& key, const SettingValue& value, const std::string& where) {
  const KeySpec* spec = find_spec(key);
  PTYCHO_INPUT_ERROR_IF(!spec, where << ": unknown setting " << quoted(key) << key_hint(key));
  // The value as a TOML node: the job file's type rules and checks apply.
  std::unique_ptr<toml::node> node;
  std::string shown;
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, bool>) {
          node = std::make_unique<toml::value<bool>>(v);
          shown = v ? "True" : "False";
        } else if constexpr (std::is_same_v<V, long long>) {
          node = std::make_unique<toml::value<std::int64_t>>(std::int64_t(v));
          shown = std::to_string(v);
        } else if constexpr (std::is_same_v<V, double>) {
          node = std::make_unique<toml::value<double>>(v);
          shown = format_value(v);
        } else {
          node = std::make_unique<toml::value<std::string>>(v);
          shown = quoted(v);
        }
      },
      value);
  const std::string expected = spec->assign(*node, fs::path(), job);
  PTYCHO_INPUT_ERROR_IF(!expected.empty(), where << ": " << key << ": expected " << expected << ", got " << shown);
  job.origin[key] = where;
  const std::string problem = spec->check(job);
  PTYCHO_INPUT_ERROR_IF(!problem.empty(), where << ": " << key << ": " << problem);
}

void apply_preset(ReconstructJob& job) {
  if (job.preset.empty() || job.preset == "standard") return;
  const auto unset = [&](const std::string& key) { return !job.origin.count(key); };
  if (job.preset == "blind") {
    if (unset("engines")) job.engines = "raar:150,ml:200";
    if (unset("refine_probe")) job.refine_probe = true;
    if (unset("probe_modes")) job.probe_modes = 3;
    if (unset("probe_hold")) job.base.probe_hold = 5;
    if (unset("refine_positions")) {
      job.base.refine_positions = true;
      if (unset("position_hold")) job.base.position_hold = 20;
      if (unset("max_position_shift")) job.base.max_position_shift = 3.0;
      if (unset("position_method")) job.position_method = "annealing";
      if (unset("position_gate") && job.position_method == "annealing") job.base.position_gate = kPositionGate;
    }
  }
  if (job.preset == "learned" && unset("engines")) job.engines = kLearnedChain;
}

EngineOptions engine_base(const ReconstructJob& job) {
  EngineOptions base = job.base;
  base.refine_probe = job.refine_probe;
  base.likelihood = job.likelihood == "gaussian" ? Likelihood::gaussian : Likelihood::poisson;
  base.position_method = job.position_method == "annealing" ? PositionMethod::annealing : PositionMethod::gradient;
  base.background = parse_background_mode(job.background);
  base.low_memory = job.low_memory;
  return base;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  // d[i][j]: distance between the first i characters of a and the first j of b.
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t substitution = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, substitution});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace ptycho::jobs
