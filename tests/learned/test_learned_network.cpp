// The networks themselves (learned/src/network.hpp), linked directly: folding
// BatchNorm into the convolutions for inference keeps the function the
// network computes in eval mode, for every architecture and for the shipped
// model, and a folded network refuses to be folded into a wrong shape; the
// symmetries of the square that --nn-flips averages over are undone exactly,
// and averaging over all eight makes any network equivariant.
#include "network.hpp"
#include "ptycho/core/error.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ptycho::learned {
namespace {

/// max |a - b| / max |b|
double relative_max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item<double>();
}

/// Gives every BatchNorm statistics and an affine map far from the
/// identity, so a fold that dropped any of them would show.
void randomize_batchnorm(torch::nn::Module& net) {
  torch::NoGradGuard no_grad;
  for (const auto& m : net.modules(/*include_self=*/false))
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.2, 3.0);
      bn->weight.uniform_(0.5, 2.0);
      bn->bias.uniform_(-0.5, 0.5);
    }
}

class Folding : public testing::TestWithParam<std::string> {};

TEST_P(Folding, KeepsWhatTheNetworkComputesInEvalMode) {
  torch::manual_seed(3);
  Network net = make_network(GetParam());
  randomize_batchnorm(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = torch::randn({5, kFeatureChannels, 64, 64});
  const torch::Tensor expected = net->forward(input);
  const long before = parameter_count(*net);
  net->fold_for_inference();
  // Two BatchNorm parameters (scale, shift) per channel become one bias.
  EXPECT_LT(parameter_count(*net), before);
  for (const auto& m : net->modules(false)) EXPECT_EQ(m->as<torch::nn::BatchNorm2d>(), nullptr);
  const torch::Tensor folded = net->forward(input.contiguous(torch::MemoryFormat::ChannelsLast));
  ASSERT_EQ(folded.sizes(), expected.sizes());
  EXPECT_LT(relative_max_difference(folded, expected), 1e-4);
  // The same from a plain (contiguous) input.
  EXPECT_LT(relative_max_difference(net->forward(input), expected), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Networks, Folding, testing::Values("unet8", "unet16", "ptychonn8"));

TEST(Folding, TheShippedModelComputesTheSame) {
  Model model = load_model(PTYCHO_DEFAULT_MODEL);
  model.net->eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  const torch::Tensor input = torch::randn({4, kFeatureChannels, 64, 64});
  const torch::Tensor expected = model.net->forward(input);
  model.net->fold_for_inference();
  EXPECT_LT(relative_max_difference(model.net->forward(input), expected), 1e-4);
}

TEST(Symmetries, EachIsUndoneByItsInverseAndTheEightDiffer) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, 3, 6, 6});
  std::vector<torch::Tensor> seen;
  for (int t = 0; t < 8; ++t) {
    const torch::Tensor y = dihedral(x, t);
    EXPECT_TRUE(torch::equal(undo_dihedral(y, t), x)) << "symmetry " << t;
    for (size_t s = 0; s < seen.size(); ++s) EXPECT_FALSE(torch::equal(seen[s], y)) << s << " and " << t;
    seen.push_back(y);
  }
  // Bit 0 flips the rows, bit 1 the columns, bit 2 transposes.
  EXPECT_EQ(dihedral(x, 1)[1][2][0][4].item<float>(), x[1][2][5][4].item<float>());
  EXPECT_EQ(dihedral(x, 2)[1][2][0][4].item<float>(), x[1][2][0][1].item<float>());
  EXPECT_EQ(dihedral(x, 4)[1][2][0][4].item<float>(), x[1][2][4][0].item<float>());
}

TEST(Symmetries, AveragingOverAllEightMakesAnUntrainedNetworkEquivariant) {
  torch::manual_seed(6);
  Network net = make_network("unet8");
  randomize_batchnorm(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = torch::randn({2, kFeatureChannels, 32, 32});
  const torch::Tensor base = forward_symmetrised(*net, input, 8);
  // A single pass is not equivariant (so the check below can fail) ...
  EXPECT_GT(relative_max_difference(net->forward(dihedral(input, 5)), dihedral(net->forward(input), 5)), 1e-2);
  // ... the average over the 8 symmetries is, for each of them.
  for (int t = 1; t < 8; ++t)
    EXPECT_LT(relative_max_difference(forward_symmetrised(*net, dihedral(input, t), 8), dihedral(base, t)), 1e-5)
        << "symmetry " << t;
  // Two are the mean of the identity and the row flip.
  const torch::Tensor two = 0.5 * (net->forward(input) + dihedral(net->forward(dihedral(input, 1)), 1));
  EXPECT_LT(relative_max_difference(forward_symmetrised(*net, input, 2), two), 1e-5);
  EXPECT_THROW(forward_symmetrised(*net, input, 3), InputError);
}

}  // namespace
}  // namespace ptycho::learned
