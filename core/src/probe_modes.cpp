#include "ptycho/core/probe_modes.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>

namespace ptycho {

namespace {

using zd = std::complex<double>;

/// Eigen-decomposition of a Hermitian matrix by complex Jacobi rotations:
/// on return `a` is diagonal (the eigenvalues) and the columns of `v` are
/// the eigenvectors. Small n only.
void hermitian_jacobi(std::vector<zd>& a, std::vector<zd>& v, int n) {
  auto A = [&](int r, int c) -> zd& { return a[r * n + c]; };
  auto V = [&](int r, int c) -> zd& { return v[r * n + c]; };
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) V(i, j) = i == j ? 1.0 : 0.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, diag = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) (i == j ? diag : off) += std::norm(A(i, j));
    if (off <= 1e-24 * std::max(diag, 1e-300)) break;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) {
        const zd apq = A(p, q);
        const double mag = std::abs(apq);
        if (mag < 1e-300) continue;
        // A unitary rotation in the (p, q) plane that zeroes A(p, q):
        // first make the element real with a phase, then a real Jacobi rotation.
        const zd phase = apq / mag;
        const double theta = 0.5 * std::atan2(2 * mag, A(q, q).real() - A(p, p).real());
        const double c = std::cos(theta), s = std::sin(theta);
        // U has U(p,p) = c, U(p,q) = s*phase, U(q,p) = -s*conj(phase), U(q,q) = c; A <- U^H A U.
        for (int k = 0; k < n; ++k) {  // columns: A <- A U
          const zd akp = A(k, p), akq = A(k, q);
          A(k, p) = c * akp - s * std::conj(phase) * akq;
          A(k, q) = s * phase * akp + c * akq;
          const zd vkp = V(k, p), vkq = V(k, q);
          V(k, p) = c * vkp - s * std::conj(phase) * vkq;
          V(k, q) = s * phase * vkp + c * vkq;
        }
        for (int k = 0; k < n; ++k) {  // rows: A <- U^H A
          const zd apk = A(p, k), aqk = A(q, k);
          A(p, k) = c * apk - s * phase * aqk;
          A(q, k) = s * std::conj(phase) * apk + c * aqk;
        }
      }
  }
}

double power_of(const HostCView3& modes, int k) {
  double s = 0;
  for (size_t r = 0; r < modes.extent(1); ++r)
    for (size_t c = 0; c < modes.extent(2); ++c) s += std::norm(zd(modes(k, r, c).real(), modes(k, r, c).imag()));
  return s;
}

/// The raw forward DFT of a probe, in double: conj(IDFT(conj(x))).
std::vector<zd> spectrum_of(const HostInverseDft& idft, const HostCView2& probe) {
  const int m = static_cast<int>(probe.extent(0));
  View3<cdouble, HostSpace> plane("ptycho::probe_spectrum", 1, m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) plane(0, r, c) = cdouble(probe(r, c).real(), -probe(r, c).imag());
  idft.execute(plane);
  std::vector<zd> out(size_t(m) * m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) out[size_t(r) * m + c] = zd(plane(0, r, c).real(), -plane(0, r, c).imag());
  return out;
}

}  // namespace

DefocusFit fit_defocus(const HostCView2& nominal_probe, const HostCView2& probe) {
  const int m = static_cast<int>(probe.extent(0));
  PTYCHO_THROW_IF(m < 2 || nominal_probe.extent(0) != size_t(m) || nominal_probe.extent(1) != size_t(m) ||
                      probe.extent(1) != size_t(m),
                  "fit_defocus: the probes are " << nominal_probe.extent(0) << "x" << nominal_probe.extent(1) << " and "
                                                 << probe.extent(0) << "x" << probe.extent(1));
  const HostInverseDft idft(m, m);
  const std::vector<zd> s_nom = spectrum_of(idft, nominal_probe), s_ref = spectrum_of(idft, probe);
  // q^2 M of every bin (q in cycles/px, the bin's true frequency): the
  // propagator's phase is pi dz q^2 M (simulate.hpp, propagate()).
  std::vector<double> q2m(s_nom.size());
  double nom2 = 0, ref2 = 0, q2_mean = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double fr = double(r < m / 2 ? r : r - m) / m, fc = double(c < m / 2 ? c : c - m) / m;
      const size_t i = size_t(r) * m + c;
      q2m[i] = (fr * fr + fc * fc) * m;
      nom2 += std::norm(s_nom[i]);
      ref2 += std::norm(s_ref[i]);
      q2_mean += std::norm(s_nom[i]) * q2m[i];
    }
  DefocusFit fit;
  if (nom2 <= 0 || ref2 <= 0) return fit;
  q2_mean /= nom2;
  // |<s_nom e^{i pi dz q^2 M}, s_ref>|^2: the fit's explained power (the best
  // complex scale taken), to be maximised over dz.
  const auto overlap = [&](double dz) {
    zd s = 0;
    for (size_t i = 0; i < q2m.size(); ++i) s += std::conj(s_nom[i] * std::polar(1.0, M_PI * dz * q2m[i])) * s_ref[i];
    return std::norm(s);
  };
  // A grid fine enough that the phase at the spectrum's mean q^2 moves by
  // 1/4 rad per step, out to 50 rad (far beyond any calibration error), then
  // golden-section search in the best step's neighbourhood.
  const double step = q2_mean > 0 ? 0.25 / (M_PI * q2_mean) : 0.0;
  if (step <= 0) return fit;
  constexpr int kSteps = 200;
  int best = 0;
  double best_value = -1;
  for (int i = -kSteps; i <= kSteps; ++i) {
    const double v = overlap(i * step);
    if (v > best_value) best_value = v, best = i;
  }
  double lo = (best - 1) * step, hi = (best + 1) * step;
  const double g = 0.5 * (std::sqrt(5.0) - 1);
  double a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = overlap(a), fb = overlap(b);
  for (int it = 0; it < 60; ++it) {
    if (fa > fb) {
      hi = b, b = a, fb = fa, a = hi - g * (hi - lo), fa = overlap(a);
    } else {
      lo = a, a = b, fa = fb, b = lo + g * (hi - lo), fb = overlap(b);
    }
  }
  fit.defocus = 0.5 * (lo + hi);
  const double explained = overlap(fit.defocus) / nom2;
  double change = 0;
  for (size_t i = 0; i < q2m.size(); ++i)
    change += std::norm(s_nom[i]) * std::norm(std::polar(1.0, M_PI * fit.defocus * q2m[i]) - 1.0);
  fit.change = std::sqrt(change / nom2);
  fit.residual = std::sqrt(std::max(0.0, ref2 - explained) / ref2);
  return fit;
}

std::vector<double> mode_occupancy(const HostCView3& modes) {
  const int k = static_cast<int>(modes.extent(0));
  std::vector<double> occ(k);
  for (int i = 0; i < k; ++i) occ[i] = power_of(modes, i);
  const double total = std::accumulate(occ.begin(), occ.end(), 0.0);
  for (double& o : occ) o = total > 0 ? o / total : 0;
  return occ;
}

std::vector<double> orthogonalize_modes(const HostCView3& modes) {
  const int k = static_cast<int>(modes.extent(0));
  const long npix = static_cast<long>(modes.extent(1) * modes.extent(2));
  if (k <= 1) return mode_occupancy(modes);
  std::vector<zd> g(k * k), v(k * k);
  const cfloat* base = modes.data();
  for (int a = 0; a < k; ++a)
    for (int b = a; b < k; ++b) {
      zd s = 0;
      for (long i = 0; i < npix; ++i) {
        const cfloat x = base[a * npix + i], y = base[b * npix + i];
        s += std::conj(zd(x.real(), x.imag())) * zd(y.real(), y.imag());
      }
      g[a * k + b] = s;
      g[b * k + a] = std::conj(s);
    }
  hermitian_jacobi(g, v, k);
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return g[x * k + x].real() > g[y * k + y].real(); });
  // Eigenmode i = sum_l V(l, i) P_l; its power is the eigenvalue.
  std::vector<cfloat> out(static_cast<size_t>(k) * npix);
  for (int i = 0; i < k; ++i) {
    const int e = order[i];
    for (long p = 0; p < npix; ++p) {
      zd s = 0;
      for (int l = 0; l < k; ++l) {
        const cfloat x = base[l * npix + p];
        s += v[l * k + e] * zd(x.real(), x.imag());
      }
      out[i * npix + p] = cfloat(float(s.real()), float(s.imag()));
    }
  }
  std::copy(out.begin(), out.end(), modes.data());
  return mode_occupancy(modes);
}

Mismatch estimate_mismatch(const HostCView2& nominal_probe, const HostCView3& modes,
                           const std::vector<Position>& nominal_positions, const std::vector<Position>& positions,
                           double pixel_size_m) {
  Mismatch out;
  const int m = static_cast<int>(modes.extent(1));
  PTYCHO_THROW_IF(nominal_probe.extent(0) != size_t(m), "estimate_mismatch: probe sizes differ");
  // Probe change: the defocus that best maps the nominal probe onto the
  // first mode (fit_defocus), as the change that defocus makes; what no
  // defocus explains is reported beside it.
  HostCView2 first(Kokkos::subview(modes, 0, Kokkos::ALL, Kokkos::ALL));
  const DefocusFit fit = fit_defocus(nominal_probe, first);
  out.probe_error_pct = 100 * fit.change;
  out.probe_residual_pct = 100 * fit.residual;
  out.probe_defocus = fit.defocus;
  // Positions: RMS per axis of the refinement, mean offset removed.
  const size_t n = std::min(nominal_positions.size(), positions.size());
  if (n > 0) {
    double mr = 0, mc = 0;
    for (size_t j = 0; j < n; ++j) {
      mr += (positions[j].row - nominal_positions[j].row) / n;
      mc += (positions[j].col - nominal_positions[j].col) / n;
    }
    double s = 0;
    for (size_t j = 0; j < n; ++j)
      s += std::pow(positions[j].row - nominal_positions[j].row - mr, 2) +
           std::pow(positions[j].col - nominal_positions[j].col - mc, 2);
    out.position_error_nm = std::sqrt(s / (2.0 * n)) * pixel_size_m * 1e9;
  }
  // Partial coherence from the power outside the first mode.
  out.occupancy = mode_occupancy(modes);
  if (modes.extent(0) > 1) {
    double p2 = 0, g2 = 0;  // ||P0||^2 and ||grad P0||^2 (central differences, per axis summed)
    for (int r = 1; r < m - 1; ++r)
      for (int c = 1; c < m - 1; ++c) {
        const auto at = [&](int a, int b) { return zd(modes(0, a, b).real(), modes(0, a, b).imag()); };
        p2 += std::norm(at(r, c));
        g2 += std::norm(0.5 * (at(r + 1, c) - at(r - 1, c))) + std::norm(0.5 * (at(r, c + 1) - at(r, c - 1)));
      }
    const double outside = 1.0 - out.occupancy[0];
    if (g2 > 0 && outside > 0) out.partial_coherence_nm = std::sqrt(outside * p2 / g2) * pixel_size_m * 1e9;
  }
  return out;
}

}  // namespace ptycho
