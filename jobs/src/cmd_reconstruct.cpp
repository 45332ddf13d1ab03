// ptycho reconstruct: the distributed reconstruction of one CXI scan.
#include "commands.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/png.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/parallel/driver.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace ptycho::jobs {

namespace {

/// The default chain: Poisson maximum likelihood, the most accurate engine
/// for data whose forward model is known (see README, "Engines").
constexpr const char* kDefaultChain = "ml:200";

struct ReconstructArgs {
  std::string input;
  std::string output;
  std::string engines = kDefaultChain;
  std::string likelihood = "poisson";
  std::string previews;
  int probe_modes = 1;
  bool refine_probe = false;
  int progress_every = 10;
  int batch = 16;
  EngineOptions base;
};

std::string default_output(const std::string& input) {
  return std::filesystem::path(input).stem().string() + "_ptycho.h5";
}

std::string format_seconds(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else std::snprintf(buf, sizeof buf, "%.2f h", s / 3600);
  return buf;
}

int run_reconstruct(const ReconstructArgs& a, MPI_Comm world) {
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  const std::string output = a.output.empty() ? default_output(a.input) : a.output;
  PTYCHO_INPUT_ERROR_IF(a.probe_modes < 1, "--probe-modes must be at least 1, got " << a.probe_modes);
  PTYCHO_INPUT_ERROR_IF(a.batch < 1, "--batch must be at least 1, got " << a.batch);
  PTYCHO_INPUT_ERROR_IF(std::filesystem::exists(output) && std::filesystem::equivalent(output, a.input),
                        output << ": the output would overwrite the input");

  EngineOptions base = a.base;
  base.refine_probe = a.refine_probe;
  if (a.likelihood == "poisson") base.likelihood = Likelihood::poisson;
  else if (a.likelihood == "gaussian") base.likelihood = Likelihood::gaussian;
  else PTYCHO_INPUT_ERROR_IF(true, "--likelihood must be poisson or gaussian, got '" << a.likelihood << "'");

  ReconstructOptions opt;
  opt.chain = parse_chain(a.engines, base);
  opt.probe_modes = a.probe_modes;
  opt.batch = a.batch;

  io::ReadOptions read;
  read.probe_scaling = io::ProbeScaling::to_mean_counts;  // a flat object of 1 then matches the counts
  const ScanInfo info = io::read_scan_info(a.input, read);
  if (rank == 0)
    std::printf("ptycho reconstruct: %s: %ld frames of %dx%d, object %ldx%ld px, %d rank%s, engines %s\n",
                a.input.c_str(), info.num_frames, info.geometry.frame_size, info.geometry.frame_size, info.object_rows,
                info.object_cols, size, size > 1 ? "s" : "", a.engines.c_str());
  DistributedReconstruction recon(world, info, opt);
  Dataset data = io::read_cxi(world, a.input, recon.my_frames(), read);
  recon.set_data(data);
  if (rank == 0) std::printf("  probe: %s\n", data.info.probe_source.c_str());
  std::fflush(stdout);

  recon.run([&](const Progress& p) {
    if (rank != 0) return;
    if (p.iteration % a.progress_every != 0 && p.iteration != p.iterations && p.iteration != 1) return;
    std::printf("  [%-5s] iter %4d/%-4d  cost %.6g  %.3g s/it  ETA %s\n", p.engine.c_str(), p.iteration, p.iterations,
                p.cost, p.seconds_per_iteration, format_seconds(p.eta_seconds).c_str());
    std::fflush(stdout);
  });

  io::ResultData result;
  result.object_rows = info.object_rows;
  result.object_cols = info.object_cols;
  result.object_tile = recon.owned_object();
  result.tile_row0 = recon.owned().row0;
  result.tile_col0 = recon.owned().col0;
  result.positions = recon.all_positions();
  result.probe_modes = recon.probe();
  result.pixel_size_m = info.geometry.object_pixel_m();
  auto& proc = result.process;
  proc.version = PTYCHO_VERSION;
  proc.command_line = command_line();
  nlohmann::json cfg = {{"input", a.input},          {"output", output},        {"engines", a.engines},
                        {"probe_modes", a.probe_modes}, {"refine_probe", a.refine_probe},
                        {"likelihood", a.likelihood}, {"ranks", size},           {"batch", a.batch},
                        {"smoothness", base.smoothness}, {"beta", base.beta},    {"rpie_alpha", base.rpie_alpha},
                        {"momentum", base.momentum}, {"sigma", base.sigma}, {"tau", base.tau},
                        {"sdr_step", base.sdr_step}, {"batches", base.batches},
                        {"regularisation", base.regularisation}, {"probe_hold", base.probe_hold}};
  proc.configuration = cfg.dump();
  proc.cost_history = recon.state().cost_history;
  proc.engine_history = recon.state().engine_history;
  const double iters = std::max<double>(1, recon.state().cost_history.size());
  proc.metrics["seconds_total"] = recon.seconds();
  proc.metrics["seconds_per_iteration"] = recon.seconds() / iters;
  proc.metrics["ranks"] = size;
  io::write_result(world, output, result);
  if (rank == 0) {
    std::printf("ptycho reconstruct: %ld iterations in %s (%.3g s/it); final cost %.6g\n",
                long(recon.state().cost_history.size()), format_seconds(recon.seconds()).c_str(),
                recon.seconds() / iters, recon.state().cost_history.empty() ? 0.0 : recon.state().cost_history.back());
    std::printf("  result: %s\n", output.c_str());
    if (!a.previews.empty()) {
      // The tiles are in the file now: rank 0 reads the whole object back once.
      const io::ResultData whole = io::read_result(output);
      io::write_previews(a.previews, whole.object_tile, whole.probe_modes);
      std::printf("  previews: %s/{amplitude,phase,probe}.png\n", a.previews.c_str());
    }
  }
  return 0;
}

}  // namespace

Command add_reconstruct_command(CLI::App& app) {
  auto a = std::make_shared<ReconstructArgs>();
  Command c;
  c.app = app.add_subcommand("reconstruct", "Reconstruct object and probe from a CXI scan (run under mpirun -n R)");
  c.app->add_option("input", a->input, "input scan (CXI)")->required()->check(CLI::ExistingFile);
  c.app->add_option("-o,--output", a->output, "result file (HDF5; default INPUT-stem_ptycho.h5)");
  c.app->add_option("--engines", a->engines, "engine chain, e.g. dm:100,ml:200 (engines: dm raar sdr epie rpie mpie ml lsqml)")
      ->capture_default_str();
  c.app->add_option("--probe-modes", a->probe_modes, "incoherent probe modes K")->capture_default_str();
  c.app->add_flag("--refine-probe", a->refine_probe, "refine the probe");
  c.app->add_option("--probe-hold", a->base.probe_hold, "iterations of each engine before the probe is refined")
      ->capture_default_str();
  c.app->add_option("--likelihood", a->likelihood, "ML noise model: poisson or gaussian")->capture_default_str();
  c.app->add_option("--smoothness", a->base.smoothness,
                    "ML: weight of a Gaussian smoothness prior, relative to the data term (0 = off)")
      ->capture_default_str();
  c.app->add_option("--beta", a->base.beta, "RAAR relaxation")->capture_default_str();
  c.app->add_option("--sigma", a->base.sigma, "sDR: relaxed Fourier reflection (0 AP .. 1 DM)")->capture_default_str();
  c.app->add_option("--tau", a->base.tau, "sDR: relaxed modulus constraint")->capture_default_str();
  c.app->add_option("--sdr-step", a->base.sdr_step, "sDR: object step")->capture_default_str();
  c.app->add_option("--batches", a->base.batches, "LSQ-ML: mini-batches per iteration")->capture_default_str();
  c.app->add_option("--object-step", a->base.object_step, "PIE family: object step alpha")->capture_default_str();
  c.app->add_option("--rpie-alpha", a->base.rpie_alpha, "rPIE/mPIE regularisation")->capture_default_str();
  c.app->add_option("--momentum", a->base.momentum, "mPIE momentum eta")->capture_default_str();
  c.app->add_option("--regularisation", a->base.regularisation, "relative damping of object/probe divisions")
      ->capture_default_str();
  c.app->add_option("--seed", a->base.seed, "random seed (PIE order)")->capture_default_str();
  c.app->add_option("--batch", a->batch, "frames per batched FFT")->capture_default_str();
  c.app->add_option("--progress-every", a->progress_every, "print progress every N iterations")->capture_default_str();
  c.app->add_option("--previews", a->previews, "folder for PNG previews of amplitude, phase and probe");
  c.run = [a](MPI_Comm world) { return run_reconstruct(*a, world); };
  return c;
}

}  // namespace ptycho::jobs
