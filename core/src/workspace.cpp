#include "ptycho/core/error.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "ptycho/core/local_scan.hpp"

#include <cmath>

namespace ptycho {

namespace {

KOKKOS_INLINE_FUNCTION void atomic_add_c(cdouble* dst, const cfloat& v) {
  double* p = reinterpret_cast<double*>(dst);
  Kokkos::atomic_add(p, double(v.real()));
  Kokkos::atomic_add(p + 1, double(v.imag()));
}
/// out = p * o over a row of n complex values. The row helpers work on
/// (re, im) float pairs through restrict pointers and without `omp simd`,
/// which is what lets GCC vectorise them (complex temporaries keep it scalar).
KOKKOS_INLINE_FUNCTION void complex_product_row(cfloat* out_c, const cfloat* p_c, const cfloat* o_c, int n) {
  float* PTYCHO_RESTRICT out = reinterpret_cast<float*>(out_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  for (int c = 0; c < n; ++c) {
    const float pr = p[2 * c], pi = p[2 * c + 1], orr = o[2 * c], oi = o[2 * c + 1];
    out[2 * c] = pr * orr - pi * oi;
    out[2 * c + 1] = pr * oi + pi * orr;
  }
}

/// num += conj(p) w (in double) and, if den is given, den += |p|^2, over a row of n.
inline void accumulate_row(cdouble* num_c, double* den_p, const cfloat* p_c, const cfloat* w_c, int n) {
  double* PTYCHO_RESTRICT num = reinterpret_cast<double*>(num_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  const float* PTYCHO_RESTRICT w = reinterpret_cast<const float*>(w_c);
  for (int c = 0; c < n; ++c) {
    const float pr = p[2 * c], pi = p[2 * c + 1], wr = w[2 * c], wi = w[2 * c + 1];
    num[2 * c] += double(pr * wr + pi * wi);
    num[2 * c + 1] += double(pr * wi - pi * wr);
  }
  if (den_p) {
    double* PTYCHO_RESTRICT den = den_p;
    for (int c = 0; c < n; ++c) den[c] += double(p[2 * c] * p[2 * c] + p[2 * c + 1] * p[2 * c + 1]);
  }
}
}  // namespace

Workspace::Workspace(const LocalScan& scan, int num_modes, int batch)
    : m_scan(scan),
      m_modes(num_modes),
      m_batch(batch),
      m_plan(scan.frame_size),
      m_shifter(scan.frame_size),
      m_probes("ptycho::Workspace::probes", std::size_t(scan.num_local()) * num_modes, scan.frame_size,
               scan.frame_size),
      m_row("ptycho::Workspace::row", scan.num_local()),
      m_col("ptycho::Workspace::col", scan.num_local()),
      m_frac_row("ptycho::Workspace::frac_row", scan.num_local()),
      m_frac_col("ptycho::Workspace::frac_col", scan.num_local()),
      m_ramp_row("ptycho::Workspace::ramp_row", scan.num_local(), scan.frame_size),
      m_ramp_col("ptycho::Workspace::ramp_col", scan.num_local(), scan.frame_size),
      m_freq("ptycho::Workspace::freq", scan.frame_size) {
  PTYCHO_THROW_IF(num_modes < 1 || batch < 1, "Workspace: need at least one mode and a batch of one");
  const int m = scan.frame_size;
  auto f = Kokkos::create_mirror_view(m_freq);
  for (int i = 0; i < m; ++i) f(i) = (i < (m + 1) / 2 ? i : i - m) / double(m);
  Kokkos::deep_copy(m_freq, f);
  auto valid = Kokkos::create_mirror_view_and_copy(HostSpace(), scan.valid);
  double per_frame = 0;
  for (size_t i = 0; i < valid.size(); ++i) per_frame += valid.data()[i];
  m_valid_pixels = per_frame * scan.total_frames;
}

void Workspace::set_positions(const std::vector<Position>& positions) {
  const long n = m_scan.num_local();
  const int m = m_scan.frame_size;
  PTYCHO_THROW_IF(long(positions.size()) != n, "Workspace: " << positions.size() << " positions for " << n << " frames");
  auto row = Kokkos::create_mirror_view(m_row);
  auto col = Kokkos::create_mirror_view(m_col);
  auto fr = Kokkos::create_mirror_view(m_frac_row);
  auto fc = Kokkos::create_mirror_view(m_frac_col);
  ++m_probe_version;
  m_frac_row_h.resize(n);
  m_frac_col_h.resize(n);
  const Rect& e = m_scan.extent;
  for (long j = 0; j < n; ++j) {
    const PatchOrigin o = patch_origin(positions[j].row, positions[j].col, m);
    const Rect patch{o.row, o.col, m, m};
    PTYCHO_THROW_IF(!e.contains(patch), "frame " << m_scan.index[j] << " at (" << positions[j].row << ", "
                                                 << positions[j].col << ") reads outside this rank's tile");
    row(j) = static_cast<int>(o.row - e.row0);
    col(j) = static_cast<int>(o.col - e.col0);
    fr(j) = m_frac_row_h[j] = o.frac_row;
    fc(j) = m_frac_col_h[j] = o.frac_col;
  }
  Kokkos::deep_copy(m_row, row);
  Kokkos::deep_copy(m_col, col);
  Kokkos::deep_copy(m_frac_row, fr);
  Kokkos::deep_copy(m_frac_col, fc);
  // The ramps, in double, once per position change (2 M phasors per frame).
  auto rr = Kokkos::create_mirror_view(m_ramp_row);
  auto rc = Kokkos::create_mirror_view(m_ramp_col);
  auto freq = Kokkos::create_mirror_view_and_copy(HostSpace(), m_freq);
  for (long j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const double pr = -2.0 * M_PI * freq(i) * m_frac_row_h[j], pc = -2.0 * M_PI * freq(i) * m_frac_col_h[j];
      rr(j, i) = cfloat(float(std::cos(pr)), float(std::sin(pr)));
      rc(j, i) = cfloat(float(std::cos(pc)), float(std::sin(pc)));
    }
  Kokkos::deep_copy(m_ramp_row, rr);
  Kokkos::deep_copy(m_ramp_col, rc);
}

void Workspace::set_probe(const CView3& probe) {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const long n = m_scan.num_local();
  PTYCHO_THROW_IF(probe.extent(0) != size_t(kmodes) || probe.extent(1) != size_t(m),
                  "Workspace: probe is " << probe.extent(0) << "x" << probe.extent(1) << ", expected " << kmodes
                                         << "x" << m);
  ++m_probe_version;
  if (n == 0) return;
  // The spectrum of each mode once (raw DFT), then every frame's copy is that
  // spectrum times its shift ramp, brought back by a raw IDFT: one transform
  // per frame and mode.
  CView3 spectrum("ptycho::Workspace::probe_spectrum", kmodes, m, m);
  Kokkos::deep_copy(spectrum, probe);
  m_plan.execute(spectrum, FftDirection::forward, Centring::none);
  shifted_modes(spectrum, 0, n, m_probes);
}

void Workspace::shifted_modes(const CView3& spectrum, long first, long count, const CView3& out) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  PTYCHO_THROW_IF(spectrum.extent(0) != size_t(kmodes) || out.extent(0) < size_t(count * kmodes),
                  "Workspace::shifted_modes: " << spectrum.extent(0) << " modes and room for " << out.extent(0)
                                               << " frames, need " << kmodes << " and " << count * kmodes);
  if (count <= 0) return;
  auto dst = Kokkos::subview(out, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
  const auto ramp_r = m_ramp_row, ramp_c = m_ramp_col;
  const float norm = 1.0f / (float(m) * m);
  Kokkos::parallel_for(
      "ptycho::Workspace::probe_ramp", Policy3({0, 0, 0}, {count * kmodes, m, m}),
      KOKKOS_LAMBDA(long bk, int r, int c) {
        const long j = first + bk / kmodes;
        dst(bk, r, c) = spectrum(bk % kmodes, r, c) * (ramp_r(j, r) * ramp_c(j, c) * norm);
      });
  m_plan.execute(dst, FftDirection::backward, Centring::none);
  Kokkos::parallel_for(
      "ptycho::Workspace::probe_sign", Policy3({0, 0, 0}, {count * kmodes, m, m}),
      KOKKOS_LAMBDA(long bk, int r, int c) { dst(bk, r, c) *= centring_sign(r, c); });
  ExecSpace().fence();
}

void Workspace::product_waves(const CView2& object, const CView3& modes, long first, long count,
                              const CView3& waves) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto row = m_row, col = m_col;
  Kokkos::parallel_for(
      "ptycho::Workspace::product_waves", frame_policy(count * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
        const long bk = team.league_rank();
        const long j = first + bk / kmodes;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
          complex_product_row(&waves(bk, r, 0), &modes(bk, r, 0), &object(row(j) + r, col(j)), m);
        });
      });
}

void Workspace::exit_waves(const CView2& object, long first, long count, const CView3& waves) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto probes = m_probes;
  const auto row = m_row, col = m_col;
  // One team per frame and mode, its rows shared; a row is a contiguous,
  // vectorisable complex product.
  Kokkos::parallel_for(
      "ptycho::Workspace::exit_waves", frame_policy(count * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
        const long bk = team.league_rank();
        const long j = first + bk / kmodes;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
          complex_product_row(&waves(bk, r, 0), &probes(first * kmodes + bk, r, 0), &object(row(j) + r, col(j)), m);
        });
      });
}

void Workspace::accumulate_object(const View2<cdouble>& num, const View2<double>& den, const CView3& waves, long first,
                                  long count, bool with_den) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto probes = m_probes;
  const auto row = m_row, col = m_col;
#if defined(KOKKOS_ENABLE_CUDA)
  // Patches overlap: frames in parallel, sums with atomics.
  Kokkos::parallel_for(
      "ptycho::Workspace::accumulate_object", Policy3({0, 0, 0}, {count, m, m}),
      KOKKOS_LAMBDA(long b, int r, int c) {
        const long j = first + b;
        cfloat s(0, 0);
        float d = 0;
        for (int k = 0; k < kmodes; ++k) {
          const cfloat p = probes(j * kmodes + k, r, c);
          s += Kokkos::conj(p) * waves(b * kmodes + k, r, c);
          d += p.real() * p.real() + p.imag() * p.imag();
        }
        const int rr = row(j) + r, cc = col(j) + c;
        atomic_add_c(&num(rr, cc), s);
        if (with_den) Kokkos::atomic_add(&den(rr, cc), double(d));
      });
#else
  // Patches overlap: on the host, frames one after another, each frame's
  // rows in parallel, so no two threads touch one pixel and a row vectorises.
  (void)atomic_add_c;
  auto row_h = Kokkos::create_mirror_view_and_copy(HostSpace(), row);
  auto col_h = Kokkos::create_mirror_view_and_copy(HostSpace(), col);
  for (long b = 0; b < count; ++b) {
    const long j = first + b;
    const int r0 = row_h(j), c0 = col_h(j);
    Kokkos::parallel_for(
        "ptycho::Workspace::accumulate_object", Kokkos::RangePolicy<ExecSpace>(0, m), KOKKOS_LAMBDA(int r) {
          for (int k = 0; k < kmodes; ++k)
            accumulate_row(&num(r0 + r, c0), with_den ? &den(r0 + r, c0) : nullptr, &probes(j * kmodes + k, r, 0),
                           &waves(b * kmodes + k, r, 0), m);
        });
  }
#endif
}

void Workspace::accumulate_probe(const View3<cdouble>& num_probe, const View2<double>& den_probe,
                                 const CView2& object, const CView3& waves, long first, long count,
                                 const CView3& scratch) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto row = m_row, col = m_col;
  auto work = Kokkos::subview(scratch, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
  Kokkos::parallel_for(
      "ptycho::Workspace::probe_terms", Policy3({0, 0, 0}, {count * kmodes, m, m}),
      KOKKOS_LAMBDA(long bk, int r, int c) {
        const long j = first + bk / kmodes;
        work(bk, r, c) = Kokkos::conj(object(row(j) + r, col(j) + c)) * waves(bk, r, c) * centring_sign(r, c);
      });
  bool shifted = false;
  for (long b = 0; b < count; ++b) shifted |= (m_frac_row_h[first + b] != 0.0 || m_frac_col_h[first + b] != 0.0);
  if (shifted) {
    m_plan.execute(work, FftDirection::forward, Centring::none);
    const auto ramp_r = m_ramp_row, ramp_c = m_ramp_col;
    const float norm = 1.0f / (float(m) * m);
    Kokkos::parallel_for(
        "ptycho::Workspace::probe_unshift", Policy3({0, 0, 0}, {count * kmodes, m, m}),
        KOKKOS_LAMBDA(long bk, int r, int c) {
          const long j = first + bk / kmodes;
          work(bk, r, c) *= Kokkos::conj(ramp_r(j, r) * ramp_c(j, c)) * norm;
        });
    m_plan.execute(work, FftDirection::backward, Centring::none);
  }
  Kokkos::parallel_for(
      "ptycho::Workspace::probe_sum", Policy3({0, 0, 0}, {kmodes, m, m}), KOKKOS_LAMBDA(int k, int r, int c) {
        cdouble s(0, 0);
        for (long b = 0; b < count; ++b) {
          const cfloat v = work(b * kmodes + k, r, c);
          s += cdouble(v.real(), v.imag());
        }
        num_probe(k, r, c) += s;
        if (k == 0) {
          double d = 0;
          for (long b = 0; b < count; ++b) {
            const cfloat o = object(row(first + b) + r, col(first + b) + c);
            d += double(o.real()) * o.real() + double(o.imag()) * o.imag();
          }
          den_probe(r, c) += d;
        }
      });
}

}  // namespace ptycho
