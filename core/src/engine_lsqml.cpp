// LSQ-ML (Odstrcil, Menzel & Guizar-Sicairos 2018): mini-batched
// least-squares updates with an optimal step per batch.
//
// Batches are ranges of the global frame index, so every rank knows them and
// a run on N ranks equals a run on one. Per batch:
//   1. chi_j = F^-1[ (sqrt(y/I) - 1) F(P~ O_j) ], the exit-wave correction of
//      the amplitude (Gaussian) likelihood (a Poisson correction (y/I - 1)/2
//      lets a few nearly dark pixels with counts set the step: not offered);
//   2. dO = sum_j conj(P~_j) chi_j / (D_b + D / B + delta), over halos and
//      ranks, with D_b = sum_j |P~_j|^2 over the batch's frames and D over all
//      B batches' frames. Without the D / B term, the edges of a batch's
//      footprint (where D_b is small but other batches cover the pixel well)
//      get steps of chi / P~ that no global step length can tame: after RAAR
//      on blind_s01, 8 batches raised the cost from 0.40 to 0.63, while with
//      the term they lower it to 0.28 (one batch: 0.24);
//   3. the step a minimising sum_j || chi_j - a P~_j dO_j ||^2. Its two sums
//      need no second pass over the frames: with num = sum_j conj(P~_j) chi_j
//      and den = sum_j |P~_j|^2 (per pixel, over halos and ranks),
//        Re sum_j <P~_j dO, chi_j> = Re <dO, num>,
//        sum_j ||P~_j dO||^2       = <|dO|^2, den>,
//      object-sized sums over owned pixels;
//   4. O += a dO.
// With probe refinement the probe is updated once per iteration from the
// corrected exit waves (numerator and denominator summed over ranks).
#include "engines.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/frame_pass.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "probe_update.hpp"

#include <algorithm>
#include <cmath>

namespace ptycho {

namespace {

/// chi <- (sqrt(y/I) - 1) chi / M^2 over a row of every mode (mode k
/// k * plane further on); returns the row's squared amplitude error. Row
/// functions: see sum_frame_rows. With Bg, the model intensity is I + bg
/// (the detector background, background.hpp) and `model` gets I; without,
/// neither pointer is read.
template <int K, bool Bg>
KOKKOS_INLINE_FUNCTION float correction_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT v,
                                            const float* PTYCHO_RESTRICT bg, float* PTYCHO_RESTRICT model,
                                            cfloat* chi_c, int cols, int kmodes_rt, long plane, float inv_m2) {
  const int nk = modes<K>(kmodes_rt);
  float* PTYCHO_RESTRICT chi = reinterpret_cast<float*>(chi_c);
  const long step = 2 * plane;
  float e2 = 0;
  for (int c = 0; c < cols; ++c) {
    float inten = 0;
    for (int k = 0; k < nk; ++k) {
      const float re = chi[k * step + 2 * c], im = chi[k * step + 2 * c + 1];
      inten += re * re + im * im;
    }
    inten *= inv_m2;
    if (Bg) {
      model[c] = inten;
      inten += bg[c];
    }
    const bool ok = v[c] > 0;
    const float yc = y[c] > 0 ? y[c] : 0.0f;
    const float ii = inten > kIntensityFloor ? inten : kIntensityFloor;
    const float g = ok ? (std::sqrt(yc / ii) - 1.0f) * inv_m2 : 0.0f;
    const float e = std::sqrt(inten) - std::sqrt(yc);
    e2 += ok ? e * e : 0.0f;
    for (int k = 0; k < nk; ++k) {
      chi[k * step + 2 * c] *= g;
      chi[k * step + 2 * c + 1] *= g;
    }
  }
  return e2;
}

/// w <- chi - a w over a row of n complex values: what the object step left
/// of the corrections.
PTYCHO_ROW_FUNCTION void left_row(cfloat* w_c, const cfloat* chi_c, float a, int n) {
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const float* PTYCHO_RESTRICT chi = reinterpret_cast<const float*>(chi_c);
  for (int i = 0; i < 2 * n; ++i) w[i] = chi[i] - w[i] * a;
}

class LsqmlEngine final : public Engine {
 public:
  LsqmlEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll, ReconState& state)
      : m_opt(opt),
        m_ws(ws),
        m_coll(coll),
        m_probe_update(ws, coll, opt),
        m_background(opt.background, ws.scan(), ws.batch(), state) {
    PTYCHO_INPUT_ERROR_IF(opt.batches < 1, "lsqml: --batches must be at least 1, got " << opt.batches);
    const auto& scan = ws.scan();
    const int m = scan.frame_size, k = ws.num_modes();
    const long total = scan.total_frames;
    const int nb = static_cast<int>(std::min<long>(opt.batches, std::max(1L, total)));
    // Batch b holds global indices [b*N/B, (b+1)*N/B); local indices are ascending in the global ones.
    long largest = 0;
    for (int b = 0; b < nb; ++b) {
      const long g0 = total * b / nb, g1 = total * (b + 1) / nb;
      const long l0 = std::lower_bound(scan.index.begin(), scan.index.end(), g0) - scan.index.begin();
      const long l1 = std::lower_bound(scan.index.begin(), scan.index.end(), g1) - scan.index.begin();
      m_batches.push_back({l0, l1});
      largest = std::max(largest, l1 - l0);
    }
    // The corrections of a whole batch are kept only for the probe update;
    // without it a batch of the driver's size is transformed at a time.
    const long kept = std::max(opt.refine_probe ? largest : 0L, long(ws.batch()));
    m_chi = CView3("ptycho::lsqml::chi", std::size_t(kept) * k, m, m);
    m_scratch = CView3("ptycho::lsqml::scratch", std::size_t(ws.batch()) * k, m, m);
    m_num = View2<cdouble>("ptycho::lsqml::num", scan.extent.rows, scan.extent.cols);
    m_den = View2<double>("ptycho::lsqml::den", scan.extent.rows, scan.extent.cols);
    m_illum = View3<float>("ptycho::lsqml::illumination", nb, scan.extent.rows, scan.extent.cols);
    m_illum_total = View2<float>("ptycho::lsqml::illumination_total", scan.extent.rows, scan.extent.cols);
    m_illum_max.assign(nb, 0.0);
    m_step = CView2("ptycho::lsqml::step", scan.extent.rows, scan.extent.cols);
    m_owned = local_rect(scan.owned, scan.extent);
    const auto propagator = make_propagator(ws);
    m_pass = FramePass(ws, propagator, WaveStore::per_batch(m_chi), &m_background);
    m_keep_pass = FramePass(ws, propagator, WaveStore::per_frame(m_chi), &m_background);
  }

  std::string name() const override { return "lsqml"; }

  void checkpoint(StateArchive& ar) override {
    ar.scalar("iteration", m_iter);
    m_probe_update.checkpoint(ar);
  }

  double iterate(ReconState& state) override {
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    if (probe_now) m_probe_update.reset();
    m_background.reset();  // (the background's calls do nothing without one)
    refresh_illumination();
    double cost = 0;
    for (size_t b = 0; b < m_batches.size(); ++b)
      cost += batch_update(state, int(b), m_batches[b].first, m_batches[b].second, probe_now);
    if (probe_now) m_probe_update.apply_step(state, 0.0);
    m_background.update(m_coll);
    ++m_iter;
    double c = cost;
    m_coll.sum(&c, 1);
    return c / std::max(1.0, m_ws.valid_pixels());
  }

 private:
  /// Mini-batch `bi`: local frames [l0, l1). Returns this rank's cost of it.
  double batch_update(ReconState& state, int bi, long l0, long l1, bool probe_now) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    Kokkos::deep_copy(m_num, cdouble(0, 0));
    // 1. Exit-wave corrections of the batch, and the object numerator/denominator
    //    (the corrections of the whole mini-batch are kept for the probe step).
    const FramePass& pass = probe_now ? m_keep_pass : m_pass;
    const double cost = pass.run(
        FrameRange{l0, l1}, ExitWaves{state.object},
        [&](long first, long count, const CView3& chi) {
          return dispatch_modes(kmodes, [&](auto kc) {
            return m_background.enabled() ? correction<decltype(kc)::value, true>(first, count, chi)
                                          : correction<decltype(kc)::value, false>(first, count, chi);
          });
        },
        [&](long first, long count, const CView3& chi) {
          m_ws.accumulate_object(m_num, m_den, chi, first, count, false);
        });
    // 2. The preconditioned object direction, summed over halos and ranks.
    m_coll.scatter_sum(m_num);
    const auto illum = Kokkos::subview(m_illum, bi, Kokkos::ALL, Kokkos::ALL);
    const auto total = m_illum_total;
    const float per_batch = 1.0f / float(m_batches.size());
    const auto num = m_num;
    const auto step = m_step;
    const double dmax = m_illum_max[bi];
    const double delta = std::max(m_opt.regularisation * dmax, 1e-30);
    // 3. With it, the terms of the optimal step a = Re<u, chi> / <u, u>,
    //    u_j = P~_j dO_j, as object sums (see the top of the file).
    Sums<2> s;
    Kokkos::parallel_reduce(
        "ptycho::lsqml::direction", rect_policy(m_owned),
        KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
          const double den = illum(r, c);
          const cdouble d = num(r, c) / (den + total(r, c) * per_batch + delta);
          step(r, c) = cfloat(float(d.real()), float(d.imag()));
          acc.v[0] += d.real() * num(r, c).real() + d.imag() * num(r, c).imag();
          acc.v[1] += (d.real() * d.real() + d.imag() * d.imag()) * den;
        },
        Kokkos::Sum<Sums<2>>(s));
    m_coll.gather(step);
    const auto chi_all = m_chi;
    double t[2] = {s.v[0], s.v[1]};
    m_coll.sum(t, 2);
    const double alpha = t[1] > 0 ? std::clamp(t[0] / t[1], 0.0, 2.0) : 0.0;
    // 4. The update (the halo of the direction is in sync, so the whole extent moves).
    const auto obj = state.object;
    const float a = static_cast<float>(alpha);
    Kokkos::parallel_for(
        "ptycho::lsqml::step", Policy2({0, 0}, {long(obj.extent(0)), long(obj.extent(1))}),
        KOKKOS_LAMBDA(long r, long c) { obj(r, c) += step(r, c) * a; });
    if (probe_now) {
      // What the object step left of the correction, chi - a P~ dO, for the
      // probe step of this iteration (chi alone would count twice what the
      // object has already taken up).
      for (long first = l0; first < l1; first += m_ws.batch()) {
        const long count = std::min<long>(m_ws.batch(), l1 - first);
        auto w = Kokkos::subview(m_scratch, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
        m_ws.exit_waves(step, first, count, w);
        const long off = (first - l0) * kmodes;
        Kokkos::parallel_for(
            "ptycho::lsqml::left", Kokkos::RangePolicy<ExecSpace>(0, count * kmodes * m), KOKKOS_LAMBDA(long i) {
              const long bk = i / m;
              const int r = static_cast<int>(i % m);
              left_row(&w(bk, r, 0), &chi_all(off + bk, r, 0), a, m);
            });
        auto work = Kokkos::subview(m_chi, Kokkos::make_pair(off, off + count * kmodes), Kokkos::ALL, Kokkos::ALL);
        m_probe_update.accumulate(obj, w, first, count, work);
      }
    }
    return cost;
  }

  /// Each batch's illumination D_b = sum_j |P~_j|^2 over its frames and
  /// their total D, on owned pixels, summed over halos and ranks. They change
  /// only with the probe or the positions, and are kept until then.
  void refresh_illumination() {
    if (m_illum_version == m_ws.probe_version()) return;
    Kokkos::deep_copy(m_illum_total, 0.0f);
    const auto total = m_illum_total;
    const auto den = m_den;
    for (size_t b = 0; b < m_batches.size(); ++b) {
      Kokkos::deep_copy(m_den, 0.0);
      const auto [l0, l1] = m_batches[b];
      m_ws.accumulate_illumination(m_den, l0, l1 - l0);
      m_coll.scatter_sum(m_den);
      m_illum_max[b] = owned_max(m_den, m_owned, m_coll);
      const auto illum = Kokkos::subview(m_illum, b, Kokkos::ALL, Kokkos::ALL);
      Kokkos::parallel_for(
          "ptycho::lsqml::keep_illumination", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
            illum(r, c) = float(den(r, c));
            total(r, c) += float(den(r, c));
          });
    }
    m_illum_version = m_ws.probe_version();
  }

  /// Amplitude correction chi = (sqrt(y/I) - 1) Phi / M^2 of frames
  /// first..first+count in place (`chi` holds their Phi); returns their cost.
  template <int K, bool Bg>
  double correction(long first, long count, const CView3& chi) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const long plane = long(m) * m;
    const auto frames = m_ws.scan().frames;
    const auto valid = m_ws.scan().valid;
    const auto bg = m_background.values();
    const auto model = m_background.model();
    return sum_frame_rows<double>(
        "ptycho::lsqml::correction", count, m, KOKKOS_LAMBDA(long b, int r) {
          if (r + kPrefetchRows < m)
            prefetch_row(&frames(first + b, r + kPrefetchRows, 0), long(m) * long(sizeof(float)));
          return double(correction_row<K, Bg>(&frames(first + b, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr,
                                              Bg ? &model(b, r, 0) : nullptr, &chi(b * kmodes, r, 0), m, kmodes, plane,
                                              inv_m2));
        });
  }

  EngineOptions m_opt;
  Workspace& m_ws;
  const Collective& m_coll;
  ProbeUpdate m_probe_update;
  Background m_background;
  FramePass m_pass;       ///< corrections and object sums, a batch of the driver's size at a time
  FramePass m_keep_pass;  ///< the same, keeping a mini-batch's corrections (probe refinement)
  std::vector<std::pair<long, long>> m_batches;
  CView3 m_chi, m_scratch;
  View2<cdouble> m_num;
  View2<double> m_den;
  View3<float> m_illum;             ///< per batch: its illumination on owned pixels
  View2<float> m_illum_total;       ///< the sum of them: all frames' illumination
  std::vector<double> m_illum_max;  ///< per batch: max of it over all ranks
  long m_illum_version = -1;        ///< the probe_version they were summed for
  CView2 m_step;
  Rect m_owned;
  long m_iter = 0;
};

}  // namespace

std::unique_ptr<Engine> make_lsqml_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                          ReconState& state) {
  return std::make_unique<LsqmlEngine>(opt, ws, coll, state);
}

}  // namespace ptycho
