// The networks themselves (learned/src/network.hpp), linked directly: folding
// BatchNorm into the convolutions for inference keeps the function the
// network computes in eval mode, for every architecture and for the shipped
// model, and a folded network refuses to be folded into a wrong shape.
#include "network.hpp"

#include <gtest/gtest.h>

#include <string>

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

}  // namespace
}  // namespace ptycho::learned
