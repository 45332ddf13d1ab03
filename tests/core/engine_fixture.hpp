#pragma once
// A small simulated scan on one rank, the whole object as the tile, for
// engine tests.
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/simulate.hpp"

#include <complex>

namespace ptycho::test {

struct SmallScan {
  sim::Simulation sim;
  LocalScan scan;
};

/// The scan simulated from `o`, as one rank's local scan.
inline SmallScan make_small_scan(const sim::SimulationOptions& o) {
  const int object_size = o.object_size, probe = o.probe_size;
  SmallScan s;
  s.sim = sim::simulate(o);
  auto& sc = s.scan;
  sc.frame_size = probe;
  sc.object_rows = sc.object_cols = object_size;
  sc.owned = sc.extent = Rect{0, 0, object_size, object_size};
  const long n = static_cast<long>(s.sim.positions.size());
  for (long j = 0; j < n; ++j) sc.index.push_back(j);
  sc.total_frames = n;
  sc.frames = RView3("frames", n, probe, probe);
  Kokkos::deep_copy(sc.frames, s.sim.frames);
  sc.valid = RView2("valid", probe, probe);
  Kokkos::deep_copy(sc.valid, 1.0f);
  return s;
}

/// `background`: the simulation's detector background [photons per pixel
/// and frame], flat or with a radial profile (`radial`).
inline SmallScan make_small_scan(double photons = 1e6, int object_size = 96, int probe = 32, double step = 5,
                                 double background = 0, bool radial = false) {
  sim::SimulationOptions o;
  o.object_size = object_size;
  o.probe_size = probe;
  o.step = step;
  o.photons = photons;
  o.background = background;
  o.background_radial = radial;
  o.seed = 3;
  return make_small_scan(o);
}

/// Relative error of `obj` against `truth` over the central box, after the
/// best global complex factor.
inline double object_error(const HostCView2& obj, const HostCView2& truth, long r0, long r1) {
  std::complex<double> num = 0;
  double den = 0, tt = 0;
  for (long r = r0; r < r1; ++r)
    for (long c = r0; c < r1; ++c) {
      std::complex<double> a(obj(r, c).real(), obj(r, c).imag()), t(truth(r, c).real(), truth(r, c).imag());
      num += std::conj(a) * t;
      den += std::norm(a);
      tt += std::norm(t);
    }
  const auto g = num / den;
  double e = 0;
  for (long r = r0; r < r1; ++r)
    for (long c = r0; c < r1; ++c) {
      std::complex<double> a(obj(r, c).real(), obj(r, c).imag()), t(truth(r, c).real(), truth(r, c).imag());
      e += std::norm(g * a - t);
    }
  return std::sqrt(e / tt);
}

}  // namespace ptycho::test
