#include "probe_update.hpp"

#include "ptycho/core/kernel_util.hpp"

namespace ptycho {

ProbeUpdate::ProbeUpdate(Workspace& ws, const Collective& coll, const EngineOptions& opt)
    : m_ws(ws),
      m_coll(coll),
      m_regularisation(opt.regularisation),
      m_num("ptycho::probe_update::num", ws.num_modes(), ws.frame_size(), ws.frame_size()),
      m_den("ptycho::probe_update::den", ws.frame_size(), ws.frame_size()) {}

void ProbeUpdate::reset() {
  Kokkos::deep_copy(m_num, cdouble(0, 0));
  Kokkos::deep_copy(m_den, 0.0);
}

void ProbeUpdate::accumulate(const CView2& object, const CView3& waves, long first, long count,
                             const CView3& scratch) {
  m_ws.accumulate_probe(m_num, m_den, object, waves, first, count, scratch);
}

void ProbeUpdate::apply(ReconState& state) {
  auto num = Kokkos::create_mirror_view_and_copy(HostSpace(), m_num);
  auto den = Kokkos::create_mirror_view_and_copy(HostSpace(), m_den);
  m_coll.sum(reinterpret_cast<double*>(num.data()), 2 * num.size());
  m_coll.sum(den.data(), den.size());
  double dmax = 0;
  for (size_t i = 0; i < den.size(); ++i) dmax = std::max(dmax, den.data()[i]);
  const double delta = m_regularisation * dmax;
  auto probe = Kokkos::create_mirror_view_and_copy(HostSpace(), state.probe);
  const int kmodes = static_cast<int>(probe.extent(0)), m = static_cast<int>(probe.extent(1));
  for (int k = 0; k < kmodes; ++k)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        const cfloat p = probe(k, r, c);
        const cdouble v = (num(k, r, c) + cdouble(p.real(), p.imag()) * delta) / (den(r, c) + delta);
        probe(k, r, c) = cfloat(float(v.real()), float(v.imag()));
      }
  Kokkos::deep_copy(state.probe, probe);
  m_ws.set_probe(state.probe);
}

}  // namespace ptycho
