// The position update, from the true object and probe and noiseless data,
// moves perturbed positions towards the true ones: by the gradient method and
// by annealing.
#include "../../core/src/position_refine.hpp"
#include "ptycho/core/simulate.hpp"
#include "serial_collective.hpp"

#include <gtest/gtest.h>

#include <cmath>

using namespace ptycho;

namespace {

/// A one-rank scene with the true object and probe, its positions the nominal ones.
struct TrueScene {
  sim::SimulationOptions o;
  sim::Simulation s;
  LocalScan scan;
  ReconState st;

  explicit TrueScene(int modes = 1) {
    o.object_size = 128;
    o.probe_size = 32;
    o.step = 5;
    o.photons = 0;
    o.position_error_nm = 5;  // 0.5 px
    o.seed = 2;
    s = sim::simulate(o);
    const int m = o.probe_size;
    const long n = static_cast<long>(s.positions.size());
    scan.frame_size = m;
    scan.object_rows = scan.object_cols = o.object_size;
    scan.owned = scan.extent = Rect{0, 0, o.object_size, o.object_size};
    for (long j = 0; j < n; ++j) scan.index.push_back(j);
    scan.total_frames = n;
    scan.frames = RView3("frames", n, m, m);
    Kokkos::deep_copy(scan.frames, s.frames);
    scan.valid = RView2("valid", m, m);
    Kokkos::deep_copy(scan.valid, 1.0f);
    st.object = CView2("object", o.object_size, o.object_size);
    Kokkos::deep_copy(st.object, s.object);
    // Extra modes are zero: the data are the first mode's, and the misfit
    // sums the modes' intensities, so zero modes must change nothing.
    st.probe = CView3("probe", modes, m, m);
    auto hp = Kokkos::create_mirror_view(st.probe);
    Kokkos::deep_copy(hp, cfloat(0, 0));
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) hp(0, r, c) = s.probe_modes(0, r, c);
    Kokkos::deep_copy(st.probe, hp);
    st.positions = s.nominal_positions;
  }

  /// RMS per axis after removing the mean offset (the refinement keeps the
  /// mean position: the object's origin is free).
  double error() const {
    const long n = static_cast<long>(st.positions.size());
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
  }

  /// Runs `steps` refinement steps of `opt` and returns the error after them.
  double refine(const EngineOptions& opt, int steps, int modes = 1) {
    Workspace ws(scan, modes, 8);
    ws.set_positions(st.positions);
    ws.set_probe(st.probe);
    test::SerialCollective coll;
    PositionRefiner refiner(ws, coll, opt, st);
    for (int it = 0; it < steps; ++it) {
      refiner.reset();
      refiner.accumulate(st, 0, scan.num_local());
      refiner.apply(st);
      ws.set_probe(st.probe);
      std::printf("step %d: RMS position error %.4f px\n", it, error());
    }
    return error();
  }
};

}  // namespace

TEST(PositionRefiner, MovesTowardsTheTruthWithTheTrueObject) {
  TrueScene scene;
  EngineOptions opt;
  opt.refine_positions = true;  // the refiner keeps work space only then
  const double before = scene.error();
  EXPECT_LT(scene.refine(opt, 8), before / 3);
}

// With the true object every trial's misfit is exact, so annealing must end
// within about its final search radius of the truth; the trial probes being
// off by a pixel or a sign would leave the error where it started. A second,
// empty probe mode checks that modes are summed incoherently per frame.
TEST(PositionRefiner, AnnealingMovesTowardsTheTruthWithTheTrueObject) {
  for (int modes : {1, 2}) {
    TrueScene scene(modes);
    EngineOptions opt;
    opt.refine_positions = true;
    opt.position_method = PositionMethod::annealing;
    const double before = scene.error();
    const double after = scene.refine(opt, 30, modes);
    std::printf("%d mode(s): RMS position error %.4f px -> %.4f px\n", modes, before, after);
    EXPECT_GT(before, 0.3);
    EXPECT_LT(after, before / 4) << modes << " mode(s)";
  }
}
