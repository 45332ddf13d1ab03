// Blind calibration on simulated data with a known mismatch:
//  - probe modes: with partial coherence in the data, 3 modes fit the data
//    better than 1;
//  - the detector mask: garbage in masked pixels does not change the result;
//  - the probe-error estimate is within 30% of the truth.
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>

using namespace ptycho;

namespace {

struct Outcome {
  double cost = 0;
  HostCView2 tile;
  Mismatch mismatch;
};

Outcome reconstruct(const sim::Simulation& s, const std::string& chain, int modes, bool use_mask) {
  const ScanInfo info = test::scan_info(s, true);
  EngineOptions base;
  base.refine_probe = true;
  base.probe_hold = 3;
  ReconstructOptions opt;
  opt.chain = parse_chain(chain, base);
  opt.probe_modes = modes;
  DistributedReconstruction r(MPI_COMM_WORLD, info, opt);
  r.set_data(test::dataset_for(s, info, r.my_frames(), use_mask));
  r.run(nullptr);
  return {r.state().cost_history.back(), r.owned_object(), r.mismatch()};
}

sim::SimulationOptions base_options() {
  sim::SimulationOptions o;
  o.object_size = 128;
  o.probe_size = 32;
  o.step = 5;
  o.photons = 1e7;
  o.seed = 6;
  return o;
}

}  // namespace

TEST(BlindCalibration, ThreeModesFitPartiallyCoherentDataBetterThanOne) {
  auto o = base_options();
  o.partial_coherence_nm = 10;  // 1 px
  const auto s = sim::simulate(o);
  const double one = reconstruct(s, "raar:60", 1, false).cost;
  const double three = reconstruct(s, "raar:60", 3, false).cost;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::printf("amplitude error per pixel: K=1 %.4f, K=3 %.4f\n", one, three);
  EXPECT_LT(three, 0.9 * one);
}

TEST(BlindCalibration, GarbageInMaskedPixelsChangesNothing) {
  auto o = base_options();
  o.beamstop_mask = true;  // masked pixels hold 0 or 1e7 at random
  const auto s = sim::simulate(o);
  auto clean = s;
  clean.frames = HostRView3("clean", s.frames.extent(0), s.frames.extent(1), s.frames.extent(2));
  Kokkos::deep_copy(clean.frames, s.frames);
  const int m = o.probe_size;
  for (size_t j = 0; j < clean.frames.extent(0); ++j)
    for (int a = 0; a < m; ++a)
      for (int b = 0; b < m; ++b)
        if (s.mask(a, b)) clean.frames(j, a, b) = 5.0f;  // other values behind the mask
  const Outcome garbage = reconstruct(s, "dm:10,ml:10", 1, true);
  const Outcome other = reconstruct(clean, "dm:10,ml:10", 1, true);
  ASSERT_EQ(garbage.tile.size(), other.tile.size());
  for (size_t i = 0; i < garbage.tile.size(); ++i) ASSERT_EQ(garbage.tile.data()[i], other.tile.data()[i]) << i;
  EXPECT_EQ(garbage.cost, other.cost);
}

TEST(BlindCalibration, ProbeErrorEstimateWithinThirtyPercent) {
  auto o = base_options();
  o.probe_error_pct = 10;
  const auto s = sim::simulate(o);
  const Outcome r = reconstruct(s, "raar:80", 1, false);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::printf("probe error estimate %.2f %% (true 10 %%)\n", r.mismatch.probe_error_pct);
  EXPECT_NEAR(r.mismatch.probe_error_pct, 10.0, 3.0);
}

namespace {

struct Gated {
  int verdict = 0;
  double gain = 0;
  std::vector<Position> positions;
};

/// raar:40 with positions refined behind the gate (tested at iteration 20).
Gated gated(const sim::Simulation& s, double gate) {
  const ScanInfo info = test::scan_info(s, true);
  EngineOptions base;
  base.refine_probe = true;
  base.probe_hold = 3;
  base.refine_positions = true;
  base.position_hold = 20;
  base.position_method = PositionMethod::annealing;
  base.position_gate = gate;
  ReconstructOptions opt;
  opt.chain = parse_chain("raar:40", base);
  DistributedReconstruction r(MPI_COMM_WORLD, info, opt);
  r.set_data(test::dataset_for(s, info, r.my_frames(), false));
  r.run(nullptr);
  return {r.state().position_verdict, r.state().position_gain, r.all_positions()};
}

double rms_from(const std::vector<Position>& a, const std::vector<Position>& b) {
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j) s += std::pow(a[j].row - b[j].row, 2) + std::pow(a[j].col - b[j].col, 2);
  return std::sqrt(s / (2.0 * a.size()));
}

}  // namespace

// The position gate tells wrong positions from right ones in one chain:
// right ones stay exactly as given (no drift with the probe's errors), wrong
// ones are refined toward the truth; the verdict is the same on any rank
// count (the gain is summed over ranks).
TEST(BlindCalibration, PositionGateRefinesOnlyWrongPositions) {
  auto o = base_options();
  o.probe_error_pct = 8;  // the probe is off in both cases, as in the blind tier
  const auto right = sim::simulate(o);
  o.position_error_nm = 12;  // 1.2 px RMS
  const auto wrong = sim::simulate(o);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  const Gated kept = gated(right, 0.05);
  const Gated moved = gated(wrong, 0.05);
  if (rank == 0)
    std::printf("position test: right positions gain %.4f (verdict %d), wrong ones %.4f (verdict %d)\n", kept.gain,
                kept.verdict, moved.gain, moved.verdict);
  EXPECT_EQ(kept.verdict, -1);
  EXPECT_LT(kept.gain, 0.05);
  EXPECT_EQ(rms_from(kept.positions, right.nominal_positions), 0.0);  // exactly as given
  EXPECT_EQ(moved.verdict, 1);
  EXPECT_GT(moved.gain, 0.05);
  const double before = rms_from(wrong.nominal_positions, wrong.positions);
  const double after = rms_from(moved.positions, wrong.positions);
  if (rank == 0) std::printf("wrong positions: %.3f px RMS from the truth before, %.3f after\n", before, after);
  EXPECT_LT(after, 0.7 * before);
  // A gate no test can pass (1: the whole misfit) keeps even wrong positions.
  const Gated strict = gated(wrong, 1.0);
  EXPECT_EQ(strict.verdict, -1);
  EXPECT_EQ(rms_from(strict.positions, wrong.nominal_positions), 0.0);
  EXPECT_NEAR(strict.gain, moved.gain, 1e-9);  // the same test, the same number
}
