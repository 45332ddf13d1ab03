// The learned engines through the library (jobs/learned.hpp): the plugin is
// loaded only when a network is asked for, a few training steps lower the
// loss, model files are checked, the nn stage does not depend on the rank
// count, and the shipped model loads and runs.
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

/// Options of a small training into the scratch file `name` (one per rank
/// count and kind of features: "scan" or "frame").
learned::TrainOptions small_training(const std::string& name, long steps, int batch,
                                     const std::string& features = "scan") {
  learned::TrainOptions o;
  o.output = scratch(name + "_" + features + "_" + std::to_string(test::world_size()) + ".pt");
  o.features = features;
  o.architecture = "unet8";
  o.steps = steps;
  o.batch = batch;
  o.feature_iterations = 5;
  return o;
}

HostCView2 run_chain(MPI_Comm comm, const std::string& chain) {
  Settings s;
  s.engines = chain;
  s.probe_modes = 1;
  Reconstruction r(comm, Scan::from_file(kScan), s);
  r.run();
  EXPECT_TRUE(std::isfinite(r.cost_history().back()));
  return r.object(0);
}

TEST(Learned, LibtorchIsLoadedOnlyForANetwork) {
  // This test runs first in its process (gtest keeps the file's order).
  ASSERT_FALSE(libtorch_loaded());
  (void)run_chain(MPI_COMM_WORLD, "dm:2");
  EXPECT_FALSE(libtorch_loaded()) << "a run without a network loaded libtorch";
  (void)jobs::learned_plugin();
  EXPECT_TRUE(libtorch_loaded());
}

class LearnedFeatures : public testing::TestWithParam<std::string> {};

TEST_P(LearnedFeatures, AFewTrainingStepsLowerTheLoss) {
  learned::TrainOptions o = small_training("lowers", 60, 8, GetParam());
  o.learning_rate = 3e-3;
  const learned::TrainSummary s = jobs::train_network(MPI_COMM_WORLD, o, {});
  EXPECT_EQ(s.steps, 60);
  EXPECT_LT(s.last_loss, 0.9 * s.first_loss) << "first " << s.first_loss << ", last " << s.last_loss;
  const learned::ModelInfo info = jobs::learned_plugin().inspect_model(o.output);
  EXPECT_EQ(info.features, GetParam());
  EXPECT_EQ(info.architecture, "unet8");
  EXPECT_EQ(info.frame_size, 64);
  EXPECT_EQ(info.feature_iterations, 5);
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
  ASSERT_EQ(many.extent(0), one.extent(0));
  ASSERT_EQ(many.extent(1), one.extent(1));
  double diff = 0, norm = 0;
  for (size_t r = 0; r < one.extent(0); ++r)
    for (size_t c = 0; c < one.extent(1); ++c) {
      diff +=
          std::norm(std::complex<double>(many(r, c).real() - one(r, c).real(), many(r, c).imag() - one(r, c).imag()));
      norm += std::norm(std::complex<double>(one(r, c).real(), one(r, c).imag()));
    }
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Learned, LearnedFeatures, testing::Values("scan", "frame"));

TEST(Learned, TheShippedModelLoadsAndRuns) {
  const std::string model = jobs::default_model(64);
  const learned::ModelInfo info = jobs::learned_plugin().inspect_model(model);
  EXPECT_EQ(info.frame_size, 64);
  EXPECT_FALSE(info.description.empty());
  const HostCView2 object = run_chain(MPI_COMM_WORLD, "nn,ml:2");
  if (test::world_rank() == 0) EXPECT_GT(object.extent(0), 64u);
}

}  // namespace
}  // namespace ptycho
