// Every engine refines the probe on request: from a probe with a defocus
// error, the refined probe is closer to the truth and the data fit better
// than with the probe held fixed, on one rank. (Before the PIE family, sDR
// and LSQ-ML took a probe step from the corrections instead of replacing the
// probe by a least-squares fit to the corrected exit waves, their refinement
// moved the probe away from the truth here: ePIE 0.10 -> 0.31.)
#include "engine_fixture.hpp"
#include "ptycho/core/engine.hpp"

#include <gtest/gtest.h>

#include <complex>

using namespace ptycho;

namespace {

struct Outcome {
  double cost = 0;         ///< the last iteration's cost
  double probe_error = 0;  ///< ||c P - P_true|| / ||P_true|| with the best complex c
};

double probe_error(const HostCView3& p, const HostCView3& truth) {
  std::complex<double> num = 0;
  double den = 0, tt = 0;
  const int m = int(p.extent(1));
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const std::complex<double> a(p(0, r, c).real(), p(0, r, c).imag()), t(truth(0, r, c).real(), truth(0, r, c).imag());
      num += std::conj(a) * t;
      den += std::norm(a);
      tt += std::norm(t);
    }
  const auto g = num / den;
  double e = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) {
      const std::complex<double> a(p(0, r, c).real(), p(0, r, c).imag()), t(truth(0, r, c).real(), truth(0, r, c).imag());
      e += std::norm(g * a - t);
    }
  return std::sqrt(e / tt);
}

const test::SmallScan& defocused_scan() {
  static const test::SmallScan* s = [] {
    sim::SimulationOptions o;
    o.object_size = 128;  // at 96 px the probe sits on the object's edges and RAAR's refinement drifts
    o.probe_size = 32;
    o.step = 5;
    o.photons = 1e7;
    o.probe_error_pct = 20;
    o.seed = 5;
    return new test::SmallScan(test::make_small_scan(o));
  }();
  return *s;
}

Outcome run_engine(const std::string& name, bool refine, int iterations) {
  const auto& s = defocused_scan();
  ReconState st = test::start_state(s, s.sim.nominal_probe);  // the defocused guess
  EngineOptions opt;
  opt.name = name;
  opt.refine_probe = refine;
  opt.probe_hold = 5;
  Outcome run;
  run.cost = test::run_iterations(s, opt, st, iterations).back();
  auto probe = Kokkos::create_mirror_view_and_copy(HostSpace(), st.probe);
  run.probe_error = probe_error(probe, s.sim.probe_modes);
  return run;
}

}  // namespace

class ProbeRefinement : public ::testing::TestWithParam<std::string> {};

TEST_P(ProbeRefinement, MovesTheProbeTowardsTheTruthAndFitsTheDataBetter) {
  const std::string name = GetParam();
  const auto& s = defocused_scan();
  HostCView3 guess("guess", 1, s.scan.frame_size, s.scan.frame_size);
  for (int r = 0; r < s.scan.frame_size; ++r)
    for (int c = 0; c < s.scan.frame_size; ++c) guess(0, r, c) = s.sim.nominal_probe(r, c);
  const double before = probe_error(guess, s.sim.probe_modes);
  const Outcome fixed = run_engine(name, false, 60);
  const Outcome refined = run_engine(name, true, 60);
  std::printf("%-6s probe error %.3f -> %.3f; cost %.4f fixed, %.4f refined\n", name.c_str(), before,
              refined.probe_error, fixed.cost, refined.cost);
  EXPECT_GT(before, 0.1);  // the guess is wrong enough to show something
  EXPECT_LT(refined.probe_error, 0.6 * before) << name;
  EXPECT_LT(refined.cost, 0.8 * fixed.cost) << name;
}

INSTANTIATE_TEST_SUITE_P(Engines, ProbeRefinement,
                         ::testing::Values("dm", "raar", "ml", "epie", "rpie", "mpie", "sdr", "lsqml"));
