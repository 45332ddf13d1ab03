// Rank invariance of the parallel-family engines: the reconstruction on the
// world communicator (1, 2, 3 or 4 ranks) equals, tile by tile, the one-rank
// reconstruction every rank computes for itself on MPI_COMM_SELF.
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <tuple>

using namespace ptycho;

namespace {

/// The scan; `background`: with a detector background of 3 photons per pixel.
const test::Scene& scene(bool background = false) {
  auto make = [](double b) {
    sim::SimulationOptions o;
    o.object_size = 100;
    o.probe_size = 32;
    o.step = 5;
    o.photons = 1e5;
    o.seed = 5;
    o.background = b;
    return test::new_scene(o);
  };
  static const test::Scene* plain = make(0);
  static const test::Scene* with_background = make(3);
  return background ? *with_background : *plain;
}

struct Outcome {
  HostCView2 tile;
  Rect owned;
  HostCView3 probe;
  HostRView2 background;
};

Outcome reconstruct(MPI_Comm comm, const std::string& chain, bool refine_probe, int modes = 1,
                    BackgroundMode background = BackgroundMode::none, double tv = 0) {
  ReconstructOptions opt;
  EngineOptions base;
  base.tv = tv;
  base.refine_probe = refine_probe;
  base.probe_hold = 2;
  base.background = background;
  opt.chain = parse_chain(chain, base);
  opt.probe_modes = modes;
  opt.batch = 7;
  const test::Scene& sc = scene(background != BackgroundMode::none);
  DistributedReconstruction r(comm, sc.info, opt);
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  r.run(nullptr);
  return {r.owned_object(), r.owned(), r.probe(), r.background()};
}

/// ||world - serial|| / ||serial|| over the whole object (each rank its owned tile).
double tile_difference(const Outcome& world, const Outcome& serial) {
  double sums[2] = {0, 0};
  for (long r = 0; r < world.owned.rows; ++r)
    for (long c = 0; c < world.owned.cols; ++c) {
      const long gr = world.owned.row0 + r, gc = world.owned.col0 + c;
      const cfloat a = world.tile(r, c);
      const cfloat b = serial.tile(gr, gc);
      sums[0] += std::pow(double(Kokkos::abs(a - b)), 2);
      sums[1] += std::pow(double(Kokkos::abs(b)), 2);
    }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::sqrt(sums[0] / sums[1]);
}

/// ||world - serial|| / ||serial|| of the probe modes.
double probe_difference(const Outcome& a, const Outcome& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.probe.size(); ++i) {
    diff += std::pow(double(Kokkos::abs(a.probe.data()[i] - b.probe.data()[i])), 2);
    ref += std::pow(double(Kokkos::abs(b.probe.data()[i])), 2);
  }
  return std::sqrt(diff / ref);
}

}  // namespace

class ParallelFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelFamily, WorldRunEqualsOneRankRun) {
  const std::string chain = GetParam();
  const bool refine = chain.rfind("ml", 0) != 0;  // probe refinement, except for plain ML
  const Outcome world = reconstruct(MPI_COMM_WORLD, chain, refine);
  const Outcome serial = reconstruct(MPI_COMM_SELF, chain, refine);
  EXPECT_LT(tile_difference(world, serial), 1e-4) << chain;
  EXPECT_LT(probe_difference(world, serial), 1e-4) << chain;
}

INSTANTIATE_TEST_SUITE_P(Engines, ParallelFamily, ::testing::Values("dm:20", "raar:20", "ml:60", "dm:10,ml:30", "lsqml:20"));

/// A refined background (sums over ranks in double) keeps the run rank invariant.
class BackgroundRanks : public ::testing::TestWithParam<std::tuple<std::string, BackgroundMode>> {};

TEST_P(BackgroundRanks, WorldRunEqualsOneRankRun) {
  const auto [chain, mode] = GetParam();
  const Outcome world = reconstruct(MPI_COMM_WORLD, chain, false, 1, mode);
  const Outcome serial = reconstruct(MPI_COMM_SELF, chain, false, 1, mode);
  EXPECT_LT(tile_difference(world, serial), 1e-4) << chain;
  double most = 0, diff = 0;
  for (size_t i = 0; i < serial.background.size(); ++i) {
    most = std::max(most, double(serial.background.data()[i]));
    diff = std::max(diff, std::abs(double(world.background.data()[i] - serial.background.data()[i])));
  }
  EXPECT_GT(most, 1.0) << chain;  // refined, towards the 3 photons of the scan
  EXPECT_LT(diff, 1e-3 * most) << chain;
}

INSTANTIATE_TEST_SUITE_P(Engines, BackgroundRanks,
                         ::testing::Values(std::make_tuple(std::string("dm:10,ml:30"), BackgroundMode::constant),
                                           std::make_tuple(std::string("raar:20"), BackgroundMode::per_pixel),
                                           std::make_tuple(std::string("lsqml:20"), BackgroundMode::per_pixel)));

TEST(ParallelFamily, TwoProbeModesStayRankInvariant) {
  const Outcome world = reconstruct(MPI_COMM_WORLD, "dm:20", true, 2);
  const Outcome serial = reconstruct(MPI_COMM_SELF, "dm:20", true, 2);
  EXPECT_LT(tile_difference(world, serial), 1e-4);
  EXPECT_LT(probe_difference(world, serial), 1e-4);
}

/// The TV prior's edge weights come from the halo-synchronised object: edges
/// across tile borders weigh the same on both sides.
TEST(ParallelFamily, TvPriorStaysRankInvariant) {
  const Outcome world = reconstruct(MPI_COMM_WORLD, "ml:40", false, 1, BackgroundMode::none, 1e-2);
  const Outcome serial = reconstruct(MPI_COMM_SELF, "ml:40", false, 1, BackgroundMode::none, 1e-2);
  const Outcome plain = reconstruct(MPI_COMM_SELF, "ml:40", false);
  EXPECT_LT(tile_difference(world, serial), 1e-4);
  EXPECT_GT(tile_difference(serial, plain), 1e-3);  // the prior acts
}
