// FramePlan: round trip, Parseval, the centred convention against analytic
// cases, a batched transform equal to a frame-by-frame one, and the life of
// the saved FFTW wisdom (made once, reused, a corrupt or foreign file
// replaced, no usable folder -> FFTW_ESTIMATE).
#include "ptycho/core/fft.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

// ---- the saved FFTW wisdom ----

namespace {

/// Points PTYCHO_FFTW_WISDOM_DIR at a fresh folder (or at `dir`) for one
/// test, and restores it afterwards.
class WisdomDir {
 public:
  explicit WisdomDir(const std::string& name) {
    const char* old = std::getenv("PTYCHO_FFTW_WISDOM_DIR");
    if (old) m_old = old;
    m_had = old != nullptr;
    m_dir = (std::filesystem::current_path() / ("wisdom_test_" + name)).string();
    std::filesystem::remove_all(m_dir);
    std::filesystem::create_directories(m_dir);
    setenv("PTYCHO_FFTW_WISDOM_DIR", m_dir.c_str(), 1);
  }
  ~WisdomDir() {
    if (m_had)
      setenv("PTYCHO_FFTW_WISDOM_DIR", m_old.c_str(), 1);
    else
      unsetenv("PTYCHO_FFTW_WISDOM_DIR");
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
  const std::string& dir() const { return m_dir; }

 private:
  std::string m_dir, m_old;
  bool m_had = false;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// The forward transform of fixed random frames with `plan`.
HostCView3 transformed(const FramePlan& plan, int m) {
  auto d = to_device(random_frames(3, m, 11));
  plan.forward(d);
  return to_host(d);
}

bool bit_equal(const HostCView3& a, const HostCView3& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}

}  // namespace

TEST(FftWisdom, PathIsInTheFolderAndNamesSizeAndMachine) {
  WisdomDir w("path");
  const std::string path = fft_wisdom_path(48);
  EXPECT_EQ(fft_wisdom_dir(), w.dir());
  EXPECT_EQ(std::filesystem::path(path).parent_path().string(), w.dir());
  EXPECT_NE(path.find("48x48"), std::string::npos) << path;
  EXPECT_NE(fft_wisdom_path(48), fft_wisdom_path(50));
}

TEST(FftWisdom, MeasuredOnceThenImported) {
  WisdomDir w("once");
  const int m = 24;
  const std::string path = fft_wisdom_path(m);
  ASSERT_FALSE(std::filesystem::exists(path));
  FramePlan first(m);
  EXPECT_EQ(first.plan_source(), PlanSource::measured);
  ASSERT_TRUE(std::filesystem::exists(path));
  const std::string saved = slurp(path);
  EXPECT_EQ(saved.rfind("# ptycho FFTW wisdom v1; precision single; frame 24x24; host ", 0), 0u) << first_line(saved);
  EXPECT_NE(saved.find("fftwf_wisdom"), std::string::npos);
  FramePlan second(m);
  EXPECT_EQ(second.plan_source(), PlanSource::wisdom);
  EXPECT_EQ(slurp(path), saved) << "an import must not rewrite the file";
  EXPECT_TRUE(bit_equal(transformed(first, m), transformed(second, m)));
  // Another frame size has a file of its own.
  FramePlan other(m + 2);
  EXPECT_EQ(other.plan_source(), PlanSource::measured);
  EXPECT_TRUE(std::filesystem::exists(fft_wisdom_path(m + 2)));
  EXPECT_EQ(slurp(path), saved);
}

TEST(FftWisdom, CorruptOrForeignFileIsReplaced) {
  const int m = 20;
  std::string good;
  {
    WisdomDir w("reference");
    FramePlan plan(m);
    ASSERT_EQ(plan.plan_source(), PlanSource::measured);
    good = slurp(fft_wisdom_path(m));
  }
  const std::string header = first_line(good) + "\n";
  const std::string body = good.substr(header.size());
  const std::string foreign = "# ptycho FFTW wisdom v1; precision single; frame 20x20; host elsewhere; cpu other\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage", "not wisdom at all\n\x01\x02"},
      {"empty", ""},
      {"foreign", foreign + body},
      {"truncated", header + body.substr(0, body.size() / 2)},
      {"unrelated", header + "(fftw-3.3.10 fftwf_wisdom #x00000000 #x00000000 #x00000000 #x00000000\n)\n"},
  };
  for (const auto& [name, text] : cases) {
    SCOPED_TRACE(name);
    WisdomDir w("corrupt_" + name);
    const std::string path = fft_wisdom_path(m);
    spit(path, text);
    FramePlan plan(m);
    EXPECT_EQ(plan.plan_source(), PlanSource::measured);
    const std::string now = slurp(path);
    EXPECT_EQ(first_line(now), first_line(good)) << "the file should now be this machine's";
    EXPECT_NE(now, text);
    // and works like any other plan
    auto d = to_device(random_frames(1, m, 5));
    plan.forward(d);
    plan.backward(d);
    auto back = to_host(d);
    auto h = random_frames(1, m, 5);
    double err = 0;
    for (size_t i = 0; i < h.size(); ++i) err = std::max(err, double(Kokkos::abs(back.data()[i] - h.data()[i])));
    EXPECT_LT(err, 1e-4);
  }
}

TEST(FftWisdom, FileFromAnotherProcessIsUsedAsIs) {
  // A valid file made elsewhere (here: copied from another folder) is imported, not re-measured.
  const int m = 28;
  std::string made;
  HostCView3 reference;
  {
    WisdomDir w("maker");
    FramePlan plan(m);
    made = slurp(fft_wisdom_path(m));
    reference = transformed(plan, m);
  }
  WisdomDir w("user");
  spit(fft_wisdom_path(m), made);
  FramePlan plan(m);
  EXPECT_EQ(plan.plan_source(), PlanSource::wisdom);
  EXPECT_EQ(slurp(fft_wisdom_path(m)), made);
  EXPECT_TRUE(bit_equal(transformed(plan, m), reference));
}

TEST(FftWisdom, NoUsableFolderMeansEstimate) {
  WisdomDir w("blocked");
  // A folder below a regular file can be neither made nor written.
  const std::string file = w.dir() + "/a_file";
  spit(file, "x");
  setenv("PTYCHO_FFTW_WISDOM_DIR", (file + "/wisdom").c_str(), 1);
  testing::internal::CaptureStderr();
  FramePlan plan(16);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(plan.plan_source(), PlanSource::estimate);
  EXPECT_NE(said.find("FFTW_ESTIMATE"), std::string::npos) << said;
  auto d = to_device(random_frames(1, 16, 6));
  plan.forward(d);
  plan.backward(d);
  auto back = to_host(d);
  auto h = random_frames(1, 16, 6);
  for (size_t i = 0; i < h.size(); ++i) ASSERT_LT(Kokkos::abs(back.data()[i] - h.data()[i]), 1e-4);
}

TEST(FftWisdom, EstimateWritesNothing) {
  WisdomDir w("estimate");
  FramePlan plan(32, /*effort_measure=*/false);
  EXPECT_EQ(plan.plan_source(), PlanSource::estimate);
  EXPECT_FALSE(std::filesystem::exists(fft_wisdom_path(32)));
}

TEST(FramePlanCount, CountsEveryFrameTransformedInEitherDirection) {
  FramePlan plan(16, false);
  CView3 frames("frames", 5, 16, 16);
  Kokkos::deep_copy(frames, cfloat(1, 0));
  const long before = FramePlan::frames_transformed();
  plan.forward(frames);
  plan.backward(Kokkos::subview(frames, Kokkos::make_pair(0, 3), Kokkos::ALL, Kokkos::ALL));
  EXPECT_EQ(FramePlan::frames_transformed() - before, 8);
}
