// Every engine lowers its cost and approaches the truth on a small simulated
// scan with the known probe, on one rank.
#include "engine_fixture.hpp"
#include "ptycho/core/engine.hpp"

#include <gtest/gtest.h>

using namespace ptycho;

namespace {

struct Run {
  std::vector<double> cost;
  double error = 0;
};

Run run_engine(const std::string& name, int iterations, double photons = 1e6) {
  auto s = test::make_small_scan(photons);
  ReconState st = test::start_state(s, test::true_probe(s));
  EngineOptions opt;
  opt.name = name;
  Run run;
  run.cost = test::run_iterations(s, opt, st, iterations);
  auto obj = Kokkos::create_mirror_view_and_copy(HostSpace(), st.object);
  run.error = test::object_error(obj, s.sim.object, 30, 66);
  return run;
}

}  // namespace

class EngineConverges : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineConverges, LowersCostAndFindsObject) {
  auto run = run_engine(GetParam(), 60);
  ASSERT_EQ(run.cost.size(), 60u);
  for (double c : run.cost) ASSERT_TRUE(std::isfinite(c));
  EXPECT_LT(run.cost.back(), 0.1 * run.cost.front()) << GetParam();
  // DM wanders on noisy data (its error moves between about 0.07 and 0.13
  // with rounding-level changes); the likelihood engine must do best.
  EXPECT_LT(run.error, GetParam() == "ml" ? 0.05 : 0.15) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineConverges, ::testing::Values("dm", "raar", "sdr", "epie", "rpie", "mpie", "ml", "lsqml"));

