#include "ptycho/core/first_guess.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"

#include <algorithm>
#include <cmath>
#include <string>

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
