#include "ptycho/core/background.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/kernel_util.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ptycho {

BackgroundMode parse_background_mode(const std::string& text) {
  if (text == "none") return BackgroundMode::none;
  if (text == "constant") return BackgroundMode::constant;
  if (text == "pixel") return BackgroundMode::per_pixel;
  PTYCHO_INPUT_ERROR_IF(true, "background: must be 'none', 'constant' or 'pixel', got '" << text << "'");
}

const char* background_mode_name(BackgroundMode mode) {
  switch (mode) {
    case BackgroundMode::constant:
      return "constant";
    case BackgroundMode::per_pixel:
      return "pixel";
    default:
      return "none";
  }
}

double background_mean(const RView2& background, const RView2& valid) {
  if (background.size() == 0 || valid.size() == 0) return 0.0;
  Sums<2> s;
  const long m0 = long(background.extent(0)), m1 = long(background.extent(1));
  Kokkos::parallel_reduce(
      "ptycho::background::mean", Policy2({0, 0}, {m0, m1}),
      KOKKOS_LAMBDA(long r, long c, Sums<2>& acc) {
        if (valid(r, c) > 0) {
          acc.v[0] += background(r, c);
          acc.v[1] += 1;
        }
      },
      Kokkos::Sum<Sums<2>>(s));
  return s.v[1] > 0 ? s.v[0] / s.v[1] : 0.0;
}

namespace {
/// Per pixel: the weight of the prior that pulls b towards its mean, relative
/// to the mean pixel's Fisher information (see background.hpp).
constexpr double kPixelPrior = 0.02;
}  // namespace

Background::Background(BackgroundMode mode, const LocalScan& scan, int batch, ReconState& state)
    : m_mode(mode), m_scan(scan) {
  if (!enabled()) return;
  const int m = scan.frame_size;
  if (state.background.size() == 0) state.background = RView2("ptycho::background", m, m);
  PTYCHO_THROW_IF(int(state.background.extent(0)) != m || int(state.background.extent(1)) != m,
                  "Background: the background is " << state.background.extent(0) << "x" << state.background.extent(1)
                                                   << ", frames are " << m << "x" << m);
  m_b = state.background;
  m_model = RView3("ptycho::background::model", std::max(1, batch), m, m);
  m_slope = View2<double>("ptycho::background::slope", m, m);
  m_curvature = View2<double>("ptycho::background::curvature", m, m);
  m_mean = background_mean(m_b, scan.valid);
}

void Background::reset() {
  if (!enabled()) return;
  Kokkos::deep_copy(m_slope, 0.0);
  Kokkos::deep_copy(m_curvature, 0.0);
}

void Background::accumulate(long first, long count) {
  if (!enabled() || count <= 0) return;
  PTYCHO_THROW_IF(count > long(m_model.extent(0)),
                  "Background: " << count << " frames for a batch of " << m_model.extent(0));
  const int m = m_scan.frame_size;
  const auto frames = m_scan.frames;
  const auto valid = m_scan.valid;
  const auto model = m_model;
  const auto b = m_b;
  const auto slope = m_slope, curv = m_curvature;
  // Rows in parallel, and in a row the frames one after another, each a
  // pixel loop that vectorises (float terms, one division, added into the
  // row's double sums): no two threads share a sum.
  Kokkos::parallel_for(
      "ptycho::background::accumulate", Kokkos::RangePolicy<ExecSpace>(0, m), KOKKOS_LAMBDA(int r) {
        double* PTYCHO_RESTRICT g = &slope(r, 0);
        double* PTYCHO_RESTRICT h = &curv(r, 0);
        const float* PTYCHO_RESTRICT bv = &b(r, 0);
        const float* PTYCHO_RESTRICT v = &valid(r, 0);
        for (long i = 0; i < count; ++i) {
          const float* PTYCHO_RESTRICT mi = &model(i, r, 0);
          const float* PTYCHO_RESTRICT y = &frames(first + i, r, 0);
          for (int c = 0; c < m; ++c) {
            const float t = std::max(mi[c] + bv[c], kIntensityFloor);
            const float yc = y[c] > 0 ? y[c] : 0.0f;
            const float ok = v[c] > 0 ? 1.0f : 0.0f;
            const float inv = ok / t;
            g[c] += ok - yc * inv;  // 1 - y / t on valid pixels
            h[c] += inv;            // 1 / t
          }
        }
      });
}

void Background::update(const Collective& coll) {
  if (!enabled()) return;
  const int m = m_scan.frame_size;
  const size_t plane = size_t(m) * m;
  auto g = Kokkos::create_mirror_view_and_copy(HostSpace(), m_slope);
  auto h = Kokkos::create_mirror_view_and_copy(HostSpace(), m_curvature);
  auto valid = Kokkos::create_mirror_view_and_copy(HostSpace(), m_scan.valid);
  auto b = Kokkos::create_mirror_view_and_copy(HostSpace(), m_b);
  if (m_mode == BackgroundMode::constant) {
    // One value: the sums over valid pixels (the mean of b over them is the
    // constant, also after a chain step with a per-pixel background).
    double s[2] = {0, 0};
    double bsum = 0, nvalid = 0;
    for (size_t i = 0; i < plane; ++i)
      if (valid.data()[i] > 0) {
        s[0] += g.data()[i];
        s[1] += h.data()[i];
        bsum += b.data()[i];
        nvalid += 1;
      }
    coll.sum(s, 2);
    const double b0 = nvalid > 0 ? bsum / nvalid : 0.0;
    const double next = s[1] > 0 ? std::max(0.0, b0 - s[0] / s[1]) : b0;
    for (size_t i = 0; i < plane; ++i) b.data()[i] = float(next);
  } else {
    std::vector<double> sums(2 * plane);
    for (size_t i = 0; i < plane; ++i) {
      sums[i] = g.data()[i];
      sums[plane + i] = h.data()[i];
    }
    coll.sum(sums.data(), sums.size());
    double hsum = 0, hbsum = 0, nvalid = 0;
    for (size_t i = 0; i < plane; ++i)
      if (valid.data()[i] > 0) {
        hsum += sums[plane + i];
        hbsum += sums[plane + i] * b.data()[i];
        nvalid += 1;
      }
    // The prior: weight lambda towards the information-weighted mean of b.
    const double centre = hsum > 0 ? hbsum / hsum : 0.0;
    const double lambda = nvalid > 0 ? kPixelPrior * hsum / nvalid : 0.0;
    for (size_t i = 0; i < plane; ++i) {
      if (!(valid.data()[i] > 0)) continue;  // masked: the data say nothing; b stays
      const double hh = sums[plane + i] + lambda;
      const double bi = b.data()[i];
      if (hh > 0) b.data()[i] = float(std::max(0.0, bi - (sums[i] + lambda * (bi - centre)) / hh));
    }
  }
  Kokkos::deep_copy(m_b, b);
  double bsum = 0, nvalid = 0;
  for (size_t i = 0; i < plane; ++i)
    if (valid.data()[i] > 0) {
      bsum += b.data()[i];
      nvalid += 1;
    }
  m_mean = nvalid > 0 ? bsum / nvalid : 0.0;
}

}  // namespace ptycho
