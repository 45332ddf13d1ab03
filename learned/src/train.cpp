#include "train.hpp"

#include "features.hpp"
#include "network.hpp"
#include "scan_synth.hpp"
#include "ptycho/core/error.hpp"
#include "synth.hpp"

#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#ifndef PTYCHO_VERSION
#define PTYCHO_VERSION "unknown"
#endif

namespace ptycho::learned {

namespace {

constexpr long kLossWindow = 20;  ///< steps averaged for the first and last loss

/// Sums every parameter's gradient over the ranks and divides by their
/// number (one flat buffer, one MPI_Allreduce).
void average_gradients(MPI_Comm comm, torch::nn::Module& net, int ranks) {
  if (ranks == 1) return;
  std::vector<torch::Tensor> grads;
  for (auto& p : net.parameters())
    grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}));
  torch::Tensor flat = torch::cat(grads).contiguous();
  MPI_Allreduce(MPI_IN_PLACE, flat.data_ptr<float>(), int(flat.numel()), MPI_FLOAT, MPI_SUM, comm);
  flat.div_(float(ranks));
  long at = 0;
  for (auto& p : net.parameters()) {
    const long n = p.numel();
    if (p.grad().defined()) p.grad().copy_(flat.narrow(0, at, n).view_as(p));
    at += n;
  }
}

/// Makes every rank's parameters and buffers rank 0's (the start), or their
/// mean over ranks (the BatchNorm statistics at the end).
void share_state(MPI_Comm comm, torch::nn::Module& net, bool mean, int ranks) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> all;
  for (auto& p : net.parameters()) all.push_back(p);
  for (auto& b : net.buffers())
    if (b.scalar_type() == torch::kFloat) all.push_back(b);
  for (auto& t : all) {
    torch::Tensor c = t.contiguous();
    if (mean) {
      MPI_Allreduce(MPI_IN_PLACE, c.data_ptr<float>(), int(c.numel()), MPI_FLOAT, MPI_SUM, comm);
      c.div_(float(ranks));
    } else {
      MPI_Bcast(c.data_ptr<float>(), int(c.numel()), MPI_FLOAT, 0, comm);
    }
    t.copy_(c);
  }
}

void check_options(const TrainOptions& o) {
  PTYCHO_INPUT_ERROR_IF(o.output.empty(), "ptycho train: -o MODEL is required");
  PTYCHO_INPUT_ERROR_IF(o.frame_size < 16 || o.frame_size > 512 || o.frame_size % 8 != 0,
                        "--frame-size: must be a multiple of 8 from 16 to 512, got " << o.frame_size);
  PTYCHO_INPUT_ERROR_IF(o.steps < 1 || o.steps > 100000000, "--steps: must be from 1 to 1e8, got " << o.steps);
  PTYCHO_INPUT_ERROR_IF(o.batch < 1 || o.batch > 4096, "--batch: must be from 1 to 4096, got " << o.batch);
  PTYCHO_INPUT_ERROR_IF(!(o.learning_rate > 0 && o.learning_rate < 1),
                        "--learning-rate: must be in (0, 1), got " << o.learning_rate);
  PTYCHO_INPUT_ERROR_IF(!(o.minutes >= 0), "--minutes: must be >= 0, got " << o.minutes);
  PTYCHO_INPUT_ERROR_IF(o.features != "scan" && o.features != "frame" && o.features != "raw",
                        "--features: must be scan, frame or raw, got '" << o.features << "'");
  PTYCHO_INPUT_ERROR_IF(o.feature_iterations < 0 || o.feature_iterations > 1000,
                        "--feature-iterations: must be from 0 to 1000, got " << o.feature_iterations);
  PTYCHO_INPUT_ERROR_IF(o.checkpoint_every < 1, "--checkpoint-every: must be at least 1");
}

}  // namespace

TrainSummary train(MPI_Comm comm, const TrainOptions& o, const std::function<void(const TrainProgress&)>& progress) {
  check_options(o);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(o.threads > 0 ? o.threads : std::max(1, cores / ranks));
  keep_freed_memory();
  torch::manual_seed(o.seed);

  Model model;
  if (!o.init.empty()) {
    model = load_model(o.init);
    PTYCHO_INPUT_ERROR_IF(model.info.frame_size != o.frame_size, o.init << ": the network takes frames of "
                                                                        << model.info.frame_size << ", --frame-size is "
                                                                        << o.frame_size);
  } else {
    model.net = make_network(o.architecture);
    model.info.architecture = o.architecture;
    model.info.frame_size = o.frame_size;
    model.info.features = o.features;
    model.info.feature_iterations = o.features == "raw" ? 0 : o.feature_iterations;  // raw: nothing is computed
  }
  model.info.version = PTYCHO_VERSION;
  model.info.description =
      (o.description.empty() ? std::string() : o.description + "; ") +
      "supervised on simulated scans (learned/README.md, Training): procedural objects, zone-plate probes, " +
      model.info.features + " features (" + std::to_string(model.info.feature_iterations) + " iterations), " +
      std::to_string(o.frame_size) + " px frames, seed " + std::to_string(o.seed) + ", batch " +
      std::to_string(o.batch) + " x " + std::to_string(ranks) + " ranks, learning rate " +
      std::to_string(o.learning_rate);
  model.info.parameters = parameter_count(*model.net);
  const int feature_iterations = model.info.feature_iterations;

  torch::optim::Adam optimizer(model.net->parameters(), torch::optim::AdamOptions(o.learning_rate));
  long start = 0;
  std::error_code ec;
  if (!o.checkpoint.empty() && std::filesystem::exists(o.checkpoint, ec)) {
    Model resumed = load_model(o.checkpoint, [&](torch::serialize::InputArchive& ar) {
      torch::serialize::InputArchive opt;
      PTYCHO_INPUT_ERROR_IF(!ar.try_read("optimizer", opt), o.checkpoint << ": a model, not a training checkpoint");
      optimizer.load(opt);
    });
    PTYCHO_INPUT_ERROR_IF(
        resumed.info.architecture != model.info.architecture || resumed.info.frame_size != model.info.frame_size,
        o.checkpoint << ": a checkpoint of a '" << resumed.info.architecture << "' network for "
                     << resumed.info.frame_size << " px frames, not of this training");
    torch::NoGradGuard no_grad;
    auto dst = model.net->named_parameters();
    for (const auto& kv : resumed.net->named_parameters()) dst[kv.key()].copy_(kv.value());
    auto dst_b = model.net->named_buffers();
    for (const auto& kv : resumed.net->named_buffers()) dst_b[kv.key()].copy_(kv.value());
    start = resumed.info.steps;
  }
  share_state(comm, *model.net, false, ranks);
  model.net->train();

  SynthOptions so;
  so.frame_size = o.frame_size;
  const std::uint64_t seed = o.seed * 1000003ULL + std::uint64_t(rank) * 7919ULL + std::uint64_t(start);
  const bool scan = model.info.features == "scan";
  std::unique_ptr<Synthesizer> synth;
  std::unique_ptr<ScanSampler> sampler;
  if (scan)
    sampler = std::make_unique<ScanSampler>(o.frame_size, feature_iterations, seed);
  else
    synth = std::make_unique<Synthesizer>(so, seed);

  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::vector<double> losses;
  long step = start;
  auto save = [&](const std::string& path, bool with_optimizer) {
    if (rank != 0) return;
    model.info.steps = step;
    model.info.loss = losses.empty() ? 0 : losses.back();
    save_model(model, path, [&](torch::serialize::OutputArchive& ar) {
      if (!with_optimizer) return;
      torch::serialize::OutputArchive opt;
      optimizer.save(opt);
      ar.write("optimizer", opt);
    });
  };
  // "er" has nothing to train: its model file only records the features.
  if (model.info.parameters == 0) step = o.steps;
  while (step < o.steps) {
    // Cosine decay after a short warm-up.
    const double warm = std::min(1.0, double(step + 1) / 50.0);
    const double lr = o.learning_rate * warm * 0.5 * (1 + std::cos(M_PI * double(step) / double(o.steps)));
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);

    Features f;
    torch::Tensor truth;
    if (scan) {
      ScanSamples b = sampler->batch(o.batch);
      f = b.features;
      truth = b.truth;
    } else {
      const Batch b = synth->batch(o.batch);
      f = model.info.features == "raw" ? make_raw_features(b.frames, b.valid, b.probes)
                                       : make_features(b.frames, b.valid, b.probes, feature_iterations);
      truth = b.truth;
    }
    const torch::Tensor patch = patch_from_output(f, model.net->forward(f.input));
    const torch::Tensor loss = patch_loss(patch, truth, f.weight);
    optimizer.zero_grad();
    loss.backward();
    average_gradients(comm, *model.net, ranks);
    optimizer.step();
    double l = loss.item<double>();
    MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, comm);
    l /= ranks;
    PTYCHO_NUMERICAL_ERROR_IF(
        !std::isfinite(l), "ptycho train: the loss is " << l << " at step " << step + 1 << " (lower --learning-rate)");
    losses.push_back(l);
    ++step;
    int stop = o.minutes > 0 && seconds() > 60.0 * o.minutes ? 1 : 0;
    MPI_Bcast(&stop, 1, MPI_INT, 0, comm);
    if (progress) {
      TrainProgress p;
      p.step = step;
      p.steps = o.steps;
      p.loss = l;
      p.seconds = seconds();
      p.samples_per_second = double(step - start) * o.batch * ranks / std::max(1e-9, p.seconds);
      progress(p);
    }
    if (!o.checkpoint.empty() && (step % o.checkpoint_every == 0)) save(o.checkpoint, true);
    if (stop) break;
  }
  share_state(comm, *model.net, true, ranks);
  save(o.output, false);
  MPI_Barrier(comm);

  TrainSummary s;
  s.steps = step;
  s.seconds = seconds();
  auto mean = [&](long from, long to) {
    double sum = 0;
    for (long i = from; i < to; ++i) sum += losses[size_t(i)];
    return to > from ? sum / double(to - from) : 0.0;
  };
  const long n = long(losses.size());
  s.first_loss = mean(0, std::min(n, kLossWindow));
  s.last_loss = mean(std::max(0L, n - kLossWindow), n);
  return s;
}

}  // namespace ptycho::learned
