// Position refinement: from the nominal positions of a scan with a known
// position error, the refined positions are at least 3x closer to the truth
// (RMS per axis, after removing the mean offset), on one rank and on several.
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>

using namespace ptycho;

namespace {

struct Scene {
  sim::Simulation sim;
  ScanInfo info;  ///< with the nominal positions, as a file would give them
};

const Scene& scene() {
  // Built once and never destroyed: its views must not outlive Kokkos::finalize.
  static const Scene* s = new Scene([] {
    sim::SimulationOptions o;
    o.object_size = 160;
    o.probe_size = 48;
    o.step = 6;
    o.photons = 1e7;
    o.position_error_nm = 12;  // 1.2 px RMS per axis
    o.seed = 4;
    Scene sc;
    sc.sim = sim::simulate(o);
    sc.info = test::scan_info(sc.sim, true);
    return sc;
  }());
  return *s;
}

/// RMS per axis of (a - b) after removing the mean offset [px].
double rms_error(const std::vector<Position>& a, const std::vector<Position>& b) {
  double mr = 0, mc = 0;
  for (size_t j = 0; j < a.size(); ++j) {
    mr += a[j].row - b[j].row;
    mc += a[j].col - b[j].col;
  }
  mr /= a.size();
  mc /= a.size();
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j)
    s += std::pow(a[j].row - b[j].row - mr, 2) + std::pow(a[j].col - b[j].col - mc, 2);
  return std::sqrt(s / (2.0 * a.size()));
}

std::vector<Position> refine(MPI_Comm comm) {
  const auto& s = scene();
  EngineOptions base;
  base.refine_positions = true;
  base.position_hold = 10;
  ReconstructOptions opt;
  opt.chain = parse_chain("raar:150", base);
  DistributedReconstruction r(comm, s.info, opt);
  r.set_data(test::dataset_for(s.sim, s.info, r.my_frames()));
  r.run(nullptr);
  return r.all_positions();
}

}  // namespace

TEST(PositionRefinement, CutsThePositionErrorThreefold) {
  const auto& s = scene();
  const double before = rms_error(s.sim.nominal_positions, s.sim.positions);
  const double after = rms_error(refine(MPI_COMM_WORLD), s.sim.positions);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::printf("position error RMS per axis: %.3f px nominal, %.3f px refined\n", before, after);
  EXPECT_GT(before, 0.8);
  EXPECT_LT(after, before / 3);
}
