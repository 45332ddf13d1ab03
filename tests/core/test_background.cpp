// The refined detector background (background.hpp) on small simulated scans
// with a known background, on one rank: every engine finds it and gains
// from it; per pixel it follows a structured background; without one in the
// data it stays near zero; masked pixels do not enter; and an engine whose
// option is none ignores a background in the state.
#include "engine_fixture.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/error.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

using namespace ptycho;

namespace {

constexpr double kPhotons = 1e6;
constexpr double kBackground = 3;  ///< photons per pixel and frame in the simulated frames
constexpr int kIterations = 60;

/// One scan per background setting, kept for the whole program (the views
/// must not outlive Kokkos::finalize: never destroyed).
const test::SmallScan& scan_with(double background, bool radial = false) {
  static const test::SmallScan* flat = new test::SmallScan(test::make_small_scan(kPhotons, 96, 32, 5, kBackground));
  static const test::SmallScan* profile =
      new test::SmallScan(test::make_small_scan(kPhotons, 96, 32, 5, kBackground, true));
  static const test::SmallScan* none = new test::SmallScan(test::make_small_scan(kPhotons, 96, 32, 5, 0));
  return background == 0 ? *none : radial ? *profile : *flat;
}

struct Outcome {
  std::vector<double> cost;
  double error = 0;       ///< object error against the truth
  HostRView2 background;  ///< the refined background (empty if none was made)
  double background_mean = 0;
};

Outcome run_engine(const test::SmallScan& s, const std::string& name, BackgroundMode mode, ReconState st,
                   int iterations = kIterations) {
  EngineOptions opt;
  opt.name = name;
  opt.background = mode;
  Outcome run;
  run.cost = test::run_iterations(s, opt, st, iterations);
  auto obj = Kokkos::create_mirror_view_and_copy(HostSpace(), st.object);
  run.error = test::object_error(obj, s.sim.object, 30, 66);
  if (st.background.size()) {
    run.background = Kokkos::create_mirror_view_and_copy(HostSpace(), st.background);
    run.background_mean = background_mean(st.background, s.scan.valid);
  }
  return run;
}

Outcome run_engine(const test::SmallScan& s, const std::string& name, BackgroundMode mode) {
  return run_engine(s, name, mode, test::start_state(s, test::true_probe(s)));
}

/// RMS of (b - truth) / RMS of truth over the pixels where the frames are
/// dark (mean count below 5x the background): where the data determine b.
double dark_pixel_error(const test::SmallScan& s, const HostRView2& b) {
  const int m = s.scan.frame_size;
  const long n = s.scan.num_local();
  double e2 = 0, t2 = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      double mean = 0;
      for (long j = 0; j < n; ++j) mean += s.sim.frames(j, r, c);
      mean /= double(n);
      const double t = s.sim.background(r, c);
      if (mean >= 5 * t) continue;
      e2 += (b(r, c) - t) * (b(r, c) - t);
      t2 += t * t;
    }
  return t2 > 0 ? std::sqrt(e2 / t2) : 0.0;
}

}  // namespace

TEST(SimulatedBackground, HasTheRequestedMeanAndShape) {
  for (bool radial : {false, true}) {
    const auto b = sim::background_profile(32, kBackground, radial);
    double sum = 0, lo = 1e30, hi = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      sum += b.data()[i];
      lo = std::min(lo, double(b.data()[i]));
      hi = std::max(hi, double(b.data()[i]));
    }
    EXPECT_NEAR(sum / b.size(), kBackground, 1e-4 * kBackground);
    if (radial) {
      EXPECT_GT(b(16, 16) / b(0, 0), 2.5);  // about 3x brighter at the centre than in the corners
      EXPECT_LT(b(16, 16) / b(0, 0), 3.0);
    } else {
      EXPECT_EQ(lo, hi);
    }
  }
  // The frames hold it: on average they exceed those of the same scan
  // without a background by it (up to the Poisson noise, about 0.1 photons here).
  const auto& with = scan_with(kBackground);
  const auto& without = scan_with(0);
  double excess = 0;
  for (size_t i = 0; i < with.sim.frames.size(); ++i)
    excess += with.sim.frames.data()[i] - without.sim.frames.data()[i];
  EXPECT_NEAR(excess / with.sim.frames.size(), kBackground, 0.1 * kBackground);
}

class BackgroundRefinement : public ::testing::TestWithParam<std::string> {};

// A constant background of 3 photons per pixel: refined as one constant,
// every engine finds it (within 20%; DM, which wanders on noisy data, 35%),
// and fits the data better and finds the object better than without it.
TEST_P(BackgroundRefinement, ConstantIsFoundAndHelps) {
  const std::string name = GetParam();
  const auto& s = scan_with(kBackground);
  const Outcome none = run_engine(s, name, BackgroundMode::none);
  const Outcome constant = run_engine(s, name, BackgroundMode::constant);
  std::printf("  %-5s background %.3f (truth %.1f); object error %.4f -> %.4f; cost %.4f -> %.4f\n", name.c_str(),
              constant.background_mean, kBackground, none.error, constant.error, none.cost.back(),
              constant.cost.back());
  for (double c : constant.cost) ASSERT_TRUE(std::isfinite(c)) << name;
  EXPECT_NEAR(constant.background_mean, kBackground, (name == "dm" ? 0.35 : 0.2) * kBackground) << name;
  // One value on every pixel.
  const auto [lo, hi] =
      std::minmax_element(constant.background.data(), constant.background.data() + constant.background.size());
  EXPECT_EQ(*lo, *hi) << name;
  EXPECT_LT(constant.cost.back(), 0.8 * none.cost.back()) << name;
  // ePIE's own error is large on this scan (about 0.05 without a background in the data).
  EXPECT_LT(constant.error, (name == "epie" ? 1.0 : 0.8) * none.error) << name;
}

INSTANTIATE_TEST_SUITE_P(Engines, BackgroundRefinement,
                         ::testing::Values("ml", "lsqml", "dm", "raar", "sdr", "epie", "rpie", "mpie"));

// Per pixel, on the same flat background: the mean is found as well, and
// the reconstruction gains as much as with the constant.
TEST(BackgroundRefinement, PerPixelFindsAFlatBackground) {
  const auto& s = scan_with(kBackground);
  for (const char* name : {"ml", "raar", "lsqml"}) {
    const Outcome none = run_engine(s, name, BackgroundMode::none);
    const Outcome pixel = run_engine(s, name, BackgroundMode::per_pixel);
    std::printf("  %-5s per pixel: mean %.3f (truth %.1f), dark-pixel error %.3f; object error %.4f -> %.4f\n", name,
                pixel.background_mean, kBackground, dark_pixel_error(s, pixel.background), none.error, pixel.error);
    EXPECT_NEAR(pixel.background_mean, kBackground, 0.2 * kBackground) << name;
    EXPECT_LT(dark_pixel_error(s, pixel.background), 0.2) << name;
    EXPECT_LT(pixel.error, 0.8 * none.error) << name;
  }
}

// A radial background (3x brighter at the centre): per pixel follows its
// shape where the data determine it, clearly better than one constant.
TEST(BackgroundRefinement, PerPixelFollowsAStructuredBackground) {
  const auto& s = scan_with(kBackground, true);
  for (const char* name : {"raar", "rpie"}) {
    const Outcome constant = run_engine(s, name, BackgroundMode::constant);
    const Outcome pixel = run_engine(s, name, BackgroundMode::per_pixel);
    const double e_constant = dark_pixel_error(s, constant.background), e_pixel = dark_pixel_error(s, pixel.background);
    std::printf("  %-5s radial background, dark pixels: error %.3f as a constant, %.3f per pixel\n", name, e_constant,
                e_pixel);
    EXPECT_LT(e_pixel, 0.6 * e_constant) << name;
    EXPECT_LT(e_pixel, 0.25) << name;
  }
}

// Data without a background: the refined one stays near zero and costs the
// reconstruction nothing to speak of.
TEST(BackgroundRefinement, StaysNearZeroWithoutOne) {
  const auto& s = scan_with(0);
  for (const char* name : {"ml", "raar"}) {
    const Outcome none = run_engine(s, name, BackgroundMode::none);
    const Outcome constant = run_engine(s, name, BackgroundMode::constant);
    std::printf("  %-5s no background in the data: refined %.3f; object error %.4f -> %.4f\n", name,
                constant.background_mean, none.error, constant.error);
    EXPECT_LT(constant.background_mean, 0.1 * kBackground) << name;
    EXPECT_LT(constant.error, 1.1 * none.error + 1e-3) << name;
  }
}

// Masked pixels (dead, hot) hold garbage; the background never sees them.
TEST(BackgroundRefinement, MaskedPixelsDoNotEnter) {
  test::SmallScan s = test::make_small_scan(kPhotons, 96, 32, 5, kBackground);
  const int m = s.scan.frame_size;
  auto valid = Kokkos::create_mirror_view_and_copy(HostSpace(), s.scan.valid);
  auto frames = Kokkos::create_mirror_view_and_copy(HostSpace(), s.scan.frames);
  for (int i = 0; i < 40; ++i) {
    const int r = (7 * i + 3) % m, c = (11 * i + 5) % m;
    valid(r, c) = 0;
    for (size_t j = 0; j < frames.extent(0); ++j) frames(j, r, c) = 1e7f;
  }
  Kokkos::deep_copy(s.scan.valid, valid);
  Kokkos::deep_copy(s.scan.frames, frames);
  for (auto mode : {BackgroundMode::constant, BackgroundMode::per_pixel}) {
    const Outcome run = run_engine(s, "ml", mode);
    EXPECT_NEAR(run.background_mean, kBackground, 0.2 * kBackground) << background_mode_name(mode);
    float most = 0;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c)
        if (valid(r, c) > 0) most = std::max(most, run.background(r, c));
    EXPECT_LT(most, 100.0f) << background_mode_name(mode);  // nothing of the 1e7 garbage leaks in
  }
}

// With background none, a background in the state (from an earlier engine)
// changes nothing: the engine runs its kernels without one, and leaves it be.
TEST(BackgroundRefinement, NoneIgnoresTheStatesBackground) {
  const auto& s = scan_with(kBackground);
  for (const char* name : {"ml", "dm", "lsqml", "rpie"}) {
    ReconState with = test::start_state(s, test::true_probe(s));
    with.background = RView2("background", s.scan.frame_size, s.scan.frame_size);
    Kokkos::deep_copy(with.background, 5.0f);
    const Outcome a = run_engine(s, name, BackgroundMode::none, test::start_state(s, test::true_probe(s)), 10);
    const Outcome b = run_engine(s, name, BackgroundMode::none, with, 10);
    // (Equal up to the order of atomic sums on threaded back ends.)
    ASSERT_EQ(a.cost.size(), b.cost.size());
    for (size_t i = 0; i < a.cost.size(); ++i) EXPECT_NEAR(a.cost[i], b.cost[i], 1e-5 * a.cost[i]) << name;
    EXPECT_NEAR(a.error, b.error, 1e-4 * a.error) << name;
    EXPECT_EQ(a.background.size(), 0u) << name;  // none made
    ASSERT_EQ(b.background.size(), size_t(s.scan.frame_size) * s.scan.frame_size);
    for (size_t i = 0; i < b.background.size(); ++i) ASSERT_EQ(b.background.data()[i], 5.0f) << name;
  }
}

// Background names, as on the command line.
TEST(BackgroundMode, ParsesItsNames) {
  for (auto mode : {BackgroundMode::none, BackgroundMode::constant, BackgroundMode::per_pixel})
    EXPECT_EQ(parse_background_mode(background_mode_name(mode)), mode);
  EXPECT_THROW(parse_background_mode("flat"), InputError);
}
