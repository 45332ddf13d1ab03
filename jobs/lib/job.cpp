#include "ptycho/jobs/job.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/io/scan_formats.hpp"
#include "ptycho/io/trace.hpp"
#include "ptycho/jobs/analysis.hpp"
#include "ptycho/jobs/output_paths.hpp"
#include "ptycho/jobs/progress.hpp"
#include "ptycho/jobs/reconstruction.hpp"
#include "ptycho/parallel/gather.hpp"

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace ptycho::jobs {

namespace {

namespace fs = std::filesystem;

std::string default_output(const std::string& input) { return fs::path(input).stem().string() + "_ptycho.h5"; }

/// The checkpoint file when the job names none: OUTPUT-stem.checkpoint.h5 beside the output.
std::string default_checkpoint(const std::string& output) {
  const fs::path p(output);
  return (p.parent_path() / (p.stem().string() + ".checkpoint.h5")).string();
}

/// What one run of the chain ended with.
struct RunOutcome {
  int exit_code = 0;         ///< 0, or kExitStopped
  double final_cost = std::nan("");  ///< the cost of the last iteration
  double seconds = 0;        ///< of the iterations run by this process
  io::ResultData result;     ///< what was written (this rank's tile); empty if stopped
};

/// The largest trace (--trace) a run keeps in memory.
constexpr double kMaxTraceBytes = 1024.0 * 1024 * 1024;

/// One run of `job`'s chain: resumes from the job's checkpoint if there is
/// one, runs (stopping on request after a checkpoint), and writes the result
/// and, if the job asks, the previews, all from memory.
RunOutcome run_once(MPI_Comm world, const ReconstructJob& job, const JobHooks& hooks, ProgressReporter& progress) {
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  std::error_code ec;
  // Resume from --resume, or from the job's own checkpoint if it exists (a
  // requeued or restarted job goes on where it stopped).
  ReconstructJob settings = job;
  settings.resume = !job.resume.empty() ? job.resume : (fs::exists(job.checkpoint, ec) ? job.checkpoint : "");

  if (rank == 0) {
    // Temporary files of runs killed while writing (their process is gone).
    const int stale = io::remove_stale_temporaries(job.checkpoint) + io::remove_stale_temporaries(job.output);
    if (stale > 0) std::printf("ptycho reconstruct: removed %d temporary file%s left by a killed run\n", stale,
                               stale > 1 ? "s" : "");
  }
  Scan file = Scan::from_file(job.input);
  if (!job.frames_dataset.empty()) file = file.described(description_of(job));  // a plain HDF5 the job describes
  const Scan scan = job.half ? file.half(job.half - 1) : file;
  if (rank == 0) {
    const ScanInfo info = scan.info();
    if (!job.job_file.empty()) std::printf("ptycho reconstruct: job %s\n", job.job_file.c_str());
    const int threads = Kokkos::DefaultExecutionSpace().concurrency();
    std::printf(
        "ptycho reconstruct: %s%s: %ld frames of %dx%d, object %ldx%ld px, %d rank%s of %d thread%s, engines %s\n",
        job.input.c_str(),
        job.half == 1   ? " (half 1: even frames)"
        : job.half == 2 ? " (half 2: odd frames)"
                        : "",
        info.num_frames, info.geometry.frame_size, info.geometry.frame_size, info.object_rows, info.object_cols, size,
        size > 1 ? "s" : "", threads, threads > 1 ? "s" : "", job.engines.c_str());
    std::fflush(stdout);
  }
  Reconstruction recon(world, scan, settings);
  if (rank == 0) {
    std::printf("  probe: %s\n", recon.info().probe_source.c_str());
    if (!recon.memory_note().empty()) std::printf("  memory: %s\n", recon.memory_note().c_str());
    const std::string& dark = recon.info().background_source;
    if (!dark.empty())
      std::printf("  background: %s\n", recon.settings().background == "none"
                                            ? ("the scan's dark " + dark + " is not used (background = none)").c_str()
                                            : (recon.settings().background + ", starting from the scan's dark " + dark).c_str());
    if (!settings.resume.empty())
      std::printf("ptycho reconstruct: resuming from %s at iteration %ld of %s\n", settings.resume.c_str(),
                  recon.iterations_done(), job.engines.c_str());
    std::fflush(stdout);
  }

  if (!job.trace.empty()) {
    // The trace is kept in memory on rank 0 until the end: its size is checked first.
    double points = 0;
    for (const EngineOptions& e : parse_chain(job.engines, job.base))
      points += double(e.iterations) / std::max(1, job.progress_every) + 2;
    const double bytes =
        points * io::trace_point_bytes(job.probe_modes, recon.info().geometry.frame_size, recon.info().num_frames);
    PTYCHO_INPUT_ERROR_IF(bytes > kMaxTraceBytes, job.where("trace")
                                                      << ": the trace would hold " << bytes / (1 << 20) << " MiB ("
                                                      << long(points) << " points); raise --progress-every");
  }
  // --trace: the probe, the positions and the mismatch at every progress
  // line (collective: every rank takes part; rank 0 keeps the points).
  std::vector<io::TracePoint> trace;
  auto write_trace = [&] {
    io::detail::collectively(world, [&] {
      if (rank == 0 && !trace.empty()) io::write_trace(job.trace, trace);
    });
  };
  RunCallbacks callbacks;
  int verdict_seen = recon.position_verdict();
  callbacks.progress = [&](const Progress& p) {
    if (recon.position_verdict() != verdict_seen) {
      verdict_seen = recon.position_verdict();
      if (rank == 0)
        std::printf("ptycho reconstruct: position test (%s iteration %d): moving the frames lowers their misfit by "
                    "%.1f %%: %s\n",
                    p.engine.c_str(), p.iteration, 100 * recon.position_gain(),
                    verdict_seen > 0 ? "the positions are wrong and are refined"
                                     : "the positions stay as given (the test's bar is --position-gate)");
    }
    progress.update(p);
    if (!job.trace.empty() &&
        (p.iteration == 1 || p.iteration == p.iterations || p.iteration % std::max(1, job.progress_every) == 0)) {
      io::TracePoint t;
      t.iteration = p.total_done;
      t.engine = p.engine;
      t.cost = p.cost;
      t.positions_px = recon.positions();
      t.mismatch = recon.mismatch();
      if (rank == 0) {
        t.probe_modes = recon.probe();
        trace.push_back(std::move(t));
      }
    }
    if (hooks.iteration_delay > 0) std::this_thread::sleep_for(std::chrono::duration<double>(hooks.iteration_delay));
  };
  callbacks.stop_requested = hooks.stop_requested;
  callbacks.checkpoint_written = [&](const std::string& path, long iteration, double seconds) {
    if (rank == 0) {
      std::printf("ptycho reconstruct: checkpoint written: %s (iteration %ld, %.1f s)\n", path.c_str(), iteration,
                  seconds);
      std::fflush(stdout);
    }
    if (!job.previews.empty()) recon.write_previews(job.previews);
  };
  if (recon.run(callbacks) == RunEnd::stopped) {
    if (!job.trace.empty()) write_trace();
    if (rank == 0) {
      const std::string reason = hooks.stop_reason ? hooks.stop_reason() : std::string("a stop request");
      std::printf("ptycho reconstruct: stopped by %s after iteration %ld; checkpoint %s; exit %d (run the same "
                  "command again to resume)\n",
                  reason.c_str(), recon.iterations_done(), job.checkpoint.c_str(), kExitStopped);
      std::fflush(stdout);
    }
    RunOutcome out;
    out.exit_code = kExitStopped;
    out.seconds = recon.seconds();
    return out;
  }

  if (!job.trace.empty()) write_trace();
  RunOutcome out;
  out.result = recon.result(hooks.command_line);
  io::write_result(world, job.output, out.result);
  if (rank == 0) {
    std::printf("ptycho reconstruct: estimated mismatch: probe %.2f %% as a defocus (%.2f %% of it no defocus "
                "explains), positions %.2f nm RMS, partial coherence %.2f nm; mode occupancy",
                out.result.process.metrics["probe_error_pct"], out.result.process.metrics["probe_residual_pct"],
                out.result.process.metrics["position_error_nm"],
                out.result.process.metrics["partial_coherence_nm"]);
    for (size_t k = 0; out.result.process.metrics.count("mode_occupancy_" + std::to_string(k)); ++k)
      std::printf(" %.3f", out.result.process.metrics["mode_occupancy_" + std::to_string(k)]);
    std::printf("\n");
    if (recon.frames_migrated() > 0)
      std::printf("ptycho reconstruct: %ld frame%s moved to the rank that owns its refined position\n",
                  recon.frames_migrated(), recon.frames_migrated() > 1 ? "s" : "");
    std::fflush(stdout);
  }
  if (!job.previews.empty()) recon.write_previews(job.previews);
  out.final_cost = recon.cost_history().empty() ? 0.0 : recon.cost_history().back();
  out.seconds = recon.seconds();
  return out;
}

/// The mean refined background of a result, NaN if it has none.
double background_mean_of(const io::ResultData& r) {
  const auto it = r.process.metrics.find("background_mean");
  return it == r.process.metrics.end() ? std::nan("") : it->second;
}

/// Where a `halves` job keeps a branch: OUTPUT-stem.TAG.h5 and its
/// checkpoint beside the output.
ReconstructJob trial_branch(const ReconstructJob& job, const std::string& tag) {
  ReconstructJob b = job;
  const fs::path out(job.output);
  b.output = (out.parent_path() / (out.stem().string() + "." + tag + ".h5")).string();
  const fs::path ck(job.checkpoint);
  b.checkpoint = (ck.parent_path() / (ck.stem().string() + "." + tag + ".h5")).string();
  if (!job.trace.empty()) {
    const fs::path tr(job.trace);
    b.trace = (tr.parent_path() / (tr.stem().string() + "." + tag + tr.extension().string())).string();
  }
  b.previews.clear();  // (a halves job writes each branch's previews itself)
  b.origin.erase("previews");
  return b;
}

/// The finished result of `branch` that an earlier, stopped run of the job
/// left on disk (collective: rank 0 reads, and holds the whole object as its
/// tile; the other ranks an empty tile). Its final cost is NaN if the file
/// is missing, unreadable, or the result of another job (input, engines or
/// settings differ).
RunOutcome finished_branch(const ReconstructJob& branch, MPI_Comm world) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  RunOutcome out;
  double cost = std::nan("");
  if (rank == 0 && io::is_result(branch.output)) {
    try {
      io::ResultData r = io::read_result(branch.output);
      nlohmann::json cfg = nlohmann::json::parse(r.process.configuration);
      nlohmann::json expected = to_json(branch);
      for (const char* k : {"ranks", "job_file"}) cfg.erase(k);
      for (const char* k : {"resume", "progress_every", "log_json", "previews", "trace"}) {
        cfg.erase(k);
        expected.erase(k);
      }
      if (cfg == expected && !r.process.cost_history.empty()) {
        cost = r.process.cost_history.back();
        out.result = std::move(r);
      }
    } catch (const std::exception&) {
    }
  }
  MPI_Bcast(&cost, 1, MPI_DOUBLE, 0, world);
  out.final_cost = cost;
  if (rank != 0 && std::isfinite(cost)) {
    // The small parts, for write_result's checks; rank 0 holds the whole
    // object as its tile, so this rank's tile is empty (a rare path: a
    // halves job stopped after its first branch).
    out.result = io::read_result(branch.output);
    out.result.object_tile = HostCView2("ptycho::empty_tile", 0, 0);
    out.result.layout.owned = Rect{};
  }
  return out;
}

/// OUTPUT-stem + suffix beside the output: where a `halves` job puts its FRC.
std::string frc_path(const ReconstructJob& job, const std::string& suffix) {
  const fs::path out(job.output);
  return (out.parent_path() / (out.stem().string() + suffix)).string();
}

/// Where a `halves` job's half b (0 or 1) writes its previews: PREVIEWS/half1 and /half2; "" without previews.
std::string halves_previews(const ReconstructJob& job, int b) {
  if (job.previews.empty()) return "";
  return (fs::path(job.previews) / (b == 0 ? "half1" : "half2")).string();
}

/// A `halves` job: the chain on each half of the scan, then the FRC of the
/// two results, computed on the distributed tiles (analysis.hpp) and added
/// to both results, with a plot and JSON beside the output.
int run_halves(MPI_Comm world, const ReconstructJob& job, const JobHooks& hooks, ProgressReporter& progress) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  ReconstructJob branch[2] = {trial_branch(job, "half1"), trial_branch(job, "half2")};
  RunOutcome outcome[2];
  double seconds = 0;
  for (int b = 0; b < 2; ++b) {
    branch[b].half = b + 1;
    branch[b].halves = false;
    branch[b].previews = halves_previews(job, b);
    outcome[b] = finished_branch(branch[b], world);
    if (std::isfinite(outcome[b].final_cost)) {
      if (rank == 0) std::printf("ptycho reconstruct: --halves: %s is done already\n", branch[b].output.c_str());
      continue;
    }
    outcome[b] = run_once(world, branch[b], hooks, progress);
    if (outcome[b].exit_code != 0) return outcome[b].exit_code;
    seconds += outcome[b].seconds;
  }
  const FrcReport frc = fourier_ring_correlation_of(world, outcome[0].result, outcome[1].result);
  const long rows = outcome[0].result.layout.object_rows, cols = outcome[0].result.layout.object_cols;
  long dims[2] = {rows, cols};
  MPI_Bcast(dims, 2, MPI_LONG, 0, world);
  add_frc_to_result(world, branch[0].output, dims[0], dims[1], frc, branch[1].output);
  add_frc_to_result(world, branch[1].output, dims[0], dims[1], frc, branch[0].output);
  io::detail::collectively(world, [&] {
    if (rank != 0) return;
    write_frc_plot(frc_path(job, ".frc.png"), frc);
    if (!job.previews.empty()) write_frc_plot((fs::path(job.previews) / "frc.png").string(), frc);
    const std::string json = frc_path(job, ".frc.json"), temp = io::temporary_path_for(json);
    {
      std::ofstream f(temp);
      f << frc_json(frc, branch[0].output, branch[1].output) << "\n";
      PTYCHO_INPUT_ERROR_IF(!f, json << ": cannot be written");
    }
    fs::rename(temp, json);
    std::printf("ptycho reconstruct: --halves: FRC of the two halves: %.3g nm at 1/2 bit%s, %.3g nm at 1/7 "
                "(half-period resolution; curve in %s)\n",
                frc.resolution_half_bit_m * 1e9, frc.complex_curve.reached_half_bit ? "" : " (Nyquist)",
                frc.resolution_one_seventh_m * 1e9, frc_path(job, ".frc.png").c_str());
  });
  RunSummary summary{seconds, branch[0].output + " and " + branch[1].output, job.previews};
  summary.background_mean = background_mean_of(outcome[0].result);
  progress.finish(summary);
  return 0;
}

/// Every file the run reads and writes, for PathPlan (see output_paths.hpp).
PathPlan plan_paths(const ReconstructJob& job) {
  const auto option = [&](const std::string& key) {
    return job.origin.count(key) ? job.where(key) : option_name(key) + " (default)";
  };
  PathPlan plan;
  for (const std::string& file : io::scan_files(job.input)) plan.input(file, "the scan");
  plan.input(job.job_file, "the job file");
  plan.input(job.probe_from, option("probe_from"));
  // Resuming from the job's own checkpoint (a requeued job) reads and then replaces it.
  if (!job.resume.empty() && !same_file(job.resume, job.checkpoint)) plan.input(job.resume, option("resume"));
  plan.output(job.output, option("output"));
  plan.output(job.checkpoint, option("checkpoint"), true);
  plan.output(job.log_json, option("log_json"));
  if (!job.halves) plan.output(job.trace, option("trace"));
  if (job.halves) {
    plan.output_folder(job.previews, option("previews"), {"frc.png"});
    for (int b = 0; b < 2; ++b)
      plan.output_folder(halves_previews(job, b), option("previews"), {"amplitude.png", "phase.png", "probe.png", "cost.png"});
  } else {
    plan.output_folder(job.previews, option("previews"), {"amplitude.png", "phase.png", "probe.png", "cost.png"});
  }
  if (job.halves) {
    for (const char* tag : {"half1", "half2"}) {
      const ReconstructJob b = trial_branch(job, tag);
      plan.output(b.output, std::string("--halves: the ") + tag + " result", true);
      plan.output(b.checkpoint, std::string("--halves: the ") + tag + " checkpoint", true);
      plan.output(b.trace, std::string("--halves: the ") + tag + " trace");
    }
    plan.output(frc_path(job, ".frc.png"), "--halves: the FRC plot");
    plan.output(frc_path(job, ".frc.json"), "--halves: the FRC numbers");
  }
  return plan;
}

}  // namespace

void complete_job(ReconstructJob& job) {
  apply_preset(job);
  check_settings(job);
  if (job.output.empty()) job.output = default_output(job.input);
  if (job.checkpoint.empty()) job.checkpoint = default_checkpoint(job.output);
}

int run_job(MPI_Comm world, const ReconstructJob& job, const JobHooks& hooks) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  // Every path is checked before anything is opened for writing (rank 0
  // looks, every rank raises the same error).
  io::detail::collectively(world, [&] {
    if (rank != 0) return;
    const PathPlan plan = plan_paths(job);
    plan.check();
    plan.create_folders();
  });
  ProgressOptions progress_options;
  progress_options.every = job.progress_every;
  progress_options.log_json = job.log_json;
  ProgressReporter progress(world, progress_options);  // opens the log now: a bad path fails before the work

  if (job.halves) return run_halves(world, job, hooks, progress);
  const RunOutcome out = run_once(world, job, hooks, progress);
  if (out.exit_code != 0) return out.exit_code;
  RunSummary summary{out.seconds, job.output, job.previews};
  summary.background_mean = background_mean_of(out.result);
  progress.finish(summary);
  return 0;
}

}  // namespace ptycho::jobs
