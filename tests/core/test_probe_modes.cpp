// Probe modes: orthogonalisation keeps the incoherent intensity and makes
// the modes orthogonal; the mismatch estimate recovers the model errors of a
// simulation (probe change, position shift, partial coherence).
#include "ptycho/core/probe_modes.hpp"
#include "ptycho/core/simulate.hpp"

#include <gtest/gtest.h>

#include <complex>
#include <random>

using namespace ptycho;

TEST(ProbeModes, OrthogonalisationKeepsIntensityAndOrthogonalises) {
  const int k = 4, m = 16;
  HostCView3 modes("modes", k, m, m);
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1);
  for (size_t i = 0; i < modes.size(); ++i) modes.data()[i] = cfloat(n(rng), n(rng));
  std::vector<double> before(m * m, 0.0);
  for (int a = 0; a < k; ++a)
    for (int p = 0; p < m * m; ++p) before[p] += std::norm(std::complex<double>(modes.data()[a * m * m + p].real(), modes.data()[a * m * m + p].imag()));
  const auto occ = orthogonalize_modes(modes);
  ASSERT_EQ(occ.size(), size_t(k));
  double total = 0;
  for (int a = 0; a < k; ++a) {
    total += occ[a];
    if (a > 0) EXPECT_GE(occ[a - 1], occ[a] - 1e-9);
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
  for (int p = 0; p < m * m; ++p) {
    double after = 0;
    for (int a = 0; a < k; ++a) after += std::norm(std::complex<double>(modes.data()[a * m * m + p].real(), modes.data()[a * m * m + p].imag()));
    ASSERT_NEAR(after, before[p], 1e-3 * before[p] + 1e-4);
  }
  for (int a = 0; a < k; ++a)
    for (int b = a + 1; b < k; ++b) {
      std::complex<double> s = 0;
      double na = 0, nb = 0;
      for (int p = 0; p < m * m; ++p) {
        const auto x = modes.data()[a * m * m + p], y = modes.data()[b * m * m + p];
        s += std::conj(std::complex<double>(x.real(), x.imag())) * std::complex<double>(y.real(), y.imag());
        na += std::norm(std::complex<double>(x.real(), x.imag()));
        nb += std::norm(std::complex<double>(y.real(), y.imag()));
      }
      EXPECT_LT(std::abs(s) / std::sqrt(na * nb), 1e-4) << a << "," << b;
    }
}

TEST(Mismatch, RecoversProbeErrorOfADefocus) {
  sim::SimulationOptions o;
  o.object_size = 96;
  o.probe_size = 32;
  o.photons = 0;
  o.probe_error_pct = 8;
  const auto s = sim::simulate(o);
  const auto mm = estimate_mismatch(s.nominal_probe, s.probe_modes, s.nominal_positions, s.positions, 10e-9);
  EXPECT_NEAR(mm.probe_error_pct, 8.0, 0.3 * 8.0);
  EXPECT_NEAR(mm.position_error_nm, 0.0, 1e-9);
}

TEST(Mismatch, RecoversPartialCoherenceAndPositionError) {
  sim::SimulationOptions o;
  o.object_size = 128;
  o.probe_size = 48;
  o.photons = 0;
  o.partial_coherence_nm = 8;
  o.position_error_nm = 10;
  const auto s = sim::simulate(o);
  HostCView3 modes("modes", s.probe_modes.extent(0), s.probe_modes.extent(1), s.probe_modes.extent(2));
  Kokkos::deep_copy(modes, s.probe_modes);
  orthogonalize_modes(modes);
  const auto mm = estimate_mismatch(s.nominal_probe, modes, s.nominal_positions, s.positions, 10e-9);
  std::printf("partial coherence %.2f nm (true 8), position error %.2f nm (true 10)\n", mm.partial_coherence_nm,
              mm.position_error_nm);
  EXPECT_NEAR(mm.partial_coherence_nm, 8.0, 0.3 * 8.0);
  EXPECT_NEAR(mm.position_error_nm, 10.0, 0.3 * 10.0);
}

// The probe change is fitted as a defocus: a refined probe that is the true
// (defocused) probe times a complex scale, plus noise and a blur the size of
// partial coherence, gives the true change; a plain difference counts the
// noise and the blur as change as well.
TEST(Mismatch, DefocusFitIgnoresNoiseAndScale) {
  const int m = 64;
  const HostCView2 nominal = sim::zone_plate_probe(m, 0.2, -1, 5);
  for (const double truth : {0.02, 0.09}) {
    const double dz = sim::defocus_for_error(nominal, truth);
    const HostCView2 moved = sim::propagate(nominal, dz);
    HostCView2 refined("refined", m, m);
    std::mt19937 rng(11);
    double power = 0;
    for (size_t i = 0; i < moved.size(); ++i) power += std::norm(std::complex<double>(moved.data()[i].real(), moved.data()[i].imag()));
    // noise of 4 % of the scaled probe's norm, spread evenly over the pixels
    const std::complex<double> scale = std::polar(1.7, 0.6);
    std::normal_distribution<double> n(0, 0.04 * std::abs(scale) * std::sqrt(power / moved.size() / 2));
    double noisy_diff = 0, nominal_power = 0;
    for (size_t i = 0; i < moved.size(); ++i) {
      const std::complex<double> v = scale * std::complex<double>(moved.data()[i].real(), moved.data()[i].imag()) +
                                     std::complex<double>(n(rng), n(rng));
      refined.data()[i] = cfloat(float(v.real()), float(v.imag()));
      const std::complex<double> q(nominal.data()[i].real(), nominal.data()[i].imag());
      noisy_diff += std::norm(v / scale - q);
      nominal_power += std::norm(q);
    }
    const DefocusFit fit = fit_defocus(nominal, refined);
    std::printf("true change %.4f: fitted %.4f (dz %.5f, true %.5f), residual %.4f, plain difference %.4f\n", truth,
                fit.change, fit.defocus, dz, fit.residual, std::sqrt(noisy_diff / nominal_power));
    EXPECT_NEAR(fit.change, truth, 0.05 * truth);
    EXPECT_NEAR(fit.defocus, dz, 0.05 * std::abs(dz));
    EXPECT_NEAR(fit.residual, 0.04, 0.005);
    // The plain difference (the old estimate) is off by more than 30 % at
    // 2 % (it is about 4.5 %): what the fit is for.
    if (truth < 0.05) EXPECT_GT(std::sqrt(noisy_diff / nominal_power), 1.3 * truth);
  }
  // A probe that is not a defocus of the nominal one: a large residual.
  HostCView2 other = sim::zone_plate_probe(m, 0.1, 6, 9);
  EXPECT_GT(fit_defocus(nominal, other).residual, 0.3);
  EXPECT_THROW(fit_defocus(nominal, HostCView2("small", 32, 32)), std::exception);
}
