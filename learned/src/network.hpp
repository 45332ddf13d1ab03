#pragma once
/// The networks of the learned engine and their model files (libtorch).
///
/// A network maps one frame's features (features.hpp: the frame's
/// single-frame phase retrieval estimate of the object patch under the
/// probe, and the probe's amplitude) to the object patch, as a complex
/// field: out = estimate + the network's correction. Real and imaginary
/// parts are output channels, so no phase is ever wrapped.
#include "ptycho/learned/plugin_api.hpp"

#include <torch/torch.h>

#include <functional>
#include <string>

namespace ptycho::learned {

/// Channels of the features a network takes: Re and Im of the estimate,
/// the probe's amplitude (max 1).
inline constexpr int kFeatureChannels = 3;

/// A U-Net: `levels` resolutions (M, M/2, ...), `base` channels at the top,
/// doubling per level; two 3x3 convolutions with BatchNorm and ReLU per
/// block; skip connections by concatenation; a 1x1 convolution to 2
/// channels (the correction to Re and Im).
struct UNetImpl : torch::nn::Module {
  UNetImpl(int base, int levels);
  torch::Tensor forward(const torch::Tensor& features);

  int base, levels;
  torch::nn::ModuleList down{nullptr}, up{nullptr}, upconv{nullptr};
  torch::nn::Sequential bottom{nullptr};
  torch::nn::Conv2d head{nullptr};
};
TORCH_MODULE(UNet);

/// A network with what its model file says about it.
struct Model {
  ModelInfo info;
  UNet net{nullptr};
};

/// Architectures by name: "unet8", "unet12", "unet16", "unet24" (that many
/// base channels, 3 levels), and "er", no network at all (the features'
/// estimate alone: the physics-only baseline). Throws InputError for others.
UNet make_network(const std::string& architecture);
const std::vector<std::string>& architectures();

/// Writes `model` to `path` atomically (a temporary file, then a rename);
/// `extra` may add entries (a training checkpoint's optimiser state).
void save_model(const Model& model, const std::string& path,
                const std::function<void(torch::serialize::OutputArchive&)>& extra = {});
/// Reads and checks a model file (InputError naming the file and what is
/// wrong); `extra` may read more entries from it.
Model load_model(const std::string& path, const std::function<void(torch::serialize::InputArchive&)>& extra = {});
/// The metadata of a model file, after the same checks as load_model.
ModelInfo inspect_model(const std::string& path);

long parameter_count(torch::nn::Module& m);

/// Puts the network's 4-D weights in channels-last order, the layout
/// libtorch's CPU convolutions are fastest in (inputs should follow:
/// x.contiguous(torch::MemoryFormat::ChannelsLast)).
void to_channels_last(torch::nn::Module& m);

}  // namespace ptycho::learned
