#pragma once
// A simulated scan handed to the distributed driver as a file would be:
// its ScanInfo, and each rank's Dataset of only its own frames.
#include "ptycho/core/dataset.hpp"
#include "ptycho/core/simulate.hpp"

#include <cmath>
#include <vector>

namespace ptycho::test {

/// A simulated scan and its metadata.
struct Scene {
  sim::Simulation sim;
  ScanInfo info;
};

/// The scan's metadata; `nominal` picks the positions a file would hold
/// (the nominal ones) rather than the true ones.
inline ScanInfo scan_info(const sim::Simulation& s, bool nominal = false) {
  ScanInfo info;
  info.source = "simulated";
  info.geometry = s.geometry;
  info.num_frames = static_cast<long>(s.positions.size());
  info.positions = nominal ? s.nominal_positions : s.positions;
  info.object_rows = static_cast<long>(s.object.extent(0));
  info.object_cols = static_cast<long>(s.object.extent(1));
  return info;
}

/// This rank's share: frames `mine` (global indices), the nominal probe, and
/// the simulation's mask if `use_mask` (else no pixel is masked).
inline Dataset dataset_for(const sim::Simulation& s, const ScanInfo& info, const std::vector<long>& mine,
                           bool use_mask = false) {
  const int m = s.geometry.frame_size;
  Dataset d;
  d.info = info;
  d.frame_index = mine;
  d.frames = HostRView3("frames", mine.size(), m, m);
  for (size_t i = 0; i < mine.size(); ++i)
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b) d.frames(i, a, b) = s.frames(mine[i], a, b);
  d.mask = View2<std::uint8_t, HostSpace>("mask", m, m);
  if (use_mask) Kokkos::deep_copy(d.mask, s.mask);
  d.probe = s.nominal_probe;
  return d;
}

/// A scene simulated from `o`, kept for the whole test program: hold it in a
/// function-local static. It is never destroyed, since its views must not
/// outlive Kokkos::finalize.
inline const Scene* new_scene(const sim::SimulationOptions& o) {
  auto* sc = new Scene;
  sc->sim = sim::simulate(o);
  sc->info = scan_info(sc->sim);
  return sc;
}

/// A scan with a position error of 1.2 px RMS per axis (12 nm at 10 nm
/// pixels), for position refinement: object 160, probe 48, step 6, 1e7
/// photons. Reconstruct it from its nominal positions (scan_info(s, true)).
inline sim::SimulationOptions position_error_options() {
  sim::SimulationOptions o;
  o.object_size = 160;
  o.probe_size = 48;
  o.step = 6;
  o.photons = 1e7;
  o.position_error_nm = 12;
  o.seed = 4;
  return o;
}

/// The scene of position_error_options() with the nominal positions in its
/// ScanInfo, as a file would give them; kept like new_scene's.
inline const Scene* new_position_error_scene() {
  auto* sc = const_cast<Scene*>(new_scene(position_error_options()));
  sc->info = scan_info(sc->sim, true);
  return sc;
}

/// RMS per axis of (a - b) after removing the mean offset [px].
inline double rms_position_error(const std::vector<Position>& a, const std::vector<Position>& b) {
  double mr = 0, mc = 0;
  for (size_t j = 0; j < a.size(); ++j) {
    mr += a[j].row - b[j].row;
    mc += a[j].col - b[j].col;
  }
  mr /= a.size();
  mc /= a.size();
  double sum = 0;
  for (size_t j = 0; j < a.size(); ++j)
    sum += std::pow(a[j].row - b[j].row - mr, 2) + std::pow(a[j].col - b[j].col - mc, 2);
  return std::sqrt(sum / (2.0 * a.size()));
}

}  // namespace ptycho::test
