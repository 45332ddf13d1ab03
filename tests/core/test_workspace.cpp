// The workspace's probe kernels against the plain definitions:
//  - the cached probes are the probe shifted by each frame's sub-pixel
//    remainder (ProbeShifter, the Fourier shift of the forward model) times
//    the checkerboard sign;
//  - the probe-update sums give sum_j unshift_j(s conj(O_j) psi_j), the
//    adjoint of that shift (a shift by the opposite amount), and
//    sum_j |O_j|^2, both for batches with sub-pixel shifts (summed in the
//    Fourier domain) and without (summed in real space);
//  - the illumination alone equals the denominator of the object sums;
//  - the object sums of a batch are the floats of its frames one by one;
//  - batch_order visits the batches in serpentine bands of M/2 rows (a
//    batch placed by its first frame), a permutation of the batches, with a
//    shorter path over the object than the scan's own (Fermat) order.
#include "engine_fixture.hpp"

#include "ptycho/core/forward.hpp"
#include "ptycho/core/geometry.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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

TEST(Workspace, BatchOrderVisitsTheObjectInSerpentineBands) {
  Case c(false);
  const long n = c.s.scan.num_local();
  const int m = c.s.scan.frame_size;
  ASSERT_GE(n, 20);
  Workspace ws(c.s.scan, 1, 1);
  const int band = m / 2;
  // The order of batches of one frame, checked against the patch origins of the positions set last.
  auto expect_serpentine = [&](const std::vector<long>& order) {
    auto row = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_row());
    auto col = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_col());
    std::vector<long> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (long j = 0; j < n; ++j) ASSERT_EQ(sorted[size_t(j)], j) << "not a permutation of the frames";
    auto path = [&](const std::vector<long>& visit) {
      double length = 0;
      for (size_t i = 1; i < visit.size(); ++i)
        length += std::hypot(double(row(visit[i]) - row(visit[i - 1])), double(col(visit[i]) - col(visit[i - 1])));
      return length;
    };
    std::vector<long> scan_order(static_cast<size_t>(n));
    for (long j = 0; j < n; ++j) scan_order[size_t(j)] = j;
    EXPECT_LT(path(order), 0.5 * path(scan_order));
    for (size_t i = 1; i < order.size(); ++i) {
      const long a = order[i - 1], b = order[i];
      const int band_a = row(a) / band, band_b = row(b) / band;
      ASSERT_LE(band_a, band_b) << "bands out of order at " << i;
      if (band_a == band_b) {
        if (band_a % 2 == 0)
          EXPECT_LE(col(a), col(b)) << "band " << band_a << " should run left to right";
        else
          EXPECT_GE(col(a), col(b)) << "band " << band_a << " should run right to left";
      }
    }
  };
  ws.set_positions(c.st.positions);
  const std::vector<long> order = ws.batch_order(0, n);
  expect_serpentine(order);
  EXPECT_EQ(ws.batch_order(0, n), order) << "asked again, the same order";
  // New positions (the frames' places reversed) give a new order, not the one kept for the old.
  std::vector<Position> reversed(c.st.positions.rbegin(), c.st.positions.rend());
  ws.set_positions(reversed);
  EXPECT_NE(ws.batch_order(0, n), order);
  expect_serpentine(ws.batch_order(0, n));
  // Batches of three: their first frames, each once, and a sub-range's.
  Workspace ws3(c.s.scan, 1, 3);
  ws3.set_positions(c.st.positions);
  std::vector<long> firsts = ws3.batch_order(2, n);
  // ... placed by their first frames, in the same serpentine bands.
  auto row3 = Kokkos::create_mirror_view_and_copy(HostSpace(), ws3.patch_row());
  auto col3 = Kokkos::create_mirror_view_and_copy(HostSpace(), ws3.patch_col());
  for (size_t i = 1; i < firsts.size(); ++i) {
    const long a = firsts[i - 1], b = firsts[i];
    const int band_a = row3(a) / band, band_b = row3(b) / band;
    ASSERT_LE(band_a, band_b) << "batches of three: bands out of order at " << i;
    if (band_a == band_b) EXPECT_TRUE(band_a % 2 == 0 ? col3(a) <= col3(b) : col3(a) >= col3(b)) << "at " << i;
  }
  std::sort(firsts.begin(), firsts.end());
  std::vector<long> expect;
  for (long f = 2; f < n; f += 3) expect.push_back(f);
  EXPECT_EQ(firsts, expect);
  EXPECT_TRUE(ws3.batch_order(5, 5).empty());
  EXPECT_THROW(ws3.batch_order(0, n + 1), Error);
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

/// The object sums of a batch are the floats of its frames added one at a
/// time, whether the batch's patches are disjoint (with several threads,
/// the frames in parallel) or overlap (one after another, rows in parallel).
TEST(Workspace, ObjectSumsOfABatchAreThoseOfItsFramesOneByOne) {
  Case c(false);
  const auto& scan = c.s.scan;
  const long n = scan.num_local();
  const int m = scan.frame_size;
  // Pairs of the first and last frames left, so that some batches of two lie
  // far apart and those from the middle of the scan overlap.
  std::vector<Position> paired;
  for (long i = 0, k = n - 1; i <= k; ++i, --k) {
    paired.push_back(c.st.positions[i]);
    if (k != i) paired.push_back(c.st.positions[k]);
  }
  Workspace ws(scan, 1, 2);
  ws.set_positions(paired);
  ws.set_probe(c.st.probe);
  auto row = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_row());
  auto col = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_col());
  int disjoint = 0, overlapping = 0;
  for (long b = 0; b + 1 < n; b += 2)
    (std::abs(row(b) - row(b + 1)) < m && std::abs(col(b) - col(b + 1)) < m ? overlapping : disjoint) += 1;
  ASSERT_GT(disjoint, 0);
  ASSERT_GT(overlapping, 0);
  const auto& e = scan.extent;
  auto sums = [&](long batch) {
    View2<cdouble> num("num", e.rows, e.cols);
    View2<double> den("den", e.rows, e.cols);
    for (long first = 0; first < n; first += batch) {
      const long count = std::min(batch, n - first);
      const CView3 w = Kokkos::subview(c.waves, std::make_pair(first, first + count), Kokkos::ALL, Kokkos::ALL);
      ws.accumulate_object(num, den, w, first, count, true);
    }
    return std::make_pair(Kokkos::create_mirror_view_and_copy(HostSpace(), num),
                          Kokkos::create_mirror_view_and_copy(HostSpace(), den));
  };
  const auto one = sums(1), two = sums(2), all = sums(n);
  long differ = 0;
  for (size_t i = 0; i < one.first.size(); ++i) {
    differ += one.first.data()[i] != two.first.data()[i] || one.second.data()[i] != two.second.data()[i];
    differ += one.first.data()[i] != all.first.data()[i] || one.second.data()[i] != all.second.data()[i];
  }
  EXPECT_EQ(differ, 0) << "of " << one.first.size() << " pixels";
  double top = 0;
  for (size_t i = 0; i < one.second.size(); ++i) top = std::max(top, one.second.data()[i]);
  EXPECT_GT(top, 0);
}

/// A workspace with a shift quantum q caches min(n, q^2) probes, and each
/// frame's cached probe is the probe shifted by its remainder rounded to 1/q.
TEST(Workspace, ShiftQuantumBoundsTheCacheAndRoundsTheShift) {
  Case c(false);
  const auto& scan = c.s.scan;
  const int m = scan.frame_size, q = 2;
  const long n = scan.num_local();
  ASSERT_GT(n, q * q);  // the bound must bite
  Workspace ws(scan, 1, 8, q);
  ws.set_positions(c.st.positions);
  ws.set_probe(c.st.probe);
  EXPECT_EQ(long(ws.probes().extent(0)), long(q) * q);
  EXPECT_EQ(Workspace::probe_slots_for(n, q), long(q) * q);
  EXPECT_EQ(Workspace::probe_slots_for(3, q), 3L);
  auto cached = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.probes());
  auto slot = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.probe_slot());
  auto row = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_row());
  std::vector<int> used(size_t(q) * q, 0);
  long rounded_up = 0;
  for (long j = 0; j < n; ++j) {
    ASSERT_GE(slot(j), 0);
    ASSERT_LT(slot(j), q * q);
    ++used[size_t(slot(j))];
    const PatchOrigin o = patch_origin(c.st.positions[j].row, c.st.positions[j].col, m);
    const double qr = std::round(o.frac_row * q) / q, qc = std::round(o.frac_col * q) / q;
    // A remainder that rounds to a whole pixel moves the patch on by one.
    EXPECT_EQ(row(j) + scan.extent.row0, o.row + (qr == 1.0 ? 1 : 0)) << "frame " << j;
    rounded_up += (qr == 1.0);
    auto ref = shifted(c.st.probe, qr == 1.0 ? 0.0 : qr, qc == 1.0 ? 0.0 : qc);
    std::vector<cd> got(ref.size());
    for (int r = 0; r < m; ++r)
      for (int k = 0; k < m; ++k) {
        const cfloat v = cached(slot(j), r, k) * centring_sign(r, k);
        got[size_t(r) * m + k] = cd(v.real(), v.imag());
      }
    EXPECT_LT(relative_difference(got, ref), 1e-5) << "frame " << j;
  }
  EXPECT_GT(rounded_up, 0);  // the case tests the carry
  for (int u : used) EXPECT_GT(u, 0);  // every slot serves frames
}

/// A remainder that rounds up at the edge of the tile rounds down instead:
/// the patch stays inside, and the probe is shifted by (q - 1) / q.
TEST(Workspace, ShiftQuantumAtTheTileEdgeRoundsDown) {
  Case c(false);
  const auto& scan = c.s.scan;
  const int m = scan.frame_size, q = 8;
  const Rect& e = scan.extent;
  // Frame 0 touches the last row and column of the tile, 0.97 px on.
  c.st.positions[0] = Position{double(e.row1() - m) + 0.5 * m + 0.97, double(e.col1() - m) + 0.5 * m + 0.97};
  Workspace ws(scan, 1, 8, q);
  ws.set_positions(c.st.positions);
  ws.set_probe(c.st.probe);
  auto row = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_row());
  auto col = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_col());
  EXPECT_EQ(row(0) + e.row0, e.row1() - m);
  EXPECT_EQ(col(0) + e.col0, e.col1() - m);
  EXPECT_DOUBLE_EQ(ws.frac_row()[0], double(q - 1) / q);
  EXPECT_DOUBLE_EQ(ws.frac_col()[0], double(q - 1) / q);
  // One pixel in from the edge, the same remainder carries to the next pixel.
  c.st.positions[0] = Position{double(e.row1() - m - 1) + 0.5 * m + 0.97, double(e.col1() - m - 1) + 0.5 * m + 0.97};
  ws.set_positions(c.st.positions);
  row = Kokkos::create_mirror_view_and_copy(HostSpace(), ws.patch_row());
  EXPECT_EQ(row(0) + e.row0, e.row1() - m);
  EXPECT_DOUBLE_EQ(ws.frac_row()[0], 0.0);
}

/// On positions already on the 1/q grid, a quantised workspace gives the
/// exit waves and object sums of the exact one.
TEST(Workspace, ShiftQuantumOnItsGridIsExact) {
  Case c(false);
  const auto& scan = c.s.scan;
  const int m = scan.frame_size, q = 4;
  const long n = scan.num_local();
  for (auto& p : c.st.positions) p = Position{std::round(p.row * q) / q, std::round(p.col * q) / q};
  Workspace exact(scan, 1, 8), coarse(scan, 1, 8, q);
  for (Workspace* ws : {&exact, &coarse}) {
    ws->set_positions(c.st.positions);
    ws->set_probe(c.st.probe);
  }
  EXPECT_LT(long(coarse.probes().extent(0)), n);
  CView3 a("a", n, m, m), b("b", n, m, m);
  exact.exit_waves(c.st.object, 0, n, a);
  coarse.exit_waves(c.st.object, 0, n, b);
  auto ha = Kokkos::create_mirror_view_and_copy(HostSpace(), a);
  auto hb = Kokkos::create_mirror_view_and_copy(HostSpace(), b);
  std::vector<cd> va(ha.size()), vb(hb.size());
  for (size_t i = 0; i < va.size(); ++i) {
    va[i] = cd(ha.data()[i].real(), ha.data()[i].imag());
    vb[i] = cd(hb.data()[i].real(), hb.data()[i].imag());
  }
  EXPECT_LT(relative_difference(vb, va), 1e-6);
  View2<cdouble> na("na", scan.extent.rows, scan.extent.cols), nb("nb", scan.extent.rows, scan.extent.cols);
  View2<double> da("da", scan.extent.rows, scan.extent.cols), db("db", scan.extent.rows, scan.extent.cols);
  exact.accumulate_object(na, da, c.waves, 0, n, true);
  coarse.accumulate_object(nb, db, c.waves, 0, n, true);
  auto hna = Kokkos::create_mirror_view_and_copy(HostSpace(), na);
  auto hnb = Kokkos::create_mirror_view_and_copy(HostSpace(), nb);
  std::vector<cd> sa(hna.data(), hna.data() + hna.size()), sb(hnb.data(), hnb.data() + hnb.size());
  EXPECT_LT(relative_difference(sb, sa), 1e-6);
}

}  // namespace
}  // namespace ptycho
