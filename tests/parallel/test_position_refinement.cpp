// Position refinement: from the nominal positions of a scan with a known
// position error, the refined positions are closer to the truth (RMS per
// axis, after removing the mean offset), on one rank and on several: at least
// 2.7x by the gradient method, at least 2x by annealing. Annealing also makes
// the same choices on several ranks as on one.
//
// The result depends on the FFT plans, which are timed once per machine and
// frame size (FramePlan's saved wisdom): with one wisdom, runs repeat bit for
// bit; another measurement can pick other 48 x 48 algorithms and round
// differently, which refinement amplifies. The bounds are set from the spread
// over such plans: see each test.
#include "mpi_world.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <string>

using namespace ptycho;

namespace {

const test::Scene& scene() {
  static const test::Scene* s = test::new_position_error_scene();  // 1.2 px RMS per axis
  return *s;
}

using test::rms_position_error;

std::vector<Position> refine(MPI_Comm comm, PositionMethod method = PositionMethod::gradient,
                             const std::string& chain = "raar:150") {
  const auto& s = scene();
  EngineOptions base;
  base.refine_positions = true;
  base.position_hold = 10;
  base.position_method = method;
  ReconstructOptions opt;
  opt.chain = parse_chain(chain, base);
  DistributedReconstruction r(comm, s.info, opt);
  r.set_data(test::dataset_for(s.sim, s.info, r.my_frames()));
  r.run(nullptr);
  return r.all_positions();
}

}  // namespace

TEST(PositionRefinement, CutsThePositionErrorThreefold) {
  const auto& s = scene();
  const double before = rms_position_error(s.sim.nominal_positions, s.sim.positions);
  const double after = rms_position_error(refine(MPI_COMM_WORLD), s.sim.positions);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::printf("position error RMS per axis: %.3f px nominal, %.3f px refined\n", before, after);
  EXPECT_GT(before, 0.8);
  // Measured (1.186 px nominal) in 50 runs, each with freshly measured
  // wisdom (serial build: 16 at 1 rank, 16 at 3; OpenMP build: 8 at 1 rank of
  // 2 threads, 10 at 3 ranks), and 4 with FFTW_ESTIMATE plans: 0.369-0.396 px
  // refined (3.0x-3.2x). Most plans give 0.377, 0.369 and 0.372 are common,
  // 0.396 came from 2 of the 50 wisdoms; estimate plans give 0.373; reruns
  // with one wisdom repeat exactly. The former bound, 3x (0.395 px), failed
  // for those 2 plans, and once at 0.405 px when the ranks of one run could
  // time different plans. 2.7x is 0.439 px, 10 % above the worst seen.
  EXPECT_LT(after, before / 2.7);
}

TEST(PositionRefinement, AnnealingHalvesThePositionError) {
  const auto& s = scene();
  const double before = rms_position_error(s.sim.nominal_positions, s.sim.positions);
  const double after = rms_position_error(refine(MPI_COMM_WORLD, PositionMethod::annealing), s.sim.positions);
  if (test::world_rank() == 0)
    std::printf("annealing: position error RMS per axis: %.3f px nominal, %.3f px refined\n", before, after);
  EXPECT_GT(before, 0.8);
  // Measured in the same 54 runs: 0.365-0.382 px (3.1x-3.3x); the bound
  // (0.593 px) is far from it.
  EXPECT_LT(after, before / 2);
}

// Trial directions depend on the global frame index and the step, not on the
// rank that holds a frame, so a frame makes the same choices on N ranks as on
// one. Not all of them: the object on N ranks equals the one-rank object only
// to rounding (test_rank_invariance), and a choice between two trials of
// nearly equal misfit can turn on it (about one choice in 10^3 here when
// each rank timed its own FFT plans; none of 213 frames in the 3-rank runs
// checked since all ranks plan from one saved wisdom); a
// changed choice changes the object and later choices near it, so after many
// steps the runs agree in quality, not frame by frame. Hence a short chain
// (4 steps), compared frame by frame, on rank 0 against its own one-rank run.
TEST(PositionRefinement, AnnealingMakesTheSameChoicesOnAnyRankCount) {
  if (test::world_size() == 1) GTEST_SKIP() << "needs several ranks";
  const std::string chain = "raar:14";
  const std::vector<Position> world = refine(MPI_COMM_WORLD, PositionMethod::annealing, chain);
  if (test::world_rank() != 0) return;
  const std::vector<Position> serial = refine(MPI_COMM_SELF, PositionMethod::annealing, chain);
  const auto& s = scene();
  ASSERT_EQ(serial.size(), world.size());
  // One changed choice also moves every frame by its share of the mean-shift
  // removal: compare after removing the median difference.
  const size_t n = world.size();
  std::vector<double> dr(n), dc(n);
  for (size_t j = 0; j < n; ++j) {
    dr[j] = world[j].row - serial[j].row;
    dc[j] = world[j].col - serial[j].col;
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  const double mr = median(dr), mc = median(dc);
  int differ = 0;
  for (size_t j = 0; j < n; ++j) differ += std::hypot(dr[j] - mr, dc[j] - mc) > 1e-4;
  const double moved = rms_position_error(serial, s.sim.nominal_positions);
  std::printf("annealing, %s: %d of %zu frames differ by > 1e-4 px on %d ranks against 1 (frames moved %.3f px RMS)\n",
              chain.c_str(), differ, n, test::world_size(), moved);
  EXPECT_GT(moved, 0.2);           // the positions did move: the comparison means something
  EXPECT_LE(differ, int(n / 10));  // a choice that depended on the rank would move most frames
}
