// The binary16 conversions of the low-memory far fields (half.hpp), against
// the definition: every half round-trips, and a float goes to the nearest
// half (ties to even), saturating at 65504.
#include "ptycho/core/half.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

using namespace ptycho;

namespace {

/// The value of the half with bits `h`, from the definition.
double half_value(std::uint32_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0x1f) return m ? std::numeric_limits<double>::quiet_NaN() : s * std::numeric_limits<double>::infinity();
  if (e == 0) return s * std::ldexp(m, -24);
  return s * std::ldexp(1024 + m, e - 25);
}

/// The half nearest to `x` (ties to the even mantissa) among the finite ones, by search.
std::uint32_t nearest_half(float x) {
  std::uint32_t best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  const std::uint32_t sign = std::signbit(x) ? 0x8000u : 0u;
  for (std::uint32_t h = 0; h < 0x7c00u; ++h) {
    const double d = std::fabs(std::fabs(double(x)) - half_value(h));
    if (d < best_d || (d == best_d && (h & 1u) == 0)) {
      best_d = d;
      best = h;
    }
  }
  return best | sign;
}

}  // namespace

TEST(Half, EveryHalfRoundTripsExactly) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = half_to_float(h);
    const double v = half_value(h);
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << h;
      continue;
    }
    ASSERT_EQ(double(f), v) << "half " << h;
    if (std::isinf(v)) continue;  // infinity saturates (below)
    ASSERT_EQ(float_to_half(f), h) << "half " << h;
  }
}

TEST(Half, RoundsToTheNearestHalfTiesToEven) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> exponent(-27, 16.5);
  for (int i = 0; i < 400; ++i) {
    const float x = static_cast<float>(std::exp2(exponent(rng)) * (i % 2 ? -1 : 1));
    if (std::fabs(x) >= 65520.0f) continue;
    EXPECT_EQ(float_to_half(x), nearest_half(x)) << x;
  }
  // Ties: halfway between two halves goes to the even one, in the normal and subnormal ranges.
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);        // 1 + half an ulp: down to 1
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);    // 1 + 1.5 ulp: up to the even 1 + 2 ulp
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000u);               // half the smallest subnormal: to 0
  EXPECT_EQ(float_to_half(3 * std::ldexp(1.0f, -25)), 0x0002u);           // 1.5 of it: to 2
  EXPECT_EQ(float_to_half(-0.0f), 0x8000u);
}

TEST(Half, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(float_to_half(65504.0f), 0x7bffu);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bffu);
  EXPECT_EQ(float_to_half(65520.0f), 0x7bffu);
  EXPECT_EQ(float_to_half(1e30f), 0x7bffu);
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::infinity()), 0xfbffu);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Half, PacksAComplexValue) {
  float re = 0, im = 0;
  unpack_half(pack_half(0.75f, -1234.0f), re, im);
  EXPECT_EQ(re, 0.75f);
  EXPECT_EQ(im, -1234.0f);
  unpack_half(pack_half(1.0f / 3, 3.14159265f), re, im);
  EXPECT_NEAR(re, 1.0f / 3, std::ldexp(1.0f / 3, -11));
  EXPECT_NEAR(im, 3.14159265f, std::ldexp(3.14159265f, -11));
}
