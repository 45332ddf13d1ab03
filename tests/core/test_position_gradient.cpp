// The position update, from the true object and probe and noiseless data,
// moves perturbed positions towards the true ones.
#include "../../core/src/position_refine.hpp"
#include "ptycho/core/simulate.hpp"

#include <gtest/gtest.h>

#include <cmath>

using namespace ptycho;

TEST(PositionRefiner, MovesTowardsTheTruthWithTheTrueObject) {
  sim::SimulationOptions o;
  o.object_size = 128;
  o.probe_size = 32;
  o.step = 5;
  o.photons = 0;
  o.position_error_nm = 5;  // 0.5 px
  o.seed = 2;
  const auto s = sim::simulate(o);
  const int m = o.probe_size;
  const long n = static_cast<long>(s.positions.size());
  LocalScan scan;
  scan.frame_size = m;
  scan.object_rows = scan.object_cols = o.object_size;
  scan.owned = scan.extent = Rect{0, 0, o.object_size, o.object_size};
  for (long j = 0; j < n; ++j) scan.index.push_back(j);
  scan.total_frames = n;
  scan.frames = RView3("frames", n, m, m);
  Kokkos::deep_copy(scan.frames, s.frames);
  scan.valid = RView2("valid", m, m);
  Kokkos::deep_copy(scan.valid, 1.0f);
  ReconState st;
  st.object = CView2("object", o.object_size, o.object_size);
  Kokkos::deep_copy(st.object, s.object);
  st.probe = CView3("probe", 1, m, m);
  auto hp = Kokkos::create_mirror_view(st.probe);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hp(0, r, c) = s.probe_modes(0, r, c);
  Kokkos::deep_copy(st.probe, hp);
  st.positions = s.nominal_positions;
  Workspace ws(scan, 1, 8);
  ws.set_positions(st.positions);
  ws.set_probe(st.probe);
  SerialCollective coll;
  EngineOptions opt;
  PositionRefiner refiner(ws, coll, opt, st);
  // RMS per axis after removing the mean offset (the refinement keeps the
  // mean position: the object's origin is free).
  auto error = [&] {
    double mr = 0, mc = 0;
    for (long j = 0; j < n; ++j) {
      mr += (st.positions[j].row - s.positions[j].row) / n;
      mc += (st.positions[j].col - s.positions[j].col) / n;
    }
    double e = 0;
    for (long j = 0; j < n; ++j)
      e += std::pow(st.positions[j].row - s.positions[j].row - mr, 2) +
           std::pow(st.positions[j].col - s.positions[j].col - mc, 2);
    return std::sqrt(e / (2.0 * n));
  };
  const double before = error();
  for (int it = 0; it < 8; ++it) {
    refiner.reset();
    refiner.accumulate(st.object, 0, n);
    refiner.apply(st);
    ws.set_probe(st.probe);
    std::printf("iteration %d: RMS position error %.4f px\n", it, error());
  }
  EXPECT_LT(error(), before / 3);
}
