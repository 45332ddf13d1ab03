// Maximum-likelihood reconstruction with preconditioned Polak-Ribiere
// conjugate gradients and an exact line search on the cost (Thibault &
// Guizar-Sicairos 2012), Poisson or Gaussian (amplitude) likelihood, with an
// optional Gaussian smoothness prior, an optional total-variation prior and an
// optional proximal pull toward the object the engine starts from (a learned
// guess), weighted per pixel by how little light fell there.
//
// The TV prior, tv * sum over grid edges of sqrt(|O_p - O_q|^2 + eps^2), is
// taken by majorisation-minimisation: each iteration replaces it by the
// quadratic that touches it at the current object (edge weights
// tv / (2 sqrt(|dO|^2 + eps^2)), the same gradient), whose line search is exact
// and whose diagonal joins the preconditioner, so flat regions with large
// weights do not slow the conjugate gradients.
//
// The smoothness and TV weights are relative to the data term's curvature:
// they are multiplied by mean(den), den = sum_j |P~_j|^2 over the lit pixels,
// but never by less than the peak of sum_k |P_k|^2, the curvature one probe
// peak gives. mean(den) over that peak is the scan's coverage (on the
// benchmark tiers about 2 at 68 % linear overlap, 0.26-0.38 at 16-28 %).
// Below a coverage of 1 the data say less about each pixel while the
// prior's own weight stays where it is at 1, so sparse scans lean on the
// prior more (a prior's weight per pixel does not depend on how many frames
// saw the pixel); above 1 nothing changes.
//
// Far fields Psi = DFT(P~ O) of every local frame are kept, and since the
// model is linear in O, Psi(O + a d) = Psi + a DFT(P~ d): each iteration
// costs one inverse transform (the gradient) and one forward transform (the
// direction) per frame and mode, the FFT floor. Psi is recomputed exactly
// every `resync_every` iterations so rounding cannot drift.
//
// The low-memory mode (EngineOptions::low_memory) keeps neither Psi nor dPsi
// per frame: every pass makes them again for its batch, from the object and
// the direction (Psi twice per iteration, dPsi once, and once more for each
// exact slope), so the engine holds one batch of each. That is about twice the
// transforms, and the same iterates up to rounding: Psi is then always exact.
// Where memory allows more (EngineOptions::far_field_budget, which the job
// layer sets when it switches the low-memory mode on by itself), Psi and
// dPsi of the first whole batches are kept as in the default mode, and only
// the other frames' are made again: between the two modes in time and memory.
//
// Probe refinement (refine_probe, after probe_hold iterations) alternates
// with the object step: the gradient pass also sums the probe gradient
// g_k = sum_j unshift_j(conj(O_j) w_jk) and the preconditioner sum_j |O_j|^2
// from the same residual waves; after the object step, the probe moves along
// -g_k / (sum_j |O_j|^2 + delta), by the same exact line search on the cost
// (the model is linear in the probe too: Psi(P + b dP) = Psi + b DFT(dP~ O)).
// That costs, per frame and mode, two transforms for the unshift of the
// gradient, one for the shifted direction, one for its far field and one to
// refresh the shifted probes: about 3.5 times an object-only iteration.
#include "engines.hpp"
#include "position_refine.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/frame_pass.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "ptycho/core/memory.hpp"

#include <cmath>

namespace ptycho {

namespace {

/// ML moves positions every this many iterations (each move recomputes the far fields).
constexpr int kPositionEvery = 4;

/// The TV prior's weight on an edge whose difference is `d`: the curvature of
/// the quadratic that majorises tv sqrt(|d|^2 + eps^2) there (0 without TV).
KOKKOS_INLINE_FUNCTION float tv_edge_weight(const cfloat& d, float tv, float eps2) {
  return tv > 0 ? 0.5f * tv / std::sqrt(d.real() * d.real() + d.imag() * d.imag() + eps2) : 0.0f;
}

/// The row functions below hold the pixel loops of the ML kernels (see
/// sum_frame_rows): (re, im) float pairs, mode k of a row k * plane further
/// on, K modes (0: kmodes_rt), counts y, validity v, I = sum_k |Psi_k|^2 / M^2.
/// With Bg, the model intensity is I + bg (the detector background, see
/// background.hpp); without, `bg` and `model` are not read (they may be null)
/// and the code is that of no background.

/// Prefetches row r + kPrefetchRows of frame j's counts and of its far
/// fields Psi and dPsi (slots s..s+K-1), for the row kernels below
/// (prefetch_row; Write: Psi is written).
template <bool Write, class Frames>
KOKKOS_INLINE_FUNCTION void prefetch_far_field_rows(const Frames& frames, long j, const CView3& psi, const CView3& dpsi,
                                                    long s, int r, int m, int kmodes) {
  if (r + kPrefetchRows >= m) return;
  const long bytes = long(m) * long(sizeof(cfloat));
  prefetch_row(&frames(j, r + kPrefetchRows, 0), long(m) * long(sizeof(float)));
  for (int k = 0; k < kmodes; ++k) {
    prefetch_row<Write>(&psi(s + k, r + kPrefetchRows, 0), bytes);
    prefetch_row(&dpsi(s + k, r + kPrefetchRows, 0), bytes);
  }
}

/// Psi += pending dPsi; w_k = g Psi_k / M^2 with g the derivative of the
/// row's cost with respect to I; returns the row's cost (Poisson deviance / 2,
/// or the squared amplitude error). With Bg, `model` gets I (for the
/// background's refinement).
template <int K, bool Poisson, bool Bg>
KOKKOS_INLINE_FUNCTION float residual_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT v,
                                          const float* PTYCHO_RESTRICT bg, float* PTYCHO_RESTRICT model, cfloat* psi_c,
                                          const cfloat* dpsi_c, cfloat* w_c, int cols, int kmodes_rt, long plane,
                                          float inv_m2, float pending) {
  const int nk = modes<K>(kmodes_rt);
  float* PTYCHO_RESTRICT psi = reinterpret_cast<float*>(psi_c);
  const float* PTYCHO_RESTRICT dpsi = reinterpret_cast<const float*>(dpsi_c);
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const long step = 2 * plane;
  if (pending != 0.0f)
    for (int k = 0; k < nk; ++k)
      for (int i = 0; i < 2 * cols; ++i) psi[k * step + i] += pending * dpsi[k * step + i];
  float e = 0;
  for (int c = 0; c < cols; ++c) {
    float inten = 0;
    for (int k = 0; k < nk; ++k) {
      const float pr = psi[k * step + 2 * c], pi = psi[k * step + 2 * c + 1];
      inten += pr * pr + pi * pi;
    }
    if (Bg) model[c] = inten * inv_m2;
    const float ii = std::max(Bg ? inten * inv_m2 + bg[c] : inten * inv_m2, kIntensityFloor);
    const float yc = y[c] > 0 ? y[c] : 0.0f;
    const bool ok = v[c] > 0;
    float g, term;
    if (Poisson) {
      g = 1.0f - yc / ii;
      term = ii - yc + (yc > 0 ? yc * log_positive(yc / ii) : 0.0f);
    } else {
      const float a = std::sqrt(ii), sy = std::sqrt(yc);
      g = 1.0f - sy / a;
      term = (a - sy) * (a - sy);
    }
    g = ok ? g * inv_m2 : 0.0f;
    e += ok ? term : 0.0f;
    for (int k = 0; k < nk; ++k) {
      w[k * step + 2 * c] = psi[k * step + 2 * c] * g;
      w[k * step + 2 * c + 1] = psi[k * step + 2 * c + 1] * g;
    }
  }
  return e;
}

/// The row's terms of the quartic cost along the line, I(a) = I0 + a I1 + a^2 I2
/// (Thibault & Guizar-Sicairos 2012): slope, the three higher coefficients,
/// and the Fisher curvature (see line_search_and_step).
template <int K, bool Poisson, bool Bg>
KOKKOS_INLINE_FUNCTION Sums<5> line_poly_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT v,
                                             const float* PTYCHO_RESTRICT bg, const cfloat* psi_c, const cfloat* dpsi_c,
                                             int cols, int kmodes_rt, long plane, float inv_m2) {
  const int nk = modes<K>(kmodes_rt);
  const float* PTYCHO_RESTRICT psi = reinterpret_cast<const float*>(psi_c);
  const float* PTYCHO_RESTRICT dpsi = reinterpret_cast<const float*>(dpsi_c);
  const long step = 2 * plane;
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (int c = 0; c < cols; ++c) {
    float a0 = 0, a1 = 0, a2 = 0;  // I(a) = (a0 + a a1 + a^2 a2) / M^2
    for (int k = 0; k < nk; ++k) {
      const long i = k * step + 2 * c;
      const float pr = psi[i], pi = psi[i + 1], dr = dpsi[i], di = dpsi[i + 1];
      a0 += pr * pr + pi * pi;
      a1 += 2 * (pr * dr + pi * di);
      a2 += dr * dr + di * di;
    }
    const float I0 = std::max(Bg ? a0 * inv_m2 + bg[c] : a0 * inv_m2, kIntensityFloor);
    const float I1 = a1 * inv_m2, I2 = a2 * inv_m2;
    const float yc = y[c] > 0 ? y[c] : 0.0f;
    const float vc = v[c] > 0 ? 1.0f : 0.0f;
    if (Poisson) {
      const float w = vc * yc / (I0 * I0);
      const float lin = vc * (1 - yc / I0);
      s0 += I1 * lin;
      s1 += I2 * lin + 0.5f * w * I1 * I1;
      s2 += w * I1 * I2;
      s3 += 0.5f * w * I2 * I2;
      s4 += vc * 0.5f * I1 * I1 / I0;  // the curvature expected for y = I (Fisher)
    } else {
      const float g = std::sqrt(yc / I0), lin = vc * (1 - g);
      s0 += I1 * lin;
      s1 += I2 * lin + vc * 0.25f * g * I1 * I1 / I0;
      s2 += vc * 0.5f * g * I1 * I2 / I0;
      s3 += vc * 0.25f * g * I2 * I2 / I0;
      s4 += vc * 0.25f * I1 * I1 / I0;
    }
  }
  Sums<5> out;
  out.v[0] = s0;
  out.v[1] = s1;
  out.v[2] = s2;
  out.v[3] = s3;
  out.v[4] = s4;
  return out;
}

/// The row's exact slope of the data cost at step a along dPsi.
template <int K, bool Poisson, bool Bg>
KOKKOS_INLINE_FUNCTION float line_slope_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT v,
                                            const float* PTYCHO_RESTRICT bg, const cfloat* psi_c, const cfloat* dpsi_c,
                                            int cols, int kmodes_rt, long plane, float inv_m2, float a) {
  const int nk = modes<K>(kmodes_rt);
  const float* PTYCHO_RESTRICT psi = reinterpret_cast<const float*>(psi_c);
  const float* PTYCHO_RESTRICT dpsi = reinterpret_cast<const float*>(dpsi_c);
  const long step = 2 * plane;
  float sacc = 0;
  for (int c = 0; c < cols; ++c) {
    float i0 = 0, i1 = 0;
    for (int k = 0; k < nk; ++k) {
      const long i = k * step + 2 * c;
      const float dr = dpsi[i], di = dpsi[i + 1];
      const float pr = psi[i] + a * dr, pi = psi[i + 1] + a * di;
      i0 += pr * pr + pi * pi;
      i1 += 2 * (pr * dr + pi * di);
    }
    const float I = std::max(Bg ? i0 * inv_m2 + bg[c] : i0 * inv_m2, kIntensityFloor), dI = i1 * inv_m2;
    const float yc = y[c] > 0 ? y[c] : 0.0f;
    const float t = (Poisson ? 1 - yc / I : 1 - std::sqrt(yc / I)) * dI;
    sacc += v[c] > 0 ? t : 0.0f;
  }
  return sacc;
}

class MlEngine final : public Engine {
 public:
  MlEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll, ReconState& state)
      : m_opt(opt),
        m_ws(ws),
        m_coll(coll),
        m_positions(ws, coll, opt, state),
        m_background(opt.background, ws.scan(), ws.batch(), state) {
    const auto& scan = ws.scan();
    const int m = scan.frame_size, k = ws.num_modes();
    const long n = scan.num_local();
    const long rows = scan.extent.rows, cols = scan.extent.cols;
    // Frames whose far fields are kept, and slots for one batch of the others.
    m_kept = opt.low_memory ? ml_kept_far_fields(n, m, k, ws.batch(), opt.far_field_budget) : n;
    const long slots = m_kept + std::min<long>(n - m_kept, ws.batch());
    m_psi = CView3("ptycho::ml::psi", slots * k, m, m);
    m_dpsi = CView3("ptycho::ml::dpsi", slots * k, m, m);
    m_work = CView3("ptycho::ml::work", std::size_t(ws.batch()) * k, m, m);
    m_grad = View2<cdouble>("ptycho::ml::grad", rows, cols);
    m_grad_old = View2<cfloat>("ptycho::ml::grad_old", rows, cols);
    m_h_old = View2<cfloat>("ptycho::ml::h_old", rows, cols);
    m_dir = View2<cfloat>("ptycho::ml::dir", rows, cols);
    m_precond = View2<float>("ptycho::ml::precond", rows, cols);
    m_illumination = View2<double>("ptycho::ml::den", rows, cols);
    m_owned = local_rect(scan.owned, scan.extent);
    if (opt.proximal > 0) {
      // The anchor: the object this engine starts from (a learned guess).
      m_anchor = CView2("ptycho::ml::anchor", rows, cols);
      Kokkos::deep_copy(m_anchor, state.object);
      m_anchor_weight = View2<float>("ptycho::ml::anchor_weight", rows, cols);
    }
    if (opt.refine_probe) {
      m_probe_sums = ProbeSums("ptycho::ml::probe_gradient", k, m);
      m_scratch = CView3("ptycho::ml::scratch", std::size_t(ws.batch()) * k, m, m);
      m_probe_dir = CView3("ptycho::ml::probe_direction", k, m, m);
      m_probe_dir_spectrum = CView3("ptycho::ml::probe_direction_spectrum", k, m, m);
    }
    m_positions.use_background(m_background.values());
    const auto propagator = make_propagator(ws);
    m_gradient_pass = FramePass(ws, propagator, WaveStore::per_batch(m_work), &m_background);
    m_line_pass = FramePass(ws, propagator, WaveStore::per_frame_then_batch(m_dpsi, m_kept), nullptr);
    prepare_preconditioner(state);
    resync(state);
  }

  std::string name() const override { return "ml"; }

  /// Psi is not saved: the restored engine made it from the restored object
  /// (as every `resync_every` iterations), so no step is pending.
  void checkpoint(StateArchive& ar) override {
    ar.scalar("iteration", m_iter);
    ar.scalar("restart", m_restart);
    ar.object_field("direction", m_dir);
    ar.object_field("gradient_old", m_grad_old);
    ar.object_field("preconditioned_old", m_h_old);
    if (m_anchor.size() > 0) ar.object_field("proximal_anchor", m_anchor);
    m_positions.checkpoint(ar);
  }

  double iterate(ReconState& state) override {
    if (m_iter > 0 && m_opt.resync_every > 0 && m_iter % m_opt.resync_every == 0) resync(state);
    // Positions move every few iterations, from this iteration's gradient
    // waves; the far fields are then recomputed and the CG direction restarts.
    bool positions_now = m_opt.refine_positions && m_iter >= m_opt.position_hold &&
                         (m_iter - m_opt.position_hold) % kPositionEvery == 0 && state.position_verdict >= 0;
    if (positions_now && m_opt.position_gate > 0 && state.position_verdict == 0) {
      // The position gate: if it moved the positions, the far fields follow
      // them (if not, they are back where Psi was made, and Psi stands).
      positions_now = gate_positions(m_positions, m_ws, state, m_opt);
      if (positions_now) {
        resync(state);
        m_restart = true;
      }
    }
    if (positions_now) {
      m_positions.reset();
      m_positions.accumulate(state, 0, m_ws.scan().num_local());
    }
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    // The background moves from this iteration's model intensities (taken in
    // the gradient pass), after the object step: alternating refinement.
    m_background.reset();  // (the background's calls do nothing without one)
    const double cost = gradient(state, probe_now);
    direction(state);
    line_search_and_step(state);
    if (probe_now) probe_step(state);
    m_background.update(m_coll);
    if (positions_now) {
      m_positions.apply(state);
      m_ws.set_probe(state.probe);
      resync(state);
      m_restart = true;
    }
    ++m_iter;
    return cost;
  }

 private:
  /// Sum_k |P~_k|^2 over frames, summed over ranks: the diagonal
  /// preconditioner, and the priors' weights (see the top).
  void prepare_preconditioner(const ReconState& state) {
    const auto& scan = m_ws.scan();
    const auto den = m_illumination;
    Kokkos::deep_copy(den, 0.0);
    m_ws.accumulate_illumination(den, 0, scan.num_local());
    m_coll.scatter_sum(den);
    double dsum = 0, dcount = 0;
    const Rect o = m_owned;
    const double dmax = owned_max(den, o, m_coll);
    Sums<2> s;
    Kokkos::parallel_reduce(
        "ptycho::ml::den_mean", rect_policy(o),
        KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
          if (den(r, c) > 1e-3 * dmax) {
            acc.v[0] += den(r, c);
            acc.v[1] += 1;
          }
        },
        Kokkos::Sum<Sums<2>>(s));
    double sums[2] = {s.v[0], s.v[1]};
    m_coll.sum(sums, 2);
    dsum = sums[0];
    dcount = std::max(1.0, sums[1]);
    m_den_mean = dsum / dcount;
    m_prior_scale = std::max(m_den_mean, probe_intensity_peak(state.probe));
    const float delta = static_cast<float>(m_opt.regularisation * dmax);
    m_delta = delta;
    const auto pre = m_precond;
    Kokkos::parallel_for(
        "ptycho::ml::precond", rect_policy(o), KOKKOS_LAMBDA(long r, long c) { pre(r, c) = 1.0f / (den(r, c) + delta); });
    // The smoothness and TV weights are relative to the data term's curvature,
    // mean(den), or that of one probe peak where the coverage is below 1 (see the top).
    m_mu = m_opt.smoothness * m_prior_scale;
    m_tv = m_opt.tv * m_prior_scale;
    // So is the proximal weight; per pixel it is 1 / (1 + den / mean(den)):
    // full where little light fell, a tenth where ten times the mean did.
    m_prox = m_opt.proximal * m_den_mean;
    if (m_prox > 0) {
      const auto w = m_anchor_weight;
      const double dm = m_den_mean;
      Kokkos::parallel_for(
          "ptycho::ml::anchor_weight", rect_policy(o),
          KOKKOS_LAMBDA(long r, long c) { w(r, c) = static_cast<float>(1.0 / (1.0 + den(r, c) / dm)); });
    }
  }

  /// Psi = DFT(P~ O) for every local frame.
  void resync(ReconState& state) {
    m_pending_step = 0;  // Psi is recomputed from the object, which has every step
    if (m_kept == 0) return;  // (the frames not kept: each pass makes its batch's Psi)
    const CView3 psi = far_field_slots(m_psi, 0, m_kept);
    m_ws.exit_waves(state.object, 0, m_kept, psi);
    m_gradient_pass.propagator().forward(psi);
  }

  /// Gradient of the cost with respect to conj(O) into m_grad (owned pixels
  /// valid after the halo sum); returns the cost per valid pixel.
  double gradient(ReconState& state, bool probe_now) {
    const auto& scan = m_ws.scan();
    const int kmodes = m_ws.num_modes();
    const bool poisson = m_opt.likelihood == Likelihood::poisson;
    const float pending = m_pending_step;
    m_pending_step = 0;
    const auto grad = m_grad;
    Kokkos::deep_copy(grad, cdouble(0, 0));
    View2<double> none;
    if (probe_now) {
      m_probe_sums.reset();
    }
    // The far fields are kept (Psi): the residual kernel reads them (low
    // memory: the batch's, made first).
    const double cost = m_gradient_pass.run(
        FrameRange{0, scan.num_local()}, KeptFarFields{},
        [&](long first, long count, const CView3& w) {
          // Psi of a frame not kept is made from the moved object: nothing pending.
          const float a = first < m_kept ? pending : 0.0f;
          if (first >= m_kept) batch_far_fields(state.object, first, count);
          return dispatch_modes(kmodes, [&](auto kc) {
            constexpr int K = decltype(kc)::value;
            if (m_background.enabled())
              return poisson ? residual<K, true, true>(first, count, w, a)
                             : residual<K, false, true>(first, count, w, a);
            return poisson ? residual<K, true, false>(first, count, w, a)
                           : residual<K, false, false>(first, count, w, a);
          });
        },
        [&](long first, long count, const CView3& w) {
          m_ws.accumulate_object(grad, none, w, first, count, false);
          if (probe_now) m_ws.accumulate_probe(m_probe_sums, state.object, w, first, count, m_scratch);
        });
    m_coll.scatter_sum(grad);
    double reg_cost = 0;
    if (m_mu > 0 || m_tv > 0) reg_cost = add_smoothness_gradient(state);
    if (m_prox > 0) reg_cost += add_proximal_gradient(state);
    double c[2] = {cost, reg_cost};
    m_coll.sum(c, 2);
    return (c[0] + c[1]) / std::max(1.0, m_ws.valid_pixels());
  }

  /// Adds the gradient of the edge priors on owned pixels (the halo of O is
  /// in sync): mu * sum over grid edges |O_p - O_q|^2, and the TV prior
  /// tv * sum sqrt(|O_p - O_q|^2 + eps^2); returns this rank's prior cost
  /// (edges to the right and below of owned pixels).
  double add_smoothness_gradient(ReconState& state) {
    const auto obj = state.object;
    const auto grad = m_grad;
    const float mu = static_cast<float>(m_mu), tv = static_cast<float>(m_tv);
    const float eps = static_cast<float>(m_opt.tv_epsilon), eps2 = eps * eps;
    const auto& scan = m_ws.scan();
    const long er0 = scan.extent.row0, ec0 = scan.extent.col0, rows = scan.extent.rows, cols = scan.extent.cols;
    const long H = scan.object_rows, W = scan.object_cols;
    Sums<2> s;
    Kokkos::parallel_reduce(
        "ptycho::ml::edge_priors", rect_policy(m_owned),
        KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
          const cfloat o = obj(r, c);
          cfloat g(0, 0), gtv(0, 0);  // sum of d over edges; of the TV weight times d
          auto edge = [&](const cfloat& d, bool counted) {
            g += d;
            gtv += d * tv_edge_weight(d, tv, eps2);
            if (!counted) return;
            const double d2 = double(d.real()) * d.real() + double(d.imag()) * d.imag();
            acc.v[0] += d2;
            if (tv > 0) acc.v[1] += std::sqrt(d2 + eps2) - eps;
          };
          const long gr = er0 + r, gc = ec0 + c;
          if (gr > 0 && r > 0) edge(o - obj(r - 1, c), false);
          if (gc > 0 && c > 0) edge(o - obj(r, c - 1), false);
          if (gr + 1 < H && r + 1 < rows) edge(o - obj(r + 1, c), true);
          if (gc + 1 < W && c + 1 < cols) edge(o - obj(r, c + 1), true);
          // d/dconj(O) of mu |d|^2 is mu d per edge; of tv sqrt(|d|^2 + eps^2), the TV weight times d
          grad(r, c) += cdouble(g.real() * mu + gtv.real(), g.imag() * mu + gtv.imag());
        },
        Kokkos::Sum<Sums<2>>(s));
    return m_mu * s.v[0] + m_tv * s.v[1];
  }

  /// Adds the gradient of prox * sum w |O - anchor|^2 on owned pixels;
  /// returns this rank's cost of it.
  double add_proximal_gradient(ReconState& state) {
    const auto obj = state.object, anchor = m_anchor;
    const auto w = m_anchor_weight;
    const auto grad = m_grad;
    const float prox = static_cast<float>(m_prox);
    double cost = 0;
    Kokkos::parallel_reduce(
        "ptycho::ml::proximal", rect_policy(m_owned),
        KOKKOS_LAMBDA(long r, long c, double& acc) {
          const cfloat d = obj(r, c) - anchor(r, c);
          const float pw = prox * w(r, c);
          acc += double(pw) * (double(d.real()) * d.real() + double(d.imag()) * d.imag());
          grad(r, c) += cdouble(d.real() * pw, d.imag() * pw);
        },
        cost);
    return cost;
  }

  /// Preconditioned Polak-Ribiere direction on owned pixels, then the halo.
  void direction(ReconState& state) {
    if (m_tv > 0) add_tv_to_preconditioner(state);
    const auto grad = m_grad;
    const auto gold = m_grad_old, hold = m_h_old, dir = m_dir;
    const auto pre = m_precond;
    Sums<2> s;
    Kokkos::parallel_reduce(
        "ptycho::ml::beta_terms", rect_policy(m_owned),
        KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
          const cfloat g(float(grad(r, c).real()), float(grad(r, c).imag()));
          const cfloat h = g * pre(r, c);
          const cfloat dh = h - hold(r, c);
          acc.v[0] += double(g.real()) * dh.real() + double(g.imag()) * dh.imag();
          acc.v[1] += double(gold(r, c).real()) * hold(r, c).real() + double(gold(r, c).imag()) * hold(r, c).imag();
        },
        Kokkos::Sum<Sums<2>>(s));
    double t[2] = {s.v[0], s.v[1]};
    m_coll.sum(t, 2);
    double beta = (m_iter == 0 || t[1] <= 0) ? 0.0 : std::max(0.0, t[0] / t[1]);
    if (m_restart) {
      beta = 0;
      m_restart = false;
    }
    const float b = static_cast<float>(beta);
    Kokkos::parallel_for(
        "ptycho::ml::direction", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
          const cfloat g(float(grad(r, c).real()), float(grad(r, c).imag()));
          const cfloat h = g * pre(r, c);
          dir(r, c) = -h + dir(r, c) * b;
          gold(r, c) = g;
          hold(r, c) = h;
        });
    m_coll.gather(dir);
  }

  /// The preconditioner 1 / (sum_k |P~_k|^2 + delta + the TV quadratic's
  /// diagonal, the sum of the pixel's four edge weights at the current object).
  void add_tv_to_preconditioner(ReconState& state) {
    const auto obj = state.object;
    const auto den = m_illumination;
    const auto pre = m_precond;
    const float tv = static_cast<float>(m_tv), eps = static_cast<float>(m_opt.tv_epsilon), eps2 = eps * eps;
    const double delta = m_delta;
    const auto& scan = m_ws.scan();
    const long er0 = scan.extent.row0, ec0 = scan.extent.col0, rows = scan.extent.rows, cols = scan.extent.cols;
    const long H = scan.object_rows, W = scan.object_cols;
    Kokkos::parallel_for(
        "ptycho::ml::tv_precond", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
          const cfloat o = obj(r, c);
          const long gr = er0 + r, gc = ec0 + c;
          double w = 0;
          if (gr > 0 && r > 0) w += tv_edge_weight(o - obj(r - 1, c), tv, eps2);
          if (gc > 0 && c > 0) w += tv_edge_weight(o - obj(r, c - 1), tv, eps2);
          if (gr + 1 < H && r + 1 < rows) w += tv_edge_weight(o - obj(r + 1, c), tv, eps2);
          if (gc + 1 < W && c + 1 < cols) w += tv_edge_weight(o - obj(r, c + 1), tv, eps2);
          pre(r, c) = static_cast<float>(1.0 / (den(r, c) + delta + w));
        });
  }

  /// Exact 1-D minimisation of the cost along the direction (a few Newton
  /// steps on the exact cost; each is one pass and one global sum), then the update.
  void line_search_and_step(ReconState& state) {
    const auto& scan = m_ws.scan();
    const long n = scan.num_local();
    // The priors are quadratic in alpha: E + 2 a e0 + a^2 e1 (weights included).
    double e[2] = {0, 0};
    if (m_mu > 0 || m_tv > 0 || m_prox > 0) prior_line_terms(state, e);
    // One pass: the cost along the line as a quartic in alpha, from the
    // expansion of log I (Poisson) or sqrt(I) (Gaussian) to second order in
    // the change of I (Thibault & Guizar-Sicairos 2012). Its linear term is
    // the exact slope at 0.
    // The direction's far fields, batch by batch, each summed into the
    // quartic while it is still in cache.
    const auto direction_waves = [&](long first, long count, const CView3& d) {
      m_ws.exit_waves(m_dir, first, count, d);
    };
    const Sums<5> q = m_line_pass.run(
        FrameRange{0, n}, direction_waves,
        [&](long first, long count, const CView3&) {
          if (first >= m_kept) batch_far_fields(state.object, first, count);
          return line_terms(first, count);
        },
        MeasureOnly{});
    double c[5] = {q.v[0], q.v[1], q.v[2], q.v[3], q.v[4]};
    m_coll.sum(c, 5);
    c[0] += 2 * e[0];
    c[1] += e[1];
    c[4] += e[1];
    // The exact slope at a (one pass and one global sum).
    auto slope = [&](double alpha_at) {
      double d1 = exact_slope(state.object, n, static_cast<float>(alpha_at), direction_waves);
      m_coll.sum(&d1, 1);
      return d1 + 2 * (e[0] + alpha_at * e[1]);
    };
    double alpha = minimise_line(c, slope);
    if (!(alpha > 0)) m_restart = true;  // not a descent direction: restart with steepest descent
    const float a = static_cast<float>(alpha);
    const auto obj = state.object, dir = m_dir;
    Kokkos::parallel_for(
        "ptycho::ml::step_object", Policy2({0, 0}, {long(obj.extent(0)), long(obj.extent(1))}),
        KOKKOS_LAMBDA(long r, long c) { obj(r, c) += dir(r, c) * a; });
    // Psi moves by a dPsi in the next residual pass (one pass fewer; the
    // frames not kept: that pass makes Psi from the moved object).
    m_pending_step = m_kept > 0 ? a : 0.0f;
    ExecSpace().fence();
  }

  /// The step along the line with cost coefficients `c` (slope, the quartic's
  /// higher terms, Fisher curvature) and exact slope `slope(a)`; 0 if the line
  /// does not descend.
  template <class Slope>
  double minimise_line(const double* c, const Slope& slope) const {
    // Minimise the quartic (Newton from the quadratic's minimum), then one
    // secant step on the exact slope. No data-dependent branch count: alpha
    // depends smoothly on the data, so runs on different rank counts agree.
    const double d1_0 = c[0];
    double alpha = 0;
    if (d1_0 < 0 && c[4] > 0 && std::isfinite(d1_0)) {
      // Far from the solution the quartic need not be convex: start from the
      // Fisher-scoring step, and follow the quartic only while it is convex.
      double aq = -c[0] / (2 * std::max(c[1], c[4]));
      for (int it = 0; it < 20; ++it) {
        const double g1 = c[0] + 2 * c[1] * aq + 3 * c[2] * aq * aq + 4 * c[3] * aq * aq * aq;
        const double g2 = 2 * c[1] + 6 * c[2] * aq + 12 * c[3] * aq * aq;
        if (!(g2 > 0)) break;
        aq = std::max(0.5 * aq, aq - g1 / g2);
      }
      alpha = aq;
      // The exact slope corrects the quartic early on, where steps are large,
      // and every tenth iteration after (a fixed schedule: rank-invariant).
      if (m_iter < 10 || m_iter % 10 == 0) {
        const double d1_q = slope(aq);
        const double secant = (d1_q < d1_0 || !std::isfinite(d1_q)) ? aq : aq * d1_0 / (d1_0 - d1_q);
        alpha = std::clamp(secant, 0.25 * aq, 4.0 * aq);
      }
    }
    if (!(alpha > 0) || !std::isfinite(alpha)) alpha = 0;
    return alpha;
  }

  /// The probe step (see the top of the file), after the object step: the
  /// pending object step goes into Psi, the preconditioned probe gradient's
  /// far fields into dPsi, and the probe moves by the exact line search's
  /// step along it (Psi follows in the next residual pass).
  void probe_step(ReconState& state) {
    const auto& scan = m_ws.scan();
    const long n = scan.num_local();
    const int kmodes = m_ws.num_modes(), m = scan.frame_size;
    apply_pending();
    // The direction, identical on every rank: -g_k / (sum_j |O_j|^2 + delta).
    View3<cdouble, HostSpace> g;
    View2<double, HostSpace> den;
    m_probe_sums.reduce(m_coll, g, den);
    double dmax = 0;
    for (size_t i = 0; i < den.size(); ++i) dmax = std::max(dmax, den.data()[i]);
    const double delta = std::max(m_opt.regularisation * dmax, 1e-30);
    const auto dprobe = m_probe_dir;
    auto dp = Kokkos::create_mirror_view(dprobe);
    for (int k = 0; k < kmodes; ++k)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) {
          const cdouble v = -g(k, r, c) / (den(r, c) + delta);
          dp(k, r, c) = cfloat(float(v.real()), float(v.imag()));
        }
    Kokkos::deep_copy(dprobe, dp);
    // Its far fields DFT(dP~_j O_j) per frame, and the cost along the line.
    const auto spectrum = m_probe_dir_spectrum;
    Kokkos::deep_copy(spectrum, dprobe);
    m_ws.plan().execute(spectrum, FftDirection::forward, Centring::none);  // (the DFT that shifts, not propagation)
    const auto direction_waves = [&](long first, long count, const CView3& d) {
      m_ws.shifted_modes(spectrum, first, count, m_scratch);
      m_ws.product_waves(state.object, m_scratch, first, count, d);
    };
    const Sums<5> q = m_line_pass.run(
        FrameRange{0, n}, direction_waves,
        [&](long first, long count, const CView3&) {
          if (first >= m_kept) batch_far_fields(state.object, first, count);
          return line_terms(first, count);
        },
        MeasureOnly{});
    double c[5] = {q.v[0], q.v[1], q.v[2], q.v[3], q.v[4]};
    m_coll.sum(c, 5);
    auto slope = [&](double at) {
      double d1 = exact_slope(state.object, n, static_cast<float>(at), direction_waves);
      m_coll.sum(&d1, 1);
      return d1;
    };
    const double beta = minimise_line(c, slope);
    if (!(beta > 0)) return;
    const float b = static_cast<float>(beta);
    const auto probe = state.probe;
    Kokkos::parallel_for(
        "ptycho::ml::step_probe", Policy3({0, 0, 0}, {kmodes, m, m}),
        KOKKOS_LAMBDA(int k, int r, int c) { probe(k, r, c) += dprobe(k, r, c) * b; });
    m_pending_step = m_kept > 0 ? b : 0.0f;  // Psi += b dPsi in the next residual pass (kept frames)
    m_ws.set_probe(state.probe);
    // The object's preconditioner sum_j |P~_j|^2 follows the probe.
    prepare_preconditioner(state);
  }

  /// The quartic's terms of frames first..first+count (Psi, dPsi stored), for
  /// this engine's likelihood, modes and background.
  Sums<5> line_terms(long first, long count) {
    const bool poisson = m_opt.likelihood == Likelihood::poisson, bg = m_background.enabled();
    return dispatch_modes(m_ws.num_modes(), [&](auto kc) {
      constexpr int K = decltype(kc)::value;
      if (bg) return poisson ? line_poly<K, true, true>(first, count) : line_poly<K, false, true>(first, count);
      return poisson ? line_poly<K, true, false>(first, count) : line_poly<K, false, false>(first, count);
    });
  }

  /// This rank's exact slope of the data cost at step a along dPsi, the far
  /// fields of the exit waves `direction_waves` (first, count, waves) writes.
  /// The frames not kept: a pass that makes Psi (from `object`) and dPsi batch by batch.
  template <class DirectionWaves>
  double exact_slope(const CView2& object, long n, float a, const DirectionWaves& direction_waves) {
    double sum = m_kept > 0 ? slope_terms(0, m_kept, a) : 0.0;
    for (long first = m_kept; first < n; first += m_ws.batch()) {
      const long count = std::min<long>(m_ws.batch(), n - first);
      batch_far_fields(object, first, count);
      const CView3 d = far_field_slots(m_dpsi, first, count);
      direction_waves(first, count, d);
      m_line_pass.propagator().forward(d);
      sum += slope_terms(first, count, a);
    }
    return sum;
  }

  /// The exact slope's terms over frames first..first+count.
  double slope_terms(long first, long count, float a) {
    const bool poisson = m_opt.likelihood == Likelihood::poisson, bg = m_background.enabled();
    return dispatch_modes(m_ws.num_modes(), [&](auto kc) {
      constexpr int K = decltype(kc)::value;
      if (bg)
        return poisson ? line_slope<K, true, true>(first, count, a) : line_slope<K, false, true>(first, count, a);
      return poisson ? line_slope<K, true, false>(first, count, a) : line_slope<K, false, false>(first, count, a);
    });
  }

  /// A frame not kept: Psi = DFT(P~ O) of frames first..first+count into the batch's slots.
  void batch_far_fields(const CView2& object, long first, long count) {
    const CView3 psi = far_field_slots(m_psi, first, count);
    m_ws.exit_waves(object, first, count, psi);
    m_gradient_pass.propagator().forward(psi);
  }

  /// The slots of frames first..first+count in Psi or dPsi (`buffer`): their
  /// own below m_kept, the one batch's after it.
  CView3 far_field_slots(const CView3& buffer, long first, long count) const {
    return WaveStore::per_frame_then_batch(buffer, m_kept).slots(0, first, count, m_ws.num_modes());
  }

  /// Psi += pending dPsi now (one pass), so that dPsi is free.
  void apply_pending() {
    if (m_pending_step == 0.0f) return;
    const auto psi = m_psi, dpsi = m_dpsi;
    const float a = m_pending_step;
    Kokkos::parallel_for(
        "ptycho::ml::apply_pending",
        Policy3({0, 0, 0}, {m_kept * m_ws.num_modes(), long(psi.extent(1)), long(psi.extent(2))}),
        KOKKOS_LAMBDA(long f, int r, int c) { psi(f, r, c) += dpsi(f, r, c) * a; });
    m_pending_step = 0;
  }

  /// The residual of frames first..first+count into `w` (the gradient's
  /// far fields, scaled for the inverse DFT), after Psi += pending dPsi;
  /// returns their cost. K: modes (dispatch_modes).
  template <int K, bool Poisson, bool Bg>
  double residual(long first, long count, const CView3& w, float pending) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const long plane = long(m) * m;
    const auto frames = m_ws.scan().frames;
    const auto valid = m_ws.scan().valid;
    const CView3 psi = far_field_slots(m_psi, first, count), dpsi = far_field_slots(m_dpsi, first, count);
    const auto bg = m_background.values();
    const auto model = m_background.model();
    return sum_frame_rows<double>(
        "ptycho::ml::residual", count, m, KOKKOS_LAMBDA(long b, int r) {
          const long j = first + b, s = b * kmodes;
          prefetch_far_field_rows<true>(frames, j, psi, dpsi, s, r, m, kmodes);
          return double(residual_row<K, Poisson, Bg>(&frames(j, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr,
                                                     Bg ? &model(b, r, 0) : nullptr, &psi(s, r, 0), &dpsi(s, r, 0),
                                                     &w(b * kmodes, r, 0), m, kmodes, plane, inv_m2, pending));
        });
  }

  /// The quartic's terms over frames first..first+count (Psi, dPsi stored).
  template <int K, bool Poisson, bool Bg>
  Sums<5> line_poly(long first, long count) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const long plane = long(m) * m;
    const auto frames = m_ws.scan().frames;
    const auto valid = m_ws.scan().valid;
    const CView3 psi = far_field_slots(m_psi, first, count), dpsi = far_field_slots(m_dpsi, first, count);
    const auto bg = m_background.values();
    return sum_frame_rows<Sums<5>>(
        "ptycho::ml::line_poly", count, m, KOKKOS_LAMBDA(long b, int r) {
          const long j = first + b, s = b * kmodes;
          prefetch_far_field_rows<false>(frames, j, psi, dpsi, s, r, m, kmodes);
          return line_poly_row<K, Poisson, Bg>(&frames(j, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr, &psi(s, r, 0),
                                               &dpsi(s, r, 0), m, kmodes, plane, inv_m2);
        });
  }

  /// The exact slope's terms at step a along dPsi over frames first..first+count.
  template <int K, bool Poisson, bool Bg>
  double line_slope(long first, long count, float a) {
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const long plane = long(m) * m;
    const auto frames = m_ws.scan().frames;
    const auto valid = m_ws.scan().valid;
    const CView3 psi = far_field_slots(m_psi, first, count), dpsi = far_field_slots(m_dpsi, first, count);
    const auto bg = m_background.values();
    return sum_frame_rows<double>(
        "ptycho::ml::line_slope", count, m, KOKKOS_LAMBDA(long b, int r) {
          const long j = first + b, s = b * kmodes;
          prefetch_far_field_rows<false>(frames, j, psi, dpsi, s, r, m, kmodes);
          return double(line_slope_row<K, Poisson, Bg>(&frames(j, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr,
                                                       &psi(s, r, 0), &dpsi(s, r, 0), m, kmodes, plane, inv_m2, a));
        });
  }

  /// Inner products of the prior along the direction: e[0] = sum Re<dO, dd>,
  /// e[1] = sum |dd|^2 over edges (dO, dd: edge differences of O and d),
  /// weighted by mu plus the TV weight at the current object (the quadratic
  /// that majorises TV), plus the proximal terms.
  void prior_line_terms(ReconState& state, double* e) {
    const auto obj = state.object, dir = m_dir, anchor = m_anchor;
    const auto w = m_anchor_weight;
    const double mu = m_mu, prox = m_prox;
    const float tv = static_cast<float>(m_tv), eps = static_cast<float>(m_opt.tv_epsilon), eps2 = eps * eps;
    const auto& scan = m_ws.scan();
    const long er0 = scan.extent.row0, ec0 = scan.extent.col0, rows = scan.extent.rows, cols = scan.extent.cols;
    const long H = scan.object_rows, W = scan.object_cols;
    Sums<2> s;
    Kokkos::parallel_reduce(
        "ptycho::ml::prior_line", rect_policy(m_owned),
        KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
          const long gr = er0 + r, gc = ec0 + c;
          auto edge = [&](long r2, long c2) {
            const cfloat dO = obj(r, c) - obj(r2, c2);
            const cfloat dd = dir(r, c) - dir(r2, c2);
            const double we = mu + tv_edge_weight(dO, tv, eps2);
            acc.v[0] += we * (double(dO.real()) * dd.real() + double(dO.imag()) * dd.imag());
            acc.v[1] += we * (double(dd.real()) * dd.real() + double(dd.imag()) * dd.imag());
          };
          if (mu > 0 || tv > 0) {
            if (gr + 1 < H && r + 1 < rows) edge(r + 1, c);
            if (gc + 1 < W && c + 1 < cols) edge(r, c + 1);
          }
          if (prox > 0) {
            const cfloat dO = obj(r, c) - anchor(r, c);
            const cfloat dd = dir(r, c);
            const double pw = prox * w(r, c);
            acc.v[0] += pw * (double(dO.real()) * dd.real() + double(dO.imag()) * dd.imag());
            acc.v[1] += pw * (double(dd.real()) * dd.real() + double(dd.imag()) * dd.imag());
          }
        },
        Kokkos::Sum<Sums<2>>(s));
    e[0] = s.v[0];
    e[1] = s.v[1];
    m_coll.sum(e, 2);
  }

  EngineOptions m_opt;
  Workspace& m_ws;
  const Collective& m_coll;
  PositionRefiner m_positions;
  Background m_background;
  /// The gradient: residual waves from the kept far fields, then the object
  /// gradient and probe sums; the background's model intensities.
  FramePass m_gradient_pass;
  /// A line search: the far fields of a direction into dPsi, summed into the
  /// quartic along the line.
  FramePass m_line_pass;
  /// Psi and dPsi: (n K, M, M), or in the low-memory mode ((m_kept + batch) K, M, M).
  CView3 m_psi, m_dpsi, m_work;
  /// The first m_kept local frames keep Psi and dPsi (all n by default; in the
  /// low-memory mode the whole batches that EngineOptions::far_field_budget
  /// holds); the others' are made batch by batch.
  long m_kept = 0;
  View2<cdouble> m_grad;
  View2<cfloat> m_grad_old, m_h_old, m_dir;
  View2<float> m_precond;
  View2<double> m_illumination;  ///< sum_k |P~_k|^2 over frames and ranks, for the preconditioner
  Rect m_owned;
  double m_den_mean = 0;
  double m_prior_scale = 0;  ///< max(mean(den), the probe's peak sum_k |P_k|^2): the priors' unit
  double m_mu = 0;
  double m_tv = 0;           ///< TV weight (relative weight times m_prior_scale)
  double m_delta = 0;        ///< the preconditioner's damping
  double m_prox = 0;         ///< proximal weight (times the per-pixel weights)
  CView2 m_anchor;           ///< the object the engine started from (proximal > 0 only)
  View2<float> m_anchor_weight;  ///< 1 / (1 + den / mean(den)) on owned pixels
  long m_iter = 0;
  bool m_restart = false;
  float m_pending_step = 0;  ///< Psi += this * dPsi, not yet applied
  // Probe refinement (allocated only with refine_probe):
  /// The gradient of the cost with respect to conj(P_k), (K, M, M), and
  /// sum_j |O_j|^2 (unshifted frame coordinates), as probe-update sums.
  ProbeSums m_probe_sums;
  CView3 m_scratch;             ///< (batch * K, M, M) work space of the probe-space sums
  CView3 m_probe_dir;           ///< (K, M, M) the probe's step direction
  CView3 m_probe_dir_spectrum;  ///< (K, M, M) its raw DFT
};

}  // namespace

std::unique_ptr<Engine> make_ml_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                       ReconState& state) {
  return std::make_unique<MlEngine>(opt, ws, coll, state);
}

}  // namespace ptycho
