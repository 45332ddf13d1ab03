#pragma once
/// The networks of the learned engine and their model files (libtorch).
///
/// A network maps one frame's features (features.hpp, scan_features.hpp)
/// to two channels, Re and Im, from which patch_from_output makes the
/// object patch: (baseline + output) * turn. The U-Nets output a
/// correction of the features' estimate (its real and imaginary parts, so
/// no phase is ever wrapped); the PtychoNN-style baseline outputs the
/// patch itself, from its amplitude and phase decoders.
#include "ptycho/learned/plugin_api.hpp"

#include <torch/torch.h>

#include <functional>
#include <string>

namespace ptycho::learned {

/// Channels of the features a network takes (features.hpp).
inline constexpr int kFeatureChannels = 3;

/// What every architecture is: features (B, 3, M, M) -> (B, 2, M, M).
struct NetworkImpl : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& features) = 0;
  /// Makes the network an inference-only one that computes the same
  /// function as eval() up to float rounding, faster: every BatchNorm is
  /// folded into the convolution before it (scale into the weights, shift
  /// into a bias), the ReLUs work in place and the 4-D weights are
  /// channels-last. It cannot be trained (or saved as a model) after this.
  virtual void fold_for_inference() = 0;
};
using Network = std::shared_ptr<NetworkImpl>;

/// A U-Net: `levels` resolutions (M, M/2, ...), `base` channels at the top,
/// doubling per level; two 3x3 convolutions with BatchNorm and ReLU per
/// block; skip connections by concatenation; a 1x1 convolution to 2
/// channels (the correction to Re and Im).
struct UNetImpl : NetworkImpl {
  UNetImpl(int base, int levels);
  torch::Tensor forward(const torch::Tensor& features) override;
  void fold_for_inference() override;

  int base, levels;
  torch::nn::ModuleList down{nullptr}, up{nullptr}, upconv{nullptr};
  torch::nn::Sequential bottom{nullptr};
  torch::nn::Conv2d head{nullptr};
};

/// The PtychoNN-style baseline (Cherukara et al. 2020): a shared encoder
/// (`levels` blocks of two 3x3 convolutions with BatchNorm and ReLU, each
/// followed by 2x2 max pooling; `base` channels at the top, doubling per
/// level) and two decoders of the same blocks in reverse, each followed by
/// 2x upsampling, no skip connections. The amplitude decoder ends in a
/// softplus (amplitude >= 0, relative to the features' scale), the phase
/// decoder in pi * tanh. The output is the patch itself:
/// a (cos phase, sin phase), with no baseline to correct (raw features).
struct TwoDecoderImpl : NetworkImpl {
  TwoDecoderImpl(int base, int levels);
  torch::Tensor forward(const torch::Tensor& features) override;
  void fold_for_inference() override;

  int base, levels;
  torch::nn::ModuleList encoder{nullptr}, amplitude{nullptr}, phase{nullptr};  ///< blocks
  torch::nn::Conv2d amplitude_head{nullptr}, phase_head{nullptr};              ///< 1x1 to one channel
};

/// A network with what its model file says about it.
struct Model {
  ModelInfo info;
  Network net;
};

/// Architectures by name: "unet8", "unet12", "unet16", "unet24" (that many
/// base channels, 3 levels); "ptychonn8", "ptychonn16" (TwoDecoderImpl,
/// 3 levels); and "er", no network at all (the features' estimate alone:
/// the physics-only baseline). Throws InputError for others.
Network make_network(const std::string& architecture);
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

/// Keeps the memory libtorch frees for its next tensors: glibc otherwise
/// serves every block over its mmap threshold with fresh pages and returns
/// them on free, so each network call pays page faults for all of its
/// activations (2.5x slower inference here: 200 against 510 frames/s).
/// Blocks up to 32 MB then come from the heap, which keeps up to 64 MB free
/// at its top. Process-wide; called by the nn engine and by training, which
/// are only ever in processes that loaded the learned plugin.
void keep_freed_memory();

/// Symmetry t (0..7) of the square applied to the last two dimensions of x:
/// bit 0 flips the rows, bit 1 the columns, bit 2 transposes after them.
torch::Tensor dihedral(const torch::Tensor& x, int t);
/// Its inverse: undo_dihedral(dihedral(x, t), t) == x.
torch::Tensor undo_dihedral(const torch::Tensor& x, int t);
/// The network's output averaged over symmetries 0..flips-1 (1, 2, 4 or 8):
/// each transforms the input (channels-last) and is undone on the output.
/// With all 8 the result is equivariant: transforming the input transforms
/// the output the same way, whatever the network learned.
torch::Tensor forward_symmetrised(NetworkImpl& net, const torch::Tensor& input, int flips);

/// Puts the network's 4-D weights in channels-last order, the layout
/// libtorch's CPU convolutions are fastest in (inputs should follow:
/// x.contiguous(torch::MemoryFormat::ChannelsLast)).
void to_channels_last(torch::nn::Module& m);

}  // namespace ptycho::learned
