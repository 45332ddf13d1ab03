// The workspace's probe kernels against the plain definitions:
//  - the cached probes are the probe shifted by each frame's sub-pixel
//    remainder (ProbeShifter, the Fourier shift of the forward model) times
//    the checkerboard sign;
//  - the probe-update sums give sum_j unshift_j(s conj(O_j) psi_j), the
//    adjoint of that shift (a shift by the opposite amount), and
//    sum_j |O_j|^2, both for batches with sub-pixel shifts (summed in the
//    Fourier domain) and without (summed in real space);
//  - the illumination alone equals the denominator of the object sums.
#include "engine_fixture.hpp"

#include "ptycho/core/forward.hpp"
#include "ptycho/core/geometry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>
#include <vector>

namespace ptycho {
namespace {

using cd = std::complex<double>;

/// A random complex object and probe, and `waves` of the frames, on the
/// small scan; positions from the scan (sub-pixel) or rounded to whole pixels.
struct Case {
  test::SmallScan s = test::make_small_scan(1e6, 64, 16, 7);
  ReconState st;
  CView3 waves;
  explicit Case(bool whole_pixels) {
    st = test::start_state(s, test::true_probe(s));
    if (whole_pixels)
      for (auto& p : st.positions) p = Position{std::round(p.row), std::round(p.col)};
    std::mt19937 rng(11);
    std::normal_distribution<float> g;
    auto obj = Kokkos::create_mirror_view(st.object);
    for (size_t i = 0; i < obj.size(); ++i) obj.data()[i] = cfloat(1 + 0.3f * g(rng), 0.3f * g(rng));
    Kokkos::deep_copy(st.object, obj);
    const int m = s.scan.frame_size;
    const long n = s.scan.num_local();
    waves = CView3("waves", n, m, m);
    auto w = Kokkos::create_mirror_view(waves);
    for (size_t i = 0; i < w.size(); ++i) w.data()[i] = cfloat(g(rng), g(rng));
    Kokkos::deep_copy(waves, w);
  }
};

double relative_difference(const std::vector<cd>& a, const std::vector<cd>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += std::norm(a[i] - b[i]);
    n += std::norm(b[i]);
  }
  return std::sqrt(d / n);
}

/// The reference shift of the one-mode probe by (dr, dc), as doubles.
std::vector<cd> shifted(const CView3& probe, double dr, double dc) {
  const int m = static_cast<int>(probe.extent(1));
  ProbeShifter shifter(m);
  CView3 out("shifted", 1, m, m);
  shifter.shift(probe, dr, dc, out);
  auto h = Kokkos::create_mirror_view_and_copy(HostSpace(), out);
  std::vector<cd> v(size_t(m) * m);
  for (size_t i = 0; i < v.size(); ++i) v[i] = cd(h.data()[i].real(), h.data()[i].imag());
  return v;
}

TEST(Workspace, CachedProbesAreTheShiftedSignedProbe) {
  Case c(false);
  const auto& scan = c.s.scan;
  const int m = scan.frame_size;
  Workspace ws(scan, 1, 8);
  ws.set_positions(c.st.positions);
  ws.set_probe(c.st.probe);
  auto cached = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.probes());
  long fractional = 0;
  for (long j = 0; j < scan.num_local(); ++j) {
    const PatchOrigin o = patch_origin(c.st.positions[j].row, c.st.positions[j].col, m);
    fractional += (o.frac_row != 0 || o.frac_col != 0);
    auto ref = shifted(c.st.probe, o.frac_row, o.frac_col);
    std::vector<cd> got(ref.size());
    for (int r = 0; r < m; ++r)
      for (int q = 0; q < m; ++q) {
        const cfloat v = cached(j, r, q) * centring_sign(r, q);
        got[size_t(r) * m + q] = cd(v.real(), v.imag());
      }
    EXPECT_LT(relative_difference(got, ref), 1e-5) << "frame " << j;
  }
  EXPECT_GT(fractional, scan.num_local() / 2);  // the case tests the shift, not a copy
}

/// accumulate_probe + ProbeSums::reduce against the definition.
void expect_probe_sums_match(bool whole_pixels) {
  Case c(whole_pixels);
  const auto& scan = c.s.scan;
  const int m = scan.frame_size;
  const long n = scan.num_local();
  Workspace ws(scan, 1, 8);
  ws.set_positions(c.st.positions);
  ws.set_probe(c.st.probe);
  ProbeSums sums("sums", 1, m);
  sums.reset();
  CView3 scratch("scratch", 8, m, m);
  for (long first = 0; first < n; first += 8) {
    const long count = std::min<long>(8, n - first);
    auto w = Kokkos::subview(c.waves, Kokkos::make_pair(first, first + count), Kokkos::ALL, Kokkos::ALL);
    ws.accumulate_probe(sums, c.st.object, w, first, count, scratch);
  }
  test::SerialCollective coll;
  View3<cdouble, HostSpace> num;
  View2<double, HostSpace> den;
  sums.reduce(coll, num, den);

  // The definition, frame by frame in double.
  auto obj = Kokkos::create_mirror_view_and_copy(HostSpace(), c.st.object);
  auto waves = Kokkos::create_mirror_view_and_copy(HostSpace(), c.waves);
  std::vector<cd> ref_num(size_t(m) * m), got_num(ref_num.size());
  std::vector<double> ref_den(ref_num.size());
  CView3 u("u", 1, m, m);
  auto uh = Kokkos::create_mirror_view(u);
  for (long j = 0; j < n; ++j) {
    const PatchOrigin o = patch_origin(c.st.positions[j].row, c.st.positions[j].col, m);
    for (int r = 0; r < m; ++r)
      for (int q = 0; q < m; ++q) {
        const cfloat ov = obj(o.row + r, o.col + q);
        uh(0, r, q) = Kokkos::conj(ov) * waves(j, r, q) * centring_sign(r, q);
        ref_den[size_t(r) * m + q] += double(ov.real()) * ov.real() + double(ov.imag()) * ov.imag();
      }
    Kokkos::deep_copy(u, uh);
    const auto back = shifted(u, -o.frac_row, -o.frac_col);  // the adjoint of the unitary shift
    for (size_t i = 0; i < back.size(); ++i) ref_num[i] += back[i];
  }
  double den_err = 0, den_ref = 0;
  for (int r = 0; r < m; ++r)
    for (int q = 0; q < m; ++q) {
      got_num[size_t(r) * m + q] = cd(num(0, r, q).real(), num(0, r, q).imag());
      den_err = std::max(den_err, std::abs(den(r, q) - ref_den[size_t(r) * m + q]));
      den_ref = std::max(den_ref, ref_den[size_t(r) * m + q]);
    }
  EXPECT_LT(relative_difference(got_num, ref_num), 1e-5);
  EXPECT_LT(den_err, 1e-9 * den_ref);
}

TEST(Workspace, ProbeSumsWithSubPixelShiftsAreTheAdjointShift) { expect_probe_sums_match(false); }

TEST(Workspace, ProbeSumsOnWholePixelsAreTheDirectSum) { expect_probe_sums_match(true); }


TEST(Workspace, IlluminationIsTheDenominatorOfTheObjectSums) {
  Case c(false);
  const auto& scan = c.s.scan;
  Workspace ws(scan, 1, 8);
  ws.set_positions(c.st.positions);
  ws.set_probe(c.st.probe);
  const long n = scan.num_local();
  View2<cdouble> num("num", scan.extent.rows, scan.extent.cols);
  View2<double> den("den", scan.extent.rows, scan.extent.cols), illum("illum", scan.extent.rows, scan.extent.cols);
  ws.accumulate_object(num, den, c.waves, 0, n, true);
  ws.accumulate_illumination(illum, 0, n);
  auto a = Kokkos::create_mirror_view_and_copy(HostSpace(), den);
  auto b = Kokkos::create_mirror_view_and_copy(HostSpace(), illum);
  double worst = 0, top = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(a.data()[i] - b.data()[i]));
    top = std::max(top, a.data()[i]);
  }
  EXPECT_GT(top, 0);
  EXPECT_LT(worst, 1e-6 * top);
}

}  // namespace
}  // namespace ptycho
