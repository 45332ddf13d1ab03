// ptycho reconstruct: the distributed reconstruction of one CXI scan, set up
// from the command line, from a TOML job file, or from both (the command
// line overrides the file; see job_file.hpp).
#include "commands.hpp"
#include "job_file.hpp"
#include "memory_check.hpp"
#include "output_paths.hpp"
#include "progress.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/checkpoint.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/io/png.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/parallel/driver.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

namespace ptycho::jobs {

namespace {

/// The command line as parsed: the positional argument (a scan or a job
/// file) and every option, bound into a job of its own.
struct ReconstructArgs {
  std::string scan_or_job;
  ReconstructJob cli;
  double iteration_delay = 0;  ///< testing aid: seconds to sleep after every iteration
};

std::string default_output(const std::string& input) {
  return std::filesystem::path(input).stem().string() + "_ptycho.h5";
}

/// The exit status of a run stopped by SIGTERM or SIGUSR1 after writing its
/// checkpoint: EX_TEMPFAIL, "try again" (slurm/reconstruct.sbatch requeues on it).
constexpr int kExitStopped = 75;

/// The signal that asked the run to stop (0: none). Set by the handler,
/// polled after every iteration.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

namespace {

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

/// The checkpoint file when the job names none: OUTPUT-stem.checkpoint.h5 beside the output.
std::string default_checkpoint(const std::string& output) {
  const std::filesystem::path p(output);
  return (p.parent_path() / (p.stem().string() + ".checkpoint.h5")).string();
}

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

/// Presets: defaults for every setting the job file and the command line
/// leave unset.
///   standard: the known forward model: Poisson ML, ml:200 (the defaults).
///   blind:    the probe, its modes and the object are refined: raar:150 with
///             probe refinement and 3 modes (held 5 iterations: the object
///             forms first), then ml:100 on the object. Unless the job sets
///             refine_positions, a position trial: the chain runs with the
///             positions fixed and with them refined (from iteration 20 of
///             each engine, at most 1.5 px from the nominal position), and
///             the result with the lower final cost is kept.
void apply_preset(ReconstructJob& job, const CLI::App& app) {
  if (job.preset.empty() || job.preset == "standard") return;
  auto unset = [&](const std::string& key) {
    const CLI::Option* option = app.get_option_no_throw(option_name(key));
    return !job.origin.count(key) && !(option && option->count() > 0);
  };
  if (job.preset == "blind") {
    if (unset("engines")) job.engines = "raar:150,ml:100";
    if (unset("refine_probe")) job.refine_probe = true;
    if (unset("probe_modes")) job.probe_modes = 3;
    if (unset("probe_hold")) job.base.probe_hold = 5;
    if (unset("refine_positions")) {
      job.position_trial = true;
      if (unset("position_hold")) job.base.position_hold = 20;
      if (unset("max_position_shift")) job.base.max_position_shift = 1.5;
    }
  }
}

/// The job to run: the job file's settings (if the positional argument is
/// one) with every option given on the command line on top, all checked.
ReconstructJob assemble_job(const ReconstructArgs& a, const CLI::App& app) {
  ReconstructJob job;
  if (is_job_file(a.scan_or_job)) {
    job = read_job_file(a.scan_or_job);
    PTYCHO_INPUT_ERROR_IF(!job.origin.count("input"),
                          a.scan_or_job << ": no 'input' key: the job file must name the scan (input = \"scan.cxi\")");
  } else {
    job.input = a.scan_or_job;
    const CLI::Option* input = app.get_option_no_throw("--input");
    PTYCHO_INPUT_ERROR_IF(input && input->count() > 0,
                          "--input: the scan is already given (" << a.scan_or_job
                                                                 << "); --input overrides a job file's input");
  }
  for (const auto& key : job_file_keys()) {
    const CLI::Option* option = app.get_option_no_throw(option_name(key));
    if (option && option->count() > 0) copy_setting(key, a.cli, job);
  }
  apply_preset(job, app);
  check_settings(job);
  if (job.output.empty()) job.output = default_output(job.input);
  if (job.checkpoint.empty()) job.checkpoint = default_checkpoint(job.output);
  return job;
}

/// What one reconstruction ended with.
struct RunOutcome {
  int exit_code = 0;       ///< 0, or kExitStopped
  double final_cost = 0;   ///< the cost of the last iteration
  double seconds = 0;      ///< of the iterations run by this process
  double background_mean = std::nan("");  ///< mean refined background over valid pixels (NaN: none refined)
};

/// One reconstruction of `job`: reads the scan, resumes from the job's
/// checkpoint if there is one, runs the chain (stopping on a signal after a
/// checkpoint), and writes the result.
RunOutcome reconstruct_once(const ReconstructJob& job, MPI_Comm world, double iteration_delay,
                            ProgressReporter& progress) {
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  std::error_code ec;
  install_stop_handlers();
  // Resume from --resume, or from the job's own checkpoint if it exists (a
  // requeued or restarted job goes on where it stopped).
  const std::string resume_from =
      !job.resume.empty() ? job.resume : (std::filesystem::exists(job.checkpoint, ec) ? job.checkpoint : "");

  EngineOptions base = job.base;
  base.refine_probe = job.refine_probe;
  base.likelihood = job.likelihood == "gaussian" ? Likelihood::gaussian
                                                 : Likelihood::poisson;  // check_settings allows only these two
  base.position_method = job.position_method == "annealing" ? PositionMethod::annealing
                                                            : PositionMethod::gradient;  // likewise
  base.background = parse_background_mode(job.background);

  ReconstructOptions opt;
  opt.chain = parse_chain(job.engines, base);
  opt.probe_modes = job.probe_modes;
  opt.batch = job.batch;

  if (rank == 0) {
    // Temporary files of runs killed while writing (their process is gone).
    const int stale = io::remove_stale_temporaries(job.checkpoint) + io::remove_stale_temporaries(job.output);
    if (stale > 0) std::printf("ptycho reconstruct: removed %d temporary file%s left by a killed run\n", stale,
                               stale > 1 ? "s" : "");
  }

  io::ReadOptions read;
  read.probe_scaling = io::ProbeScaling::to_mean_counts;  // a flat object of 1 then matches the counts
  const ScanInfo info = io::read_scan_info(job.input, read);
  if (rank == 0) {
    if (!job.job_file.empty()) std::printf("ptycho reconstruct: job %s\n", job.job_file.c_str());
    std::printf("ptycho reconstruct: %s: %ld frames of %dx%d, object %ldx%ld px, %d rank%s, engines %s\n",
                job.input.c_str(), info.num_frames, info.geometry.frame_size, info.geometry.frame_size,
                info.object_rows, info.object_cols, size, size > 1 ? "s" : "", job.engines.c_str());
  }
  {
    // The memory each rank will need, against the node and --max-memory,
    // before anything of the size of the frames or the object is allocated
    // (the reconstruction below makes its halo buffers at once).
    const Decomposition dec = decompose_for(info, opt, size);
    const Rect tile = dec.extent[rank];
    const RankShare share{long(dec.positions_of[rank].size()), info.geometry.frame_size, opt.probe_modes, opt.batch,
                          tile.rows, tile.cols};
    MemoryNeed need;
    need.bytes = estimate_rank_bytes(share, opt.chain);
    need.max_memory = job.max_memory.empty() ? 0.0 : parse_bytes(job.max_memory, job.where("max_memory"));
    need.what = job.input + " (" + std::to_string(info.num_frames) + " frames of " +
                std::to_string(info.geometry.frame_size) + "x" + std::to_string(info.geometry.frame_size) +
                ", object " + std::to_string(info.object_rows) + "x" + std::to_string(info.object_cols) + " px, " +
                std::to_string(opt.probe_modes) + " probe mode" + (opt.probe_modes > 1 ? "s, " : ", ") +
                job.engines + ")";
    check_memory(world, need);
  }
  DistributedReconstruction recon(world, info, opt);
  Dataset data = io::read_cxi(world, job.input, recon.my_frames(), read);
  recon.set_data(data);
  if (rank == 0) std::printf("  probe: %s\n", data.info.probe_source.c_str());

  io::CheckpointLayout layout;
  layout.object_rows = info.object_rows;
  layout.object_cols = info.object_cols;
  layout.owned = recon.decomposition().owned[rank];
  layout.extent = recon.decomposition().extent[rank];
  layout.frames = recon.my_frames();
  layout.total_frames = info.num_frames;
  layout.frame_size = info.geometry.frame_size;
  const std::string input_abs = absolute_path(job.input);
  if (!resume_from.empty()) {
    auto archive = io::open_checkpoint(world, resume_from, layout);
    std::string input;
    archive->text("run/input", input);
    PTYCHO_INPUT_ERROR_IF(!std::filesystem::equivalent(input, input_abs, ec) && input != input_abs,
                          resume_from << ": the checkpoint is of the scan " << input << ", this run reconstructs "
                                      << input_abs << " (remove the checkpoint to start afresh)");
    try {
      recon.restore(*archive);
    } catch (const InputError& e) {
      PTYCHO_INPUT_ERROR_IF(true, resume_from << ": " << e.what() << " (remove the checkpoint to start afresh)");
    }
    if (rank == 0)
      std::printf("ptycho reconstruct: resuming from %s at iteration %ld of %s\n", resume_from.c_str(),
                  recon.iterations_done(), recon.chain_text().c_str());
  }
  std::fflush(stdout);

  RunControl control;
  control.progress = [&](const Progress& p) {
    progress.update(p);
    if (iteration_delay > 0) std::this_thread::sleep_for(std::chrono::duration<double>(iteration_delay));
  };
  control.checkpoint_every = job.checkpoint_every;
  control.stop_requested = [] { return g_stop_signal != 0; };
  control.write_checkpoint = [&](const std::function<void(StateArchive&)>& save) {
    const auto t0 = std::chrono::steady_clock::now();
    io::write_checkpoint(world, job.checkpoint, layout, [&](StateArchive& ar) {
      std::string input = input_abs;
      ar.text("run/input", input);
      save(ar);
    });
    if (rank != 0) return;
    std::printf("ptycho reconstruct: checkpoint written: %s (iteration %ld, %.1f s)\n", job.checkpoint.c_str(),
                recon.iterations_done(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!job.previews.empty()) {
      HostCView2 object;
      HostCView3 modes;
      io::read_checkpoint_images(job.checkpoint, object, modes);
      io::write_previews(job.previews, object, modes);
      io::write_cost_curve((std::filesystem::path(job.previews) / "cost.png").string(), recon.state().cost_history,
                           recon.state().engine_history);
    }
    std::fflush(stdout);
  };
  RunEnd end = RunEnd::finished;
  try {
    end = recon.run(control);
  } catch (const NumericalError& e) {
    const bool kept = std::filesystem::exists(job.checkpoint, ec);
    throw NumericalError(std::string(e.what()) + "; " +
                         (kept ? "the last checkpoint, " + job.checkpoint + ", is kept"
                               : std::string("no result or checkpoint was written")) +
                         " (lower the step sizes or check the data's counts)");
  }
  if (end == RunEnd::stopped) {
    if (rank == 0) {
      std::printf("ptycho reconstruct: stopped by %s after iteration %ld; checkpoint %s; exit %d (run the same "
                  "command again to resume)\n",
                  signal_name(int(g_stop_signal)), recon.iterations_done(), job.checkpoint.c_str(), kExitStopped);
      std::fflush(stdout);
    }
    return {kExitStopped, 0, recon.seconds()};
  }

  io::ResultData result;
  result.object_rows = info.object_rows;
  result.object_cols = info.object_cols;
  result.object_tile = recon.owned_object();
  result.tile_row0 = recon.owned().row0;
  result.tile_col0 = recon.owned().col0;
  result.positions = recon.all_positions();
  result.probe_modes = recon.probe();
  result.pixel_size_m = info.geometry.object_pixel_m();
  const bool with_background = job.background != "none";
  if (with_background) result.background = recon.background();
  auto& proc = result.process;
  proc.version = PTYCHO_VERSION;
  proc.command_line = command_line();
  nlohmann::json cfg = to_json(job);
  cfg["ranks"] = size;
  cfg["job_file"] = job.job_file;
  proc.configuration = cfg.dump();
  proc.cost_history = recon.state().cost_history;
  proc.engine_history = recon.state().engine_history;
  const double iters = std::max<double>(1, recon.state().cost_history.size());
  proc.metrics["seconds_total"] = recon.seconds();
  proc.metrics["seconds_per_iteration"] = recon.seconds() / iters;
  proc.metrics["ranks"] = size;
  proc.metrics["frames_migrated"] = double(recon.frames_migrated());
  // The estimated model mismatch (collective): what the reconstruction
  // changed in the probe and the positions, and the partial coherence.
  const Mismatch mm = recon.mismatch();
  proc.metrics["probe_error_pct"] = mm.probe_error_pct;
  proc.metrics["position_error_nm"] = mm.position_error_nm;
  proc.metrics["partial_coherence_nm"] = mm.partial_coherence_nm;
  for (size_t k = 0; k < mm.occupancy.size(); ++k)
    proc.metrics["mode_occupancy_" + std::to_string(k)] = mm.occupancy[k];
  if (with_background) proc.metrics["background_mean"] = recon.background_mean();
  io::write_result(world, job.output, result);
  if (rank == 0) {
    std::printf("ptycho reconstruct: estimated mismatch: probe %.2f %%, positions %.2f nm RMS, partial coherence "
                "%.2f nm; mode occupancy",
                mm.probe_error_pct, mm.position_error_nm, mm.partial_coherence_nm);
    for (double o : mm.occupancy) std::printf(" %.3f", o);
    std::printf("\n");
    if (recon.frames_migrated() > 0)
      std::printf("ptycho reconstruct: %ld frame%s moved to the rank that owns its refined position\n",
                  recon.frames_migrated(), recon.frames_migrated() > 1 ? "s" : "");
  }
  if (rank == 0 && !job.previews.empty()) {
    // The tiles are in the file now: rank 0 reads the whole object back once.
    const io::ResultData whole = io::read_result(job.output);
    io::write_previews(job.previews, whole.object_tile, whole.probe_modes);
    io::write_cost_curve((std::filesystem::path(job.previews) / "cost.png").string(), recon.state().cost_history,
                         recon.state().engine_history);
  }
  RunOutcome out;
  if (with_background) out.background_mean = recon.background_mean();
  out.final_cost = recon.state().cost_history.empty() ? 0.0 : recon.state().cost_history.back();
  out.seconds = recon.seconds();
  return out;
}

/// Where the blind preset's position trial keeps a branch: OUTPUT-stem.TAG.h5
/// and its checkpoint beside the output.
ReconstructJob trial_branch(const ReconstructJob& job, const std::string& tag) {
  ReconstructJob b = job;
  const std::filesystem::path out(job.output);
  b.output = (out.parent_path() / (out.stem().string() + "." + tag + ".h5")).string();
  const std::filesystem::path ck(job.checkpoint);
  b.checkpoint = (ck.parent_path() / (ck.stem().string() + "." + tag + ".h5")).string();
  b.previews.clear();
  return b;
}

/// The final cost recorded in the finished result of `branch` (collective:
/// rank 0 reads, all get it); NaN if the file is missing, unreadable, or the
/// result of another job (input, engines or settings differ).
double final_cost_of(const ReconstructJob& branch, MPI_Comm world) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  double cost = std::nan("");
  if (rank == 0 && io::is_result(branch.output)) {
    try {
      const io::ResultData r = io::read_result(branch.output);
      nlohmann::json cfg = nlohmann::json::parse(r.process.configuration);
      nlohmann::json expected = to_json(branch);
      for (const char* k : {"ranks", "job_file"}) cfg.erase(k);
      for (const char* k : {"resume", "progress_every", "log_json", "previews"}) {
        cfg.erase(k);
        expected.erase(k);
      }
      if (cfg == expected && !r.process.cost_history.empty()) cost = r.process.cost_history.back();
    } catch (const std::exception&) {
    }
  }
  MPI_Bcast(&cost, 1, MPI_DOUBLE, 0, world);
  return cost;
}

/// Every file the run reads and writes, for PathPlan (see output_paths.hpp).
PathPlan plan_paths(const ReconstructJob& job, bool position_trial) {
  const auto option = [&](const std::string& key) {
    return job.origin.count(key) ? job.where(key) : option_name(key) + " (default)";
  };
  PathPlan plan;
  plan.input(job.input, "the scan");
  plan.input(job.job_file, "the job file");
  // Resuming from the job's own checkpoint (a requeued job) reads and then replaces it.
  if (!job.resume.empty() && !same_file(job.resume, job.checkpoint)) plan.input(job.resume, option("resume"));
  plan.output(job.output, option("output"));
  plan.output(job.checkpoint, option("checkpoint"), true);
  plan.output(job.log_json, option("log_json"));
  plan.output_folder(job.previews, option("previews"), {"amplitude.png", "phase.png", "probe.png", "cost.png"});
  if (position_trial) {
    for (const char* tag : {"fixed-positions", "refined-positions"}) {
      const ReconstructJob b = trial_branch(job, tag);
      plan.output(b.output, std::string("the position trial's ") + tag + " result", true);
      plan.output(b.checkpoint, std::string("the position trial's ") + tag + " checkpoint", true);
    }
  }
  return plan;
}

int run_reconstruct(const ReconstructJob& job, MPI_Comm world, double iteration_delay, bool position_trial) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  // Every path is checked before anything is opened for writing (rank 0
  // looks, every rank raises the same error).
  io::detail::collectively(world, [&] {
    if (rank != 0) return;
    const PathPlan plan = plan_paths(job, position_trial);
    plan.check();
    plan.create_folders();
  });
  ProgressOptions progress_options;
  progress_options.every = job.progress_every;
  progress_options.log_json = job.log_json;
  ProgressReporter progress(world, progress_options);  // opens the log now: a bad path fails before the work

  if (!position_trial) {
    const RunOutcome out = reconstruct_once(job, world, iteration_delay, progress);
    if (out.exit_code != 0) return out.exit_code;
    RunSummary summary{out.seconds, job.output, job.previews};
    summary.background_mean = out.background_mean;
    progress.finish(summary);
    return 0;
  }
  // The blind preset's position trial: the same chain with the positions
  // fixed and with them refined; the result that explains the data better
  // (lower final cost, the same cost function) becomes the output. Refining
  // positions that are already right lets them drift with the errors of the
  // probe model, and raises the cost: the comparison catches that. Each
  // branch has its own result and checkpoint, so a stopped trial resumes
  // where it was.
  ReconstructJob fixed = trial_branch(job, "fixed-positions");
  ReconstructJob refined = trial_branch(job, "refined-positions");
  refined.base.refine_positions = true;
  double seconds = 0;
  for (ReconstructJob* branch : {&fixed, &refined}) {
    if (std::isfinite(final_cost_of(*branch, world))) {
      if (rank == 0) std::printf("ptycho reconstruct: position trial: %s is done already\n", branch->output.c_str());
      continue;
    }
    if (rank == 0)
      std::printf("ptycho reconstruct: position trial: positions %s -> %s\n",
                  branch == &fixed ? "fixed" : "refined", branch->output.c_str());
    const RunOutcome out = reconstruct_once(*branch, world, iteration_delay, progress);
    if (out.exit_code != 0) return out.exit_code;
    seconds += out.seconds;
  }
  const double cost_fixed = final_cost_of(fixed, world), cost_refined = final_cost_of(refined, world);
  PTYCHO_THROW_IF(!std::isfinite(cost_fixed) || !std::isfinite(cost_refined),
                  "position trial: cannot read back the final costs of " << fixed.output << " and "
                                                                          << refined.output);
  const bool keep_refined = cost_refined < cost_fixed;
  const ReconstructJob& winner = keep_refined ? refined : fixed;
  if (rank == 0) {
    std::printf("ptycho reconstruct: position trial: final cost %.6g with positions fixed, %.6g refined: keeping "
                "the %s positions (the other result stays in %s)\n",
                cost_fixed, cost_refined, keep_refined ? "refined" : "fixed",
                (keep_refined ? fixed : refined).output.c_str());
    // Copy, then rename: the winner's own file stays, and the output appears whole.
    const std::string temp = io::temporary_path_for(job.output);
    std::error_code ec;
    std::filesystem::copy_file(winner.output, temp, std::filesystem::copy_options::overwrite_existing, ec);
    if (!ec) std::filesystem::rename(temp, job.output, ec);
    if (ec) std::remove(temp.c_str());
    PTYCHO_INPUT_ERROR_IF(ec, job.output << ": cannot write it from " << winner.output << ": " << ec.message());
    if (!job.previews.empty()) {
      const io::ResultData whole = io::read_result(job.output);
      io::write_previews(job.previews, whole.object_tile, whole.probe_modes);
      io::write_cost_curve((std::filesystem::path(job.previews) / "cost.png").string(), whole.process.cost_history,
                           whole.process.engine_history);
    }
  }
  RunSummary summary{seconds, job.output, job.previews, keep_refined ? cost_refined : cost_fixed};
  if (rank == 0 && job.background != "none") {
    const io::ResultData r = io::read_result(job.output);
    const auto it = r.process.metrics.find("background_mean");
    if (it != r.process.metrics.end()) summary.background_mean = it->second;
  }
  progress.finish(summary);
  return 0;
}

}  // namespace

Command add_reconstruct_command(CLI::App& app) {
  auto a = std::make_shared<ReconstructArgs>();
  ReconstructJob& j = a->cli;
  Command c;
  c.app = app.add_subcommand("reconstruct",
                             "Reconstruct object and probe from a CXI scan or a TOML job file (run under mpirun -n R)");
  c.app
      ->add_option("input", a->scan_or_job,
                   "the scan (CXI), or a job file (TOML) whose keys are these options' long names with _ for -; "
                   "options given here override the file")
      ->required()
      ->check(CLI::ExistingFile);
  c.app->add_option("-o,--output", j.output, "result file (HDF5; default INPUT-stem_ptycho.h5)");
  c.app->add_option("--input", j.input, "the scan, overriding a job file's input (job arrays over many scans)")
      ->check(CLI::ExistingFile);
  c.app
      ->add_option("--engines", j.engines,
                   "engine chain, e.g. dm:100,ml:200 (engines: dm raar sdr epie rpie mpie ml lsqml)")
      ->capture_default_str();
  c.app->add_option("--probe-modes", j.probe_modes, "incoherent probe modes K")->capture_default_str();
  c.app->add_flag("--refine-probe", j.refine_probe, "refine the probe (--refine-probe=false overrides a job file)");
  c.app->add_option("--probe-hold", j.base.probe_hold, "iterations of each engine before the probe is refined")
      ->capture_default_str();
  c.app->add_flag("--refine-positions", j.base.refine_positions,
                  "refine the positions (DM, RAAR, ML; the method: --position-method)");
  c.app->add_option("--position-hold", j.base.position_hold, "iterations of each engine before positions move")
      ->capture_default_str();
  c.app->add_option("--max-position-shift", j.base.max_position_shift,
                    "largest distance a position may move from its start [object px]")
      ->capture_default_str();
  c.app->add_flag("--fix-affine", j.base.fix_affine,
                  "position refinement keeps the scan's global scale, rotation and shear");
  c.app
      ->add_option("--position-method", j.position_method,
                   "position refinement: gradient (Gauss-Newton) or annealing (the best of 4 trial shifts of a shrinking "
                   "radius)")
      ->capture_default_str();
  c.app->add_option("--likelihood", j.likelihood, "ML noise model: poisson or gaussian")->capture_default_str();
  c.app
      ->add_option("--background", j.background,
                   "detector background refined with the object by every engine: none, constant (one value) or "
                   "pixel (one per detector pixel)")
      ->capture_default_str();
  c.app
      ->add_option("--smoothness", j.base.smoothness,
                   "ML: weight of a Gaussian smoothness prior, relative to the data term (0 = off)")
      ->capture_default_str();
  c.app->add_option("--beta", j.base.beta, "RAAR relaxation")->capture_default_str();
  c.app->add_option("--sigma", j.base.sigma, "sDR: relaxed Fourier reflection (0 AP .. 1 DM)")->capture_default_str();
  c.app->add_option("--tau", j.base.tau, "sDR: relaxed modulus constraint")->capture_default_str();
  c.app->add_option("--sdr-step", j.base.sdr_step, "sDR: object step")->capture_default_str();
  c.app->add_option("--batches", j.base.batches, "LSQ-ML: mini-batches per iteration")->capture_default_str();
  c.app->add_option("--object-step", j.base.object_step, "PIE family: object step alpha")->capture_default_str();
  c.app->add_option("--rpie-alpha", j.base.rpie_alpha, "rPIE/mPIE regularisation")->capture_default_str();
  c.app->add_option("--momentum", j.base.momentum, "mPIE momentum eta")->capture_default_str();
  c.app->add_option("--regularisation", j.base.regularisation, "relative damping of object/probe divisions")
      ->capture_default_str();
  c.app->add_option("--seed", j.base.seed, "random seed (PIE order)")->capture_default_str();
  c.app->add_option("--batch", j.batch, "frames per batched FFT")->capture_default_str();
  c.app->add_option("--progress-every", j.progress_every, "print progress every N iterations")->capture_default_str();
  c.app->add_option("--previews", j.previews, "folder for PNG previews of amplitude, phase, probe and cost curve");
  c.app->add_option("--log-json", j.log_json, "write the progress lines and a summary as JSON lines to this file");
  c.app->add_option("--preset", j.preset,
                    "standard or blind: defaults for what is not set (blind: raar:150,ml:100, probe refined, 3 modes)");
  c.app->add_option("--checkpoint", j.checkpoint,
                    "checkpoint file (default OUTPUT-stem.checkpoint.h5); a run that finds it resumes from it");
  c.app->add_option("--checkpoint-every", j.checkpoint_every,
                    "iterations between checkpoints (default: only on SIGTERM/SIGUSR1, which also stop the run "
                    "with exit code 75)");
  c.app->add_option("--resume", j.resume, "resume from this checkpoint (any rank count)");
  c.app->add_option("--max-memory", j.max_memory,
                    "memory limit per rank, e.g. 4G; the run stops before reading the frames if its estimate is "
                    "larger (default: what the node has available, shared by its ranks)");
  // Every job-file key must have its option: the command line overrides the file key by key.
  for (const auto& key : job_file_keys())
    PTYCHO_THROW_IF(!c.app->get_option_no_throw(option_name(key)),
                    "reconstruct: the job-file key '" << key << "' has no option " << option_name(key));
  c.app
      ->add_option("--iteration-delay", a->iteration_delay,
                   "testing aid: sleep this many seconds after every iteration, so that tests can preempt a "
                   "short run in mid-flight")
      ->check(CLI::NonNegativeNumber);
  c.run = [a, app = c.app](MPI_Comm world) {
    const ReconstructJob job = assemble_job(*a, *app);
    return run_reconstruct(job, world, a->iteration_delay, job.position_trial);
  };
  return c;
}

}  // namespace ptycho::jobs
