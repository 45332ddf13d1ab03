// The sequential engines: ePIE (Maiden & Rodenburg 2009), rPIE and mPIE
// (Maiden, Johnson & Li 2017), and sDR, the semi-implicit relaxed
// Douglas-Rachford algorithm (Pham, Rana, Miao & Osher 2019), which keeps an
// exit wave psi per frame: f = (1 + sigma) P O - sigma psi is projected on
// the (tau-relaxed) measured modulus, psi <- P_F(f) + sigma (psi - P O), and
// the object moves by a conj(P) (psi - P O) / ((1 - a) max|P|^2 + a |P|^2).
// sigma = 0 is alternating projections (ePIE-like), sigma = 1 a sequential
// difference map. Positions are visited one at a time, in a random order,
// within a rank. After every pass, the ranks fold their object changes in
// the halos into the owners (a mean weighted by each rank's illumination),
// and the probe is updated once from all ranks' exit waves (numerator and
// denominator summed). In the low-memory mode sDR keeps its exit waves as
// complex halves (half.hpp) of psi over the probe's largest amplitude.
#include "engines.hpp"
#include "probe_update.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/frame_pass.hpp"
#include "ptycho/core/half.hpp"
#include "ptycho/core/kernel_util.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace ptycho {

namespace {

/// The modulus step of one row of frame j (every mode; mode k lies k *
/// plane further on in `w`): w <- w f / M^2 with f = target / sqrt(I) on
/// valid pixels (1 elsewhere), target = tau sqrt(y_sample) + (1 - tau)
/// sqrt(I) (tau = 1 but for sDR). With Bg, y_sample = I y / (I + bg) (the
/// sample's share of the counts) and `model` gets I. Returns the row's
/// squared amplitude error. Row functions: see sum_frame_rows.
template <int K, bool Bg>
PTYCHO_ROW_FUNCTION float pie_modulus_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT valid,
                                          const float* PTYCHO_RESTRICT bg, float* PTYCHO_RESTRICT model, cfloat* w_c,
                                          int cols, int kmodes_rt, long plane, float inv_m2, float tau) {
  const int nk = modes<K>(kmodes_rt);
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const long step = 2 * plane;
  float e2 = 0;
  for (int c = 0; c < cols; ++c) {
    float inten = 0;
    for (int k = 0; k < nk; ++k) {
      const float re = w[k * step + 2 * c], im = w[k * step + 2 * c + 1];
      inten += re * re + im * im;
    }
    inten *= inv_m2;
    if (Bg) model[c] = inten;
    const bool ok = valid[c] > 0;
    const float yc = y[c] > 0 ? y[c] : 0.0f;
    const float sy = std::sqrt(yc);
    const float amp = std::sqrt(inten);
    const float tb = Bg ? inten + bg[c] : inten;
    const float sy_sample = Bg ? amp * sy / std::sqrt(tb > kIntensityFloor ? tb : kIntensityFloor) : sy;
    const float target = tau * sy_sample + (1.0f - tau) * amp;
    const float f = ok ? inv_m2 * target / std::sqrt(inten > kIntensityFloor ? inten : kIntensityFloor) : inv_m2;
    const float e = (Bg ? std::sqrt(tb) : amp) - sy;
    e2 += ok ? e * e : 0.0f;
    for (int k = 0; k < nk; ++k) {
      w[k * step + 2 * c] *= f;
      w[k * step + 2 * c + 1] *= f;
    }
  }
  return e2;
}

/// sDR's reflection over n complex values: w <- (1 + sigma) w - sigma e,
/// with e kept as `Store` (half.hpp's load_wave; `scale` for halves).
template <class Store>
PTYCHO_ROW_FUNCTION void sdr_reflect_row(cfloat* w_c, const Store* PTYCHO_RESTRICT e, float sigma, float scale, int n) {
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  for (int c = 0; c < n; ++c) {
    float er, ei;
    load_wave(e, c, scale, er, ei);
    w[2 * c] = w[2 * c] * (1.0f + sigma) - er * sigma;
    w[2 * c + 1] = w[2 * c + 1] * (1.0f + sigma) - ei * sigma;
  }
}

/// The object step of one row of frame j's patch: with phi_k = P_k O, (sDR:
/// psi_k <- w_k + sigma (psi_k - phi_k), w_k <- psi_k,) O += step sum_k
/// conj(P_k) (w_k - phi_k) / (c_max max|P|^2 + c_local sum_k |P_k|^2),
/// w_k <- w_k - phi_k (the correction, for the probe step), and (Weigh)
/// weight += sum_k |P_k|^2. Mode k lies k * plane further on in `p`, `w` and
/// `exit`, which is kept as `Store` (half.hpp: complex64, or halves of psi /
/// scale).
template <int K, bool Sdr, bool Weigh, class Store>
PTYCHO_ROW_FUNCTION void pie_object_row(cfloat* obj_c, double* PTYCHO_RESTRICT weight, const cfloat* p_c, cfloat* w_c,
                                        Store* PTYCHO_RESTRICT ex, int cols, int kmodes_rt, long plane, float sigma,
                                        float step_size, float c_max_pm, float c_local, float scale) {
  const int nk = modes<K>(kmodes_rt);
  float* PTYCHO_RESTRICT o = reinterpret_cast<float*>(obj_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const long step = 2 * plane;
  const float inv_scale = 1.0f / scale;
  for (int c = 0; c < cols; ++c) {
    const float orr = o[2 * c], oi = o[2 * c + 1];
    float nr = 0, ni = 0, p2 = 0;
    for (int k = 0; k < nk; ++k) {
      const long i = k * step + 2 * c;
      const float pr = p[i], pi = p[i + 1];
      const float fr = pr * orr - pi * oi, fi = pr * oi + pi * orr;  // phi = P O
      float wr = w[i], wi = w[i + 1];
      if (Sdr) {
        float er, ei;
        load_wave(ex, k * plane + c, scale, er, ei);
        wr = wr + (er - fr) * sigma;
        wi = wi + (ei - fi) * sigma;
        store_wave(ex, k * plane + c, inv_scale, wr, wi);
      }
      const float dr = wr - fr, di = wi - fi;
      nr += pr * dr + pi * di;  // conj(P) (w - phi)
      ni += pr * di - pi * dr;
      w[i] = dr;
      w[i + 1] = di;
      p2 += pr * pr + pi * pi;
    }
    const float g = step_size / (c_max_pm + c_local * p2);
    o[2 * c] = orr + nr * g;
    o[2 * c + 1] = oi + ni * g;
    if (Weigh) weight[c] += double(p2);
  }
}

class PieEngine final : public Engine {
 public:
  PieEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll, ReconState& state)
      : m_opt(opt),
        m_ws(ws),
        m_coll(coll),
        m_probe_update(ws, coll, opt),
        m_background(opt.background, ws.scan(), 1, state) {
    const auto& scan = ws.scan();
    const int m = scan.frame_size, k = ws.num_modes();
    m_work = CView3("ptycho::pie::work", k, m, m);
    m_scratch = CView3("ptycho::pie::scratch", k, m, m);
    m_start = CView2("ptycho::pie::start", scan.extent.rows, scan.extent.cols);
    m_change = View2<cdouble>("ptycho::pie::change", scan.extent.rows, scan.extent.cols);
    if (opt.name != "epie") {  // (ePIE's changes add up unweighted)
      m_weight = View2<double>("ptycho::pie::weight", scan.extent.rows, scan.extent.cols);
      m_weight_sum = View2<double>("ptycho::pie::weight_sum", scan.extent.rows, scan.extent.cols);
    }
    m_owned = local_rect(scan.owned, scan.extent);
    if (opt.name == "sdr") start_exit_waves(state);
    if (opt.name == "mpie") m_velocity = CView2("ptycho::pie::velocity", scan.extent.rows, scan.extent.cols);
    m_order.resize(scan.num_local());
    std::iota(m_order.begin(), m_order.end(), 0L);
    m_pass = FramePass(ws, make_propagator(ws), WaveStore::per_batch(m_work), &m_background);
  }

  std::string name() const override { return m_opt.name; }

  /// The visiting order is drawn afresh each iteration from (seed, rank,
  /// iteration), so the counter is the whole random state.
  void checkpoint(StateArchive& ar) override {
    ar.scalar("iteration", m_iter);
    if (m_velocity.size()) ar.object_field("velocity", m_velocity);
    if (m_opt.name == "sdr") {
      // psi as kept: complex64, or packed halves (low memory) with their scale.
      const char* name = m_compact ? "exit_waves_half" : "exit_waves";
      PTYCHO_INPUT_ERROR_IF(ar.loading() && !ar.contains(name),
                            "checkpoint: its sdr state was saved "
                                << (m_compact ? "without" : "with")
                                << " the low-memory mode; resume with the same low_memory setting");
      if (m_compact) {
        ar.scalar("exit_scale", m_exit_scale);
        ar.frame_field(name, m_exit_half);
      } else {
        ar.frame_field(name, m_exit);
      }
    }
    m_probe_update.checkpoint(ar);
  }

  double iterate(ReconState& state) override {
    const int kmodes = m_ws.num_modes();
    const auto obj = state.object;
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    if (probe_now) m_probe_update.reset();
    Kokkos::deep_copy(m_start, obj);
    // Step denominators: ePIE divides by max |P|^2, rPIE/mPIE blend in the local |P|^2.
    const double pmax = probe_intensity_peak(state.probe);
    const bool epie = m_opt.name == "epie";
    // The illumination of this rank's positions, for the weighted mean of
    // the ranks' changes, follows the probe and the positions: summed in the
    // object steps when either has changed (never for ePIE).
    const bool weigh = !epie && m_weight_version != m_ws.probe_version();
    if (weigh) Kokkos::deep_copy(m_weight, 0.0);

    const float a = static_cast<float>(epie ? 1.0 : m_opt.rpie_alpha);
    const float step = static_cast<float>(m_opt.object_step);
    const float pm = static_cast<float>(pmax);
    const bool sdr = m_opt.name == "sdr";
    const float sigma = static_cast<float>(m_opt.sigma), tau = static_cast<float>(m_opt.tau);
    const float sdr_a = static_cast<float>(m_opt.sdr_step);
    // The detector background (background.hpp): the sample's share of the
    // measured amplitude is sqrt(y I / (I + b)); each frame's model intensity
    // is kept for the background's refinement.
    const bool use_bg = m_background.enabled();
    m_background.reset();  // (the background's calls do nothing without one)

    // A fresh order each iteration, from (seed, rank, iteration) alone: a
    // resumed run draws the same orders.
    std::iota(m_order.begin(), m_order.end(), 0L);
    std::mt19937_64 rng(m_opt.seed + 7919u * unsigned(m_coll.rank()) + 104729u * unsigned(m_iter));
    std::shuffle(m_order.begin(), m_order.end(), rng);
    // Step denominator c_max max|P|^2 + c_local |P|^2: ePIE (a = 1) max
    // only, rPIE/mPIE blend in the local one, sDR the other way round.
    const float c_max_pm = (sdr ? 1.0f - sdr_a : a) * pm, c_local = sdr ? sdr_a : 1.0f - a;
    const float tau_eff = sdr ? tau : 1.0f;
    // One frame at a time, each updating the object before the next one's
    // exit waves are made (m_work holds one frame's modes).
    const double cost = m_pass.run(
        m_order,
        [&](long j, long, const CView3& w) {
          m_ws.exit_waves(obj, j, 1, w);
          if (sdr && m_compact)
            reflect(j, w, sigma, m_exit_half);
          else if (sdr)
            reflect(j, w, sigma, m_exit);
        },
        [&](long j, long, const CView3& w) {
          return dispatch_modes(kmodes, [&](auto kc) {
            constexpr int K = decltype(kc)::value;
            return use_bg ? modulus<K, true>(j, tau_eff, w) : modulus<K, false>(j, tau_eff, w);
          });
        },
        [&](long j, long, const CView3& w) {
          dispatch_modes(kmodes, [&](auto kc) {
            constexpr int K = decltype(kc)::value;
            if (sdr && m_compact)
              weigh ? object_step<K, true, true>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit_half)
                    : object_step<K, true, false>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit_half);
            else if (sdr)
              weigh ? object_step<K, true, true>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit)
                    : object_step<K, true, false>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit);
            else if (weigh)
              object_step<K, false, true>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit);
            else
              object_step<K, false, false>(obj, j, w, sigma, step, c_max_pm, c_local, m_exit);
          });
          if (probe_now) m_probe_update.accumulate(obj, w, j, 1, m_scratch);
        });
    combine_ranks(state, weigh);
    if (probe_now) m_probe_update.apply_step(state, epie ? 1.0 : sdr ? 1.0 - m_opt.sdr_step : m_opt.rpie_alpha);
    m_background.update(m_coll);
    ++m_iter;
    double c = cost;
    m_coll.sum(&c, 1);
    return c / std::max(1.0, m_ws.valid_pixels());
  }

 private:
  /// The modulus step of frame j, whose far fields are in `w` (K, M, M);
  /// returns its squared amplitude error. K: mode count (dispatch_modes).
  template <int K, bool Bg>
  double modulus(long j, float tau, const CView3& w) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const long plane = long(m) * m;
    const auto frames = m_ws.scan().frames;
    const auto valid = m_ws.scan().valid;
    const auto bg = m_background.values();
    const auto model = m_background.model();
    double part = 0;
    Kokkos::parallel_reduce(
        "ptycho::pie::modulus", Kokkos::RangePolicy<ExecSpace>(0, m),
        KOKKOS_LAMBDA(int r, double& acc) {
          if (r + kPrefetchRows < m) prefetch_row(&frames(j, r + kPrefetchRows, 0), long(m) * long(sizeof(float)));
          acc += pie_modulus_row<K, Bg>(&frames(j, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr,
                                        Bg ? &model(0, r, 0) : nullptr, &w(0, r, 0), m, kmodes, plane, inv_m2, tau);
        },
        part);
    return part;
  }

  /// The object step of frame j from its exit waves in `w` (K, M, M), which
  /// then hold the corrections; rows in parallel. K: mode count. `exit`:
  /// sDR's kept exit waves (complex64 or halves; not read otherwise). Weigh:
  /// add the frame's illumination to m_weight (when it is summed afresh).
  template <int K, bool Sdr, bool Weigh, class ExitView>
  void object_step(const CView2& obj, long j, const CView3& w, float sigma, float step, float c_max_pm, float c_local,
                   const ExitView& exit) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const long plane = long(m) * m;
    const auto probes = m_ws.probes();
    const auto row = m_ws.patch_row(), col = m_ws.patch_col(), slot = m_ws.probe_slot();
    const auto weight = m_weight;
    const float scale = m_exit_scale;
    Kokkos::parallel_for(
        "ptycho::pie::object", Kokkos::RangePolicy<ExecSpace>(0, m), KOKKOS_LAMBDA(int r) {
          const int rr = row(j) + r, c0 = col(j);
          if (r + kPrefetchRows < m) {
            const long bytes = long(m) * long(sizeof(cfloat));
            prefetch_row<true>(&obj(rr + kPrefetchRows, c0), bytes);
            if (Weigh) prefetch_row<true>(&weight(rr + kPrefetchRows, c0), long(m) * long(sizeof(double)));
            for (int k = 0; k < kmodes; ++k) prefetch_row(&probes(slot(j) * kmodes + k, r + kPrefetchRows, 0), bytes);
          }
          pie_object_row<K, Sdr, Weigh>(
              &obj(rr, c0), Weigh ? &weight(rr, c0) : nullptr, &probes(slot(j) * kmodes, r, 0), &w(0, r, 0),
              Sdr ? wave_row(exit, j * kmodes, r) : nullptr, m, kmodes, plane, sigma, step, c_max_pm, c_local, scale);
        });
  }

  /// sDR's reflection of frame j's exit waves in `w` against the kept ones.
  template <class ExitView>
  void reflect(long j, const CView3& w, float sigma, const ExitView& exit) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float scale = m_exit_scale;
    Kokkos::parallel_for(
        "ptycho::sdr::reflect", Kokkos::RangePolicy<ExecSpace>(0, long(kmodes) * m), KOKKOS_LAMBDA(long i) {
          const int k = static_cast<int>(i / m), r = static_cast<int>(i % m);
          sdr_reflect_row(&w(k, r, 0), wave_row(exit, j * kmodes + k, r), sigma, scale, m);
        });
  }

  /// sDR's kept exit waves start as P~ O: complex64, or (low memory) halves
  /// of them over the probe's largest amplitude, made frame by frame.
  void start_exit_waves(const ReconState& state) {
    const auto& scan = m_ws.scan();
    const long n = scan.num_local();
    const int m = scan.frame_size, kmodes = m_ws.num_modes();
    m_compact = m_opt.low_memory;
    if (!m_compact) {
      m_exit = CView3("ptycho::sdr::exit", std::size_t(n) * kmodes, m, m);
      if (n > 0) m_ws.exit_waves(state.object, 0, n, m_exit);
      return;
    }
    m_exit_half = HalfCView3("ptycho::sdr::exit_half", std::size_t(n) * kmodes, m, m);
    // |psi| / scale stays near |O|, well inside the halves' range.
    m_exit_scale = float(std::sqrt(std::max(probe_intensity_peak(state.probe), 1e-30)));
    const float inv = 1.0f / m_exit_scale;
    const auto exit = m_exit_half;
    const auto w = m_work;
    for (long j = 0; j < n; ++j) {
      m_ws.exit_waves(state.object, j, 1, w);
      Kokkos::parallel_for(
          "ptycho::sdr::pack_exit_waves", Policy3({0, 0, 0}, {long(kmodes), long(m), long(m)}),
          KOKKOS_LAMBDA(long k, long r, long c) {
            exit(j * kmodes + k, r, c) = pack_half(w(k, r, c).real() * inv, w(k, r, c).imag() * inv);
          });
    }
    ExecSpace().fence();
  }

  /// Owned pixels := start + the ranks' changes combined, then halos. ePIE's
  /// steps are gradient steps normalised by max |P|^2, additive over
  /// positions, so the changes add up. rPIE, mPIE and sDR steps are nearly
  /// local projections (normalised by the local |P|^2): their sum would
  /// overshoot where several ranks corrected the same pixels, so they take
  /// the mean weighted by each rank's illumination. mPIE adds its momentum.
  /// `weighed`: this pass summed the illumination afresh (m_weight).
  void combine_ranks(ReconState& state, bool weighed) {
    const auto obj = state.object, start = m_start;
    const auto change = m_change;
    const auto weight = m_weight;
    const bool additive = m_opt.name == "epie";  // changes enter unweighted
    Kokkos::parallel_for(
        "ptycho::pie::change", Policy2({0, 0}, {long(obj.extent(0)), long(obj.extent(1))}),
        KOKKOS_LAMBDA(long r, long c) {
          const cfloat d = obj(r, c) - start(r, c);
          change(r, c) = additive ? cdouble(d.real(), d.imag()) : cdouble(d.real(), d.imag()) * weight(r, c);
        });
    m_coll.scatter_sum(change);
    if (weighed) {
      Kokkos::deep_copy(m_weight_sum, weight);
      m_coll.scatter_sum(m_weight_sum);
      m_weight_version = m_ws.probe_version();
    }
    const auto weight_sum = m_weight_sum;
    const bool mpie = m_velocity.size() > 0;
    const auto vel = m_velocity;
    const float eta = static_cast<float>(m_opt.momentum);
    Kokkos::parallel_for(
        "ptycho::pie::apply_change", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
          const cdouble mean = additive               ? change(r, c)
                               : weight_sum(r, c) > 0 ? change(r, c) / weight_sum(r, c)
                                                      : cdouble(0, 0);
          cfloat d(float(mean.real()), float(mean.imag()));
          if (mpie) {
            vel(r, c) = vel(r, c) * eta + d;
            d += vel(r, c) * eta;
          }
          obj(r, c) = start(r, c) + d;
        });
    m_coll.gather(obj);
  }

  EngineOptions m_opt;
  Workspace& m_ws;
  const Collective& m_coll;
  ProbeUpdate m_probe_update;
  Background m_background;
  FramePass m_pass;  ///< one frame at a time: exit waves, modulus, object step, probe sums
  CView3 m_work, m_scratch;
  CView2 m_start, m_velocity;
  View2<cdouble> m_change;    ///< weighted object change of the pass
  View2<double> m_weight;     ///< illumination sum_j |P_j|^2 of this rank's positions (not ePIE)
  View2<double> m_weight_sum;  ///< m_weight summed over the ranks (owned pixels)
  long m_weight_version = -1;  ///< the probe_version m_weight was summed for
  CView3 m_exit;              ///< sDR: exit wave per frame and mode (signed, real space)
  HalfCView3 m_exit_half;     ///< sDR, low memory: the same as halves of psi / m_exit_scale
  float m_exit_scale = 1.0f;  ///< of m_exit_half: the starting probe's largest amplitude
  bool m_compact = false;     ///< sDR keeps halves (the low-memory mode)
  Rect m_owned;
  std::vector<long> m_order;
  long m_iter = 0;
};

}  // namespace

std::unique_ptr<Engine> make_pie_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                        ReconState& state) {
  return std::make_unique<PieEngine>(opt, ws, coll, state);
}

}  // namespace ptycho
