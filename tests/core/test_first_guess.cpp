// The first guess: a probe scaled to a power carries that power; the probe
// estimated from a mean diffraction pattern has that pattern's amplitude as
// its far field, flat in phase, and the requested power; the starting modes
// are the guess and weak variations of it.
#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"
#include "ptycho/core/first_guess.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace ptycho;

namespace {

HostCView2 random_probe(int m, unsigned seed) {
  HostCView2 p("probe", m, m);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  for (size_t i = 0; i < p.size(); ++i) p.data()[i] = cfloat(n(rng), n(rng));
  return p;
}

}  // namespace

TEST(FirstGuess, ScaledProbeCarriesThePower) {
  const HostCView2 p = random_probe(16, 1);
  scale_probe_to_power(p, 1234.5);
  EXPECT_NEAR(probe_power(p), 1234.5, 1e-5 * 1234.5);
  HostCView2 zero("zero", 8, 8);
  EXPECT_THROW(scale_probe_to_power(zero, 1.0), Error);
}

TEST(FirstGuess, ProbeFromTheMeanPatternHasItsAmplitudeAsFarField) {
  const int m = 24;
  std::vector<double> mean(m * m);
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> u(-1, 50);  // some negative values: taken as zero
  for (auto& v : mean) v = u(rng);
  const double power = 1e4;
  const HostCView2 probe = probe_from_mean_pattern(mean, m, power);
  ASSERT_EQ(probe.extent(0), size_t(m));
  EXPECT_NEAR(probe_power(probe), power, 1e-4 * power);
  // Its centred far field is c sqrt(max(mean, 0)), c > 0 real.
  CView3 far("far", 1, m, m);
  Kokkos::deep_copy(Kokkos::subview(far, 0, Kokkos::ALL, Kokkos::ALL), probe);
  FramePlan(m, false).forward(far);
  auto f = Kokkos::create_mirror_view_and_copy(HostSpace(), far);
  double num = 0, den = 0;
  for (int i = 0; i < m * m; ++i) {
    num += std::sqrt(std::max(mean[i], 0.0)) * f.data()[i].real();
    den += std::max(mean[i], 0.0);
  }
  const double c = num / den;
  EXPECT_GT(c, 0);
  const double sum_mean = [&] {
    double s = 0;
    for (double v : mean) s += std::max(v, 0.0);
    return s;
  }();
  for (int i = 0; i < m * m; ++i) {
    const double a = std::sqrt(std::max(mean[i], 0.0)) * c;
    ASSERT_NEAR(f.data()[i].real(), a, 1e-4 * std::sqrt(sum_mean) * c) << "pixel " << i;
    ASSERT_NEAR(f.data()[i].imag(), 0.0, 1e-4 * std::sqrt(sum_mean) * c) << "pixel " << i;
  }
  EXPECT_THROW(probe_from_mean_pattern(std::vector<double>(m * m - 1, 1.0), m, power), Error);
  EXPECT_THROW(probe_from_mean_pattern(std::vector<double>(m * m, -1.0), m, power), Error);
}

// The estimate of an aperture's pattern is an Airy spot about 9 px across; spread
// to a target diameter it reaches it, keeps its power and its far field's
// amplitude (the mean pattern), and a probe already that wide is unchanged.
TEST(FirstGuess, SpreadProbeReachesTheDiameterAndKeepsTheFarFieldAmplitude) {
  const int m = 48;
  std::vector<double> mean(m * m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double q = std::hypot(r - m / 2, c - m / 2);
      mean[size_t(r) * m + c] = q < 10 ? 100.0 : 0.0;  // an aperture's pattern: a disc
    }
  const HostCView2 estimate = probe_from_mean_pattern(mean, m, 1e6);
  const double before = probe_diameter(estimate, 0.9);
  EXPECT_LT(before, 12.0);
  double c = -1;
  const HostCView2 wide = spread_probe(estimate, 24.0, &c);
  EXPECT_GT(c, 0);
  EXPECT_NEAR(probe_diameter(wide, 0.9), 24.0, 1.0);
  EXPECT_NEAR(probe_power(wide), 1e6, 1e-4 * 1e6);
  const auto far_amplitude = [m](const HostCView2& p) {
    CView3 far("far", 1, m, m);
    Kokkos::deep_copy(Kokkos::subview(far, 0, Kokkos::ALL, Kokkos::ALL), p);
    FramePlan(m, false).forward(far);
    auto f = Kokkos::create_mirror_view_and_copy(HostSpace(), far);
    std::vector<double> a(size_t(m) * m);
    for (size_t i = 0; i < a.size(); ++i) a[i] = Kokkos::abs(f.data()[i]);
    return a;
  };
  const std::vector<double> a0 = far_amplitude(estimate), a1 = far_amplitude(wide);
  double peak = 0;
  for (double v : a0) peak = std::max(peak, v);
  for (size_t i = 0; i < a0.size(); ++i) ASSERT_NEAR(a1[i], a0[i], 1e-4 * peak) << "pixel " << i;
  // Already wide enough: the same probe back, c = 0.
  const HostCView2 same = spread_probe(wide, 12.0, &c);
  EXPECT_EQ(c, 0);
  for (size_t i = 0; i < same.size(); ++i) ASSERT_EQ(same.data()[i], wide.data()[i]);
  // The target is capped at 3/4 of the frame.
  EXPECT_LE(probe_diameter(spread_probe(estimate, 1000.0), 0.9), 0.75 * m + 1.0);
}

TEST(FirstGuess, MeanNearestStepOfARaster) {
  std::vector<Position> raster;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) raster.push_back({2.0 + 3.0 * i, 7.5 + 3.0 * j});
  EXPECT_DOUBLE_EQ(mean_nearest_step(raster), 3.0);
  EXPECT_EQ(mean_nearest_step({{1.0, 1.0}}), 0.0);
}

TEST(FirstGuess, ModesAreTheGuessItsGradientsAndWeakVariations) {
  const int m = 16, k = 4;
  const HostCView2 guess = random_probe(m, 3);
  const HostCView3 modes = probe_modes_from_guess(guess, k);
  ASSERT_EQ(modes.extent(0), size_t(k));
  const double power = probe_power(guess);
  double mode_power[k] = {0, 0, 0, 0};
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      ASSERT_EQ(modes(0, r, c), guess(r, c));
      for (int a = 0; a < k; ++a) mode_power[a] += std::pow(double(Kokkos::abs(modes(a, r, c))), 2);
    }
  for (int a = 1; a < k; ++a) EXPECT_NEAR(mode_power[a], kExtraModePower * power, 1e-4 * power) << a;
  // Modes 1 and 2 are the central differences along the columns and rows, scaled.
  const int r = 7, c = 9;
  const cfloat dx = guess(r, c + 1) - guess(r, c - 1), dy = guess(r + 1, c) - guess(r - 1, c);
  const cfloat sx = modes(1, r, c) / dx, sy = modes(2, r, c) / dy;
  EXPECT_NEAR(sx.imag(), 0.0, 1e-4 * Kokkos::abs(sx));
  EXPECT_NEAR(sy.imag(), 0.0, 1e-4 * Kokkos::abs(sy));
  EXPECT_NEAR(Kokkos::abs(modes(1, 3, 4) - sx * (guess(3, 5) - guess(3, 3))), 0.0, 1e-4 * Kokkos::abs(modes(1, 3, 4)));
  // Mode 3: the guess times a phase ramp (same modulus ratio everywhere, varying phase).
  const cfloat q0 = modes(3, 0, 0) / guess(0, 0), q1 = modes(3, 0, m / 2) / guess(0, m / 2);
  EXPECT_NEAR(Kokkos::abs(q0), Kokkos::abs(q1), 1e-4 * Kokkos::abs(q0));
  EXPECT_GT(Kokkos::abs(q0 - q1), 0.01 * Kokkos::abs(q0));
  EXPECT_THROW(probe_modes_from_guess(guess, 0), Error);
}

TEST(FirstGuess, AFlatGuessStillGetsNonZeroModes) {
  const int m = 8;
  HostCView2 flat("flat", m, m);
  Kokkos::deep_copy(flat, cfloat(1, 0));
  const HostCView3 modes = probe_modes_from_guess(flat, 3);
  for (int a = 1; a < 3; ++a) {
    double p = 0;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) p += std::pow(double(Kokkos::abs(modes(a, r, c))), 2);
    EXPECT_NEAR(p, kExtraModePower * m * m, 1e-3) << a;
  }
}
