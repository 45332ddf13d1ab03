// ptycho train: trains the learned engine's network on scans simulated on
// the fly (ptycho/jobs/learned.hpp; learned/README.md), data-parallel over
// the MPI ranks.
//
//   mpirun -n 2 ptycho train -o model.pt [--steps N] [--minutes T] [--batch B] ...
//   mpirun -n 2 ptycho train --fine-tune SCAN.cxi [--init MODEL] -o tuned.pt [--steps N]
#include "commands.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/jobs/learned.hpp"
#include "ptycho/jobs/output_paths.hpp"
#include "ptycho/jobs/reconstruction.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>

namespace ptycho::jobs {

namespace {

/// Fine-tuning steps when --fine-tune is given without --steps.
constexpr int kDefaultTuneSteps = 30;

/// ptycho train --fine-tune: the nn engine's fine-tuning on the scan (its
/// probe and positions from the file), the tuned network written to -o.
int fine_tune(MPI_Comm world, const learned::TrainOptions& opt, const std::string& scan_path, bool steps_given,
              bool rate_given) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  PTYCHO_INPUT_ERROR_IF(steps_given && (opt.steps < 1 || opt.steps > 100000),
                        "--steps: fine-tuning takes 1 to 100000 steps, got " << opt.steps);
  PTYCHO_INPUT_ERROR_IF(rate_given && !(opt.learning_rate > 0 && opt.learning_rate < 1),
                        "--learning-rate: must be in (0, 1), got " << opt.learning_rate);
  Settings s;
  s.input = scan_path;
  s.engines = opt.init.empty() ? std::string("nn") : "nn:" + opt.init;
  s.base.tune_steps = steps_given ? int(opt.steps) : kDefaultTuneSteps;
  if (rate_given) s.base.tune_rate = opt.learning_rate;
  s.base.tuned_model = opt.output;
  s.progress_every = 1000000;
  const Scan scan = Scan::from_file(scan_path);
  Reconstruction recon(world, scan, s);
  if (rank == 0) {
    std::printf("ptycho train: fine-tuning %s on %s (%ld frames): %d steps, rate %g, probe: %s\n",
                opt.init.empty() ? "the shipped model" : opt.init.c_str(), scan_path.c_str(), recon.info().num_frames,
                s.base.tune_steps, s.base.tune_rate, recon.info().probe_source.c_str());
    std::fflush(stdout);
  }
  recon.run();
  if (rank == 0) std::printf("ptycho train: fine-tuned model: %s\n", opt.output.c_str());
  return 0;
}

}  // namespace

Command add_train_command(CLI::App& app) {
  auto opt = std::make_shared<learned::TrainOptions>();
  auto tune_scan = std::make_shared<std::string>();
  Command c;
  c.app = app.add_subcommand("train", "Train the learned engine's network on simulated scans (needs libtorch)");
  c.app->add_option("-o,--output", opt->output, "model file to write")->required();
  c.app->add_option("--init", opt->init, "start from this model instead of a new network");
  c.app->add_option("--fine-tune", *tune_scan,
                    "fine-tune --init (default: the shipped model) on this scan instead: physics-aware, no ground "
                    "truth, with the scan's probe and positions (--steps: default 30; --learning-rate: default 1e-4)");
  c.app
      ->add_option("--architecture", opt->architecture,
                   "network: unet8, unet12, unet16, unet24 (correct the features' estimate), ptychonn8, ptychonn16 "
                   "(PtychoNN-style amplitude and phase decoders, for raw features)")
      ->capture_default_str();
  c.app->add_option("--frame-size", opt->frame_size, "frame size M the network takes")->capture_default_str();
  c.app
      ->add_option("--features", opt->features,
                   "what the network corrects: scan (each frame's window of a multi-frame ML estimate) or "
                   "frame (a single-frame error-reduction estimate); raw: the frame itself (PtychoNN's input)")
      ->check(CLI::IsMember({"scan", "frame", "raw"}))
      ->capture_default_str();
  c.app
      ->add_option("--feature-iterations", opt->feature_iterations,
                   "iterations of that estimate (ML over the scan, or error reduction on one frame)")
      ->capture_default_str();
  c.app->add_option("--steps", opt->steps, "optimiser steps")->capture_default_str();
  c.app->add_option("--batch", opt->batch, "samples per step and rank")->capture_default_str();
  c.app->add_option("--learning-rate", opt->learning_rate, "Adam's step size (cosine decay)")->capture_default_str();
  c.app->add_option("--minutes", opt->minutes, "stop after this wall time and write the model (0: no limit)")
      ->capture_default_str();
  c.app->add_option("--seed", opt->seed, "random seed of the simulated training data")->capture_default_str();
  c.app->add_option("--checkpoint", opt->checkpoint,
                    "training checkpoint: written every --checkpoint-every steps, "
                    "resumed from if it exists");
  c.app->add_option("--checkpoint-every", opt->checkpoint_every, "steps between checkpoints")->capture_default_str();
  c.app->add_option("--threads", opt->threads, "libtorch threads per rank (0: the cores over the ranks)")
      ->capture_default_str();
  CLI::Option* steps_option = c.app->get_option("--steps");
  CLI::Option* rate_option = c.app->get_option("--learning-rate");
  c.run = [opt, tune_scan, steps_option, rate_option](MPI_Comm world) -> int {
    opt->description = "trained by: " + command_line();
    int rank = 0, ranks = 1;
    MPI_Comm_rank(world, &rank);
    MPI_Comm_size(world, &ranks);
    io::detail::collectively(world, [&] {
      if (rank != 0) return;
      PathPlan plan;
      if (!opt->init.empty()) plan.input(opt->init, "--init");
      if (!tune_scan->empty()) plan.input(*tune_scan, "--fine-tune");
      plan.output(opt->output, "the model", false);
      if (!opt->checkpoint.empty()) plan.output(opt->checkpoint, "--checkpoint", true);
      plan.check();
      std::error_code ec;
      PTYCHO_INPUT_ERROR_IF(std::filesystem::exists(opt->output, ec) && !looks_like_model_file(opt->output),
                            opt->output << ": exists and is not a model file; ptycho train will not replace it");
      plan.create_folders();
    });
    if (!tune_scan->empty())
      return fine_tune(world, *opt, *tune_scan, steps_option->count() > 0, rate_option->count() > 0);
    const learned::PluginApi& api = learned_plugin();
    if (rank == 0)
      std::printf("ptycho train: %s network for %dx%d frames, %ld steps of %d samples on %d rank%s (libtorch %s)\n",
                  opt->init.empty() ? opt->architecture.c_str() : opt->init.c_str(), opt->frame_size, opt->frame_size,
                  opt->steps, opt->batch, ranks, ranks == 1 ? "" : "s", api.torch_version);
    long last_print = 0;
    const learned::TrainSummary s = train_network(world, *opt, [&](const learned::TrainProgress& p) {
      if (rank != 0) return;
      if (p.step != p.steps && p.seconds - double(last_print) < 10.0 && p.step > 1) return;
      last_print = long(p.seconds);
      const double eta = p.step > 0 ? p.seconds / double(p.step) * double(p.steps - p.step) : 0;
      std::printf("  step %6ld / %ld  loss %.4f  %.0f samples/s  %.0f s  ETA %.0f s\n", p.step, p.steps, p.loss,
                  p.samples_per_second, p.seconds, eta);
      std::fflush(stdout);
    });
    if (rank == 0)
      std::printf("ptycho train: %ld steps in %.0f s, loss %.4f -> %.4f; model: %s\n", s.steps, s.seconds, s.first_loss,
                  s.last_loss, opt->output.c_str());
    return 0;
  };
  return c;
}

}  // namespace ptycho::jobs
