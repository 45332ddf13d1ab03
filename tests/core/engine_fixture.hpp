#pragma once
// A small simulated scan on one rank, the whole object as the tile, for
// engine tests.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/simulate.hpp"
#include "serial_collective.hpp"

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

/// The start of an engine test: a flat object, `probe` (M x M, indexable as
/// probe(r, c)) as the one mode, and the scan's true positions.
template <class Probe>
inline ReconState start_state(const SmallScan& s, const Probe& probe) {
  const int m = s.scan.frame_size;
  ReconState st;
  st.object = CView2("object", s.scan.extent.rows, s.scan.extent.cols);
  Kokkos::deep_copy(st.object, cfloat(1, 0));
  st.probe = CView3("probe", 1, m, m);
  auto hp = Kokkos::create_mirror_view(st.probe);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hp(0, r, c) = probe(r, c);
  Kokkos::deep_copy(st.probe, hp);
  st.positions = s.sim.positions;
  return st;
}

/// The scan's true first probe mode, for start_state.
inline auto true_probe(const SmallScan& s) { return Kokkos::subview(s.sim.probe_modes, 0, Kokkos::ALL, Kokkos::ALL); }

/// `iterations` of the engine `opt` from `st` on one rank (batch 8); the cost of each.
inline std::vector<double> run_iterations(const SmallScan& s, const EngineOptions& opt, ReconState& st,
                                          int iterations) {
  Workspace ws(s.scan, 1, 8);
  ws.set_positions(st.positions);
  ws.set_probe(st.probe);
  SerialCollective coll;
  auto engine = make_engine(opt, ws, coll, st);
  std::vector<double> cost;
  for (int i = 0; i < iterations; ++i) cost.push_back(engine->iterate(st));
  return cost;
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
