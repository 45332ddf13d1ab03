// After the first iteration, an iteration allocates nothing: every engine,
// with and without probe and position refinement (where it can refine them)
// and with two probe modes, on any rank count. Kokkos allocations and
// deallocations are counted through Kokkos Tools' data callbacks between the
// progress reports of iteration 1 and of iteration N - 1 of a one-engine
// chain; the last iteration is left out, since it also finishes the engine
// (orthogonal modes, frames to their new ranks). Refinement starts at
// iteration 3, inside the counted iterations: its first step allocates
// nothing either.
//
// Counted: Kokkos views (labels are recorded, so a failure names them).
// Not counted: std::vector growth and FFTW plans, which Kokkos does not see.
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <impl/Kokkos_Profiling.hpp>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

using namespace ptycho;

namespace {

/// What the callbacks saw while counting.
struct AllocationLog {
  bool counting = false;
  std::vector<std::string> allocated, deallocated;  ///< labels, in order
};

AllocationLog& log_of_allocations() {
  static AllocationLog log;
  return log;
}

void on_allocate(const Kokkos::Profiling::SpaceHandle, const char* label, const void*, const std::uint64_t) {
  if (log_of_allocations().counting) log_of_allocations().allocated.push_back(label ? label : "?");
}

void on_deallocate(const Kokkos::Profiling::SpaceHandle, const char* label, const void*, const std::uint64_t) {
  if (log_of_allocations().counting) log_of_allocations().deallocated.push_back(label ? label : "?");
}

/// Installs the callbacks for the test's lifetime.
class CountAllocations {
 public:
  CountAllocations() {
    Kokkos::Tools::Experimental::set_allocate_data_callback(on_allocate);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(on_deallocate);
    log_of_allocations() = AllocationLog{};
  }
  ~CountAllocations() {
    log_of_allocations().counting = false;
    Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(nullptr);
  }
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
};

const test::Scene& scene() {
  static const test::Scene* s = [] {
    sim::SimulationOptions o;
    o.object_size = 80;
    o.probe_size = 32;
    o.step = 6;
    o.photons = 1e5;
    o.position_error_nm = 8;
    o.seed = 3;
    auto* sc = const_cast<test::Scene*>(test::new_scene(o));
    sc->info = test::scan_info(sc->sim, true);  // nominal positions: refinement moves them
    return sc;
  }();
  return *s;
}

std::string joined(const std::vector<std::string>& labels) {
  std::string s;
  for (const auto& l : labels) s += (s.empty() ? "" : ", ") + l;
  return s.empty() ? "none" : s;
}

/// (engine, refine the probe, refine positions)
using Case = std::tuple<std::string, bool, bool>;

class IterationAllocations : public testing::TestWithParam<Case> {};

TEST_P(IterationAllocations, NoneAfterTheFirstIteration) {
  const auto& [engine, refine_probe, refine_positions] = GetParam();
  const int iterations = 6;
  EngineOptions base;
  base.refine_probe = refine_probe;
  base.probe_hold = 2;  // (held for this engine's first 2 iterations)
  base.refine_positions = refine_positions;
  base.position_hold = 2;
  base.resync_every = 2;  // ML: the exact far-field recomputation happens inside the window
  base.batches = 3;
  ReconstructOptions opt;
  opt.chain = parse_chain(engine + ":" + std::to_string(iterations), base);
  opt.probe_modes = 2;
  opt.batch = 5;
  const test::Scene& sc = scene();
  DistributedReconstruction r(MPI_COMM_WORLD, sc.info, opt);
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));

  CountAllocations counter;
  AllocationLog& log = log_of_allocations();
  int reports = 0;
  RunControl control;
  control.progress = [&](const Progress& p) {
    ++reports;
    log.counting = p.iteration >= 1 && p.iteration < iterations - 1;
  };
  EXPECT_EQ(r.run(control), RunEnd::finished);
  EXPECT_EQ(reports, iterations);
  EXPECT_TRUE(log.allocated.empty()) << engine << " allocated in iterations 2 to " << iterations - 1 << ": "
                                     << joined(log.allocated);
  EXPECT_TRUE(log.deallocated.empty()) << engine << " deallocated in iterations 2 to " << iterations - 1 << ": "
                                       << joined(log.deallocated);
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const std::string& name : engine_names()) {
    const bool positions = engine_support(name).positions;
    out.emplace_back(name, false, false);
    out.emplace_back(name, true, false);
    if (positions) {
      out.emplace_back(name, false, true);
      out.emplace_back(name, true, true);
    }
  }
  return out;
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const auto& [engine, probe, positions] = info.param;
  return engine + (probe ? "_probe" : "") + (positions ? "_positions" : "") + (!probe && !positions ? "_object" : "");
}

INSTANTIATE_TEST_SUITE_P(Engines, IterationAllocations, testing::ValuesIn(cases()), case_name);

}  // namespace
