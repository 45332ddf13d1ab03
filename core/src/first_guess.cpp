#include "ptycho/core/first_guess.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include <numeric>

namespace ptycho {

double probe_power(const HostCView2& probe) {
  double power = 0;
  for (size_t p = 0; p < probe.size(); ++p)
    power += double(Kokkos::abs(probe.data()[p])) * Kokkos::abs(probe.data()[p]);
  return power;
}

void scale_probe_to_power(const HostCView2& probe, double power) {
  const double now = probe_power(probe);
  PTYCHO_THROW_IF(!(now > 0), "scale_probe_to_power: the probe is zero everywhere");
  const float scale = float(std::sqrt(power / now));
  for (size_t p = 0; p < probe.size(); ++p) probe.data()[p] *= scale;
}

HostCView2 probe_from_mean_pattern(const std::vector<double>& mean_frame, int frame_size, double power) {
  const int m = frame_size;
  PTYCHO_THROW_IF(
      m <= 0 || mean_frame.size() != size_t(m) * m,
      "probe_from_mean_pattern: " << mean_frame.size() << " values for a mean frame of " << m << " x " << m);
  CView3 work(Kokkos::view_alloc(std::string("ptycho::probe_estimate"), Kokkos::WithoutInitializing), 1, m, m);
  auto host = Kokkos::create_mirror_view(work);
  double amplitude_power = 0;
  for (size_t p = 0; p < mean_frame.size(); ++p) {
    const double a = std::sqrt(std::max(mean_frame[p], 0.0));
    host.data()[p] = cfloat(float(a), 0.0f);
    amplitude_power += a * a;
  }
  PTYCHO_THROW_IF(!(amplitude_power > 0), "probe_from_mean_pattern: the mean frame has no positive counts");
  Kokkos::deep_copy(work, host);
  // Estimate (not measure) plans: the same algorithm, hence the same bits, on every rank and run.
  const FramePlan plan(m, /*effort_measure=*/false);
  plan.backward(work);
  HostCView2 probe(Kokkos::view_alloc(std::string("ptycho::probe"), Kokkos::WithoutInitializing), m, m);
  Kokkos::deep_copy(probe, Kokkos::subview(work, 0, Kokkos::ALL, Kokkos::ALL));
  scale_probe_to_power(probe, power);
  return probe;
}

// Sweep over positions sorted by column.
double mean_nearest_step(const std::vector<Position>& positions) {
  const size_t n = positions.size();
  if (n < 2) return 0.0;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return positions[a].col < positions[b].col; });
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const Position& p = positions[order[i]];
    double best2 = INFINITY;
    for (size_t j = i + 1; j < n; ++j) {
      const double dc = positions[order[j]].col - p.col;
      if (dc * dc >= best2) break;
      const double dr = positions[order[j]].row - p.row;
      best2 = std::min(best2, dc * dc + dr * dr);
    }
    for (size_t j = i; j-- > 0;) {
      const double dc = p.col - positions[order[j]].col;
      if (dc * dc >= best2) break;
      const double dr = positions[order[j]].row - p.row;
      best2 = std::min(best2, dc * dc + dr * dr);
    }
    sum += std::sqrt(best2);
  }
  return sum / double(n);
}

double probe_diameter(const HostCView2& probe, double fraction) {
  const size_t m = probe.extent(0);
  double total = 0, cr = 0, cc = 0;
  for (size_t r = 0; r < m; ++r)
    for (size_t c = 0; c < m; ++c) {
      const double i = double(Kokkos::abs(probe(r, c))) * Kokkos::abs(probe(r, c));
      total += i;
      cr += i * double(r);
      cc += i * double(c);
    }
  if (!(total > 0)) return 0.0;
  cr /= total;
  cc /= total;
  std::vector<std::pair<double, double>> radial;  // (radius^2, intensity)
  radial.reserve(m * m);
  for (size_t r = 0; r < m; ++r)
    for (size_t c = 0; c < m; ++c) {
      const double i = double(Kokkos::abs(probe(r, c))) * Kokkos::abs(probe(r, c));
      radial.emplace_back((r - cr) * (r - cr) + (c - cc) * (c - cc), i);
    }
  std::sort(radial.begin(), radial.end());
  double acc = 0;
  for (const auto& [r2, i] : radial) {
    acc += i;
    if (acc >= fraction * total) return 2.0 * std::sqrt(r2);
  }
  return 2.0 * std::sqrt(radial.back().first);
}

HostCView2 spread_probe(const HostCView2& probe, double diameter_px, double* c_out) {
  const int m = static_cast<int>(probe.extent(0));
  PTYCHO_THROW_IF(probe.extent(1) != size_t(m), "spread_probe: a probe of " << probe.extent(0) << " x " << probe.extent(1));
  const double target = std::min(diameter_px, 0.75 * m);
  HostCView2 out(Kokkos::view_alloc(std::string("ptycho::probe"), Kokkos::WithoutInitializing), m, m);
  Kokkos::deep_copy(out, probe);
  if (c_out) *c_out = 0;
  if (!(target > probe_diameter(probe, 0.9))) return out;
  // The far field once; each trial multiplies it by the defocus phase and goes back.
  const FramePlan plan(m, /*effort_measure=*/false);
  CView3 work(Kokkos::view_alloc(std::string("ptycho::probe_spread"), Kokkos::WithoutInitializing), 1, m, m);
  auto host = Kokkos::create_mirror_view(work);
  for (size_t p = 0; p < probe.size(); ++p) host.data()[p] = probe.data()[p];
  Kokkos::deep_copy(work, host);
  plan.forward(work);
  HostCView2 far(Kokkos::view_alloc(std::string("ptycho::probe_far"), Kokkos::WithoutInitializing), m, m);
  Kokkos::deep_copy(host, work);
  for (size_t p = 0; p < far.size(); ++p) far.data()[p] = host.data()[p];
  const auto trial = [&](double cc) {
    for (int r = 0; r < m; ++r)
      for (int col = 0; col < m; ++col) {
        const double y = (r - m / 2) / (0.5 * m), x = (col - m / 2) / (0.5 * m);
        const double ph = cc * (x * x + y * y);
        host(0, r, col) = far(r, col) * cfloat(float(std::cos(ph)), float(std::sin(ph)));
      }
    Kokkos::deep_copy(work, host);
    plan.backward(work);
    Kokkos::deep_copy(host, work);
    for (size_t p = 0; p < out.size(); ++p) out.data()[p] = host.data()[p];
    return probe_diameter(out, 0.9);
  };
  double lo = 0, hi = 1;
  while (trial(hi) < target && hi < 1e4) {
    lo = hi;
    hi *= 2;
  }
  for (int it = 0; it < 40; ++it) {
    const double mid = 0.5 * (lo + hi);
    (trial(mid) < target ? lo : hi) = mid;
  }
  trial(hi);
  if (c_out) *c_out = hi;
  return out;
}

HostCView3 probe_modes_from_guess(const HostCView2& guess, int num_modes) {
  const int m = static_cast<int>(guess.extent(0));
  PTYCHO_THROW_IF(num_modes < 1 || guess.extent(1) != guess.extent(0),
                  "probe_modes_from_guess: " << num_modes << " modes of a " << guess.extent(0) << " x "
                                             << guess.extent(1) << " guess");
  HostCView3 modes("ptycho::probe", num_modes, m, m);
  const double power = probe_power(guess);
  auto at = [&](int r, int c) { return guess(std::clamp(r, 0, m - 1), std::clamp(c, 0, m - 1)); };
  for (int k = 0; k < num_modes; ++k) {
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        cfloat v;
        if (k == 0) {
          v = guess(r, c);
        } else if (k == 1) {  // d/dx: the first-order change of a probe shifted along the columns
          v = 0.5f * (at(r, c + 1) - at(r, c - 1));
        } else if (k == 2) {  // d/dy
          v = 0.5f * (at(r + 1, c) - at(r - 1, c));
        } else {
          const double x = (c - m / 2) / double(m), y = (r - m / 2) / double(m);
          const double ph = 2 * M_PI * (k * x + (k % 2 ? y : -y));
          v = guess(r, c) * cfloat(float(std::cos(ph)), float(std::sin(ph)));
        }
        modes(k, r, c) = v;
      }
    if (k == 0) continue;
    auto mode = Kokkos::subview(modes, k, Kokkos::ALL, Kokkos::ALL);
    // A flat guess has no gradient: fall back to the phase ramp's shape.
    if (!(probe_power(mode) > 1e-12 * power))
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) {
          const double ph = 2 * M_PI * (k * (c - m / 2) + (r - m / 2)) / double(m);
          mode(r, c) = guess(r, c) * cfloat(float(std::cos(ph)), float(std::sin(ph)));
        }
    if (probe_power(mode) > 0) scale_probe_to_power(mode, kExtraModePower * power);
  }
  return modes;
}

}  // namespace ptycho
