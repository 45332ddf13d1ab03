// Projection engines on stored far fields: difference map (Thibault et al.
// 2009) and RAAR (Luke 2005).
//
// With Phi = DFT(P~ O) the far field of the current overlap projection and
// Psi the stored far fields, one iteration is, per frame and mode,
//   DM:   Psi <- Psi + P_F(2 Phi - Psi) - Phi
//   RAAR: Psi <- beta (Psi + P_F(2 Phi - Psi) - Phi) + (1 - beta) P_F(Phi)
// where P_F replaces the modulus by the measured one on valid pixels. Since
// the DFT is linear, the combination happens in Fourier space: one forward
// transform (Phi) and one inverse (the new exit waves for the object and
// probe updates) per frame and mode.
#include "engines.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "position_refine.hpp"
#include "probe_update.hpp"

#include <cmath>

namespace ptycho {

namespace {

class ProjectionEngine final : public Engine {
 public:
  ProjectionEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll, ReconState& state)
      : m_opt(opt), m_ws(ws), m_coll(coll), m_probe_update(ws, coll, opt), m_positions(ws, coll, opt, state) {
    const auto& scan = ws.scan();
    const int m = scan.frame_size, k = ws.num_modes();
    const long n = scan.num_local();
    m_raar = opt.name == "raar";
    PTYCHO_INPUT_ERROR_IF(m_raar && !(opt.beta > 0 && opt.beta <= 1), "raar: beta must be in (0, 1], got " << opt.beta);
    m_psi = CView3("ptycho::dm::psi", n * k, m, m);
    m_work = CView3("ptycho::dm::work", std::size_t(ws.batch()) * k, m, m);
    m_scratch = CView3("ptycho::dm::scratch", std::size_t(ws.batch()) * k, m, m);
    m_num = View2<cdouble>("ptycho::dm::num", scan.extent.rows, scan.extent.cols);
    m_den = View2<double>("ptycho::dm::den", scan.extent.rows, scan.extent.cols);
    m_owned = local_rect(scan.owned, scan.extent);
    if (n > 0) {
      m_ws.exit_waves(state.object, 0, n, m_psi);
      m_ws.plan().execute(m_psi, FftDirection::forward, Centring::none);
    }
  }

  std::string name() const override { return m_raar ? "raar" : "dm"; }

  double iterate(ReconState& state) override {
    const auto& scan = m_ws.scan();
    const int m = scan.frame_size, kmodes = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    const bool raar = m_raar;
    const float beta = static_cast<float>(m_opt.beta);
    const auto frames = scan.frames;
    const auto valid = scan.valid;
    const auto psi = m_psi;
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    Kokkos::deep_copy(m_num, cdouble(0, 0));
    Kokkos::deep_copy(m_den, 0.0);
    if (probe_now) m_probe_update.reset();
    const bool positions_now = m_opt.refine_positions && m_iter >= m_opt.position_hold;
    if (positions_now) m_positions.reset();
    double cost = 0;
    for (long first = 0; first < scan.num_local(); first += m_ws.batch()) {
      const long count = std::min<long>(m_ws.batch(), scan.num_local() - first);
      auto w = Kokkos::subview(m_work, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
      m_ws.exit_waves(state.object, first, count, w);
      m_ws.plan().execute(w, FftDirection::forward, Centring::none);
      double part = 0;
      Kokkos::parallel_reduce(
          "ptycho::dm::fourier_update", frame_policy(count),
          KOKKOS_LAMBDA(const FrameMember& team, double& acc) {
            const long b = team.league_rank(), j = first + b;
            double frame = 0;
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(team, m),
                [&](int r, double& racc) {
                  const float* yrow = &frames(j, r, 0);
                  const float* vrow = &valid(r, 0);
                  float e2 = 0;
                  PTYCHO_SIMD_REDUCE(e2)
                  for (int c = 0; c < m; ++c) {
                    float iz = 0, iphi = 0;
                    for (int k = 0; k < kmodes; ++k) {
                      const cfloat phi = w(b * kmodes + k, r, c);
                      const cfloat z = phi * 2.0f - psi(j * kmodes + k, r, c);
                      iz += z.real() * z.real() + z.imag() * z.imag();
                      iphi += phi.real() * phi.real() + phi.imag() * phi.imag();
                    }
                    iz *= inv_m2;
                    iphi *= inv_m2;
                    const bool ok = vrow[c] > 0;
                    const float sy = std::sqrt(yrow[c] > 0 ? yrow[c] : 0.0f);
                    const float fz = ok ? sy / std::sqrt(iz > kIntensityFloor ? iz : kIntensityFloor) : 1.0f;
                    const float fphi = ok ? sy / std::sqrt(iphi > kIntensityFloor ? iphi : kIntensityFloor) : 1.0f;
                    const float e = std::sqrt(iphi) - sy;
                    e2 += ok ? e * e : 0.0f;
                    for (int k = 0; k < kmodes; ++k) {
                      const long jk = j * kmodes + k;
                      const cfloat phi = w(b * kmodes + k, r, c);
                      const cfloat old = psi(jk, r, c);
                      const cfloat pz = (phi * 2.0f - old) * fz;
                      cfloat next = old + pz - phi;
                      if (raar) next = next * beta + phi * (fphi * (1.0f - beta));
                      psi(jk, r, c) = next;
                      w(b * kmodes + k, r, c) = next * inv_m2;  // the IDFT below completes the unitary pair
                    }
                  }
                  racc += e2;
                },
                frame);
            Kokkos::single(Kokkos::PerTeam(team), [&] { acc += frame; });
          },
          part);
      cost += part;
      m_ws.plan().execute(w, FftDirection::backward, Centring::none);
      m_ws.accumulate_object(m_num, m_den, w, first, count);
      if (probe_now) m_probe_update.accumulate(state.object, w, first, count, m_scratch);
    }
    if (positions_now) m_positions.accumulate(state.object, 0, scan.num_local());
    update_object(state);
    if (positions_now) m_positions.apply(state);
    if (probe_now) m_probe_update.apply(state);  // also refreshes the shifted probes
    else if (positions_now) m_ws.set_probe(state.probe);
    ++m_iter;
    double c = cost;
    m_coll.sum(&c, 1);
    return c / std::max(1.0, m_ws.valid_pixels());
  }

 private:
  /// O <- (num + delta O) / (den + delta) on owned pixels, then the halo.
  void update_object(ReconState& state) {
    m_coll.scatter_sum(m_num);
    m_coll.scatter_sum(m_den);
    const auto num = m_num;
    const auto den = m_den;
    const double dmax = owned_max(den, m_owned, m_coll);
    const double delta = m_opt.regularisation * dmax;
    const auto obj = state.object;
    Kokkos::parallel_for(
        "ptycho::dm::object", rect_policy(m_owned), KOKKOS_LAMBDA(long r, long c) {
          const cdouble o(obj(r, c).real(), obj(r, c).imag());
          const cdouble v = (num(r, c) + o * delta) / (den(r, c) + delta);
          obj(r, c) = cfloat(float(v.real()), float(v.imag()));
        });
    m_coll.gather(obj);
  }

  EngineOptions m_opt;
  Workspace& m_ws;
  const Collective& m_coll;
  ProbeUpdate m_probe_update;
  PositionRefiner m_positions;
  bool m_raar = false;
  CView3 m_psi, m_work, m_scratch;
  View2<cdouble> m_num;
  View2<double> m_den;
  Rect m_owned;
  long m_iter = 0;
};

}  // namespace

std::unique_ptr<Engine> make_dm_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                       ReconState& state) {
  return std::make_unique<ProjectionEngine>(opt, ws, coll, state);
}

}  // namespace ptycho
