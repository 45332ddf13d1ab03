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
//
// Psi is kept as complex64, or in the low-memory mode (EngineOptions::
// low_memory) as complex halves (half.hpp) of Psi / M, the unitary far field,
// whose modulus is the square root of counts and so fits the half's range:
// half the bytes, at a relative rounding error of at most 2^-11 per update.
#include "ptycho/core/half.hpp"
#include "engines.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/frame_pass.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "position_refine.hpp"
#include "probe_update.hpp"

#include <cmath>

namespace ptycho {

namespace {

/// One row of the DM/RAAR Fourier-space update, for every mode (mode k of the
/// row lies k * plane further on in `psi` and `w`):
///   next = b (Psi + P_F(2 Phi - Psi) - Phi) + (1 - b) P_F(Phi)   (DM: b = 1),
/// Psi <- next, w <- next / M^2. Returns the row's amplitude cost.
/// With Bg, the detector background `bg` is part of the model (see
/// background.hpp): the modulus factor sqrt(y / I) becomes sqrt(y / (I + bg)),
/// the cost compares sqrt(I + bg) with sqrt(y), and `model` gets I = |Phi|^2;
/// without, neither pointer is read.
/// Written on (re, im) float pairs through restrict pointers, without
/// `omp simd`: GCC then vectorises it (complex temporaries, or the simd
/// privatisation of `omp simd`, keep it scalar).
///
/// Psi is stored as `Store`: float (re, im) pairs, or packed halves
/// (std::uint32_t) of Psi / m (load_wave and store_wave of half.hpp; `m` is M).
template <int K, bool Bg, class Store>
KOKKOS_INLINE_FUNCTION float fourier_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT valid,
                                         const float* PTYCHO_RESTRICT bg, float* PTYCHO_RESTRICT model,
                                         Store* PTYCHO_RESTRICT psi, cfloat* w_c, int cols, int kmodes_rt, long plane,
                                         float inv_m2, float beta, float m) {
  const int nk = modes<K>(kmodes_rt);
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const long step = 2 * plane;
  const float inv_m = 1.0f / m;
  float e2 = 0;
  for (int c = 0; c < cols; ++c) {
    float iz = 0, iphi = 0;
    for (int k = 0; k < nk; ++k) {
      const float pr = w[k * step + 2 * c], pi = w[k * step + 2 * c + 1];
      float sr, si;
      load_wave(psi, k * plane + c, m, sr, si);
      const float zr = 2 * pr - sr, zi = 2 * pi - si;
      iz += zr * zr + zi * zi;
      iphi += pr * pr + pi * pi;
    }
    iz *= inv_m2;
    iphi *= inv_m2;
    const bool ok = valid[c] > 0;
    const float sy = std::sqrt(y[c] > 0 ? y[c] : 0.0f);
    if (Bg) model[c] = iphi;
    const float tz = Bg ? iz + bg[c] : iz, tphi = Bg ? iphi + bg[c] : iphi;  // model intensities
    const float fz = ok ? sy / std::sqrt(tz > kIntensityFloor ? tz : kIntensityFloor) : 1.0f;
    const float fphi = ok ? sy / std::sqrt(tphi > kIntensityFloor ? tphi : kIntensityFloor) : 1.0f;
    const float e = std::sqrt(tphi) - sy;
    e2 += ok ? e * e : 0.0f;
    const float cz = fz * beta, cold = beta - cz, cphi = 2.0f * cz - beta + fphi * (1.0f - beta);
    for (int k = 0; k < nk; ++k) {
      const long i = k * step + 2 * c;
      float sr, si;
      load_wave(psi, k * plane + c, m, sr, si);
      const float nr = sr * cold + w[i] * cphi, ni = si * cold + w[i + 1] * cphi;
      store_wave(psi, k * plane + c, inv_m, nr, ni);
      w[i] = nr * inv_m2;  // the IDFT after completes the unitary pair
      w[i + 1] = ni * inv_m2;
    }
  }
  return e2;
}

class ProjectionEngine final : public Engine {
 public:
  ProjectionEngine(const EngineOptions& opt, Workspace& ws, const Collective& coll, ReconState& state)
      : m_opt(opt),
        m_ws(ws),
        m_coll(coll),
        m_probe_update(ws, coll, opt),
        m_positions(ws, coll, opt, state),
        m_background(opt.background, ws.scan(), ws.batch(), state) {
    const auto& scan = ws.scan();
    const int m = scan.frame_size, k = ws.num_modes();
    const long n = scan.num_local();
    m_raar = opt.name == "raar";
    PTYCHO_INPUT_ERROR_IF(m_raar && !(opt.beta > 0 && opt.beta <= 1), "raar: beta must be in (0, 1], got " << opt.beta);
    m_compact = opt.low_memory;
    if (m_compact)
      m_psi_half = HalfCView3("ptycho::dm::psi_half", n * k, m, m);
    else
      m_psi = CView3("ptycho::dm::psi", n * k, m, m);
    m_work = CView3("ptycho::dm::work", std::size_t(ws.batch()) * k, m, m);
    m_scratch = CView3("ptycho::dm::scratch", std::size_t(ws.batch()) * k, m, m);
    m_num = View2<cdouble>("ptycho::dm::num", scan.extent.rows, scan.extent.cols);
    m_den = View2<double>("ptycho::dm::den", scan.extent.rows, scan.extent.cols);
    m_owned = local_rect(scan.owned, scan.extent);
    m_positions.use_background(m_background.values());
    m_pass = FramePass(ws, make_propagator(ws), WaveStore::per_batch(m_work), &m_background);
    if (n > 0 && !m_compact) {
      m_ws.exit_waves(state.object, 0, n, m_psi);
      m_pass.propagator().forward(m_psi);
    }
    if (m_compact) start_compact(state);
  }

  std::string name() const override { return m_raar ? "raar" : "dm"; }

  void checkpoint(StateArchive& ar) override {
    ar.scalar("iteration", m_iter);
    // Psi as kept: complex64, or packed halves (low memory). A checkpoint of
    // the other kind cannot be resumed by this engine.
    const char* name = m_compact ? "psi_half" : "psi";
    PTYCHO_INPUT_ERROR_IF(ar.loading() && !ar.contains(name),
                          "checkpoint: its " << this->name() << " state was saved "
                                             << (m_compact ? "without" : "with")
                                             << " the low-memory mode; resume with the same low_memory setting");
    if (m_compact)
      ar.frame_field(name, m_psi_half);
    else
      ar.frame_field(name, m_psi);
    m_probe_update.checkpoint(ar);
    m_positions.checkpoint(ar);
  }

  double iterate(ReconState& state) override {
    const auto& scan = m_ws.scan();
    const int kmodes = m_ws.num_modes();
    const bool probe_now = m_opt.refine_probe && m_iter >= m_opt.probe_hold;
    // The position gate, before anything reads the workspace's probes (it may move the positions).
    bool positions_now = m_opt.refine_positions && m_iter >= m_opt.position_hold && state.position_verdict >= 0;
    if (positions_now && m_opt.position_gate > 0) positions_now = gate_positions(m_positions, m_ws, state, m_opt);
    Kokkos::deep_copy(m_num, cdouble(0, 0));
    // The illumination sum_j |P~_j|^2 changes only with the probe or the positions.
    const bool den_now = m_den_version != m_ws.probe_version();
    if (den_now) Kokkos::deep_copy(m_den, 0.0);
    if (probe_now) m_probe_update.reset();
    if (positions_now) m_positions.reset();
    m_background.reset();  // (the background's calls do nothing without one)
    const double cost = m_pass.run(
        FrameRange{0, scan.num_local()}, ExitWaves{state.object},
        [&](long first, long count, const CView3& w) {
          return dispatch_modes(kmodes, [&](auto kc) {
            constexpr int K = decltype(kc)::value;
            if (m_compact)
              return m_background.enabled() ? fourier_update<K, true>(first, count, w, m_psi_half)
                                            : fourier_update<K, false>(first, count, w, m_psi_half);
            return m_background.enabled() ? fourier_update<K, true>(first, count, w, m_psi)
                                          : fourier_update<K, false>(first, count, w, m_psi);
          });
        },
        [&](long first, long count, const CView3& w) {
          m_ws.accumulate_object(m_num, m_den, w, first, count, den_now);
          if (probe_now) m_probe_update.accumulate(state.object, w, first, count, m_scratch);
        });
    if (positions_now) m_positions.accumulate(state, 0, scan.num_local());
    update_object(state, den_now);
    if (positions_now) m_positions.apply(state);
    if (probe_now) m_probe_update.apply(state);  // also refreshes the shifted probes
    else if (positions_now) m_ws.set_probe(state.probe);
    m_background.update(m_coll);
    ++m_iter;
    double c = cost;
    m_coll.sum(&c, 1);
    return c / std::max(1.0, m_ws.valid_pixels());
  }

 private:
  /// The Fourier-space update of frames first..first+count, whose Phi are in
  /// `w`: Psi moves, and `w` receives the new exit waves' far fields (scaled
  /// for the inverse DFT). Returns the frames' amplitude cost. K: mode count
  /// (dispatch_modes).
  template <int K, bool Bg, class PsiView>
  double fourier_update(long first, long count, const CView3& w, const PsiView& psi) {
    const auto& scan = m_ws.scan();
    const int m = scan.frame_size, kmodes_rt = m_ws.num_modes();
    const float inv_m2 = 1.0f / (float(m) * m);
    // DM is RAAR with beta = 1: next = b (Psi + P_F(2 Phi - Psi) - Phi) + (1 - b) P_F(Phi).
    const float beta = m_raar ? static_cast<float>(m_opt.beta) : 1.0f;
    const auto frames = scan.frames;
    const auto valid = scan.valid;
    const float mf = static_cast<float>(m);
    const auto bg = m_background.values();
    const auto model = m_background.model();
    const long plane = long(m) * m;
    double part = 0;
    Kokkos::parallel_reduce(
        "ptycho::dm::fourier_update", frame_policy(count),
        KOKKOS_LAMBDA(const FrameMember& team, double& acc) {
          const long b = team.league_rank(), j = first + b;
          const int kmodes = modes<K>(kmodes_rt);
          double frame = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, m),
              [&](int r, double& racc) {
                if (r + kPrefetchRows < m) {
                  prefetch_row(&frames(j, r + kPrefetchRows, 0), long(m) * long(sizeof(float)));
                  for (int k = 0; k < kmodes; ++k)
                    prefetch_row<true>(wave_row(psi, j * kmodes + k, r + kPrefetchRows),
                                       long(m) * long(sizeof(typename PsiView::value_type)));
                }
                racc += fourier_row<K, Bg>(&frames(j, r, 0), &valid(r, 0), Bg ? &bg(r, 0) : nullptr,
                                           Bg ? &model(b, r, 0) : nullptr, wave_row(psi, j * kmodes, r),
                                           &w(b * kmodes, r, 0), m, kmodes, plane, inv_m2, beta, mf);
              },
              frame);
          Kokkos::single(Kokkos::PerTeam(team), [&] { acc += frame; });
        },
        part);
    return part;
  }

  /// Low memory: Psi = DFT(P~ O) for every local frame, batch by batch,
  /// packed as halves of Psi / M.
  void start_compact(const ReconState& state) {
    const long n = m_ws.scan().num_local();
    const int kmodes = m_ws.num_modes(), m = m_ws.frame_size();
    const float inv_m = 1.0f / float(m);
    const auto psi = m_psi_half;
    for (long first = 0; first < n; first += m_ws.batch()) {
      const long count = std::min<long>(m_ws.batch(), n - first);
      const CView3 w = m_pass.waves().slots(first, first, count, kmodes);
      m_ws.exit_waves(state.object, first, count, w);
      m_pass.propagator().forward(w);
      const long s0 = first * kmodes;
      Kokkos::parallel_for(
          "ptycho::dm::pack_far_fields", Policy3({0, 0, 0}, {count * kmodes, long(m), long(m)}),
          KOKKOS_LAMBDA(long s, long r, long c) {
            psi(s0 + s, r, c) = pack_half(w(s, r, c).real() * inv_m, w(s, r, c).imag() * inv_m);
          });
    }
    ExecSpace().fence();
  }

  /// O <- (num + delta O) / (den + delta) on owned pixels, then the halo.
  void update_object(ReconState& state, bool den_now) {
    m_coll.scatter_sum(m_num);
    if (den_now) {
      m_coll.scatter_sum(m_den);
      m_den_max = owned_max(m_den, m_owned, m_coll);
      m_den_version = m_ws.probe_version();
    }
    const auto num = m_num;
    const auto den = m_den;
    const double delta = m_opt.regularisation * m_den_max;
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
  Background m_background;
  FramePass m_pass;  ///< exit waves, Fourier update, object and probe sums
  bool m_raar = false;
  bool m_compact = false;  ///< low memory: Psi as packed halves (m_psi_half), not complex64 (m_psi)
  CView3 m_psi, m_work, m_scratch;
  HalfCView3 m_psi_half;
  View2<cdouble> m_num;
  View2<double> m_den;
  Rect m_owned;
  long m_iter = 0;
  long m_den_version = -1;  ///< the probe_version m_den was summed for
  double m_den_max = 0;
};

}  // namespace

std::unique_ptr<Engine> make_dm_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                       ReconState& state) {
  return std::make_unique<ProjectionEngine>(opt, ws, coll, state);
}

}  // namespace ptycho
