#include "ptycho/core/simulate.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"
#include "ptycho/core/forward.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace ptycho::sim {

namespace {

/// Centred unitary FFT of one host frame (copy in, transform, copy out).
HostCView2 fft_c(const HostCView2& in, FftDirection dir) {
  const int m = static_cast<int>(in.extent(0));
  CView3 d("ptycho::sim::fft", 1, m, m);
  auto hd = Kokkos::create_mirror_view(d);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hd(0, r, c) = in(r, c);
  Kokkos::deep_copy(d, hd);
  FramePlan(m, false).execute(d, dir);
  Kokkos::deep_copy(hd, d);
  HostCView2 out("ptycho::sim::fft_out", m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) out(r, c) = hd(0, r, c);
  return out;
}

/// Centred frequency of index i: (i - M/2) / M cycles/px (fftshift(fftfreq(M))).
double centred_freq(int i, int m) { return (i - m / 2) / double(m); }

double norm2(const HostCView2& a) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::norm(std::complex<double>(a.data()[i].real(), a.data()[i].imag()));
  return s;
}

void normalise_power(HostCView2& p) {
  const float s = static_cast<float>(1.0 / std::sqrt(norm2(p)));
  for (size_t i = 0; i < p.size(); ++i) p.data()[i] *= s;
}

HostCView2 shifted(const HostCView2& probe, double d_row, double d_col) {
  const int m = static_cast<int>(probe.extent(0));
  CView3 d("ptycho::sim::shift", 1, m, m);
  auto hd = Kokkos::create_mirror_view(d);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hd(0, r, c) = probe(r, c);
  Kokkos::deep_copy(d, hd);
  ProbeShifter(m).shift(d, d_row, d_col, d);
  Kokkos::deep_copy(hd, d);
  HostCView2 out("ptycho::sim::shifted", m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) out(r, c) = hd(0, r, c);
  return out;
}

}  // namespace

HostCView2 zone_plate_probe(int m, double pupil_radius, double spot_radius, std::uint64_t seed) {
  if (spot_radius <= 0) spot_radius = m / 5.0;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.0);
  const double alpha = spot_radius * M_PI * pupil_radius;  // edge phase of the defocus
  const double astig = 0.15 * alpha * u(rng);
  const double pr2 = pupil_radius * pupil_radius;
  HostCView2 pupil("ptycho::sim::pupil", m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double fy = centred_freq(r, m), fx = centred_freq(c, m);
      const double q2 = fx * fx + fy * fy;
      if (std::sqrt(q2) >= pupil_radius) continue;
      const double ph = alpha * q2 / pr2 + astig * (fx * fx - fy * fy) / pr2;
      pupil(r, c) = cfloat(std::cos(ph), std::sin(ph));
    }
  auto probe = fft_c(pupil, FftDirection::backward);
  normalise_power(probe);
  return probe;
}

HostCView2 gaussian_probe(int m, double sigma) {
  PTYCHO_INPUT_ERROR_IF(sigma <= 0, "gaussian probe: sigma must be positive, got " << sigma);
  HostCView2 p("ptycho::sim::gaussian_probe", m, m);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double y = r - m / 2, x = c - m / 2;
      p(r, c) = cfloat(std::exp(-(x * x + y * y) / (4 * sigma * sigma)), 0);  // |p|^2 has std sigma
    }
  normalise_power(p);
  return p;
}

HostCView2 propagate(const HostCView2& probe, double dz) {
  const int m = static_cast<int>(probe.extent(0));
  auto f = fft_c(probe, FftDirection::forward);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const double fy = centred_freq(r, m), fx = centred_freq(c, m);
      const double ph = M_PI * dz * (fx * fx + fy * fy) * m;
      f(r, c) *= cfloat(std::cos(ph), std::sin(ph));
    }
  return fft_c(f, FftDirection::backward);
}

double propagation_change(const HostCView2& probe, double dz) {
  auto p = propagate(probe, dz);
  double d = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const auto diff = p.data()[i] - probe.data()[i];
    d += double(diff.real()) * diff.real() + double(diff.imag()) * diff.imag();
  }
  return std::sqrt(d / norm2(probe));
}

double defocus_for_error(const HostCView2& probe, double rel_err) {
  if (rel_err == 0) return 0.0;
  const double target = std::abs(rel_err);
  double lo = 0, hi = 1;
  while (propagation_change(probe, hi) < target) {
    hi *= 2;
    if (hi > 1e4) break;
  }
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (propagation_change(probe, mid) < target ? lo : hi) = mid;
  }
  return std::copysign(0.5 * (lo + hi), rel_err);
}

HostCView3 partial_coherence_modes(const HostCView2& probe, double sigma_px) {
  const int m = static_cast<int>(probe.extent(0));
  if (sigma_px <= 0) {
    HostCView3 one("ptycho::sim::modes", 1, m, m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) one(0, r, c) = probe(r, c);
    return one;
  }
  std::vector<double> g(5);
  for (int i = 0; i < 5; ++i) g[i] = -2 * sigma_px + i * sigma_px;  // linspace(-2s, 2s, 5)
  std::vector<double> w;
  for (double a : g)
    for (double b : g) w.push_back(std::exp(-(a * a + b * b) / (2 * sigma_px * sigma_px)));
  double wsum = 0;
  for (double x : w) wsum += x;
  HostCView3 modes("ptycho::sim::modes", 25, m, m);
  int k = 0;
  for (double a : g)
    for (double b : g) {
      auto s = shifted(probe, -a, -b);
      const float sw = static_cast<float>(std::sqrt(w[k] / wsum));
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) modes(k, r, c) = s(r, c) * sw;
      ++k;
    }
  return modes;
}

HostCView2 object_from_images(const HostRView2& amplitude, const HostRView2& phase, double amp_lo, double amp_hi,
                              double phase_lo, double phase_hi) {
  PTYCHO_INPUT_ERROR_IF(amplitude.extent(0) != phase.extent(0) || amplitude.extent(1) != phase.extent(1),
                        "object images differ in size: amplitude " << amplitude.extent(0) << "x" << amplitude.extent(1)
                                                                   << ", phase " << phase.extent(0) << "x"
                                                                   << phase.extent(1));
  HostCView2 o("ptycho::sim::object", amplitude.extent(0), amplitude.extent(1));
  for (size_t r = 0; r < o.extent(0); ++r)
    for (size_t c = 0; c < o.extent(1); ++c) {
      const double a = amp_lo + (amp_hi - amp_lo) * amplitude(r, c);
      const double p = phase_lo + (phase_hi - phase_lo) * phase(r, c);
      o(r, c) = cfloat(a * std::cos(p), a * std::sin(p));
    }
  return o;
}

HostRView2 siemens_star(int n, int spokes) {
  HostRView2 img("ptycho::sim::siemens_star", n, n);
  const double c = 0.5 * (n - 1), rmax = 0.45 * n;
  const int ss = 4;  // supersampling for smooth spoke edges
  for (int r = 0; r < n; ++r)
    for (int q = 0; q < n; ++q) {
      double acc = 0;
      for (int a = 0; a < ss; ++a)
        for (int b = 0; b < ss; ++b) {
          const double y = r + (a + 0.5) / ss - 0.5 - c, x = q + (b + 0.5) / ss - 0.5 - c;
          const double rad = std::hypot(y, x);
          if (rad > rmax) {
            acc += 0.5;
          } else if (rad > 0.03 * n) {
            acc += std::cos(spokes * std::atan2(y, x)) > 0 ? 1.0 : 0.0;
          }
        }
      img(r, q) = static_cast<float>(acc / (ss * ss));
    }
  return img;
}

HostRView2 rings_pattern(int n, std::uint64_t seed) {
  HostRView2 img("ptycho::sim::rings", n, n);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  struct Blob {
    double y, x, r, w;
  };
  std::vector<Blob> blobs;
  for (int i = 0; i < 24; ++i) blobs.push_back({u(rng) * n, u(rng) * n, (0.03 + 0.12 * u(rng)) * n, u(rng)});
  double lo = 1e30, hi = -1e30;
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) {
      double v = 0;
      for (const auto& b : blobs) {
        const double d = std::hypot(r - b.y, c - b.x) / b.r;
        v += b.w * (std::exp(-d * d) + 0.5 * std::exp(-8 * (d - 1) * (d - 1)));  // disc plus ring
      }
      img(r, c) = static_cast<float>(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  for (size_t i = 0; i < img.size(); ++i) img.data()[i] = static_cast<float>((img.data()[i] - lo) / (hi - lo));
  return img;
}

ScanKind parse_scan_kind(const std::string& s) {
  if (s == "fermat") return ScanKind::fermat;
  if (s == "raster") return ScanKind::raster;
  if (s == "concentric") return ScanKind::concentric;
  PTYCHO_INPUT_ERROR_IF(true, "unknown scan '" << s << "': use fermat, raster or concentric");
}

std::vector<Position> scan_pattern(ScanKind kind, double step, double radius, double jitter, std::uint64_t seed) {
  PTYCHO_INPUT_ERROR_IF(step <= 0, "scan step must be positive, got " << step);
  PTYCHO_INPUT_ERROR_IF(radius <= 0, "the scan does not fit: its radius would be " << radius
                                                                                   << " px (object too small for the probe)");
  std::vector<Position> pts;
  switch (kind) {
    case ScanKind::fermat: {
      const double golden = M_PI * (3 - std::sqrt(5.0));
      const double c = step / std::sqrt(M_PI);
      for (long k = 0;; ++k) {
        const double r = c * std::sqrt(double(k));
        if (r > radius) break;
        const double t = k * golden;
        pts.push_back({r * std::sin(t), r * std::cos(t)});
      }
      break;
    }
    case ScanKind::raster: {
      std::mt19937_64 rng(seed);
      std::uniform_real_distribution<double> u(-jitter * step, jitter * step);
      const int half = static_cast<int>(std::floor(radius / step));
      for (int i = -half; i <= half; ++i)
        for (int j = -half; j <= half; ++j) {
          const double y = i * step, x = j * step;
          const double jy = u(rng), jx = u(rng);
          if (std::hypot(y, x) > radius - jitter * step * 1.5) continue;
          pts.push_back({y + jy, x + jx});
        }
      break;
    }
    case ScanKind::concentric: {
      pts.push_back({0, 0});
      for (int ring = 1; ring * step <= radius; ++ring) {
        const double r = ring * step;
        const int count = std::max(1, static_cast<int>(std::lround(2 * M_PI * r / step)));
        for (int k = 0; k < count; ++k) {
          const double t = 2 * M_PI * k / count + 0.5 * ring;
          pts.push_back({r * std::sin(t), r * std::cos(t)});
        }
      }
      break;
    }
  }
  return pts;
}

HostRView2 background_profile(int m, double mean, bool radial) {
  HostRView2 b("ptycho::sim::background", m, m);
  if (!(mean > 0)) return b;
  double sum = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      // q: distance from the centre in units of M/2; 1 + 2 exp(-2 q^2).
      const double dr = (r - m / 2) / (m / 2.0), dc = (c - m / 2) / (m / 2.0);
      const double v = radial ? 1.0 + 2.0 * std::exp(-(dr * dr + dc * dc) / 0.5) : 1.0;
      b(r, c) = float(v);
      sum += v;
    }
  const double scale = mean * m * m / sum;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) b(r, c) = float(b(r, c) * scale);
  return b;
}

void add_poisson_noise(HostRView3& counts, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < counts.size(); ++i) {
    const double mean = counts.data()[i];
    if (mean <= 0) {
      counts.data()[i] = 0;
      continue;
    }
    std::poisson_distribution<long long> p(mean);
    counts.data()[i] = static_cast<float>(p(rng));
  }
}

Simulation simulate(const SimulationOptions& opt) {
  const int m = opt.probe_size, n = opt.object_size;
  PTYCHO_INPUT_ERROR_IF(m < 8 || m % 2, "--probe-size must be even and at least 8, got " << m);
  PTYCHO_INPUT_ERROR_IF(n < m + 8, "--object-size " << n << " is too small for a probe of " << m << " px");
  PTYCHO_INPUT_ERROR_IF(opt.photons < 0, "--photons must be >= 0, got " << opt.photons);
  PTYCHO_INPUT_ERROR_IF(!(opt.background >= 0) || !std::isfinite(opt.background),
                        "--background must be >= 0, got " << opt.background);
  Simulation s;
  const double dx = opt.object_pixel_m;
  s.geometry.frame_size = m;
  s.geometry.energy_j = opt.energy_kev * 1e3 * kJoulePerEv;
  s.geometry.pixel_x_m = s.geometry.pixel_y_m = opt.detector_pixel_m;
  s.geometry.distance_m = dx * m * opt.detector_pixel_m / s.geometry.wavelength_m();

  // Object: images given, or the built-in Siemens star (amplitude) and rings (phase).
  auto amp = opt.amplitude_image.size() ? opt.amplitude_image : siemens_star(n);
  auto pha = opt.phase_image.size() ? opt.phase_image : rings_pattern(n);
  PTYCHO_INPUT_ERROR_IF(int(amp.extent(0)) != n || int(amp.extent(1)) != n,
                        "the amplitude image is " << amp.extent(0) << "x" << amp.extent(1) << ", expected " << n
                                                  << "x" << n << " (--object-size)");
  s.object = object_from_images(amp, pha);

  // Probe: nominal, then the true one (defocus error) and its coherent modes.
  auto probe = zone_plate_probe(m, 0.2, -1, opt.seed);
  auto true_probe = propagate(probe, defocus_for_error(probe, opt.probe_error_pct / 100.0));
  const double sigma_c = std::abs(opt.partial_coherence_nm) * 1e-9 / dx;
  auto modes = partial_coherence_modes(true_probe, sigma_c);

  // Scan: nominal pattern around the centre; the truth adds the position error.
  const double sigma_p = std::abs(opt.position_error_nm) * 1e-9 / dx;
  const double centre = n / 2.0;
  const double radius = centre - (m / 2.0 + 3 + 3 * sigma_p);
  auto offsets = scan_pattern(opt.scan, opt.step, radius, 0.1, opt.seed + 11);
  std::mt19937_64 rng(opt.seed + 23);
  std::normal_distribution<double> normal(0, 1);
  for (const auto& o : offsets) {
    Position nominal{o.row + centre, o.col + centre};
    s.nominal_positions.push_back(nominal);
    s.positions.push_back({nominal.row + normal(rng) * sigma_p, nominal.col + normal(rng) * sigma_p});
  }

  const double photons = opt.photons > 0 ? opt.photons : kNoiselessPhotons;
  const float scale = static_cast<float>(std::sqrt(photons));
  for (size_t i = 0; i < modes.size(); ++i) modes.data()[i] *= scale;
  for (size_t i = 0; i < probe.size(); ++i) probe.data()[i] *= scale;
  s.probe_modes = modes;
  s.nominal_probe = probe;
  s.frames = model_intensities(s.object, s.probe_modes, s.positions);
  // The detector background: in the expected counts, so the noise covers it.
  s.background = background_profile(m, opt.background, opt.background_radial);
  if (opt.background > 0)
    for (size_t j = 0; j < s.frames.extent(0); ++j)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) s.frames(j, r, c) += s.background(r, c);
  s.photons_noise = opt.photons;
  if (opt.photons > 0) add_poisson_noise(s.frames, opt.seed + 37);

  s.mask = View2<std::uint8_t, HostSpace>("ptycho::sim::mask", m, m);
  if (opt.beamstop_mask) {
    s.has_mask = true;
    std::mt19937_64 mrng(opt.seed + 41);
    std::uniform_int_distribution<int> pix(0, m - 1);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c)
        if ((r - m / 2) * (r - m / 2) + (c - m / 2) * (c - m / 2) <= 4) s.mask(r, c) = 1;
    for (int i = 0; i < 6; ++i) s.mask(pix(mrng), pix(mrng)) = 1;
    std::uniform_real_distribution<double> coin(0, 1);
    for (size_t j = 0; j < s.frames.extent(0); ++j)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c)
          if (s.mask(r, c)) s.frames(j, r, c) = coin(mrng) < 0.5 ? 0.0f : 1e7f;
  }
  return s;
}

void check_options(const SimulationOptions& opt) {
  const auto range = [](double v, double lo, double hi, const char* option, const char* unit) {
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(v) || v < lo || v > hi,
                          option << ": must be from " << lo << " to " << hi << unit << ", got " << v);
  };
  range(opt.object_size, 16, 32768, "--object-size", " px");
  range(opt.probe_size, 8, 4096, "--probe-size", " px");
  PTYCHO_INPUT_ERROR_IF(opt.probe_size % 2 != 0, "--probe-size: must be even, got " << opt.probe_size);
  PTYCHO_INPUT_ERROR_IF(opt.probe_size > opt.object_size, "--probe-size: " << opt.probe_size
                                                                           << " px is larger than --object-size "
                                                                           << opt.object_size << " px");
  range(opt.step, 0.25, opt.object_size, "--step", " px");
  range(opt.photons, 0, 1e15, "--photons", "");
  range(opt.probe_error_pct, -100, 100, "--probe-error", " %");
  range(opt.position_error_nm, 0, 1e5, "--position-error", " nm");
  range(opt.partial_coherence_nm, 0, 1e5, "--partial-coherence", " nm");
  range(opt.energy_kev, 1e-3, 1e3, "--energy", " keV");
  range(opt.object_pixel_m, 1e-12, 1e-3, "--pixel-size", " m");
  range(opt.background, 0, 1e12, "--background", " photons per pixel");
}

double estimate_bytes(const SimulationOptions& opt) {
  const double n = opt.object_size, m = opt.probe_size;
  // Positions in a disc of radius n/2 at a mean spacing `step`: a hexagonal
  // packing holds 2 / (sqrt(3) step^2) per unit area; twice that bounds the scan patterns.
  const double frames = 1.0 + 2.0 * 2.0 / (std::sqrt(3.0) * opt.step * opt.step) * M_PI * n * n / 4.0;
  const double frame_bytes = frames * m * m * 4.0;
  const double modes = 26.0 * m * m * 8.0;
  const double object = n * n * (8.0 + 2 * 4.0 + 8.0);  // object, its two images, a copy
  return 2.0 * frame_bytes + modes + object;  // the frames and a buffer of the same size while they are written
}

}  // namespace ptycho::sim
