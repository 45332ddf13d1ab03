// Benchmark metrics: SSIM/PSNR on known cases and against a brute-force SSIM,
// sub-pixel registration of known shifts, exact removal of the complex factor
// and phase ramp, the data-consistency term, and a cross-check of the whole
// score against shared/bench/ptybench.py on degraded benchmark truths.
#include "ptycho/core/error.hpp"
#include "ptycho/core/forward.hpp"
#include "ptycho/core/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace ptycho;
namespace fs = std::filesystem;

namespace {

HostDView2 random_real(long h, long w, unsigned seed, double lo = 0.0, double hi = 1.0) {
  HostDView2 a("a", h, w);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) a(r, c) = u(rng);
  return a;
}

HostZView2 random_complex(long h, long w, unsigned seed) {
  HostZView2 a("z", h, w);
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) a(r, c) = cdouble(n(rng), n(rng));
  return a;
}

/// A random object with amplitude in [0.5, 1] and phase in [-1, 0]: like the benchmark's.
HostZView2 random_object(long h, long w, unsigned seed) {
  auto amp = random_real(h, w, seed, 0.5, 1.0);
  auto ph = random_real(h, w, seed + 1000, -1.0, 0.0);
  HostZView2 z("obj", h, w);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) z(r, c) = cdouble(amp(r, c) * std::cos(ph(r, c)), amp(r, c) * std::sin(ph(r, c)));
  return z;
}

HostZView2 copy(const HostZView2& a) {
  HostZView2 b("copy", a.extent(0), a.extent(1));
  Kokkos::deep_copy(b, a);
  return b;
}

double max_abs_diff(const HostZView2& a, const HostZView2& b) {
  double e = 0;
  for (size_t r = 0; r < a.extent(0); ++r)
    for (size_t c = 0; c < a.extent(1); ++c) e = std::max(e, (double)Kokkos::abs(a(r, c) - b(r, c)));
  return e;
}

/// SSIM straight from its definition: for every pixel at least 3 from the
/// border, the 7x7 window's means, sample variances and covariance.
double brute_force_ssim(const HostDView2& x, const HostDView2& y, double range) {
  const long h = x.extent(0), w = x.extent(1);
  const double c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2);
  double sum = 0;
  long count = 0;
  for (long r = 3; r < h - 3; ++r)
    for (long c = 3; c < w - 3; ++c) {
      double mx = 0, my = 0;
      for (long i = -3; i <= 3; ++i)
        for (long j = -3; j <= 3; ++j) {
          mx += x(r + i, c + j);
          my += y(r + i, c + j);
        }
      mx /= 49;
      my /= 49;
      double vx = 0, vy = 0, vxy = 0;
      for (long i = -3; i <= 3; ++i)
        for (long j = -3; j <= 3; ++j) {
          const double dx = x(r + i, c + j) - mx, dy = y(r + i, c + j) - my;
          vx += dx * dx;
          vy += dy * dy;
          vxy += dx * dy;
        }
      vx /= 48;
      vy /= 48;
      vxy /= 48;
      sum += (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      ++count;
    }
  return sum / count;
}

}  // namespace

// ------------------------------------------------------------ PSNR and SSIM

TEST(Metrics, IdenticalImagesHaveSsimOneAndHugePsnr) {
  auto a = random_real(23, 31, 1);
  EXPECT_NEAR(ssim(a, a, 1.0), 1.0, 1e-12);
  EXPECT_NEAR(psnr(a, a, 1.0), 300.0, 1e-9);  // mse floored at 1e-30
  const auto q = image_quality(a, a);
  EXPECT_NEAR(q.ssim, 1.0, 1e-12);
  EXPECT_GT(q.psnr, 290.0);
}

TEST(Metrics, ConstantImagesGiveHandComputedValues) {
  // Constant truth: range 0, so the data range falls back to 1; variances are
  // zero, so SSIM is the luminance term (2 mx my + C1)/(mx^2 + my^2 + C1).
  HostDView2 x("x", 12, 9), y("y", 12, 9);
  Kokkos::deep_copy(x, 0.3);
  Kokkos::deep_copy(y, 0.5);
  const auto q = image_quality(x, y);
  const double c1 = 1e-4;
  EXPECT_NEAR(q.ssim, (2 * 0.3 * 0.5 + c1) / (0.09 + 0.25 + c1), 1e-12);
  EXPECT_NEAR(q.psnr, 10 * std::log10(1.0 / 0.04), 1e-12);
}

TEST(Metrics, ConstantOffsetKeepsStructureAndSetsPsnr) {
  // y = x + d: the structure term (2 vxy + C2)/(vx + vy + C2) is 1, the PSNR is
  // 10 log10(R^2 / d^2) with R the range of the truth.
  auto x = random_real(30, 26, 2);
  HostDView2 y("y", 30, 26);
  const double d = 0.07;
  for (long r = 0; r < 30; ++r)
    for (long c = 0; c < 26; ++c) y(r, c) = x(r, c) + d;
  double lo = 1e9, hi = -1e9;
  for (long r = 0; r < 30; ++r)
    for (long c = 0; c < 26; ++c) lo = std::min(lo, y(r, c)), hi = std::max(hi, y(r, c));
  const auto q = image_quality(x, y);
  EXPECT_NEAR(q.psnr, 10 * std::log10((hi - lo) * (hi - lo) / (d * d)), 1e-9);
  EXPECT_NEAR(q.ssim, brute_force_ssim(x, y, hi - lo), 1e-12);
  EXPECT_LT(q.ssim, 1.0);
  EXPECT_GT(q.ssim, 0.9);
}

TEST(Metrics, SsimMatchesBruteForceOnRandomImages) {
  for (auto [h, w] : {std::pair{7, 7}, std::pair{16, 41}, std::pair{37, 12}}) {
    auto x = random_real(h, w, 3 + h);
    auto y = random_real(h, w, 4 + w);
    for (long r = 0; r < h; ++r)
      for (long c = 0; c < w; ++c) y(r, c) = 0.6 * x(r, c) + 0.4 * y(r, c);
    EXPECT_NEAR(ssim(x, y, 0.8), brute_force_ssim(x, y, 0.8), 1e-12) << h << "x" << w;
    EXPECT_NEAR(ssim(x, y, 0.8), ssim(y, x, 0.8), 1e-14);
  }
  HostDView2 small("small", 6, 10);
  EXPECT_THROW(ssim(small, small, 1.0), Error);
}

TEST(Metrics, ScoreFormulas) {
  EXPECT_DOUBLE_EQ(standard_score(45.0, 0.8), 0.9);
  EXPECT_DOUBLE_EQ(standard_score(60.0, 0.8), 0.9);  // PSNR term clipped at 1
  EXPECT_DOUBLE_EQ(standard_score(10.0, 0.8), 0.4);  // and at 0
  EXPECT_DOUBLE_EQ(standard_score(30.0, 0.5), 0.5);
  EXPECT_DOUBLE_EQ(blind_score(30.0, 0.5, 0.75), 0.4 * 0.5 + 0.4 * 0.5 + 0.2 * 0.75);
  EXPECT_DOUBLE_EQ(blind_score(30.0, 0.5, std::nan("")), 0.4);
}

// ------------------------------------------------------------ geometry

TEST(Metrics, InscribedBoxOfASquareScan) {
  const std::vector<Position> p{{10, 10}, {10, 30}, {30, 10}, {30, 30}, {20, 20}};
  const PixelBox b = inscribed_box(p);
  EXPECT_EQ(b.row_begin, 10);
  EXPECT_EQ(b.row_end, 30);
  EXPECT_EQ(b.col_begin, 10);
  EXPECT_EQ(b.col_end, 30);
  // Centre (5.5, 7.25), half-side 2 / sqrt 2 = 1.414: rows [ceil 4.09, floor 6.91),
  // cols [ceil 5.84, floor 8.66).
  const PixelBox b2 = inscribed_box({{3.5, 7.25}, {7.5, 7.25}, {5.5, 5.25}, {5.5, 9.25}});
  EXPECT_EQ(b2.row_begin, 5);
  EXPECT_EQ(b2.row_end, 6);
  EXPECT_EQ(b2.col_begin, 6);
  EXPECT_EQ(b2.col_end, 8);
  EXPECT_EQ(b2.rows(), 1);
  EXPECT_THROW(inscribed_box({}), Error);
}

TEST(Metrics, CoarseOffsetIsTheRoundedMedianWithHalvesToEven) {
  const std::vector<Position> truth{{0, 0}, {1, 1}, {2, 2}, {3, 3}};
  // Row differences {2.4, 2.6, 9, -5}: median 2.5 -> 2 (half to even).
  // Column differences {-3.5, -3.5, -3.5, 40}: median -3.5 -> -4.
  const std::vector<Position> rec{{2.4, -3.5}, {3.6, -2.5}, {11, -1.5}, {-2, 43}};
  const GridOffset o = coarse_offset(rec, truth);
  EXPECT_EQ(o.row, 2);
  EXPECT_EQ(o.col, -4);
  const GridOffset odd = coarse_offset({{1.6, 0.2}, {1.4, 0.4}, {10, 0.6}}, {{0, 0}, {0, 0}, {0, 0}});
  EXPECT_EQ(odd.row, 2);  // median 1.6
  EXPECT_EQ(odd.col, 0);  // median 0.4
  EXPECT_EQ(coarse_offset({}, truth).row, 0);
  EXPECT_EQ(coarse_offset({{5, 5}}, truth).col, 0);  // count mismatch: no offset
}

TEST(Metrics, ToTruthGridWindowsAndZeroFills) {
  HostZView2 rec("rec", 4, 5);
  for (long r = 0; r < 4; ++r)
    for (long c = 0; c < 5; ++c) rec(r, c) = cdouble(10 * r + c, 1);
  const auto out = to_truth_grid(rec, 3, 3, GridOffset{2, -1});
  for (long r = 0; r < 3; ++r)
    for (long c = 0; c < 3; ++c) {
      const long rr = r + 2, rc = c - 1;
      const bool inside = rr >= 0 && rr < 4 && rc >= 0 && rc < 5;
      EXPECT_EQ(out(r, c), inside ? rec(rr, rc) : cdouble(0)) << r << "," << c;
    }
}

// ------------------------------------------------------------ registration

TEST(Metrics, RegistrationRecoversShiftsOnTheUpsampledGrid) {
  // Shifts on the 1/20 grid are found exactly, and shifting back restores the image.
  for (auto [h, w] : {std::pair{64, 48}, std::pair{65, 51}}) {
    const auto ref = random_complex(h, w, 5);
    for (auto s : {SubpixelShift{3.35, -7.7}, SubpixelShift{-0.05, 0.45}, SubpixelShift{-12.0, 5.0}}) {
      auto moving = copy(ref);
      fourier_shift(moving, s);
      const auto found = register_subpixel(ref, moving, 20);
      EXPECT_NEAR(found.row, -s.row, 1e-9) << h << "x" << w;
      EXPECT_NEAR(found.col, -s.col, 1e-9) << h << "x" << w;
      fourier_shift(moving, found);
      EXPECT_LT(max_abs_diff(moving, ref), 1e-9);
    }
  }
}

TEST(Metrics, RegistrationRecoversAnArbitrarySubpixelShift) {
  const auto ref = random_complex(60, 70, 6);
  for (auto s : {SubpixelShift{0.3371, -2.4123}, SubpixelShift{-5.27, 0.081}}) {
    auto moving = copy(ref);
    fourier_shift(moving, s);
    const auto found = register_subpixel(ref, moving, 20);
    EXPECT_NEAR(found.row, -s.row, 0.05);
    EXPECT_NEAR(found.col, -s.col, 0.05);
    const auto coarse = register_subpixel(ref, moving, 1);
    EXPECT_EQ(coarse.row, std::round(-s.row));
    EXPECT_EQ(coarse.col, std::round(-s.col));
  }
}

// ------------------------------------------------------------ ambiguities

TEST(Metrics, PhaseRampIsRemovedExactly) {
  const long h = 40, w = 52;
  const auto truth = random_object(h, w, 7);
  const PhaseRamp ramp{0.4, 0.006, -0.004};
  HostZView2 rec("rec", h, w);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const double ph = ramp.offset + ramp.per_row * r + ramp.per_col * c;
      rec(r, c) = truth(r, c) * cdouble(std::cos(ph), std::sin(ph));
    }
  const PhaseRamp fit = fit_phase_ramp(rec, truth);
  EXPECT_NEAR(fit.offset, -ramp.offset, 1e-12);
  EXPECT_NEAR(fit.per_row, -ramp.per_row, 1e-13);
  EXPECT_NEAR(fit.per_col, -ramp.per_col, 1e-13);
  apply_phase_ramp(rec, fit);
  EXPECT_LT(max_abs_diff(rec, truth), 1e-12);
}

TEST(Metrics, FactorThenRampRestoresThePhaseAndAUniformAmplitude) {
  // As in ptybench the factor is removed before the ramp, so with a ramp
  // present it also absorbs |<exp(-i ramp)>| (weights |t|^2): the phase comes
  // back exactly and the amplitude up to that known uniform scale.
  const long h = 40, w = 52;
  const auto truth = random_object(h, w, 17);
  const cdouble factor = 1.7 * cdouble(std::cos(2.2), std::sin(2.2));
  const PhaseRamp ramp{0.4, 0.006, -0.004};
  HostZView2 rec("rec", h, w);
  cdouble mean_phasor = 0;
  double weight = 0;
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const double ph = ramp.offset + ramp.per_row * r + ramp.per_col * c;
      rec(r, c) = truth(r, c) * factor * cdouble(std::cos(ph), std::sin(ph));
      const double t2 = std::norm(std::complex<double>(truth(r, c).real(), truth(r, c).imag()));
      mean_phasor += t2 * cdouble(std::cos(ph), -std::sin(ph));
      weight += t2;
    }
  const double scale = Kokkos::abs(mean_phasor / weight);
  const cdouble k = complex_factor(rec, truth);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) rec(r, c) *= k;
  const PhaseRamp fit = fit_phase_ramp(rec, truth);
  EXPECT_NEAR(fit.per_row, -ramp.per_row, 1e-13);
  EXPECT_NEAR(fit.per_col, -ramp.per_col, 1e-13);
  apply_phase_ramp(rec, fit);
  double err = 0;
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) err = std::max(err, (double)Kokkos::abs(rec(r, c) - scale * truth(r, c)));
  EXPECT_LT(err, 1e-12);
  EXPECT_LT(scale, 0.999);  // the test would not notice a missing ramp otherwise
}

TEST(Metrics, ComplexFactorAloneIsExact) {
  const auto truth = random_object(20, 20, 8);
  auto rec = copy(truth);
  const cdouble f(0.3, -1.1);
  for (long r = 0; r < 20; ++r)
    for (long c = 0; c < 20; ++c) rec(r, c) *= f;
  const cdouble k = complex_factor(rec, truth);
  EXPECT_LT(Kokkos::abs(k * f - cdouble(1.0)), 1e-14);
}

TEST(Metrics, AlignmentUndoesOffsetShiftAndFactor) {
  // The result sits on a grid 6 rows and 4 columns larger, at offset (4, 1),
  // shifted by (0.35, -0.6) and scaled by a complex factor.
  const long h = 64, w = 64;
  const auto truth = random_object(h, w, 9);
  auto moved = copy(truth);
  fourier_shift(moved, {0.35, -0.6});
  HostZView2 rec("rec", h + 6, w + 4);
  const cdouble f(0.9, 0.5);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) rec(r + 4, c + 1) = moved(r, c) * f;
  const PixelBox box{12, 52, 10, 50};
  const Alignment al = align_to_truth(rec, truth, box, GridOffset{4, 1});
  EXPECT_NEAR(al.shift.row, -0.35, 1e-9);
  EXPECT_NEAR(al.shift.col, 0.6, 1e-9);
  EXPECT_EQ(al.rec.extent(0), 40u);
  EXPECT_EQ(al.rec.extent(1), 40u);
  EXPECT_LT(max_abs_diff(al.rec, al.truth), 1e-9);
  EXPECT_THROW(align_to_truth(rec, truth, PixelBox{-1, 10, 0, 10}, GridOffset{}), Error);
}

// ------------------------------------------------------------ consistency

TEST(Metrics, ConsistencyIsOneForModelDataAndHalfForDoubledData) {
  const int m = 16;
  HostCView2 obj("obj", 40, 44);
  HostCView3 probe("probe", 2, m, m);
  std::mt19937 rng(10);
  std::uniform_real_distribution<float> u(0.5f, 1.0f);
  for (size_t i = 0; i < obj.size(); ++i) obj.data()[i] = cfloat(u(rng), u(rng) - 0.75f);
  for (size_t i = 0; i < probe.size(); ++i) probe.data()[i] = cfloat(u(rng), -u(rng));
  const std::vector<Position> pos{{12.3, 14.8}, {20.0, 22.5}, {27.9, 29.1}, {15.5, 27.0}};
  const HostRView3 y = model_intensities(obj, probe, pos);
  View2<std::uint8_t, HostSpace> no_mask;
  EXPECT_NEAR(data_consistency(y, no_mask, obj, probe, pos), 1.0, 1e-12);

  // Masked pixels are ignored, whatever they hold.
  View2<std::uint8_t, HostSpace> mask("mask", m, m);
  mask(8, 8) = mask(0, 3) = 1;
  HostRView3 y2("y2", y.extent(0), m, m);
  Kokkos::deep_copy(y2, y);
  for (size_t j = 0; j < y.extent(0); ++j) y2(j, 8, 8) = y2(j, 0, 3) = 1e7f;
  EXPECT_NEAR(data_consistency(y2, mask, obj, probe, pos), 1.0, 1e-12);
  EXPECT_LT(data_consistency(y2, no_mask, obj, probe, pos), 0.5);

  // y = 2 y_hat: 1 - ||y_hat|| / ||2 y_hat|| = 0.5.
  for (size_t i = 0; i < y2.size(); ++i) y2.data()[i] = 2.0f * y.data()[i];
  EXPECT_NEAR(data_consistency(y2, no_mask, obj, probe, pos), 0.5, 1e-12);

  const std::vector<Position> three(pos.begin(), pos.begin() + 3);
  EXPECT_THROW(data_consistency(y, no_mask, obj, probe, three), InputError);
}

// ------------------------------------------------------------ against ptybench

namespace {

/// Runs a shell command; returns its exit status and its standard output.
std::pair<int, std::string> run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

/// The number after "key": in a flat JSON object (NaN allowed, as Python writes it).
double json_number(const std::string& json, const std::string& key, int index = 0) {
  const auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) throw std::runtime_error("no key " + key + " in " + json);
  size_t i = at + key.size() + 3;
  while (json[i] == ' ' || json[i] == '[') ++i;
  for (int k = 0; k < index; ++k) {
    i = json.find(',', i) + 1;
    while (json[i] == ' ') ++i;
  }
  if (json.compare(i, 3, "NaN") == 0) return std::nan("");
  return std::stod(json.substr(i));
}

bool json_bool(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": ");
  if (at == std::string::npos) throw std::runtime_error("no key " + key);
  return json.compare(at + key.size() + 4, 4, "true") == 0;
}

/// Raw arrays of a fixture written by make_metrics_fixture.py.
class Fixture {
 public:
  explicit Fixture(const fs::path& dir) : m_dir(dir) {
    std::ifstream meta(dir / "meta.txt");
    std::string line;
    while (std::getline(meta, line)) {
      std::istringstream is(line);
      std::string name, type;
      is >> name >> type;
      if (name == "blind") {
        m_blind = type == "1";
        continue;
      }
      if (name == "data") {
        m_data = type;
        continue;
      }
      std::vector<size_t> dims;
      size_t d;
      while (is >> d) dims.push_back(d);
      m_dims[name] = dims;
    }
  }
  bool has(const std::string& name) const { return m_dims.count(name) != 0; }
  bool blind() const { return m_blind; }
  const std::string& data_path() const { return m_data; }

  HostCView2 complex2(const std::string& name) const {
    const auto& d = m_dims.at(name);
    HostCView2 v(name, d.at(0), d.at(1));
    read(name, v.data(), v.size() * sizeof(cfloat));
    return v;
  }
  HostCView3 complex3(const std::string& name) const {
    const auto& d = m_dims.at(name);
    HostCView3 v(name, d.at(0), d.at(1), d.at(2));
    read(name, v.data(), v.size() * sizeof(cfloat));
    return v;
  }
  HostRView3 real3(const std::string& name) const {
    const auto& d = m_dims.at(name);
    HostRView3 v(name, d.at(0), d.at(1), d.at(2));
    read(name, v.data(), v.size() * sizeof(float));
    return v;
  }
  View2<std::uint8_t, HostSpace> bytes2(const std::string& name) const {
    const auto& d = m_dims.at(name);
    View2<std::uint8_t, HostSpace> v(name, d.at(0), d.at(1));
    read(name, v.data(), v.size());
    return v;
  }
  std::vector<Position> positions(const std::string& name) const {
    const auto& d = m_dims.at(name);
    std::vector<double> raw(d.at(0) * 2);
    read(name, raw.data(), raw.size() * sizeof(double));
    std::vector<Position> p(d.at(0));
    for (size_t j = 0; j < p.size(); ++j) p[j] = {raw[2 * j], raw[2 * j + 1]};
    return p;
  }

 private:
  void read(const std::string& name, void* dst, size_t bytes) const {
    std::ifstream f(m_dir / (name + ".bin"), std::ios::binary);
    f.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes));
    if (!f || static_cast<size_t>(f.gcount()) != bytes) throw std::runtime_error("short read of " + name);
  }
  fs::path m_dir;
  std::map<std::string, std::vector<size_t>> m_dims;
  bool m_blind = false;
  std::string m_data;
};

struct CrossCase {
  const char* fixture_case;  // a case of make_metrics_fixture.py
  const char* dataset;       // a dataset of shared/bench/data
  bool mask;
};

std::ostream& operator<<(std::ostream& os, const CrossCase& c) {
  return os << c.fixture_case << "/" << c.dataset << (c.mask ? "/masked" : "");
}

class AgainstPtybench : public ::testing::TestWithParam<CrossCase> {};

}  // namespace

TEST_P(AgainstPtybench, ScoreMatchesTheReferenceScorer) {
  const CrossCase cc = GetParam();
  const std::string python = "/usr/bin/python3";
  const fs::path shared = PTYCHO_SHARED_DIR;
  const fs::path scorer = shared / "bench" / "ptybench.py";
  const fs::path truth = shared / "bench" / "data" / (std::string(cc.dataset) + "_truth.h5");
  const fs::path data = shared / "bench" / "data" / (std::string(cc.dataset) + ".cxi");
  const fs::path generator = fs::path(PTYCHO_SOURCE_DIR) / "tests" / "core" / "make_metrics_fixture.py";
  if (access(python.c_str(), X_OK) != 0 || !fs::exists(scorer)) GTEST_SKIP() << "no " << python << " or " << scorer;
  ASSERT_TRUE(fs::exists(truth) && fs::exists(data)) << "benchmark data missing: " << truth;
  ASSERT_TRUE(fs::exists(generator)) << generator;

  std::string tmpl = (fs::temp_directory_path() / "ptycho_metrics_XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = tmpl;
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};

  const auto [gen_rc, gen_out] =
      run_capture(python + " " + quote(generator) + " --truth " + quote(truth) + " --data " + quote(data) + " --out " +
                  quote(dir) + " --case " + cc.fixture_case + (cc.mask ? " --mask" : "") + " 2>&1");
  ASSERT_EQ(gen_rc, 0) << gen_out;
  const Fixture fx(dir);

  const auto [rc, json] = run_capture(python + " " + quote(scorer) + " score " + quote(fx.data_path()) + " " +
                                      quote(dir / "result.h5") + " --truth " + quote(truth) + " --json");
  ASSERT_EQ(rc, 0) << json;

  ScoredReconstruction result{fx.complex2("object"), fx.complex3("probe"), fx.positions("positions")};
  GroundTruth gt{fx.complex2("truth_object"), fx.positions("true_positions"), fx.blind()};
  MeasuredFrames measured{fx.real3("frames"), {}};
  if (fx.has("mask")) measured.mask = fx.bytes2("mask");
  const BenchmarkScore s = score_reconstruction(result, gt, measured);

  // ptybench computes in double with numpy's FFTs and the same formulas; the
  // only single-precision step is our forward model in the consistency term.
  EXPECT_NEAR(s.shift.row, json_number(json, "shift_px", 0), 1e-9) << json;
  EXPECT_NEAR(s.shift.col, json_number(json, "shift_px", 1), 1e-9) << json;
  // Measured agreement: ~1e-13 on PSNR and SSIM, ~1e-7 on the consistency.
  EXPECT_NEAR(s.psnr_amp, json_number(json, "psnr_amp"), 1e-6);
  EXPECT_NEAR(s.psnr_phase, json_number(json, "psnr_phase"), 1e-6);
  EXPECT_NEAR(s.psnr, json_number(json, "psnr"), 1e-6);
  EXPECT_NEAR(s.ssim_amp, json_number(json, "ssim_amp"), 1e-7);
  EXPECT_NEAR(s.ssim_phase, json_number(json, "ssim_phase"), 1e-7);
  EXPECT_NEAR(s.ssim, json_number(json, "ssim"), 1e-7);
  EXPECT_NEAR(s.score_standard, json_number(json, "score_standard"), 1e-7);
  EXPECT_NEAR(s.consistency, json_number(json, "consistency"), 1e-5);
  EXPECT_NEAR(s.score_blind, json_number(json, "score_blind"), 1e-5);
  EXPECT_EQ(s.blind, json_bool(json, "blind"));
  std::printf(
      "[ %s ] C++ - ptybench: psnr %.3e dB, ssim %.3e, score_standard %.3e, consistency %.3e, "
      "score_blind %.3e\n",
      cc.dataset, s.psnr - json_number(json, "psnr"), s.ssim - json_number(json, "ssim"),
      s.score_standard - json_number(json, "score_standard"), s.consistency - json_number(json, "consistency"),
      s.score_blind - json_number(json, "score_blind"));
}

INSTANTIATE_TEST_SUITE_P(BenchData, AgainstPtybench,
                         ::testing::Values(CrossCase{"grown", "standard_s00", false},
                                           CrossCase{"shrunk", "blind_s01", false},
                                           CrossCase{"clean", "standard_s02", true}));
