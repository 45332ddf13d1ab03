// Checkpoints: a run stopped at iteration K, checkpointed on the world
// communicator and resumed on one rank (another rank count) ends with the
// object and probe (and refined background) of the uninterrupted run, up to
// float rounding; rPIE and sDR resumed on the same ranks match too, so their
// kept illumination sums follow the refined probe; damaged, foreign and
// mismatched checkpoints are refused with clear errors.
#include "ptycho/core/error.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/io/checkpoint.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/driver.hpp"
#include "../parallel/simulated_scan.hpp"
#include "../parallel/mpi_world.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace ptycho;
using test::world_rank;
using test::world_size;

namespace {

/// The scan; `background`: with a detector background of 2 photons per pixel.
const test::Scene& scene(bool background = false) {
  auto make = [](double b) {
    sim::SimulationOptions o;
    o.object_size = 90;
    o.probe_size = 32;
    o.step = 6;
    o.photons = 1e5;
    o.seed = 11;
    o.background = b;
    return test::new_scene(o);
  };
  static const test::Scene* plain = make(0);
  static const test::Scene* with_background = make(2);
  return background ? *with_background : *plain;
}

/// A file name of this test and rank count, in the test's working folder.
std::string file_name(const std::string& what) {
  return "checkpoint_test_np" + std::to_string(world_size()) + "_" + what + ".h5";
}

ReconstructOptions options(const std::string& chain, BackgroundMode background = BackgroundMode::none,
                           double proximal = 0, bool low_memory = false) {
  ReconstructOptions opt;
  EngineOptions base;
  base.proximal = proximal;
  base.low_memory = low_memory;
  opt.shift_quantum = low_memory ? 8 : 0;  // as reconstruct --low-memory
  base.refine_probe = true;
  base.probe_hold = 2;
  base.background = background;
  opt.chain = parse_chain(chain, base);
  opt.probe_modes = 2;
  opt.batch = 5;
  return opt;
}

struct Outcome {
  HostCView2 tile;
  Rect owned;
  HostCView3 probe;
  std::vector<double> costs;
  HostRView2 background;
};

Outcome outcome(const DistributedReconstruction& r) {
  return {r.owned_object(), r.owned(), r.probe(), r.state().cost_history, r.background()};
}

/// The whole chain on `comm`, without a stop.
Outcome uninterrupted(MPI_Comm comm, const std::string& chain, BackgroundMode bg = BackgroundMode::none,
                      double proximal = 0, bool low_memory = false) {
  const test::Scene& sc = scene(bg != BackgroundMode::none);
  DistributedReconstruction r(comm, sc.info, options(chain, bg, proximal, low_memory));
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  EXPECT_EQ(r.run(RunControl{}), RunEnd::finished);
  return outcome(r);
}

/// The chain on the world communicator, stopped (as by a signal) after
/// `stop_at` iterations with a checkpoint written to `path`.
void run_and_stop(const std::string& chain, long stop_at, const std::string& path,
                  BackgroundMode bg = BackgroundMode::none, double proximal = 0, bool low_memory = false) {
  const test::Scene& sc = scene(bg != BackgroundMode::none);
  DistributedReconstruction r(MPI_COMM_WORLD, sc.info, options(chain, bg, proximal, low_memory));
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  const RankLayout layout = r.layout();
  RunControl control;
  control.checkpoint_every = 3;  // earlier checkpoints are overwritten, as in a real run
  control.stop_requested = [&] { return r.iterations_done() == stop_at && world_rank() == 0; };  // one rank asks
  control.write_checkpoint = [&](const std::function<void(StateArchive&)>& save) {
    io::write_checkpoint(MPI_COMM_WORLD, path, layout, save);
  };
  EXPECT_EQ(r.run(control), RunEnd::stopped);
  EXPECT_EQ(r.iterations_done(), stop_at);
}

/// Resumes from `path` on `comm` and runs the rest of the chain.
Outcome resume(MPI_Comm comm, const std::string& chain, const std::string& path,
               BackgroundMode bg = BackgroundMode::none, double proximal = 0, bool low_memory = false) {
  const test::Scene& sc = scene(bg != BackgroundMode::none);
  DistributedReconstruction r(comm, sc.info, options(chain, bg, proximal, low_memory));
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  auto archive = io::open_checkpoint(comm, path, r.layout());
  r.restore(*archive);
  archive.reset();
  EXPECT_EQ(r.run(RunControl{}), RunEnd::finished);
  return outcome(r);
}

double relative_difference(const Outcome& a, const Outcome& whole_b) {
  // a: this rank's owned tile; whole_b: the whole object (a one-rank run).
  double sums[2] = {0, 0};
  for (long r = 0; r < a.owned.rows; ++r)
    for (long c = 0; c < a.owned.cols; ++c) {
      const cfloat x = a.tile(r, c), y = whole_b.tile(a.owned.row0 + r, a.owned.col0 + c);
      sums[0] += std::pow(double(Kokkos::abs(x - y)), 2);
      sums[1] += std::pow(double(Kokkos::abs(y)), 2);
    }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::sqrt(sums[0] / sums[1]);
}

/// The relative difference of two runs' tiles on the same ranks (the same owned rectangles).
double same_tiles_difference(const HostCView2& a, const HostCView2& b, const Rect& owned) {
  double sums[2] = {0, 0};
  for (long r = 0; r < owned.rows; ++r)
    for (long c = 0; c < owned.cols; ++c) {
      sums[0] += std::pow(double(Kokkos::abs(a(r, c) - b(r, c))), 2);
      sums[1] += std::pow(double(Kokkos::abs(b(r, c))), 2);
    }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::sqrt(sums[0] / sums[1]);
}

double probe_difference(const Outcome& a, const Outcome& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.probe.size(); ++i) {
    d += std::pow(double(Kokkos::abs(a.probe.data()[i] - b.probe.data()[i])), 2);
    n += std::pow(double(Kokkos::abs(b.probe.data()[i])), 2);
  }
  return std::sqrt(d / n);
}

void remove_on_rank0(const std::string& path) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::remove(path.c_str());
  MPI_Barrier(MPI_COMM_WORLD);
}

struct Case {
  const char* chain;
  long stop_at;
  BackgroundMode background = BackgroundMode::none;
  double proximal = 0;  ///< ML's pull toward the object it started from (its anchor is engine state)
  bool low_memory = false;  ///< DM's far fields as packed halves, ML's remade per batch
};

class ResumeTest : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeTest, ResumedOnOneRankEqualsUninterrupted) {
  const Case c = GetParam();
  const std::string path = file_name("resume_" + std::to_string(c.stop_at));
  const Outcome whole = uninterrupted(MPI_COMM_WORLD, c.chain, c.background, c.proximal, c.low_memory);
  run_and_stop(c.chain, c.stop_at, path, c.background, c.proximal, c.low_memory);
  // every rank, on its own
  const Outcome resumed = resume(MPI_COMM_SELF, c.chain, path, c.background, c.proximal, c.low_memory);
  const double obj = relative_difference(whole, resumed);
  const double probe = probe_difference(whole, resumed);
  if (world_rank() == 0)
    std::printf("  %s stopped at %ld: object %.2e, probe %.2e relative difference\n", c.chain, c.stop_at, obj, probe);
  EXPECT_LT(obj, 1e-4) << c.chain << " stopped at " << c.stop_at;
  EXPECT_LT(probe, 1e-4) << c.chain << " stopped at " << c.stop_at;
  ASSERT_EQ(resumed.costs.size(), whole.costs.size());
  for (size_t i = 0; i < whole.costs.size(); ++i)
    EXPECT_NEAR(resumed.costs[i], whole.costs[i], 1e-4 * std::abs(whole.costs[i])) << "iteration " << i + 1;
  if (c.background != BackgroundMode::none) {
    // The background is part of the state: refined (about 2 photons), and the same after the resume.
    double most = 0, diff = 0;
    for (size_t i = 0; i < whole.background.size(); ++i) {
      most = std::max(most, double(whole.background.data()[i]));
      diff = std::max(diff, std::abs(double(resumed.background.data()[i] - whole.background.data()[i])));
    }
    EXPECT_GT(most, 1.0) << c.chain;
    EXPECT_LT(diff, 1e-3 * most) << c.chain;
  }
  remove_on_rank0(path);
}

// Mid-DM (exit waves), at an engine boundary, mid-ML (conjugate directions),
// mid-LSQ-ML; probe refinement and two modes throughout; and with a
// refined background (constant, per pixel) on a scan that has one; and
// mid-ML with the proximal pull, whose anchor (the object ML started from)
// must come back from the checkpoint, not from the object at the stop; and
// the low-memory mode, mid-DM (its packed far fields) and mid-ML.
INSTANTIATE_TEST_SUITE_P(Chains, ResumeTest,
                         ::testing::Values(Case{"dm:8,ml:8", 5}, Case{"dm:8,ml:8", 8}, Case{"dm:8,ml:8", 13},
                                           Case{"raar:6,lsqml:6", 9}, Case{"dm:8,ml:8", 11, BackgroundMode::constant},
                                           Case{"raar:6,lsqml:6", 9, BackgroundMode::per_pixel},
                                           Case{"dm:8,ml:8", 13, BackgroundMode::none, 2.0},
                                           Case{"dm:8,ml:8", 5, BackgroundMode::none, 0.0, true},
                                           Case{"dm:8,ml:8", 13, BackgroundMode::none, 0.0, true}));

// rPIE and sDR keep their illumination sums between passes and sum them
// again only when the probe has changed (engine_pie.cpp). A resumed run sums
// them afresh, so if a probe step left them stale, the resumed run would
// part from the uninterrupted one. The PIE family's visiting order depends
// on the rank, so both runs use all ranks (the same tiles).
TEST(Checkpoint, PieIlluminationSumsFollowTheRefinedProbe) {
  for (const char* chain : {"rpie:12", "sdr:12"}) {
    const std::string path = file_name(std::string("pie_") + chain);
    const Outcome whole = uninterrupted(MPI_COMM_WORLD, chain);
    run_and_stop(chain, 9, path);
    const Outcome resumed = resume(MPI_COMM_WORLD, chain, path);
    ASSERT_EQ(resumed.owned.rows, whole.owned.rows);
    ASSERT_EQ(resumed.owned.cols, whole.owned.cols);
    EXPECT_LT(same_tiles_difference(resumed.tile, whole.tile, whole.owned), 1e-5) << chain;
    EXPECT_LT(probe_difference(resumed, whole), 1e-5) << chain;
    remove_on_rank0(path);
  }
}

namespace {

/// A scan with a position error of 1.2 px RMS, reconstructed from its nominal
/// positions with position refinement: frames near tile boundaries migrate
/// between the engines.
const test::Scene& moving_scene() {
  static const test::Scene* s = test::new_position_error_scene();
  return *s;
}

ReconstructOptions moving_options(PositionMethod method = PositionMethod::gradient) {
  ReconstructOptions opt;
  EngineOptions base;
  base.refine_positions = true;
  base.position_method = method;
  base.position_hold = 3;
  opt.chain = parse_chain("raar:20,raar:8", base);
  return opt;
}

struct MovingOutcome {
  std::vector<Position> positions;
  long migrated = 0;
  HostCView2 tile;
  Rect owned;
  long strays = 0;
};

/// The chain on `comm`; stopped after `stop_at` iterations into `path` if
/// stop_at > 0, resumed from `path` if `resume_from`.
MovingOutcome run_moving(MPI_Comm comm, long stop_at, const std::string& path, bool resume_from,
                         PositionMethod method = PositionMethod::gradient) {
  const auto& sc = moving_scene();
  DistributedReconstruction r(comm, sc.info, moving_options(method));
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const RankLayout layout = r.layout();
  long strays = 0;  // frames held, after the restore, by a rank that does not own them
  if (resume_from) {
    auto archive = io::open_checkpoint(comm, path, layout);
    r.restore(*archive);
    for (const Position& p : r.state().positions) strays += owner_of(r.decomposition(), p.row, p.col) != rank;
  }
  RunControl control;
  if (stop_at > 0) {
    control.stop_requested = [&] { return r.iterations_done() == stop_at; };
    control.write_checkpoint = [&](const std::function<void(StateArchive&)>& save) {
      io::write_checkpoint(comm, path, layout, save);
    };
  }
  r.run(control);
  return {r.all_positions(), r.frames_migrated(), r.owned_object(), r.owned(), strays};
}

}  // namespace

// Frames that migrated between engines are written by the ranks that hold
// them; a resume on the same rank count (which starts from the nominal
// ownership and migrates again) and on one rank both finish as the
// uninterrupted run did.
TEST(Checkpoint, MigratedFramesResume) {
  const std::string path = file_name("migrated");
  const MovingOutcome whole = run_moving(MPI_COMM_WORLD, 0, path, false);
  if (world_size() > 1) {
    EXPECT_GT(whole.migrated, 0) << "no frame migrated: the test shows nothing";
  }
  if (world_rank() == 0) std::printf("  frames migrated: %ld\n", whole.migrated);
  run_moving(MPI_COMM_WORLD, 24, path, false);  // mid-second engine, after the migration
  for (MPI_Comm comm : {MPI_COMM_WORLD, MPI_COMM_SELF}) {
    const MovingOutcome resumed = run_moving(comm, 0, path, true);
    double worst = 0;
    for (size_t j = 0; j < whole.positions.size(); ++j)
      worst = std::max({worst, std::abs(whole.positions[j].row - resumed.positions[j].row),
                        std::abs(whole.positions[j].col - resumed.positions[j].col)});
    // On the same ranks (the same processes, so the same FFTW plans) the
    // resumed run repeats the uninterrupted one. On one rank the transforms
    // of other ranks' frames round differently (FFTW's timed plans can differ
    // between processes), and the Gauss-Newton position steps amplify that:
    // 0.004 to 0.05 px here after the 4 iterations left, from run to run.
    const double tolerance = comm == MPI_COMM_SELF ? 0.1 : 1e-4;
    EXPECT_LT(worst, tolerance) << (comm == MPI_COMM_SELF ? "resumed on one rank" : "resumed on the same ranks");
    EXPECT_EQ(resumed.strays, 0) << "the restore left frames off the ranks that own their positions";
    if (comm == MPI_COMM_WORLD) EXPECT_LT(same_tiles_difference(resumed.tile, whole.tile, whole.owned), 1e-4);
  }
  remove_on_rank0(path);
}

// A checkpoint of a gradient-method run resumed with annealing (which keeps
// state the gradient method does not write) starts the annealing schedule
// over from the checkpoint's positions, and ends as close to the truth.
TEST(Checkpoint, ResumesAnotherPositionMethod) {
  const std::string path = file_name("method");
  const MovingOutcome stopped = run_moving(MPI_COMM_WORLD, 24, path, false);
  const MovingOutcome resumed = run_moving(MPI_COMM_WORLD, 0, path, true, PositionMethod::annealing);
  const auto& truth = moving_scene().sim.positions;
  const double at_stop = test::rms_position_error(stopped.positions, truth);
  const double after = test::rms_position_error(resumed.positions, truth);
  if (world_rank() == 0)
    std::printf("  position error: %.3f px at the stop, %.3f px after annealing\n", at_stop, after);
  EXPECT_LT(after, 1.05 * at_stop);
  EXPECT_EQ(resumed.strays, 0);
  remove_on_rank0(path);
}

TEST(Checkpoint, RefusesAnotherChainAndModeCount) {
  const std::string path = file_name("mismatch");
  run_and_stop("dm:8,ml:8", 4, path);
  {
    DistributedReconstruction r(MPI_COMM_WORLD, scene().info, options("dm:9,ml:8"));
    r.set_data(test::dataset_for(scene().sim, scene().info, r.my_frames()));
    auto archive = io::open_checkpoint(MPI_COMM_WORLD, path, r.layout());
    try {
      r.restore(*archive);
      ADD_FAILURE() << "a checkpoint of another chain was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("dm:8,ml:8"), std::string::npos) << e.what();
    }
  }
  {
    ReconstructOptions opt = options("dm:8,ml:8");
    opt.probe_modes = 3;
    DistributedReconstruction r(MPI_COMM_WORLD, scene().info, opt);
    r.set_data(test::dataset_for(scene().sim, scene().info, r.my_frames()));
    auto archive = io::open_checkpoint(MPI_COMM_WORLD, path, r.layout());
    try {
      r.restore(*archive);
      ADD_FAILURE() << "a checkpoint with another mode count was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("probe modes"), std::string::npos) << e.what();
    }
  }
  {
    // Stopped mid-DM with complex64 far fields: the low-memory mode keeps
    // packed halves and refuses them by name.
    DistributedReconstruction r(MPI_COMM_WORLD, scene().info, options("dm:8,ml:8", BackgroundMode::none, 0, true));
    r.set_data(test::dataset_for(scene().sim, scene().info, r.my_frames()));
    auto archive = io::open_checkpoint(MPI_COMM_WORLD, path, r.layout());
    try {
      r.restore(*archive);
      ADD_FAILURE() << "a checkpoint without the low-memory mode was resumed with it";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("low_memory"), std::string::npos) << e.what();
    }
  }
  remove_on_rank0(path);
}

// sDR keeps an exit wave per frame: complex64, or packed halves with their
// scale in the low-memory mode. Its visiting order depends on the rank, so
// the resume runs on the same communicator as the uninterrupted run; a
// checkpoint of one mode is refused by the other, by name.
TEST(Checkpoint, SdrResumesItsExitWavesInBothModes) {
  const std::string chain = "sdr:8,ml:4";
  for (const bool low : {false, true}) {
    const std::string path = file_name(low ? "sdr_low" : "sdr_kept");
    const Outcome whole = uninterrupted(MPI_COMM_WORLD, chain, BackgroundMode::none, 0, low);
    run_and_stop(chain, 5, path, BackgroundMode::none, 0, low);
    const Outcome resumed = resume(MPI_COMM_WORLD, chain, path, BackgroundMode::none, 0, low);
    double sums[2] = {0, 0};  // both hold this rank's owned tile
    for (long r = 0; r < whole.owned.rows; ++r)
      for (long c = 0; c < whole.owned.cols; ++c) {
        sums[0] += std::pow(double(Kokkos::abs(resumed.tile(r, c) - whole.tile(r, c))), 2);
        sums[1] += std::pow(double(Kokkos::abs(whole.tile(r, c))), 2);
      }
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    EXPECT_LT(std::sqrt(sums[0] / sums[1]), 1e-4) << "low_memory " << low;
    EXPECT_LT(probe_difference(resumed, whole), 1e-4) << "low_memory " << low;
    ASSERT_EQ(resumed.costs.size(), whole.costs.size());
    for (size_t i = 0; i < whole.costs.size(); ++i)
      EXPECT_NEAR(resumed.costs[i], whole.costs[i], 1e-4 * std::abs(whole.costs[i])) << "iteration " << i + 1;
    // The other mode refuses it.
    DistributedReconstruction r(MPI_COMM_WORLD, scene().info, options(chain, BackgroundMode::none, 0, !low));
    r.set_data(test::dataset_for(scene().sim, scene().info, r.my_frames()));
    auto archive = io::open_checkpoint(MPI_COMM_WORLD, path, r.layout());
    EXPECT_THROW(
        {
          try {
            r.restore(*archive);
          } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("low_memory"), std::string::npos) << e.what();
            throw;
          }
        },
        InputError)
        << "an sdr checkpoint was resumed in the other mode (low_memory " << !low << ")";
    archive.reset();
    remove_on_rank0(path);
  }
}

TEST(Checkpoint, DamagedAndForeignFilesAreRefusedByName) {
  const std::string good = file_name("good"), cut = file_name("truncated"), text = file_name("text");
  run_and_stop("dm:8,ml:8", 6, good);
  if (world_rank() == 0) {
    // A whole checkpoint reads through; half of one does not.
    const io::CheckpointSummary s = io::inspect_checkpoint(good);
    EXPECT_EQ(s.iteration, 6);
    EXPECT_EQ(s.chain, "dm:8,ml:8");
    EXPECT_EQ(s.frames, scene().info.num_frames);
    EXPECT_GT(s.datasets, 5);
    const auto size = std::filesystem::file_size(good);
    std::filesystem::copy_file(good, cut, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(cut, size / 2);
    std::ofstream(text) << "not a checkpoint\n";
    for (const std::string& bad : {cut, text}) {
      try {
        io::inspect_checkpoint(bad);
        ADD_FAILURE() << bad << " passed inspection";
      } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      }
    }
    EXPECT_FALSE(io::is_checkpoint(text));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (const std::string& bad : {cut, text}) {
    DistributedReconstruction r(MPI_COMM_WORLD, scene().info, options("dm:8,ml:8"));
    r.set_data(test::dataset_for(scene().sim, scene().info, r.my_frames()));
    try {
      auto archive = io::open_checkpoint(MPI_COMM_WORLD, bad, r.layout());
      r.restore(*archive);
      ADD_FAILURE() << bad << " was restored";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  remove_on_rank0(good);
  remove_on_rank0(cut);
  remove_on_rank0(text);
}

}  // namespace

// The position gate's verdict (EngineOptions::position_gate) is part of the
// run's state: a run stopped after the test resumes with the same verdict
// and gain, and a "keep them" verdict still holds in the engines after the
// resume (the positions end exactly as given).
TEST(Checkpoint, PositionVerdictSurvivesAResume) {
  const std::string path = file_name("verdict");
  const test::Scene& sc = scene();
  auto gated = [] {
    ReconstructOptions opt = options("raar:12,ml:8");
    for (EngineOptions& e : opt.chain) {
      e.refine_positions = true;
      e.position_hold = 4;
      e.position_method = PositionMethod::annealing;
      e.position_gate = 0.05;
    }
    return opt;
  };
  int verdict = 0;
  double gain = 0;
  {
    DistributedReconstruction r(MPI_COMM_WORLD, sc.info, gated());
    r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
    const RankLayout layout = r.layout();
    RunControl control;
    control.stop_requested = [&] { return r.iterations_done() == 9 && world_rank() == 0; };
    control.write_checkpoint = [&](const std::function<void(StateArchive&)>& save) {
      io::write_checkpoint(MPI_COMM_WORLD, path, layout, save);
    };
    EXPECT_EQ(r.run(control), RunEnd::stopped);
    verdict = r.state().position_verdict;
    gain = r.state().position_gain;
  }
  EXPECT_NE(verdict, 0);  // tested at RAAR's 5th iteration
  DistributedReconstruction r(MPI_COMM_WORLD, sc.info, gated());
  r.set_data(test::dataset_for(sc.sim, sc.info, r.my_frames()));
  auto archive = io::open_checkpoint(MPI_COMM_WORLD, path, r.layout());
  r.restore(*archive);
  archive.reset();
  EXPECT_EQ(r.state().position_verdict, verdict);
  EXPECT_EQ(r.state().position_gain, gain);
  EXPECT_EQ(r.run(RunControl{}), RunEnd::finished);
  EXPECT_EQ(r.state().position_verdict, verdict);  // not tested again in ML
  if (verdict < 0) {
    const std::vector<Position> end = r.all_positions();
    for (size_t j = 0; j < end.size(); ++j) {
      EXPECT_EQ(end[j].row, sc.info.positions[j].row) << j;
      EXPECT_EQ(end[j].col, sc.info.positions[j].col) << j;
    }
  }
  if (world_rank() == 0) std::printf("  verdict %d, gain %.4f, carried over the resume\n", verdict, gain);
  remove_on_rank0(path);
}
