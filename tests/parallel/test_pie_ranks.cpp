// The sequential engines (ePIE, rPIE, mPIE, sDR) visit positions one by one
// within a rank, so a run on several ranks is not the one-rank run; it must
// still be as good: the benchmark score of the world run is within 0.02 of
// the one-rank run every rank computes for itself on MPI_COMM_SELF.
#include "ptycho/core/metrics.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

using namespace ptycho;

namespace {

const test::Scene& scene() {
  static const test::Scene* s = test::new_scene([] {
    sim::SimulationOptions o;
    o.object_size = 128;
    o.probe_size = 32;
    o.step = 5;
    o.photons = 1e8;
    o.seed = 9;
    return o;
  }());
  return *s;
}

/// Runs `chain` on `comm` and returns the whole object (tiles summed over
/// the communicator). A chain ending in " probe" refines the probe: the
/// illumination that weighs the ranks' changes then follows it.
HostCView2 reconstruct(MPI_Comm comm, std::string chain) {
  const auto& s = scene();
  ReconstructOptions opt;
  EngineOptions base;
  const std::string probe = " probe";
  if (chain.size() > probe.size() && chain.compare(chain.size() - probe.size(), probe.size(), probe) == 0) {
    chain.resize(chain.size() - probe.size());
    base.refine_probe = true;
  }
  opt.chain = parse_chain(chain, base);
  DistributedReconstruction r(comm, s.info, opt);
  r.set_data(test::dataset_for(s.sim, s.info, r.my_frames()));
  r.run(nullptr);
  const auto tile = r.owned_object();
  const Rect o = r.owned();
  std::vector<float> whole(2 * s.info.object_rows * s.info.object_cols, 0.0f);
  for (long a = 0; a < o.rows; ++a)
    for (long b = 0; b < o.cols; ++b) {
      const long i = (o.row0 + a) * s.info.object_cols + o.col0 + b;
      whole[2 * i] = tile(a, b).real();
      whole[2 * i + 1] = tile(a, b).imag();
    }
  MPI_Allreduce(MPI_IN_PLACE, whole.data(), static_cast<int>(whole.size()), MPI_FLOAT, MPI_SUM, comm);
  HostCView2 out("object", s.info.object_rows, s.info.object_cols);
  for (long i = 0; i < long(out.size()); ++i) out.data()[i] = cfloat(whole[2 * i], whole[2 * i + 1]);
  return out;
}

double score(const HostCView2& object) {
  const auto& s = scene();
  ScoredReconstruction rec{object, HostCView3(), s.sim.positions};
  GroundTruth truth{s.sim.object, s.sim.positions, false};
  return score_reconstruction(rec, truth, MeasuredFrames{}).score_standard;
}

}  // namespace

class SequentialFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(SequentialFamily, WorldScoreMatchesOneRankScore) {
  const double world = score(reconstruct(MPI_COMM_WORLD, GetParam()));
  const double serial = score(reconstruct(MPI_COMM_SELF, GetParam()));
  EXPECT_GT(serial, 0.6) << GetParam();
  EXPECT_NEAR(world, serial, 0.02) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Engines, SequentialFamily,
                         ::testing::Values("epie:60", "rpie:60", "mpie:60", "sdr:60", "rpie:60 probe", "sdr:60 probe"));
