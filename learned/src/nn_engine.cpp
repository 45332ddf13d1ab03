#include "nn_engine.hpp"

#include "features.hpp"
#include "network.hpp"
#include "ptycho/core/error.hpp"
#include "scan_features.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

namespace ptycho::learned {

namespace {

static_assert(Kokkos::SpaceAccessibility<Kokkos::HostSpace, CView3::memory_space>::accessible,
              "the nn engine hands Kokkos views to libtorch on the host");

constexpr long kInferBatch = 16;  ///< frames per network call (libtorch is fastest on small batches here)
constexpr int kAlignRounds = 4;   ///< rounds of aligning each patch's phase offset to the stitched object

torch::Tensor wrap(const CView3& v) {
  return torch::from_blob(reinterpret_cast<void*>(v.data()), {long(v.extent(0)), long(v.extent(1)), long(v.extent(2))},
                          torch::kComplexFloat);
}

class NnEngine final : public Engine {
 public:
  NnEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll)
      : m_opt(opt), m_ws(ws), m_coll(coll), m_model(load_model(opt.model)) {
    PTYCHO_INPUT_ERROR_IF(m_model.info.frame_size != ws.frame_size(),
                          opt.model << ": the network takes frames of " << m_model.info.frame_size << "x"
                                    << m_model.info.frame_size << ", this scan's are " << ws.frame_size() << "x"
                                    << ws.frame_size() << " (train one: ptycho train --frame-size " << ws.frame_size()
                                    << ")");
    m_model.net->eval();
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(std::max(1, cores / std::max(1, coll.size())));
    keep_freed_memory();
  }

  std::string name() const override { return "NN"; }
  void checkpoint(StateArchive&) override {}  // nothing of its own: its guess is the state's object

  double iterate(ReconState& state) override {
    const long n = m_ws.scan().num_local();
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const bool scan = m_model.info.features == "scan";
    double seconds[4] = {0, 0, 0, 0};  // features, fine-tuning, network, stitching
    auto lap = [start = std::chrono::steady_clock::now()](double& into) mutable {
      const auto t = std::chrono::steady_clock::now();
      into = std::chrono::duration<double>(t - start).count();
      start = t;
    };
    if (scan) {
      multi_frame_estimate(m_ws, m_coll, state, m_model.info.feature_iterations);
      m_windows = std::make_unique<WindowFeatures>(m_ws, m_coll);
    }
    lap(seconds[0]);
    if (m_opt.tune_steps > 0) tune(state);
    lap(seconds[1]);
    // (n, M, M) patches: corrected windows of a multi-frame estimate, whose
    // phases already agree, or single-frame guesses, whose offsets are aligned.
    const torch::Tensor patches = predict(state, n, m, kmodes);
    lap(seconds[2]);
    // One batch of waves, for the stitching and then the cost.
    const CView3 waves("ptycho::nn::waves", m_ws.batch() * kmodes, m, m);
    stitch(state, patches, waves, n, m, kmodes, scan ? 0 : kAlignRounds);
    lap(seconds[3]);
    report_times(seconds, n, scan);
    return cost(state, waves, n, m, kmodes);
  }

 private:
  /// The features of local frames first..first+count (at most kInferBatch
  /// and the workspace's batch): the window of the multi-frame estimate in
  /// state.object (scan features), or computed from the frames.
  Features features(const ReconState& state, long first, long count) const {
    if (m_windows) return (*m_windows)(state.object, first, count);
    const LocalScan& scan = m_ws.scan();
    const long n = scan.num_local();
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const torch::Tensor frames = torch::from_blob(scan.frames.data(), {n, m, m}, torch::kFloat).narrow(0, first, count);
    const torch::Tensor valid = torch::from_blob(scan.valid.data(), {m, m}, torch::kFloat);
    const torch::Tensor probes = wrap(m_ws.probes()).view({-1, kmodes, m, m}).narrow(0, first, count);
    if (m_model.info.features == "raw") return make_raw_features(frames, valid, probes);
    return make_features(frames, valid, probes, m_model.info.feature_iterations);
  }

  long chunk() const { return std::min<long>(kInferBatch, m_ws.batch()); }

  /// The network's patch for every local frame.
  /// After any fine-tuning, the network is folded for inference (the same
  /// function, about 1.15-1.3x faster here: network.hpp).
  torch::Tensor predict(const ReconState& state, long n, int m, int /*kmodes*/) {
    torch::NoGradGuard no_grad;
    if (!m_folded) m_model.net->fold_for_inference();
    m_folded = true;
    torch::Tensor out = torch::empty({n, m, m}, torch::kComplexFloat);
    for (long first = 0; first < n; first += chunk()) {
      const long count = std::min(chunk(), n - first);
      const Features f = features(state, first, count);
      // Averaged over EngineOptions::flips symmetries of the square.
      out.narrow(0, first, count).copy_(patch_from_output(f, forward_symmetrised(*m_model.net, f.input, m_opt.flips)));
    }
    return out;
  }

  /// Physics-aware fine-tuning on this scan (AutoPhaseNN, PtyNet): Adam
  /// steps on the Gaussian amplitude misfit of every frame under the
  /// network's patch for it, sum_j sum_q valid (|DFT(P~_j patch_j)| / M -
  /// sqrt(I_j))^2 / sum I, with the current probe and positions and no
  /// ground truth. Each step is full-batch: every rank's gradient over its
  /// own frames, summed over ranks, so the steps do not depend on the rank
  /// count (up to rounding). BatchNorm keeps its trained statistics.
  void tune(const ReconState& state) {
    PTYCHO_THROW_IF(m_folded, "nn: fine-tuning a network already folded for inference");
    const LocalScan& scan = m_ws.scan();
    const long n = scan.num_local();
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const torch::Tensor frames = torch::from_blob(scan.frames.data(), {std::max(n, 1L), m, m}, torch::kFloat);
    const torch::Tensor valid = torch::from_blob(scan.valid.data(), {m, m}, torch::kFloat);
    const torch::Tensor probes = wrap(m_ws.probes()).view({-1, kmodes, m, m});
    double power = n > 0 ? (valid * frames.narrow(0, 0, n).clamp_min(0)).sum().item<double>() : 0.0;
    m_coll.sum(&power, 1);
    if (!(power > 0)) return;
    torch::AutoGradMode grad_mode(true);
    std::vector<torch::Tensor> params = m_model.net->parameters();
    long count_params = 0;
    for (const auto& p : params) count_params += p.numel();
    if (count_params == 0) return;  // "er": nothing to tune
    m_tune_start = std::chrono::steady_clock::now();
    m_last_report = 0;
    torch::optim::Adam adam(params, torch::optim::AdamOptions(m_opt.tune_rate));
    m_model.net->eval();
    std::vector<double> flat(size_t(count_params) + 1);
    for (int step = 0; step < m_opt.tune_steps; ++step) {
      adam.zero_grad();
      double loss = 0;
      for (long first = 0; first < n; first += chunk()) {
        const long count = std::min(chunk(), n - first);
        const Features f = features(state, first, count);
        const torch::Tensor patch = patch_from_output(f, m_model.net->forward(f.input));
        const torch::Tensor far = torch::fft::fft2(probes.narrow(0, first, count) * patch.unsqueeze(1));
        const torch::Tensor amp =
            ((torch::real(far).square() + torch::imag(far).square()).sum(1) / (double(m) * m) + 1e-12).sqrt();
        const torch::Tensor measured = frames.narrow(0, first, count).clamp_min(0).sqrt();
        const torch::Tensor l = (valid * (amp - measured).square()).sum() / power;
        l.backward();
        loss += l.item<double>();
      }
      // One sum over ranks of every gradient and the loss.
      size_t at = 0;
      for (const auto& p : params) {
        const long k = p.numel();
        if (p.grad().defined()) {
          const torch::Tensor g = p.grad().contiguous().to(torch::kDouble);
          std::copy_n(g.data_ptr<double>(), k, flat.begin() + long(at));
        } else {
          std::fill_n(flat.begin() + long(at), k, 0.0);
        }
        at += size_t(k);
      }
      flat.back() = loss;
      m_coll.sum(flat.data(), flat.size());
      at = 0;
      for (auto& p : params) {
        const long k = p.numel();
        const torch::Tensor g = torch::from_blob(flat.data() + at, {k}, torch::kDouble).to(torch::kFloat).view_as(p);
        if (p.grad().defined())
          p.mutable_grad().copy_(g);
        else
          p.mutable_grad() = g.clone();
        at += size_t(k);
      }
      m_tune_losses.push_back(flat.back());
      report(step + 1);
      PTYCHO_NUMERICAL_ERROR_IF(!std::isfinite(flat.back()), "nn: the fine-tuning loss is "
                                                                 << flat.back() << " at step " << step + 1
                                                                 << " (lower --nn-tune-rate)");
      adam.step();
    }
    if (!m_opt.tuned_model.empty() && m_coll.rank() == 0) {
      m_model.info.description = "fine-tuned on a scan (" + std::to_string(m_opt.tune_steps) + " steps, rate " +
                                 std::to_string(m_opt.tune_rate) + "); " + m_model.info.description;
      m_model.info.steps += m_opt.tune_steps;
      m_model.info.loss = m_tune_losses.back();
      save_model(m_model, m_opt.tuned_model);
    }
  }

  /// One line on rank 0: where the stage's time went (the slowest rank's
  /// seconds) and the network's inference speed over all ranks.
  void report_times(double (&seconds)[4], long n, bool scan) const {
    double frames = double(n);
    m_coll.max(seconds, 4);
    m_coll.sum(&frames, 1);
    if (m_coll.rank() != 0) return;
    std::printf("  nn: %.0f frames:", frames);
    if (scan) std::printf(" features %.2f s (%d ML iterations),", seconds[0], m_model.info.feature_iterations);
    if (m_opt.tune_steps > 0) std::printf(" fine-tuning %.2f s,", seconds[1]);
    std::printf(" network%s %.2f s (%.0f frames/s on %d rank%s), stitching %.2f s\n",
                scan ? "" : " with its frame features", seconds[2], frames / std::max(seconds[2], 1e-9), m_coll.size(),
                m_coll.size() == 1 ? "" : "s", seconds[3]);
    std::fflush(stdout);
  }

  /// A progress line of the fine-tuning on rank 0, at most every 10 s.
  void report(int step) {
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_tune_start).count();
    if (m_coll.rank() != 0 || (step > 1 && step < m_opt.tune_steps && now - m_last_report < 10.0)) return;
    m_last_report = now;
    std::printf("  nn fine-tuning: step %d / %d  loss %.5g (first %.5g)  %.0f s  ETA %.0f s\n", step, m_opt.tune_steps,
                m_tune_losses.back(), m_tune_losses.front(), now, now / step * (m_opt.tune_steps - step));
    std::fflush(stdout);
  }

  /// Stitches the patches into the object through the engines' sums over
  /// halos and ranks: O = sum_j |P_j|^2 e^{i t_j} Q_j / sum_j |P_j|^2, each
  /// phase offset t_j aligned to the stitched object in a few rounds.
  void stitch(ReconState& state, const torch::Tensor& patches, const CView3& waves, long n, int m, int kmodes,
              int rounds) {
    const Rect& ext = m_ws.scan().extent;
    View2<cdouble> num("ptycho::nn::num", ext.rows, ext.cols);
    View2<double> den("ptycho::nn::den", ext.rows, ext.cols);
    const long batch = m_ws.batch();
    CView3 model("ptycho::nn::model", batch * kmodes, m, m);
    const torch::Tensor probes = wrap(m_ws.probes()).view({n, kmodes, m, m});
    torch::Tensor offset = torch::ones({n}, torch::kComplexFloat);  // e^{i t_j}
    for (int round = 0; round <= rounds; ++round) {
      Kokkos::deep_copy(num, cdouble(0, 0));
      Kokkos::deep_copy(den, 0.0);
      for (long first = 0; first < n; first += batch) {
        const long count = std::min(batch, n - first);
        fill_waves(waves, probes, patches, offset, first, count, kmodes, m);
        m_ws.accumulate_object(num, den, waves, first, count);
      }
      m_coll.scatter_sum(num);
      m_coll.scatter_sum(den);
      divide(state.object, num, den);
      m_coll.gather(state.object);
      if (round == rounds) break;
      // Each patch's overlap with the stitched object sets its new offset.
      for (long first = 0; first < n; first += batch) {
        const long count = std::min(batch, n - first);
        fill_waves(waves, probes, patches, offset, first, count, kmodes, m);
        m_ws.exit_waves(state.object, first, count, model);
        const torch::Tensor a = wrap(waves).narrow(0, 0, count * kmodes).view({count, -1});
        const torch::Tensor b = wrap(model).narrow(0, 0, count * kmodes).view({count, -1});
        const torch::Tensor c = (torch::conj(a) * b).sum(1);
        const torch::Tensor mag = torch::abs(c);
        const torch::Tensor turn = torch::where(mag > 0, c / mag.clamp_min(1e-30), torch::ones_like(c));
        offset.narrow(0, first, count).mul_(turn);
      }
    }
  }

  /// waves(b*K + k) = P~_{j,k} e^{i t_j} Q_j for j = first + b.
  static void fill_waves(const CView3& waves, const torch::Tensor& probes, const torch::Tensor& patches,
                         const torch::Tensor& offset, long first, long count, int kmodes, int m) {
    const torch::Tensor q = patches.narrow(0, first, count) * offset.narrow(0, first, count).view({count, 1, 1});
    wrap(waves)
        .narrow(0, 0, count * kmodes)
        .view({count, kmodes, m, m})
        .copy_(probes.narrow(0, first, count) * q.unsqueeze(1));
  }

  /// object = (num + e D fill) / (den + e D) over the extent: the weighted
  /// mean where lit, the mean of the lit object where nothing is (D the
  /// largest illumination, e small). Owned pixels are right; gather() then
  /// fixes the halo.
  void divide(const CView2& object, const View2<cdouble>& num, const View2<double>& den) const {
    const Rect& own = m_ws.scan().owned;
    const Rect& ext = m_ws.scan().extent;
    double sums[3] = {0, 0, 0};  // Re, Im of sum num; sum den (owned pixels)
    double peak = 0;
    for (long r = own.row0 - ext.row0; r < own.row0 - ext.row0 + own.rows; ++r)
      for (long c = own.col0 - ext.col0; c < own.col0 - ext.col0 + own.cols; ++c) {
        sums[0] += num(r, c).real();
        sums[1] += num(r, c).imag();
        sums[2] += den(r, c);
        peak = std::max(peak, den(r, c));
      }
    m_coll.sum(sums, 3);
    m_coll.max(&peak, 1);
    const cdouble fill = sums[2] > 0 ? cdouble(sums[0] / sums[2], sums[1] / sums[2]) : cdouble(1, 0);
    const double eps = 1e-3 * std::max(peak, 1e-30);
    for (long r = 0; r < ext.rows; ++r)
      for (long c = 0; c < ext.cols; ++c) {
        const cdouble v = (num(r, c) + eps * fill) / (den(r, c) + eps);
        object(r, c) = cfloat(float(v.real()), float(v.imag()));
      }
  }

  /// The Gaussian amplitude misfit of the stitched object per valid pixel,
  /// over all ranks: sum (|model| - sqrt(I))^2 / valid pixels.
  double cost(const ReconState& state, const CView3& waves, long n, int m, int kmodes) {
    const long batch = m_ws.batch();
    const LocalScan& scan = m_ws.scan();
    const torch::Tensor frames = torch::from_blob(scan.frames.data(), {std::max(n, 1L), m, m}, torch::kFloat);
    const torch::Tensor valid = torch::from_blob(scan.valid.data(), {m, m}, torch::kFloat);
    double total = 0;
    for (long first = 0; first < n; first += batch) {
      const long count = std::min(batch, n - first);
      m_ws.exit_waves(state.object, first, count, waves);
      const torch::Tensor far = torch::fft::fft2(wrap(waves).narrow(0, 0, count * kmodes).view({count, kmodes, m, m}));
      const torch::Tensor amp =
          (torch::real(far).square() + torch::imag(far).square()).sum(1).div(double(m) * m).sqrt();
      const torch::Tensor measured = frames.narrow(0, first, count).clamp_min(0).sqrt();
      total += (valid * (amp - measured).square()).sum().item<double>();
    }
    m_coll.sum(&total, 1);
    return total / std::max(1.0, m_ws.valid_pixels());
  }

  EngineOptions m_opt;
  Workspace& m_ws;
  const Collective& m_coll;
  Model m_model;
  std::unique_ptr<WindowFeatures> m_windows;  ///< scan features: the windows of the estimate
  std::vector<double> m_tune_losses;          ///< the fine-tuning loss per step (over all ranks)
  std::chrono::steady_clock::time_point m_tune_start;
  double m_last_report = 0;
  bool m_folded = false;  ///< fold_for_inference() done (after fine-tuning)
};

}  // namespace

std::unique_ptr<Engine> make_nn_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                       ReconState& /*state*/) {
  return std::make_unique<NnEngine>(opt, ws, coll);
}

}  // namespace ptycho::learned
