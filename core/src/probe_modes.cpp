#include "ptycho/core/probe_modes.hpp"

#include "ptycho/core/error.hpp"

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

}  // namespace

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
  // Probe change, first mode, after a global scale: the power ratio, and the
  // phase of the mean (the zero frequency, which a defocus leaves alone).
  zd sum_p = 0, sum_q = 0;
  double pp = 0, nn = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const zd p(modes(0, r, c).real(), modes(0, r, c).imag());
      const zd q(nominal_probe(r, c).real(), nominal_probe(r, c).imag());
      sum_p += p;
      sum_q += q;
      pp += std::norm(p);
      nn += std::norm(q);
    }
  const double phase = (std::abs(sum_p) > 0 && std::abs(sum_q) > 0) ? std::arg(sum_p) - std::arg(sum_q) : 0.0;
  const zd scale = nn > 0 ? std::polar(std::sqrt(pp / nn), phase) : zd(0);
  double diff = 0, ref = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const zd p(modes(0, r, c).real(), modes(0, r, c).imag());
      const zd q = scale * zd(nominal_probe(r, c).real(), nominal_probe(r, c).imag());
      diff += std::norm(p - q);
      ref += std::norm(q);
    }
  out.probe_error_pct = ref > 0 ? 100 * std::sqrt(diff / ref) : 0;
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
