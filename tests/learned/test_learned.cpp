// The learned engines through the library (jobs/learned.hpp): the plugin is
// loaded only when a network is asked for, a few training steps lower the
// loss (for each design: scan, frame and the PtychoNN-style raw baseline),
// model files are checked, the nn stage does not depend on the rank count,
// fine-tuning on a scan lowers its misfit (rank count again irrelevant), the
// shipped model loads and runs, and its guess averaged over the square's
// symmetries (--nn-flips) is a different one, again whatever the rank count.
#include "mpi_world.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/jobs/learned.hpp"
#include "ptycho/jobs/reconstruction.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ptycho {
namespace {

const std::string kScan = std::string(PTYCHO_SHARED_DIR) + "/bench/sparse/sparse_s00.cxi";

bool libtorch_loaded() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find("libtorch") != std::string::npos;
}

std::string scratch(const std::string& name) {
  const std::string dir = std::string(PTYCHO_BINARY_DIR) + "/tests/learned/scratch";
  std::filesystem::create_directories(dir);
  return dir + "/" + name;
}

/// A kind of features with a network for it.
struct Design {
  std::string features, architecture;
};
void PrintTo(const Design& d, std::ostream* os) { *os << d.features << " features, " << d.architecture; }

/// Options of a small training into the scratch file `name` (one per rank
/// count and design).
learned::TrainOptions small_training(const std::string& name, long steps, int batch,
                                     const Design& design = {"scan", "unet8"}) {
  learned::TrainOptions o;
  o.output = scratch(name + "_" + design.features + "_" + std::to_string(test::world_size()) + ".pt");
  o.features = design.features;
  o.architecture = design.architecture;
  o.steps = steps;
  o.batch = batch;
  o.feature_iterations = 5;
  return o;
}

HostCView2 run_chain(MPI_Comm comm, const std::string& chain, int tune_steps = 0, double* cost = nullptr,
                     const std::string& tuned_model = "", int flips = 1) {
  Settings s;
  s.engines = chain;
  s.probe_modes = 1;
  s.base.flips = flips;
  s.base.tune_steps = tune_steps;
  s.base.tune_rate = 1e-3;
  s.base.tuned_model = tuned_model;
  Reconstruction r(comm, Scan::from_file(kScan), s);
  r.run();
  EXPECT_TRUE(std::isfinite(r.cost_history().back()));
  if (cost) *cost = r.cost_history().back();
  return r.object(0);
}

double relative_difference(const HostCView2& a, const HostCView2& b) {
  EXPECT_EQ(a.extent(0), b.extent(0));
  EXPECT_EQ(a.extent(1), b.extent(1));
  if (a.extent(0) != b.extent(0) || a.extent(1) != b.extent(1)) return 1;
  double diff = 0, norm = 0;
  for (size_t r = 0; r < b.extent(0); ++r)
    for (size_t c = 0; c < b.extent(1); ++c) {
      diff += std::norm(std::complex<double>(a(r, c).real() - b(r, c).real(), a(r, c).imag() - b(r, c).imag()));
      norm += std::norm(std::complex<double>(b(r, c).real(), b(r, c).imag()));
    }
  return std::sqrt(diff / norm);
}

TEST(Learned, LibtorchIsLoadedOnlyForANetwork) {
  // This test runs first in its process (gtest keeps the file's order).
  ASSERT_FALSE(libtorch_loaded());
  (void)run_chain(MPI_COMM_WORLD, "dm:2");
  EXPECT_FALSE(libtorch_loaded()) << "a run without a network loaded libtorch";
  (void)jobs::learned_plugin();
  EXPECT_TRUE(libtorch_loaded());
}

class LearnedFeatures : public testing::TestWithParam<Design> {};

TEST_P(LearnedFeatures, AFewTrainingStepsLowerTheLoss) {
  learned::TrainOptions o = small_training("lowers", 60, 8, GetParam());
  o.learning_rate = 3e-3;
  const learned::TrainSummary s = jobs::train_network(MPI_COMM_WORLD, o, {});
  EXPECT_EQ(s.steps, 60);
  EXPECT_LT(s.last_loss, 0.9 * s.first_loss) << "first " << s.first_loss << ", last " << s.last_loss;
  const learned::ModelInfo info = jobs::learned_plugin().inspect_model(o.output);
  EXPECT_EQ(info.features, GetParam().features);
  EXPECT_EQ(info.architecture, GetParam().architecture);
  EXPECT_EQ(info.frame_size, 64);
  EXPECT_EQ(info.feature_iterations, GetParam().features == "raw" ? 0 : 5);  // raw features compute nothing
  EXPECT_EQ(info.steps, 60);
  EXPECT_GT(info.parameters, 1000);
}

TEST(Learned, BadModelFilesAreRefused) {
  const std::string junk = scratch("junk_" + std::to_string(test::world_rank()) + ".pt");
  { std::ofstream(junk) << "not a model"; }
  try {
    jobs::learned_plugin().inspect_model(junk);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(junk + ": not a ptycho model file"), std::string::npos) << e.what();
  }
  // A network for other frames than the scan's: one error on every rank, before anything runs.
  learned::TrainOptions o = small_training("m32", 1, 2);
  o.frame_size = 32;
  jobs::train_network(MPI_COMM_WORLD, o, {});
  try {
    run_chain(MPI_COMM_WORLD, "nn:" + o.output + ",ml:2");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("takes frames of 32x32, this scan's are 64x64"), std::string::npos)
        << e.what();
  }
}

TEST_P(LearnedFeatures, TheGuessDoesNotDependOnTheRankCount) {
  const learned::TrainOptions o = small_training("invariant", 5, 4, GetParam());
  jobs::train_network(MPI_COMM_WORLD, o, {});
  const HostCView2 many = run_chain(MPI_COMM_WORLD, "nn:" + o.output);
  const HostCView2 one = run_chain(MPI_COMM_SELF, "nn:" + o.output);
  if (test::world_rank() != 0) return;
  EXPECT_LT(relative_difference(many, one), 1e-5);
}

TEST(Learned, FineTuningLowersTheMisfitWithoutDependingOnTheRankCount) {
  // A barely trained network, so that fine-tuning has something to fix.
  const learned::TrainOptions o = small_training("tune", 5, 4);
  jobs::train_network(MPI_COMM_WORLD, o, {});
  double plain = 0, tuned = 0, tuned_one = 0;
  (void)run_chain(MPI_COMM_WORLD, "nn:" + o.output, 0, &plain);
  const std::string written = scratch("tuned_" + std::to_string(test::world_size()) + ".pt");
  const HostCView2 many = run_chain(MPI_COMM_WORLD, "nn:" + o.output, 4, &tuned, written);
  const HostCView2 one = run_chain(MPI_COMM_SELF, "nn:" + o.output, 4, &tuned_one);
  EXPECT_LT(tuned, 0.98 * plain) << "the misfit of the stitched guess, untuned " << plain << ", tuned " << tuned;
  // The tuned network is written, and says so.
  const learned::ModelInfo info = jobs::learned_plugin().inspect_model(written);
  EXPECT_EQ(info.steps, 5 + 4);
  EXPECT_NE(info.description.find("fine-tuned on a scan"), std::string::npos) << info.description;
  if (test::world_rank() != 0) return;
  EXPECT_NEAR(tuned, tuned_one, 1e-6 * tuned);
  EXPECT_LT(relative_difference(many, one), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Learned, LearnedFeatures,
                         testing::Values(Design{"scan", "unet8"}, Design{"frame", "unet8"}, Design{"raw", "ptychonn8"}),
                         [](const testing::TestParamInfo<Design>& p) { return p.param.features; });

TEST(Learned, TheShippedModelLoadsAndRuns) {
  const std::string model = jobs::default_model(64);
  const learned::ModelInfo info = jobs::learned_plugin().inspect_model(model);
  EXPECT_EQ(info.frame_size, 64);
  EXPECT_FALSE(info.description.empty());
  const HostCView2 object = run_chain(MPI_COMM_WORLD, "nn,ml:2");
  if (test::world_rank() == 0) EXPECT_GT(object.extent(0), 64u);
}

TEST(Learned, TheSymmetrisedGuessDiffersAndDoesNotDependOnTheRankCount) {
  const HostCView2 plain = run_chain(MPI_COMM_WORLD, "nn");
  const HostCView2 many = run_chain(MPI_COMM_WORLD, "nn", 0, nullptr, "", 8);
  const HostCView2 one = run_chain(MPI_COMM_SELF, "nn", 0, nullptr, "", 8);
  if (test::world_rank() != 0) return;
  const double change = relative_difference(many, plain);
  EXPECT_GT(change, 1e-4) << "--nn-flips 8 gave the single pass's guess";
  EXPECT_LT(change, 0.2) << "--nn-flips 8 changed the guess by more than the network's correction";
  EXPECT_LT(relative_difference(many, one), 1e-5);
}

}  // namespace
}  // namespace ptycho
