#include "probe_update.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/kernel_util.hpp"

#include <cmath>
#include <complex>

namespace ptycho {

ProbeUpdate::ProbeUpdate(Workspace& ws, const Collective& coll, const EngineOptions& opt)
    : m_ws(ws),
      m_coll(coll),
      m_regularisation(opt.regularisation),
      m_support("ptycho::probe_update::support", ws.frame_size(), ws.frame_size()),
      m_spectrum("ptycho::probe_update::spectrum", ws.num_modes(), ws.frame_size(), ws.frame_size()),
      m_sums("ptycho::probe_update", ws.num_modes(), ws.frame_size()) {}

void ProbeUpdate::reset() { m_sums.reset(); }

void ProbeUpdate::accumulate(const CView2& object, const CView3& waves, long first, long count,
                             const CView3& scratch) {
  m_ws.accumulate_probe(m_sums, object, waves, first, count, scratch);
}

void ProbeUpdate::apply_fourier_support(const HostCView3& probe) {
  const int kmodes = static_cast<int>(probe.extent(0)), m = static_cast<int>(probe.extent(1));
  PTYCHO_THROW_IF(probe.extent(0) != m_spectrum.extent(0) || probe.extent(1) != m_spectrum.extent(1),
                  "ProbeUpdate: probe of " << kmodes << " modes of " << m << " x " << m << ", expected "
                                           << m_spectrum.extent(0) << " of " << m_spectrum.extent(1));
  const CView3 work = m_spectrum;
  Kokkos::deep_copy(work, probe);
  m_ws.plan().execute(work, FftDirection::forward);
  auto spec = Kokkos::create_mirror_view_and_copy(HostSpace(), work);
  if (!m_support_set) {
    // The support: where the first refined probe's far field holds power
    // (the illuminating pupil), grown by two pixels. Defocus and partial
    // coherence change phases and shifts in real space, not this region.
    m_support_set = true;
    Kokkos::deep_copy(m_support, std::uint8_t(0));
    double mx = 0;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) mx = std::max(mx, double(Kokkos::abs(spec(0, r, c))));
    const double level = 1e-2 * mx;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        if (Kokkos::abs(spec(0, r, c)) < level) continue;
        for (int dr = -2; dr <= 2; ++dr)
          for (int dc = -2; dc <= 2; ++dc) {
            const int rr = r + dr, cc = c + dc;
            if (rr >= 0 && rr < m && cc >= 0 && cc < m) m_support(rr, cc) = 1;
          }
      }
  }
  for (int k = 0; k < kmodes; ++k)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c)
        if (!m_support(r, c)) spec(k, r, c) = cfloat(0, 0);
  Kokkos::deep_copy(work, spec);
  m_ws.plan().execute(work, FftDirection::backward);
  Kokkos::deep_copy(probe, work);
}

void ProbeUpdate::checkpoint(StateArchive& ar) {
  ar.scalar("probe_update/power", m_power);
  std::vector<double> support;
  if (!ar.loading() && m_support_set)
    for (size_t i = 0; i < m_support.size(); ++i) support.push_back(m_support.data()[i]);
  ar.values("probe_update/support", support);
  if (!ar.loading()) return;
  const int m = m_ws.frame_size();
  m_support_set = false;
  Kokkos::deep_copy(m_support, std::uint8_t(0));
  if (support.empty()) return;
  PTYCHO_INPUT_ERROR_IF(support.size() != size_t(m) * m, "checkpoint: probe support of " << support.size()
                                                                                        << " pixels for frames of "
                                                                                        << m << "x" << m);
  m_support_set = true;
  for (size_t i = 0; i < support.size(); ++i) m_support.data()[i] = support[i] != 0;
}

template <class Update>
void ProbeUpdate::finish(ReconState& state, const View3<cdouble, HostSpace>& num, const Update& update) {
  auto probe = Kokkos::create_mirror_view_and_copy(HostSpace(), state.probe);
  const int kmodes = static_cast<int>(probe.extent(0)), m = static_cast<int>(probe.extent(1));
  auto power = [&] {
    double s = 0;
    for (size_t i = 0; i < probe.size(); ++i) s += std::norm(std::complex<double>(probe.data()[i].real(), probe.data()[i].imag()));
    return s;
  };
  // The probe keeps the power it had when refinement began (matched to the
  // counts by the reader): the object-probe scale ambiguity cannot drift.
  if (m_power <= 0) {
    m_power = power();
    apply_fourier_support(probe);  // sets the support from the starting probe
  }
  for (int k = 0; k < kmodes; ++k)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        const cfloat p = probe(k, r, c);
        const cdouble v = update(num(k, r, c), cdouble(p.real(), p.imag()), r, c);
        probe(k, r, c) = cfloat(float(v.real()), float(v.imag()));
      }
  apply_fourier_support(probe);
  const double now = power();
  if (now > 0 && m_power > 0) {
    const float scale = static_cast<float>(std::sqrt(m_power / now));
    for (size_t i = 0; i < probe.size(); ++i) probe.data()[i] *= scale;
  }
  Kokkos::deep_copy(state.probe, probe);
  m_ws.set_probe(state.probe);
}

/// The sums over ranks (host copies) and the largest summed denominator.
double ProbeUpdate::reduce(View3<cdouble, HostSpace>& num, View2<double, HostSpace>& den) {
  m_sums.reduce(m_coll, num, den);
  double dmax = 0;
  for (size_t i = 0; i < den.size(); ++i) dmax = std::max(dmax, den.data()[i]);
  return dmax;
}

void ProbeUpdate::apply(ReconState& state) {
  View3<cdouble, HostSpace> num;
  View2<double, HostSpace> den;
  const double delta = m_regularisation * reduce(num, den);
  finish(state, num,
         [&](const cdouble& n, const cdouble& p, int r, int c) { return (n + p * delta) / (den(r, c) + delta); });
}

void ProbeUpdate::apply_step(ReconState& state, double a) {
  View3<cdouble, HostSpace> num;
  View2<double, HostSpace> den;
  const double dmax = reduce(num, den);
  const double floor = std::max(m_regularisation * dmax, 1e-30);
  finish(state, num, [&](const cdouble& n, const cdouble& p, int r, int c) {
    return p + n / std::max((1 - a) * den(r, c) + a * dmax, floor);
  });
}

}  // namespace ptycho
