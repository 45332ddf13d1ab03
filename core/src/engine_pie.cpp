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
// denominator summed).
#include "engines.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "probe_update.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace ptycho {

namespace {

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
    m_weight = View2<double>("ptycho::pie::weight", scan.extent.rows, scan.extent.cols);
    m_owned = local_rect(scan.owned, scan.extent);
    if (opt.name == "sdr") {
      m_exit = CView3("ptycho::sdr::exit", std::size_t(scan.num_local()) * k, m, m);
      if (scan.num_local() > 0) ws.exit_waves(state.object, 0, scan.num_local(), m_exit);
    }
    if (opt.name == "mpie") m_velocity = CView2("ptycho::pie::velocity", scan.extent.rows, scan.extent.cols);
    m_order.resize(scan.num_local());
    std::iota(m_order.begin(), m_order.end(), 0L);
  }

  std::string name() const override { return m_opt.name; }

  /// The visiting order is drawn afresh each iteration from (seed, rank,
  /// iteration), so the counter is the whole random state.
  void checkpoint(StateArchive& ar) override {
    ar.scalar("iteration", m_iter);
    if (m_velocity.size()) ar.object_field("velocity", m_velocity);
    if (m_exit.size()) ar.frame_field("exit_waves", m_exit);
    m_probe_update.checkpoint(ar);
  }

  double iterate(ReconState& state) override {
    const auto& scan = m_ws.scan();
    const int m = scan.frame_size, kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const auto frames = scan.frames;
    const auto valid = scan.valid;
    const auto obj = state.object;
    const auto probes = m_ws.probes();
    const auto row = m_ws.patch_row(), col = m_ws.patch_col();
    const auto w = m_work;
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    if (probe_now) m_probe_update.reset();
    Kokkos::deep_copy(m_start, obj);
    Kokkos::deep_copy(m_weight, 0.0);
    const auto weight = m_weight;

    // Step denominators: ePIE divides by max |P|^2, rPIE/mPIE blend in the local |P|^2.
    const double pmax = probe_power_max(state);
    const bool epie = m_opt.name == "epie";
    const float a = static_cast<float>(epie ? 1.0 : m_opt.rpie_alpha);
    const float step = static_cast<float>(m_opt.object_step);
    const float pm = static_cast<float>(pmax);
    const bool sdr = m_opt.name == "sdr";
    const float sigma = static_cast<float>(m_opt.sigma), tau = static_cast<float>(m_opt.tau);
    const float sdr_a = static_cast<float>(m_opt.sdr_step);
    const auto exit = m_exit;
    // The detector background (background.hpp): the sample's share of the
    // measured amplitude is sqrt(y I / (I + b)); each frame's model intensity
    // is kept for the background's refinement.
    const bool use_bg = m_background.enabled();
    m_background.reset();  // (the background's calls do nothing without one)
    const auto bg = m_background.values();
    const auto model = m_background.model();

    // A fresh order each iteration, from (seed, rank, iteration) alone: a
    // resumed run draws the same orders.
    std::iota(m_order.begin(), m_order.end(), 0L);
    std::mt19937_64 rng(m_opt.seed + 7919u * unsigned(m_coll.rank()) + 104729u * unsigned(m_iter));
    std::shuffle(m_order.begin(), m_order.end(), rng);
    double cost = 0;
    for (long j : m_order) {
      m_ws.exit_waves(obj, j, 1, w);
      if (sdr)
        Kokkos::parallel_for(
            "ptycho::sdr::reflect", Policy3({0, 0, 0}, {kmodes, m, m}), KOKKOS_LAMBDA(int k, int r, int c) {
              w(k, r, c) = w(k, r, c) * (1.0f + sigma) - exit(j * kmodes + k, r, c) * sigma;
            });
      m_ws.plan().execute(w, FftDirection::forward, Centring::none);
      double part = 0;
      Kokkos::parallel_reduce(
          "ptycho::pie::modulus", Policy2({0, 0}, {m, m}),
          KOKKOS_LAMBDA(long r, long c, double& acc) {
            float inten = 0;
            for (int k = 0; k < kmodes; ++k) {
              const cfloat v = w(k, r, c);
              inten += v.real() * v.real() + v.imag() * v.imag();
            }
            inten *= inv_m2;
            float f = inv_m2;
            const float b = use_bg ? bg(r, c) : 0.0f;
            if (use_bg) model(0, r, c) = inten;
            if (valid(r, c) > 0) {
              const float y = frames(j, r, c) > 0 ? frames(j, r, c) : 0.0f;
              const float sy = std::sqrt(y);
              const float amp = std::sqrt(inten);
              const float sy_sample =
                  use_bg ? amp * sy / std::sqrt(inten + b > kIntensityFloor ? inten + b : kIntensityFloor) : sy;
              const float target = sdr ? tau * sy_sample + (1.0f - tau) * amp : sy_sample;
              f = inv_m2 * target / std::sqrt(inten > kIntensityFloor ? inten : kIntensityFloor);
              const float model_amp = use_bg ? std::sqrt(inten + b) : amp;
              acc += double(model_amp - sy) * double(model_amp - sy);
            }
            for (int k = 0; k < kmodes; ++k) w(k, r, c) *= f;
          },
          part);
      cost += part;
      m_background.accumulate(j, 1);
      m_ws.plan().execute(w, FftDirection::backward, Centring::none);
      Kokkos::parallel_for(
          "ptycho::pie::object", Policy2({0, 0}, {m, m}), KOKKOS_LAMBDA(long r, long c) {
            const int rr = row(j) + r, cc = col(j) + c;
            const cfloat o = obj(rr, cc);
            cfloat num(0, 0);
            float p2 = 0;
            for (int k = 0; k < kmodes; ++k) {
              const cfloat p = probes(j * kmodes + k, r, c);
              const cfloat phi = p * o;
              if (sdr) {
                // psi <- P_F(f) + sigma (psi - P O); the object moves towards psi.
                const cfloat psi = w(k, r, c) + (exit(j * kmodes + k, r, c) - phi) * sigma;
                exit(j * kmodes + k, r, c) = psi;
                w(k, r, c) = psi;
              }
              num += Kokkos::conj(p) * (w(k, r, c) - phi);
              w(k, r, c) -= phi;  // the correction, for the probe step
              p2 += p.real() * p.real() + p.imag() * p.imag();
            }
            const float den = sdr ? (1.0f - sdr_a) * pm + sdr_a * p2 : (1.0f - a) * p2 + a * pm;
            obj(rr, cc) = o + num * (step / den);
            weight(rr, cc) += p2;
          });
      if (probe_now) m_probe_update.accumulate(obj, w, j, 1, m_scratch);
    }
    combine_ranks(state);
    if (probe_now) m_probe_update.apply_step(state, epie ? 1.0 : sdr ? 1.0 - m_opt.sdr_step : m_opt.rpie_alpha);
    m_background.update(m_coll);
    ++m_iter;
    double c = cost;
    m_coll.sum(&c, 1);
    return c / std::max(1.0, m_ws.valid_pixels());
  }

 private:
  double probe_power_max(const ReconState& state) const {
    const auto probe = state.probe;
    const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
    double mx = 0;
    Kokkos::parallel_reduce(
        "ptycho::pie::probe_max", Policy2({0, 0}, {m, m}),
        KOKKOS_LAMBDA(long r, long c, double& acc) {
          double s = 0;
          for (int k = 0; k < kmodes; ++k) s += Kokkos::abs(probe(k, r, c)) * Kokkos::abs(probe(k, r, c));
          acc = s > acc ? s : acc;
        },
        Kokkos::Max<double>(mx));
    return mx;
  }

  /// Owned pixels := start + the ranks' changes combined, then halos. ePIE's
  /// steps are gradient steps normalised by max |P|^2, additive over
  /// positions, so the changes add up. rPIE, mPIE and sDR steps are nearly
  /// local projections (normalised by the local |P|^2): their sum would
  /// overshoot where several ranks corrected the same pixels, so they take
  /// the mean weighted by each rank's illumination. mPIE adds its momentum.
  void combine_ranks(ReconState& state) {
    const auto obj = state.object, start = m_start;
    const auto change = m_change;
    const auto weight = m_weight;
    if (m_opt.name == "epie") Kokkos::deep_copy(weight, 1.0);  // changes enter unweighted
    Kokkos::parallel_for(
        "ptycho::pie::change", Policy2({0, 0}, {long(obj.extent(0)), long(obj.extent(1))}),
        KOKKOS_LAMBDA(long r, long c) {
          const cfloat d = obj(r, c) - start(r, c);
          change(r, c) = cdouble(d.real(), d.imag()) * weight(r, c);
        });
    m_coll.scatter_sum(change);
    m_coll.scatter_sum(weight);
    const bool mpie = m_velocity.size() > 0;
    const bool additive = m_opt.name == "epie";
    const auto vel = m_velocity;
    const float eta = static_cast<float>(m_opt.momentum);
    Kokkos::parallel_for(
        "ptycho::pie::apply_change", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
          const cdouble mean = additive ? change(r, c)
                               : weight(r, c) > 0 ? change(r, c) / weight(r, c) : cdouble(0, 0);
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
  CView3 m_work, m_scratch;
  CView2 m_start, m_velocity;
  View2<cdouble> m_change;  ///< weighted object change of the pass
  View2<double> m_weight;   ///< illumination sum_j |P_j|^2 of this rank's positions in the pass
  CView3 m_exit;  ///< sDR: exit wave per frame and mode (signed, real space)
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
