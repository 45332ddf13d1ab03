// bench_learned: where the learned engine's time goes, per architecture.
//
//   bench_learned [--frames N] [--batch B] [--threads T] [--channels-last 0|1] [--model FILE]
//
// Prints, for each network: training samples per second split into drawing
// the samples, making the features and the network's step; and inference in
// frames per second (the network alone, and with the frame features; batches
// of 16, no gradients), as trained and folded for inference (BatchNorm in
// the convolutions, channels-last: what the nn engine runs).
// The U-Nets take frame features; the PtychoNN-style baselines raw frames.
// Then, on one simulated scan of 64x64 frames: the whole nn stage (the
// model's inference and the stitching) next to one iteration of ML on the
// same frames, on one rank.
#include "engine_fixture.hpp"
#include "features.hpp"
#include "network.hpp"
#include "nn_engine.hpp"
#include "synth.hpp"

#include <ATen/Parallel.h>
#include <Kokkos_Core.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  int no_args = 1;
  Kokkos::ScopeGuard kokkos(no_args, argv);  // the options below are ours
  using namespace ptycho;
  using namespace ptycho::learned;
  long frames = 256;
  bool channels_last = true;
  std::string model = PTYCHO_DEFAULT_MODEL;
  int batch = 32, threads = int(std::max(1u, std::thread::hardware_concurrency())), iterations = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--frames"))
      frames = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch"))
      batch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--feature-iterations"))
      iterations = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--channels-last"))
      channels_last = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--model"))
      model = argv[i + 1];
  }
  at::set_num_threads(threads);
  std::printf("bench_learned: 64x64 frames, %d threads, training batch %d, %d feature iterations, %s layout\n", threads,
              batch, iterations, channels_last ? "channels-last" : "default");
  const auto layout = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  SynthOptions so;
  Synthesizer synth(so, 1);
  // Drawing samples and making features (the same for every network), after a warm-up.
  Batch b = synth.batch(batch);
  Features f = make_features(b.frames, b.valid, b.probes, iterations);
  const int draws = 3;
  double t0 = now();
  for (int r = 0; r < draws; ++r) b = synth.batch(batch);
  const double t_draw = (now() - t0) / draws;
  t0 = now();
  for (int r = 0; r < draws; ++r) f = make_features(b.frames, b.valid, b.probes, iterations);
  const double t_feat = (now() - t0) / draws;
  std::printf("  per training sample: draw %.2f ms, features %.2f ms (frame), ", 1e3 * t_draw / batch,
              1e3 * t_feat / batch);

  // Inference frames: one batch of `frames` drawn once.
  Batch inf = synth.batch(frames);
  // The U-Nets correct frame features; the PtychoNN-style baselines read raw frames.
  Features raw = make_raw_features(b.frames, b.valid, b.probes);
  t0 = now();
  for (int r = 0; r < draws; ++r) raw = make_raw_features(b.frames, b.valid, b.probes);
  const double t_raw = (now() - t0) / draws;
  std::printf("%.3f ms (raw)\n", 1e3 * t_raw / batch);
  for (const std::string arch : {"unet8", "unet12", "unet16", "unet24", "ptychonn8", "ptychonn16"}) {
    const bool is_raw = arch.rfind("ptychonn", 0) == 0;
    auto features = [&](const torch::Tensor& fr, const torch::Tensor& va, const torch::Tensor& pr) {
      return is_raw ? make_raw_features(fr, va, pr) : make_features(fr, va, pr, iterations);
    };
    const Features& train_f = is_raw ? raw : f;
    Network net = make_network(arch);
    if (channels_last) to_channels_last(*net);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    net->train();
    auto step = [&] {
      torch::Tensor loss = patch_loss(patch_from_output(train_f, net->forward(train_f.input.contiguous(layout))),
                                      b.truth, train_f.weight);
      opt.zero_grad();
      loss.backward();
      opt.step();
    };
    step();  // warm-up
    const int reps = 3;
    t0 = now();
    for (int r = 0; r < reps; ++r) step();
    const double t_step = (now() - t0) / reps;
    net->eval();
    torch::NoGradGuard no_grad;
    auto infer = [&] {
      for (long first = 0; first < frames; first += 16) {
        const long n = std::min(16L, frames - first);
        const Features g =
            features(inf.frames.narrow(0, first, n), inf.valid.narrow(0, first, n), inf.probes.narrow(0, first, n));
        (void)patch_from_output(g, net->forward(g.input.contiguous(layout)));  // folded: channels-last
      }
    };
    // The network alone on the first batch's features, as trained and then
    // folded for inference (network.hpp), best of three passes.
    const Features g = features(inf.frames.narrow(0, 0, 16), inf.valid.narrow(0, 0, 16), inf.probes.narrow(0, 0, 16));
    const torch::Tensor input = g.input.contiguous(torch::MemoryFormat::ChannelsLast);
    auto network_only = [&] {
      double best = 1e30;
      for (int pass = 0; pass < 4; ++pass) {  // the first is a warm-up
        const double s0 = now();
        for (long first = 0; first < frames; first += 16) (void)net->forward(input);
        if (pass > 0) best = std::min(best, now() - s0);
      }
      return best;
    };
    const long parameters = parameter_count(*net);  // as trained (folding merges BatchNorm)
    const double t_net = network_only();
    infer();  // warm-up
    t0 = now();
    infer();
    const double t_inf = now() - t0;
    net->fold_for_inference();
    const double t_folded = network_only();
    infer();
    t0 = now();
    infer();
    const double t_inf_folded = now() - t0;
    std::printf(
        "  %-10s %8ld parameters: training %.1f samples/s (network step %.2f ms/sample); "
        "network alone %.0f frames/s, folded %.0f; with frame features %.0f frames/s, folded %.0f\n",
        arch.c_str(), parameters, batch / (t_step + t_draw + (is_raw ? t_raw : t_feat)), 1e3 * t_step / batch,
        frames / t_net, frames / t_folded, frames / t_inf, frames / t_inf_folded);
  }

  // The nn stage against an ML iteration, on the same frames.
  sim::SimulationOptions so2;
  so2.object_size = 256;
  so2.probe_size = 64;
  so2.step = 9;
  so2.seed = 5;
  const test::SmallScan scan = test::make_small_scan(so2);
  const long n = scan.scan.num_local();
  auto seconds_of = [&](const std::string& name) {
    ReconState st = test::start_state(scan, test::true_probe(scan));
    Workspace ws(scan.scan, 1, 16);
    ws.set_positions(st.positions);
    ws.set_probe(st.probe);
    test::SerialCollective coll;
    EngineOptions opt;
    opt.name = name;
    opt.model = model;
    auto engine = name == "nn" ? make_nn_engine(opt, ws, coll, st) : make_engine(opt, ws, coll, st);
    engine->iterate(st);  // warm-up (ML's first iteration sets up its far fields)
    const double s0 = now();
    engine->iterate(st);
    return now() - s0;
  };
  const double t_nn = seconds_of("nn"), t_ml = seconds_of("ml");
  std::printf(
      "  scan of %ld frames (%s): nn stage %.3f s (%.0f frames/s), one ML iteration %.3f s: "
      "the nn stage costs %.1f ML iterations\n",
      n, model.c_str(), t_nn, n / t_nn, t_ml, t_nn / t_ml);
  return 0;
}
