// Job files: keys, types, values, relative paths, error messages with file,
// line and the nearest key, command-line overrides, and the example job files.
#include "ptycho/jobs/settings.hpp"
#include "ptycho/core/error.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

namespace ptycho::jobs {
namespace {

namespace fs = std::filesystem;

/// A scratch folder of this binary (per rank count), created on first use.
fs::path scratch() {
  const fs::path dir = fs::current_path() / "scratch_test_jobs_job_file";
  fs::create_directories(dir);
  return dir;
}

/// Writes `text` to scratch()/name and returns its path.
std::string write_file(const std::string& name, const std::string& text) {
  const fs::path p = scratch() / name;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

/// A file that starts with HDF5's signature (enough for is_job_file and the input check).
std::string write_hdf5_like(const std::string& name, size_t offset = 0) {
  std::string bytes(offset, '\0');
  bytes += std::string("\x89HDF\r\n\x1a\n", 8);
  bytes += std::string(64, '\0');
  return write_file(name, bytes);
}

/// The message of the InputError `f` throws, or "" if it throws none.
std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

/// A job file in a folder of its own with a scan beside it: "input = ..." plus `rest`.
std::string job_with(const std::string& name, const std::string& rest) {
  write_hdf5_like("jobs/scan.cxi");
  return write_file("jobs/" + name, "input = \"scan.cxi\"\n" + rest);
}

TEST(EditDistance, CountsInsertionsDeletionsSubstitutionsAndSwaps) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("engins", "engines"), 1u);    // insertion
  EXPECT_EQ(edit_distance("enginess", "engines"), 1u);  // deletion
  EXPECT_EQ(edit_distance("engimes", "engines"), 1u);   // substitution
  EXPECT_EQ(edit_distance("engiens", "engines"), 1u);   // swap of neighbours
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("probe_modes", "modes_probe"), edit_distance("modes_probe", "probe_modes"));
}

TEST(Nearest, PicksTheClosestCandidateAndTheFirstOfEquals) {
  EXPECT_EQ(nearest("engins", job_file_keys()), "engines");
  EXPECT_EQ(nearest("probe_mode", job_file_keys()), "probe_modes");
  EXPECT_EQ(nearest("sead", job_file_keys()), "seed");
  EXPECT_EQ(nearest("ab", {"ax", "xb"}), "ax");
  EXPECT_EQ(nearest("anything", {}), "");
}

TEST(JobFileKeys, CoverEveryOptionOnceAndMapToOptionNames) {
  const auto& keys = job_file_keys();
  const std::set<std::string> unique(keys.begin(), keys.end());
  EXPECT_EQ(unique.size(), keys.size()) << "a key is listed twice";
  for (const char* k : {"input",          "output",      "engines",    "probe_modes",
                        "refine_probe",   "probe_hold",  "likelihood", "smoothness", "proximal", "tv", "tv_epsilon",
                        "beta",           "sigma",       "tau",        "sdr_step",
                        "batches",        "object_step", "rpie_alpha", "momentum",
                        "regularisation", "seed",        "batch",      "progress_every",
                        "previews",       "preset",      "checkpoint", "checkpoint_every",
                        "log_json",       "refine_positions", "position_hold", "max_position_shift",
                        "fix_affine",     "position_gate",  "position_method", "resume",      "background", "nn_tune", "trace",
                        "nn_tune_rate", "nn_flips", "transpose", "flip_y", "flip_x"})
    EXPECT_TRUE(unique.count(k)) << k;
  EXPECT_EQ(option_name("probe_modes"), "--probe-modes");
  EXPECT_EQ(option_name("checkpoint_every"), "--checkpoint-every");
  EXPECT_EQ(option_name("engines"), "--engines");
}

TEST(IsJobFile, TomlExtensionOrNoHdf5Signature) {
  EXPECT_TRUE(is_job_file(write_file("a.toml", "input = \"x.cxi\"\n")));
  EXPECT_TRUE(is_job_file(write_file("A.TOML", "")));
  EXPECT_TRUE(is_job_file(write_file("job.cfg", "input = \"x.cxi\"\n")));
  EXPECT_FALSE(is_job_file(write_hdf5_like("scan.dat")));
  EXPECT_FALSE(is_job_file(write_hdf5_like("userblock.dat", 512)));        // after a 512-byte user block
  EXPECT_FALSE(is_job_file(write_file("broken.cxi", "not HDF5 at all")));  // the CXI reader will say so
  EXPECT_TRUE(is_job_file(write_file("short", "x")));
}

TEST(ReadJobFile, SetsEveryKeyAndResolvesPathsAgainstTheFilesFolder) {
  write_file("jobs/old.ckpt.h5", "a checkpoint to resume from (only its existence is checked here)");
  write_file("jobs/probe.h5", "a file with a probe (only its existence is checked here)");
  const std::string path = job_with("all.toml", R"(output = "out/result.h5"
engines = "dm:3,ml:4"
probe_modes = 3
refine_probe = true
probe_hold = 2
refine_positions = true
position_hold = 12
max_position_shift = 2.5
fix_affine = true
position_gate = 0.07
transpose = true
flip_y = true
flip_x = true
position_method = "annealing"
likelihood = "gaussian"
background = "pixel"
smoothness = 0.25
proximal = 0.5
tv = 0.03
tv_epsilon = 0.001
nn_tune = 20
nn_tune_rate = 0.0003
nn_flips = 4
beta = 1            # an integer is a fine number
sigma = 0.4
tau = 0.9
sdr_step = 0.8
batches = 5
object_step = 0.5
rpie_alpha = 0.2
momentum = 0.3
regularisation = 0.01
seed = 7
batch = 8
progress_every = 3
previews = "previews"
log_json = "/abs/log.jsonl"
trace = "trace.h5"
preset = "blind"
checkpoint = "ck.h5"
checkpoint_every = 50
resume = "old.ckpt.h5"
max_memory = "2.5G"
probe_from = "probe.h5"
frames_dataset = "/measured/frames"
positions_dataset = "/measured/positions"
positions_order = "yx"
positions_unit = "um"
negate_x = true
negate_y = true
energy_kev = 8.5
distance_m = 2.5
pixel_size_m = 75e-6
mask_dataset = "/measured/mask"
halves = true
low_memory = true
)");
  const ReconstructJob job = read_job_file(path);
  const fs::path dir = fs::path(path).parent_path();
  EXPECT_EQ(job.job_file, path);
  EXPECT_EQ(job.input, (dir / "scan.cxi").string());
  EXPECT_EQ(job.output, (dir / "out/result.h5").string());
  EXPECT_EQ(job.engines, "dm:3,ml:4");
  EXPECT_EQ(job.probe_modes, 3);
  EXPECT_TRUE(job.refine_probe);
  EXPECT_EQ(job.base.probe_hold, 2);
  EXPECT_TRUE(job.base.refine_positions);
  EXPECT_EQ(job.base.position_hold, 12);
  EXPECT_DOUBLE_EQ(job.base.max_position_shift, 2.5);
  EXPECT_TRUE(job.base.fix_affine);
  EXPECT_DOUBLE_EQ(job.base.position_gate, 0.07);
  EXPECT_TRUE(job.transpose && job.flip_y && job.flip_x);
  EXPECT_EQ(job.position_method, "annealing");
  EXPECT_EQ(job.likelihood, "gaussian");
  EXPECT_EQ(job.background, "pixel");
  EXPECT_DOUBLE_EQ(job.base.smoothness, 0.25);
  EXPECT_DOUBLE_EQ(job.base.proximal, 0.5);
  EXPECT_DOUBLE_EQ(job.base.tv, 0.03);
  EXPECT_DOUBLE_EQ(job.base.tv_epsilon, 1e-3);
  EXPECT_EQ(job.base.tune_steps, 20);
  EXPECT_DOUBLE_EQ(job.base.tune_rate, 3e-4);
  EXPECT_EQ(job.base.flips, 4);
  EXPECT_DOUBLE_EQ(job.base.beta, 1.0);
  EXPECT_DOUBLE_EQ(job.base.sigma, 0.4);
  EXPECT_DOUBLE_EQ(job.base.tau, 0.9);
  EXPECT_DOUBLE_EQ(job.base.sdr_step, 0.8);
  EXPECT_EQ(job.base.batches, 5);
  EXPECT_DOUBLE_EQ(job.base.object_step, 0.5);
  EXPECT_DOUBLE_EQ(job.base.rpie_alpha, 0.2);
  EXPECT_DOUBLE_EQ(job.base.momentum, 0.3);
  EXPECT_DOUBLE_EQ(job.base.regularisation, 0.01);
  EXPECT_EQ(job.base.seed, 7u);
  EXPECT_EQ(job.batch, 8);
  EXPECT_EQ(job.progress_every, 3);
  EXPECT_EQ(job.previews, (dir / "previews").string());
  EXPECT_EQ(job.log_json, "/abs/log.jsonl");  // absolute paths stay
  EXPECT_EQ(job.trace, (dir / "trace.h5").string());
  EXPECT_EQ(job.preset, "blind");
  EXPECT_EQ(job.checkpoint, (dir / "ck.h5").string());
  EXPECT_EQ(job.checkpoint_every, 50);
  EXPECT_EQ(job.resume, (dir / "old.ckpt.h5").string());
  EXPECT_EQ(job.max_memory, "2.5G");
  EXPECT_EQ(job.probe_from, (dir / "probe.h5").string());
  const io::Description d = description_of(job);
  EXPECT_EQ(d.frames, "/measured/frames");
  EXPECT_EQ(d.positions, "/measured/positions");
  EXPECT_TRUE(d.yx && d.negate_x && d.negate_y);
  EXPECT_DOUBLE_EQ(d.unit_m, 1e-6);
  EXPECT_DOUBLE_EQ(d.energy_j, 8.5e3 * kJoulePerEv);
  EXPECT_DOUBLE_EQ(d.distance_m, 2.5);
  EXPECT_DOUBLE_EQ(d.pixel_m, 75e-6);
  EXPECT_EQ(d.mask, "/measured/mask");
  EXPECT_TRUE(job.halves);
  EXPECT_TRUE(job.low_memory);
  // Every key has its line as origin, and the JSON has every key.
  EXPECT_EQ(job.origin.size(), job_file_keys().size());
  EXPECT_EQ(job.origin.at("input"), path + ":1");
  EXPECT_EQ(job.origin.at("engines"), path + ":3");
  EXPECT_EQ(job.where("probe_modes"), path + ":4: probe_modes");
  const nlohmann::json j = to_json(job);
  for (const auto& k : job_file_keys()) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j.at("probe_modes"), 3);
  EXPECT_EQ(j.at("engines"), "dm:3,ml:4");
}

TEST(ReadJobFile, KeysLeftOutKeepTheirDefaults) {
  const ReconstructJob job = read_job_file(job_with("minimal.toml", ""));
  const ReconstructJob defaults;
  EXPECT_EQ(job.engines, kDefaultChain);
  EXPECT_EQ(job.probe_modes, defaults.probe_modes);
  EXPECT_DOUBLE_EQ(job.base.tv, kDefaultTv);  // the TV prior is on in jobs (README, "Regularisation")
  EXPECT_EQ(job.output, "");
  EXPECT_EQ(job.origin.size(), 1u);  // input only
  EXPECT_EQ(job.where("engines"), "engines");
}

TEST(ReadJobFile, UnknownKeyNamesFileLineAndNearestKey) {
  const std::string path = job_with("typo.toml", "probe_modes = 2\nengins = \"dm:5\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(path); }), path + ":3: unknown key 'engins' (did you mean 'engines'?)");
  const std::string start = job_with("start.toml", "refine = true\n");
  EXPECT_EQ(input_error([&] { read_job_file(start); }),
            start + ":2: unknown key 'refine' (did you mean 'refine_probe'?)");
  const std::string upper = job_with("upper.toml", "Engines = \"dm:5\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(upper); }), upper + ":2: unknown key 'Engines' (did you mean 'engines'?)");
  // Far from every key: the list of keys instead of a guess.
  const std::string far = job_with("far.toml", "xyzzy = 1\n");
  const std::string message = input_error([&] { read_job_file(far); });
  EXPECT_NE(message.find(far + ":2: unknown key 'xyzzy' (valid keys: input, output, engines"), std::string::npos)
      << message;
  // A table is an unknown key too, not silently skipped.
  const std::string table = job_with("table.toml", "[engine]\nname = \"dm\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(table); }), table + ":2: unknown key 'engine' (did you mean 'engines'?)");
}

TEST(ReadJobFile, ErrorsComeInTheOrderOfTheFile) {
  // The parsed table is sorted by key; the first error must be the first line.
  const std::string path = job_with("order.toml", "zprobe_modes = 1\naengines = \"dm:1\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(path); }),
            path + ":2: unknown key 'zprobe_modes' (did you mean 'probe_modes'?)");
  const std::string types = job_with("order2.toml", "probe_modes = \"two\"\nbatch = \"x\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(types); }), types + ":2: probe_modes: expected a whole number, got 'two'");
}

TEST(ReadJobFile, WrongTypesSayWhatIsExpected) {
  struct Case {
    std::string line, message;
  };
  const std::vector<Case> cases = {
      {"probe_modes = \"two\"", "probe_modes: expected a whole number, got 'two'"},
      {"probe_modes = 2.5", "probe_modes: expected a whole number, got 2.5"},
      {"refine_probe = 1", "refine_probe: expected true or false, got 1"},
      {"engines = 5", "engines: expected a string in quotes, got 5"},
      {"engines = [\"dm:5\"]", "engines: expected a string in quotes, got an array"},
      {"beta = \"x\"", "beta: expected a number, got 'x'"},
      {"seed = -1", "seed: expected a whole number from 0 to 4294967295, got -1"},
      {"batch = 10000000000", "batch: expected a whole number that fits in 32 bits, got 10000000000"},
      {"previews = true", "previews: expected a path in quotes, got true"},
  };
  for (const auto& c : cases) {
    const std::string path = job_with("type.toml", c.line + "\n");
    EXPECT_EQ(input_error([&] { read_job_file(path); }), path + ":2: " + c.message) << c.line;
  }
}

TEST(ReadJobFile, BadValuesSayWhatIsWrong) {
  struct Case {
    std::string line, message;
  };
  const std::vector<Case> cases = {
      {"probe_modes = 0", "probe_modes: must be from 1 to 32, got 0"},
      {"engines = \"dm:x\"", "engines: 'dm:x': the iteration count must be a whole number from 0 to 10000000"},
      // Found by tests/fuzz/fuzz_job_file: this was accepted as -2147483648 iterations.
      {"engines = \"ml:2147483648\"",
       "engines: 'ml:2147483648': the iteration count must be a whole number from 0 to 10000000"},
      {"engines = \"ml:99999999999999999999\"",
       "engines: 'ml:99999999999999999999': the iteration count must be a whole number from 0 to 10000000"},
      {"engines = \"foo:3\"", "engines: unknown engine 'foo' (known: dm, raar, sdr, epie, rpie, mpie, ml, lsqml, nn)"},
      {"engines = \"\"", "engines: empty chain '' (example: dm:100,ml:200)"},
      {"likelihood = \"normal\"", "likelihood: must be 'poisson' or 'gaussian', got 'normal'"},
      {"position_method = \"random\"", "position_method: must be 'gradient' or 'annealing', got 'random'"},
      {"background = \"flat\"", "background: must be 'none', 'constant' or 'pixel', got 'flat'"},
      {"sigma = 1.5", "sigma: must be between 0 and 1, got 1.5"},
      {"smoothness = -1", "smoothness: must be a finite number >= 0, got -1"},
      {"tv = -0.5", "tv: must be between 0 and 1e+06, got -0.5"},
      {"tv = 1e300", "tv: must be between 0 and 1e+06, got 1e+300"},
      {"tv = nan", "tv: must be between 0 and 1e+06, got nan"},
      {"tv_epsilon = 0", "tv_epsilon: must be between 1e-06 and 1, got 0"},
      {"tau = 0", "tau: must be a finite number > 0, got 0"},
      {"beta = nan", "beta: must be a finite number, got nan"},
      {"batch = -1", "batch: must be from 0 to 4096, got -1"},
      {"probe_modes = 33", "probe_modes: must be from 1 to 32, got 33"},
      {"engines = \"dm:2147483648\"",
       "engines: 'dm:2147483648': the iteration count must be a whole number from 0 to 10000000"},
      {"max_position_shift = 1e9", "max_position_shift: must be between 0.001 and 256, got 1e+09"},
      {"position_gate = 1.5", "position_gate: must be between 0 and 1, got 1.5"},
      {"max_memory = \"lots\"", "max_memory: expected a memory size such as 4G, 512M or 2.5GiB, got 'lots'"},
      {"progress_every = 0", "progress_every: must be at least 1, got 0"},
      {"preset = \"fast\"", "preset: must be 'standard', 'blind' or 'learned', got 'fast'"},
      {"checkpoint_every = 0", "checkpoint_every: must be at least 1, got 0"},
      {"output = \"\"", "output: must not be empty"},
  };
  for (const auto& c : cases) {
    const std::string path = job_with("value.toml", c.line + "\n");
    EXPECT_EQ(input_error([&] { read_job_file(path); }), path + ":2: " + c.message) << c.line;
  }
}

TEST(ReadJobFile, InputMustBeAnExistingScan) {
  const std::string missing = write_file("jobs/missing.toml", "input = \"nope.cxi\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(missing); }),
            missing + ":1: input: no such file: " + (fs::path(missing).parent_path() / "nope.cxi").string());
  const std::string itself = write_file("jobs/itself.toml", "input = \"itself.toml\"\n");
  EXPECT_EQ(input_error([&] { read_job_file(itself); }), itself + ":1: input: " + itself + " is not a CXI (HDF5) file");
}

TEST(ReadJobFile, MalformedTomlGivesFileLineAndColumn) {
  const std::string path = job_with("malformed.toml", "engines = \"dm:5\nprobe_modes = 2\n");
  const std::string message = input_error([&] { read_job_file(path); });
  EXPECT_EQ(message.rfind(path + ":2:", 0), 0u) << message;
  EXPECT_NE(message.find("not a valid TOML job file"), std::string::npos) << message;
  const std::string duplicate = job_with("duplicate.toml", "batch = 1\nbatch = 2\n");
  const std::string dup_message = input_error([&] { read_job_file(duplicate); });
  EXPECT_EQ(dup_message.rfind(duplicate + ":3:", 0), 0u) << dup_message;
  EXPECT_EQ(input_error([&] { read_job_file((scratch() / "absent.toml").string()); }),
            (scratch() / "absent.toml").string() + ": no such job file");
}

// toml++ 3.3 reaches __builtin_unreachable on some non-ASCII characters where
// it looks for whitespace (found by tests/fuzz/fuzz_job_file; UBSan reports
// it): those files are rejected before toml++ reads them.
TEST(ReadJobFile, NonAsciiWhereTomlLooksForWhitespaceIsRejected) {
  const std::string unit = job_with("unit.toml", "probe_modes = 2\nbatch = 4\xc2\xb5\n");  // 4µ
  EXPECT_EQ(input_error([&] { read_job_file(unit); }),
            unit + ":3:10: not a valid TOML job file: a non-ASCII character outside a string or comment");
  const std::string key = job_with("cyrillic.toml", "\xd1\x99 = 1\n");  // U+0459
  EXPECT_EQ(input_error([&] { read_job_file(key); }),
            key + ":2:1: not a valid TOML job file: a non-ASCII character outside a string or comment");
  const std::string wrapped = job_with("wrapped.toml", "output = \"\"\"a\\\n  \xc2\xa7.h5\"\"\"\n");  // §
  EXPECT_EQ(input_error([&] { read_job_file(wrapped); }),
            wrapped + ":3:3: not a valid TOML job file: a non-ASCII character after a backslash in a multi-line "
                      "string (write it as \\uXXXX)");
  EXPECT_FALSE(input_error([&] { read_slurm_settings(unit); }).empty());
  // In strings and comments they are fine, also after quotes and escapes.
  const std::string fine = job_with("fine.toml",
                                    "# r\xc3\xa9sum\xc3\xa9 \xc2\xb5m\n"
                                    "output = \"a\\\"\xc3\xa9.h5\" # \xd1\x99\n"
                                    "previews = '\xc2\xa7'\n"
                                    "log_json = \"\"\"\xc3\xa9\\\n  x\"\"\"\n"
                                    "checkpoint = '''\xc2\xb5'''\n");
  const ReconstructJob job = read_job_file(fine);
  const fs::path dir = fs::path(fine).parent_path();
  EXPECT_EQ(job.output, (dir / "a\"\xc3\xa9.h5").string());
  EXPECT_EQ(job.previews, (dir / "\xc2\xa7").string());
  EXPECT_EQ(job.log_json, (dir / "\xc3\xa9x").string());
  EXPECT_EQ(job.checkpoint, (dir / "\xc2\xb5").string());
}

TEST(CopySetting, CommandLineOverridesAndIsCheckedUnderItsOptionName) {
  const std::string path = job_with("override.toml", "probe_modes = 2\nengines = \"dm:5\"\n");
  ReconstructJob job = read_job_file(path);
  ReconstructJob cli;
  cli.probe_modes = 4;
  copy_setting("probe_modes", cli, job);
  EXPECT_EQ(job.probe_modes, 4);
  EXPECT_EQ(job.engines, "dm:5");  // not given: the file's value stays
  EXPECT_EQ(job.where("probe_modes"), "--probe-modes");
  EXPECT_EQ(job.where("engines"), path + ":3: engines");
  EXPECT_NO_THROW(check_settings(job));
  cli.probe_modes = 0;
  copy_setting("probe_modes", cli, job);
  EXPECT_EQ(input_error([&] { check_settings(job); }), "--probe-modes: must be from 1 to 32, got 0");
  cli.engines = "dm:x";
  copy_setting("engines", cli, job);
  cli.probe_modes = 1;
  copy_setting("probe_modes", cli, job);
  EXPECT_EQ(input_error([&] { check_settings(job); }),
            "--engines: 'dm:x': the iteration count must be a whole number from 0 to 10000000");
  EXPECT_THROW(copy_setting("no_such_key", cli, job), Error);
}

TEST(CheckSettings, RefinementsTheEnginesCannotDoFailUpFront) {
  ReconstructJob job;
  job.engines = "epie:10";
  job.origin["engines"] = "--engines";
  EXPECT_NO_THROW(check_settings(job));
  job.base.refine_positions = true;
  job.origin["refine_positions"] = "--refine-positions";
  EXPECT_EQ(input_error([&] { check_settings(job); }),
            "--refine-positions: engine 'epie' does not refine positions (engines that do: dm, raar, ml)");
  // The blind preset refines positions where its test finds them wrong: an
  // engine that cannot fails before any work, naming the preset.
  job.base.refine_positions = false;
  job.origin.erase("refine_positions");
  job.preset = "blind";
  job.engines = "raar:10,lsqml:5";
  apply_preset(job);
  const std::string message = input_error([&] { check_settings(job); });
  EXPECT_EQ(message.rfind("preset blind: it refines positions where its test finds them wrong", 0), 0u) << message;
  EXPECT_NE(message.find("--refine-positions: engine 'lsqml' does not refine positions"), std::string::npos)
      << message;
  job.engines = "raar:10,ml:5";
  EXPECT_NO_THROW(check_settings(job));
}

TEST(Preset, BlindTestsThePositionsInOneChain) {
  ReconstructJob job;
  job.preset = "blind";
  apply_preset(job);
  EXPECT_EQ(job.engines, "raar:150,ml:200");
  EXPECT_TRUE(job.base.refine_positions);
  EXPECT_EQ(job.base.position_gate, kPositionGate);
  EXPECT_EQ(job.base.position_hold, 20);
  EXPECT_EQ(job.position_method, "annealing");
  EXPECT_NO_THROW(check_settings(job));
  // Halves now mix with it: one chain per half.
  job.halves = true;
  job.origin["halves"] = "--halves";
  EXPECT_NO_THROW(check_settings(job));
  // A position method the test cannot use: no gate from the preset...
  ReconstructJob gradient;
  gradient.preset = "blind";
  gradient.position_method = "gradient";
  gradient.origin["position_method"] = "--position-method";
  apply_preset(gradient);
  EXPECT_EQ(gradient.base.position_gate, 0.0);
  EXPECT_NO_THROW(check_settings(gradient));
  // ... and asked for explicitly, one clear line.
  gradient.base.position_gate = 0.1;
  gradient.origin["position_gate"] = "--position-gate";
  EXPECT_EQ(input_error([&] { check_settings(gradient); }),
            "--position-gate: the position test searches by annealing; set position_method to annealing, or "
            "position_gate to 0");
  // Set by the user, refine_positions turns the gate off with the refinement.
  ReconstructJob fixed;
  fixed.preset = "blind";
  fixed.origin["refine_positions"] = "--refine-positions";
  apply_preset(fixed);
  EXPECT_FALSE(fixed.base.refine_positions);
  EXPECT_EQ(fixed.base.position_gate, 0.0);
}

TEST(CheckSettings, DefaultsAreNotChecked) {
  ReconstructJob job;  // checkpoint_every = 0 means unset and is fine as a default
  EXPECT_NO_THROW(check_settings(job));
  job.origin["checkpoint_every"] = "--checkpoint-every";
  EXPECT_EQ(input_error([&] { check_settings(job); }), "--checkpoint-every: must be at least 1, got 0");
}

TEST(Examples, EveryExampleJobFileIsValid) {
  const fs::path examples = fs::path(PTYCHO_SOURCE_DIR) / "jobs" / "examples";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(examples)) {
    if (entry.path().extension() != ".toml") continue;
    ++n;
    ReconstructJob job;
    try {
      job = read_job_file(entry.path().string());
    } catch (const InputError& e) {
      const std::string m = e.what();
      if (m.find("input: no such file") != std::string::npos && !fs::exists(PTYCHO_SHARED_DIR))
        GTEST_SKIP() << "no shared data: " << m;
      ADD_FAILURE() << m;
      continue;
    }
    EXPECT_NO_THROW(check_settings(job)) << entry.path();
    EXPECT_TRUE(fs::is_regular_file(job.input)) << entry.path();
    // A [slurm] table, if there is one, is valid too.
    EXPECT_NO_THROW(read_slurm_settings(entry.path().string())) << entry.path();
  }
  EXPECT_GE(n, 3) << "no example job files in " << examples;
  const SlurmSettings cluster = read_slurm_settings((examples / "cluster.toml").string());
  EXPECT_EQ(cluster.tasks, 2);
  EXPECT_EQ(cluster.time, "00:30:00");
  const ReconstructJob standard = read_job_file((examples / "standard.toml").string());
  EXPECT_EQ(standard.engines, kDefaultChain);
  EXPECT_EQ(fs::path(standard.input).filename(), "standard_s01.cxi");
  const ReconstructJob star = read_job_file((examples / "realdata_siemens.toml").string());
  EXPECT_EQ(star.engines, "raar:100");
  EXPECT_TRUE(star.refine_probe);
  EXPECT_FALSE(star.previews.empty());
  EXPECT_EQ(fs::path(star.input).filename(), "siemens_star_tike.cxi");
}

}  // namespace
}  // namespace ptycho::jobs
