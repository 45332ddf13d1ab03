// FramePlan: round trip, Parseval, the centred convention against analytic
// cases, and a batched transform equal to a frame-by-frame one.
#include "ptycho/core/fft.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace ptycho;

namespace {

HostCView3 random_frames(int b, int m, unsigned seed) {
  HostCView3 h("frames", b, m, m);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  for (int i = 0; i < b; ++i)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) h(i, r, c) = cfloat(n(rng), n(rng));
  return h;
}

CView3 to_device(const HostCView3& h) {
  CView3 d("d", h.extent(0), h.extent(1), h.extent(2));
  Kokkos::deep_copy(d, h);
  return d;
}

HostCView3 to_host(const CView3& d) {
  auto h = Kokkos::create_mirror_view_and_copy(HostSpace(), d);
  return h;
}

double norm2(const HostCView3& h) {
  double s = 0;
  for (size_t i = 0; i < h.size(); ++i) s += Kokkos::abs(h.data()[i]) * Kokkos::abs(h.data()[i]);
  return s;
}

}  // namespace

class FftSizes : public ::testing::TestWithParam<int> {};

TEST_P(FftSizes, RoundTripRestoresFrames) {
  const int m = GetParam();
  auto h = random_frames(3, m, 1);
  auto d = to_device(h);
  FramePlan plan(m);
  plan.forward(d);
  plan.backward(d);
  auto back = to_host(d);
  double err = 0;
  for (size_t i = 0; i < h.size(); ++i) err = std::max(err, (double)Kokkos::abs(back.data()[i] - h.data()[i]));
  EXPECT_LT(err, 1e-4);
}

TEST_P(FftSizes, ParsevalHoldsForUnitaryTransform) {
  const int m = GetParam();
  auto h = random_frames(2, m, 2);
  const double before = norm2(h);
  auto d = to_device(h);
  FramePlan plan(m);
  plan.forward(d);
  const double after = norm2(to_host(d));
  EXPECT_NEAR(after / before, 1.0, 1e-5);
}

TEST_P(FftSizes, CentredDeltaGivesFlatSpectrum) {
  const int m = GetParam();
  HostCView3 h("delta", 1, m, m);
  h(0, m / 2, m / 2) = cfloat(1, 0);
  auto d = to_device(h);
  FramePlan plan(m);
  plan.forward(d);
  auto f = to_host(d);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      ASSERT_NEAR(f(0, r, c).real(), 1.0 / m, 1e-6) << r << "," << c;
      ASSERT_NEAR(f(0, r, c).imag(), 0.0, 1e-6);
    }
}

TEST_P(FftSizes, CentredPlaneWaveLandsOffCentre) {
  // x(n) = exp(2 pi i (a n_r + b n_c) / M) has all its power at frequency
  // (a, b), i.e. at array index (M/2 + a, M/2 + b), with a phase set by the
  // centring: F_c x (k) = M exp(-i pi (a + b)) ... at k = centre + (a, b).
  const int m = GetParam();
  const int a = std::min(3, m / 2 - 1), b = -std::min(5, m / 2);
  HostCView3 h("wave", 1, m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double ph = 2 * M_PI * (a * r + b * c) / m;
      h(0, r, c) = cfloat(std::cos(ph), std::sin(ph));
    }
  auto d = to_device(h);
  FramePlan plan(m);
  plan.forward(d);
  auto f = to_host(d);
  const int kr = m / 2 + a, kc = m / 2 + b;
  // sum_n exp(2 pi i a n/M) exp(-2 pi i (n - M/2)(k - M/2)/M) at k - M/2 = a is
  // M exp(i pi a) per axis; with the 1/M of the unitary 2-D transform, the
  // peak is M exp(i pi (a + b)) = M (-1)^(a+b).
  const double expect = m * ((a + b) % 2 == 0 ? 1.0 : -1.0);
  EXPECT_NEAR(f(0, kr, kc).real(), expect, 1e-3 * m);
  EXPECT_NEAR(f(0, kr, kc).imag(), 0.0, 1e-3 * m);
  double rest = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c)
      if (r != kr || c != kc) rest += Kokkos::abs(f(0, r, c));
  EXPECT_LT(rest, 1e-2 * m);
}

TEST_P(FftSizes, BatchedEqualsLooped) {
  const int m = GetParam();
  const int batch = 5;
  auto h = random_frames(batch, m, 3);
  auto all = to_device(h);
  FramePlan plan(m);
  plan.forward(all);
  auto batched = to_host(all);
  for (int i = 0; i < batch; ++i) {
    HostCView3 one("one", 1, m, m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) one(0, r, c) = h(i, r, c);
    auto d = to_device(one);
    plan.forward(d);
    auto o = to_host(d);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) ASSERT_EQ(o(0, r, c), batched(i, r, c)) << "frame " << i;
  }
}

TEST_P(FftSizes, UncentredModeIsPlainDft) {
  // Centring::none is FFTW's unnormalised DFT: a delta at the origin gives all ones.
  const int m = GetParam();
  HostCView3 h("delta0", 1, m, m);
  h(0, 0, 0) = cfloat(1, 0);
  auto d = to_device(h);
  FramePlan plan(m);
  plan.execute(d, FftDirection::forward, Centring::none);
  auto f = to_host(d);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) ASSERT_NEAR(f(0, r, c).real(), 1.0, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Sizes, FftSizes, ::testing::Values(2, 8, 64, 100));

TEST(FramePlan, RejectsOddSizeAndWrongFrames) {
  EXPECT_THROW(FramePlan(7), ptycho::Error);
  FramePlan plan(8);
  CView3 wrong("wrong", 1, 8, 6);
  EXPECT_THROW(plan.forward(wrong), ptycho::Error);
}
