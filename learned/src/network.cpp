#include "network.hpp"

#include "ptycho/core/error.hpp"

#include <malloc.h>
#include <unistd.h>
#include <cstdio>
#include <filesystem>

namespace ptycho::learned {

namespace {

constexpr const char* kFormat = "ptycho-model-1";

torch::nn::Sequential block(int in, int out) {
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(in, out, 3).padding(1).bias(false)), BatchNorm2d(out), ReLU(),
                    Conv2d(Conv2dOptions(out, out, 3).padding(1).bias(false)), BatchNorm2d(out), ReLU());
}

/// A block of block() with each BatchNorm folded into the convolution
/// before it (eval-mode statistics): w' = w g / sqrt(v + eps) per output
/// channel, b' = beta - mu g / sqrt(v + eps); in-place ReLUs.
torch::nn::Sequential folded(const torch::nn::Sequential& s) {
  using namespace torch::nn;
  torch::NoGradGuard no_grad;
  Sequential out;
  const auto children = s->children();
  for (size_t i = 0; i < children.size(); ++i) {
    if (auto* conv = children[i]->as<Conv2d>()) {
      auto* bn = i + 1 < children.size() ? children[i + 1]->as<BatchNorm2d>() : nullptr;
      PTYCHO_THROW_IF(bn == nullptr || conv->options.bias(), "fold_for_inference: not a conv-BN block");
      const torch::Tensor scale = bn->weight / (bn->running_var + bn->options.eps()).sqrt();
      Conv2d c(Conv2dOptions(conv->options.in_channels(), conv->options.out_channels(), conv->options.kernel_size())
                   .padding(conv->options.padding())
                   .bias(true));
      c->weight.set_data((conv->weight * scale.view({-1, 1, 1, 1})).contiguous(torch::MemoryFormat::ChannelsLast));
      c->bias.set_data(bn->bias - bn->running_mean * scale);
      out->push_back(c);
      ++i;  // the BatchNorm is in the convolution now
    } else if (children[i]->as<ReLU>()) {
      out->push_back(ReLU(ReLUOptions(true)));
    } else {
      PTYCHO_THROW_IF(true, "fold_for_inference: unexpected layer in a block");
    }
  }
  return out;
}

torch::nn::ModuleList folded(const torch::nn::ModuleList& list) {
  torch::nn::ModuleList out;
  for (const auto& b : *list)
    out->push_back(folded(torch::nn::Sequential(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(b))));
  return out;
}

struct Arch {
  const char* name;
  bool two_decoders;
  int base, levels;
};
constexpr Arch kArchs[] = {{"er", false, 0, 0},        {"unet8", false, 8, 3},   {"unet12", false, 12, 3},
                           {"unet16", false, 16, 3},   {"unet24", false, 24, 3}, {"ptychonn8", true, 8, 3},
                           {"ptychonn16", true, 16, 3}};

/// A decoder of TwoDecoderImpl: blocks from the bottom's width up (each
/// followed by 2x upsampling in forward()).
torch::nn::ModuleList decoder(int base, int levels) {
  torch::nn::ModuleList d;
  int in = base << (levels - 1);
  for (int i = levels - 1; i >= 0; --i) {
    d->push_back(block(in, base << i));
    in = base << i;
  }
  return d;
}

}  // namespace

UNetImpl::UNetImpl(int base_, int levels_) : base(base_), levels(levels_) {
  if (base == 0) return;  // "er": no network, the features' estimate alone
  down = register_module("down", torch::nn::ModuleList());
  up = register_module("up", torch::nn::ModuleList());
  upconv = register_module("upconv", torch::nn::ModuleList());
  int in = kFeatureChannels;
  for (int i = 0; i < levels; ++i) {
    down->push_back(block(in, base << i));
    in = base << i;
  }
  bottom = register_module("bottom", block(in, base << levels));
  for (int i = levels - 1; i >= 0; --i) {
    upconv->push_back(
        torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(base << (i + 1), base << i, 2).stride(2)));
    up->push_back(block(2 * (base << i), base << i));
  }
  head = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(base, 2, 1)));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& features) {
  if (base == 0) return torch::zeros({features.size(0), 2, features.size(2), features.size(3)}, features.options());
  std::vector<torch::Tensor> skips;
  torch::Tensor x = features;
  for (int i = 0; i < levels; ++i) {
    x = down[i]->as<torch::nn::Sequential>()->forward(x);
    skips.push_back(x);
    x = torch::max_pool2d(x, 2);
  }
  x = bottom->forward(x);
  for (int k = 0; k < levels; ++k) {
    const int i = levels - 1 - k;
    x = upconv[k]->as<torch::nn::ConvTranspose2d>()->forward(x);
    x = torch::cat({x, skips[i]}, 1);
    x = up[k]->as<torch::nn::Sequential>()->forward(x);
  }
  return head->forward(x);
}

void UNetImpl::fold_for_inference() {
  if (base == 0) return;
  eval();
  down = replace_module("down", folded(down));
  up = replace_module("up", folded(up));
  bottom = replace_module("bottom", folded(bottom));
  to_channels_last(*this);
}

TwoDecoderImpl::TwoDecoderImpl(int base_, int levels_) : base(base_), levels(levels_) {
  using namespace torch::nn;
  encoder = register_module("encoder", ModuleList());
  int in = kFeatureChannels;
  for (int i = 0; i < levels; ++i) {
    encoder->push_back(block(in, base << i));
    in = base << i;
  }
  amplitude = register_module("amplitude", decoder(base, levels));
  phase = register_module("phase", decoder(base, levels));
  amplitude_head = register_module("amplitude_head", Conv2d(Conv2dOptions(base, 1, 1)));
  phase_head = register_module("phase_head", Conv2d(Conv2dOptions(base, 1, 1)));
}

torch::Tensor TwoDecoderImpl::forward(const torch::Tensor& features) {
  torch::Tensor code = features;
  for (const auto& b : *encoder) code = torch::max_pool2d(b->as<torch::nn::Sequential>()->forward(code), 2);
  auto decode = [&](torch::nn::ModuleList& blocks, torch::nn::Conv2d& head) {
    torch::Tensor x = code;
    for (const auto& b : *blocks)
      x = torch::upsample_nearest2d(b->as<torch::nn::Sequential>()->forward(x), {2 * x.size(2), 2 * x.size(3)});
    return head->forward(x);
  };
  const torch::Tensor a = torch::nn::functional::softplus(decode(amplitude, amplitude_head));
  const torch::Tensor p = M_PI * torch::tanh(decode(phase, phase_head));
  return torch::cat({a * torch::cos(p), a * torch::sin(p)}, 1);
}

void TwoDecoderImpl::fold_for_inference() {
  eval();
  encoder = replace_module("encoder", folded(encoder));
  amplitude = replace_module("amplitude", folded(amplitude));
  phase = replace_module("phase", folded(phase));
  to_channels_last(*this);
}

const std::vector<std::string>& architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Arch& a : kArchs) v.push_back(a.name);
    return v;
  }();
  return names;
}

Network make_network(const std::string& architecture) {
  for (const Arch& a : kArchs)
    if (architecture == a.name) {
      if (a.two_decoders) return std::make_shared<TwoDecoderImpl>(a.base, a.levels);
      return std::make_shared<UNetImpl>(a.base, a.levels);
    }
  std::string known;
  for (const auto& n : architectures()) known += (known.empty() ? "" : ", ") + n;
  PTYCHO_INPUT_ERROR_IF(true, "unknown network architecture '" << architecture << "' (known: " << known << ")");
}

long parameter_count(torch::nn::Module& m) {
  long n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

void to_channels_last(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
}

void save_model(const Model& model, const std::string& path,
                const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  torch::serialize::OutputArchive ar;
  const ModelInfo& i = model.info;
  ar.write("format", c10::IValue(std::string(kFormat)));
  ar.write("architecture", c10::IValue(i.architecture));
  ar.write("frame_size", c10::IValue(int64_t(i.frame_size)));
  ar.write("features", c10::IValue(i.features));
  ar.write("feature_iterations", c10::IValue(int64_t(i.feature_iterations)));
  ar.write("description", c10::IValue(i.description));
  ar.write("version", c10::IValue(i.version));
  ar.write("steps", c10::IValue(int64_t(i.steps)));
  ar.write("loss", c10::IValue(i.loss));
  torch::serialize::OutputArchive net;
  model.net->save(net);
  ar.write("network", net);
  if (extra) extra(ar);
  // Atomic: a temporary name beside the file, then a rename.
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  try {
    ar.save_to(temp);
  } catch (const c10::Error& e) {
    std::error_code ec;
    std::filesystem::remove(temp, ec);
    PTYCHO_INPUT_ERROR_IF(true, path << ": cannot write the model (" << e.what_without_backtrace() << ")");
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    PTYCHO_INPUT_ERROR_IF(true, path << ": cannot write the model (" << ec.message() << ")");
  }
}

namespace {

Model read_model(const std::string& path, const std::function<void(torch::serialize::InputArchive&)>& extra) {
  std::error_code ec;
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::is_regular_file(path, ec), path << ": no such model file");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    PTYCHO_INPUT_ERROR_IF(true, path << ": not a ptycho model file (libtorch cannot read it)");
  }
  auto text = [&](const char* key) {
    c10::IValue v;
    PTYCHO_INPUT_ERROR_IF(!ar.try_read(key, v) || !v.isString(),
                          path << ": not a ptycho model file (no '" << key << "')");
    return v.toStringRef();
  };
  auto integer = [&](const char* key) {
    c10::IValue v;
    PTYCHO_INPUT_ERROR_IF(!ar.try_read(key, v) || !v.isInt(), path << ": not a ptycho model file (no '" << key << "')");
    return v.toInt();
  };
  const std::string format = text("format");
  PTYCHO_INPUT_ERROR_IF(format != kFormat,
                        path << ": model format '" << format << "', this ptycho reads '" << kFormat << "'");
  Model m;
  m.info.path = path;
  m.info.architecture = text("architecture");
  m.info.frame_size = int(integer("frame_size"));
  {
    c10::IValue v;  // files of the first release have single-frame features and no key
    m.info.features = ar.try_read("features", v) && v.isString() ? v.toStringRef() : std::string("frame");
  }
  PTYCHO_INPUT_ERROR_IF(m.info.features != "frame" && m.info.features != "scan" && m.info.features != "raw",
                        path << ": features '" << m.info.features << "' are not 'scan', 'frame' or 'raw'");
  m.info.feature_iterations = int(integer("feature_iterations"));
  m.info.description = text("description");
  m.info.version = text("version");
  m.info.steps = integer("steps");
  {
    c10::IValue v;
    if (ar.try_read("loss", v) && v.isDouble()) m.info.loss = v.toDouble();
  }
  PTYCHO_INPUT_ERROR_IF(m.info.feature_iterations < 0 || m.info.feature_iterations > 1000,
                        path << ": feature_iterations " << m.info.feature_iterations << " is not in [0, 1000]");
  PTYCHO_INPUT_ERROR_IF(m.info.frame_size < 8 || m.info.frame_size > 4096 || m.info.frame_size % 8 != 0,
                        path << ": frame_size " << m.info.frame_size << " is not a multiple of 8 in [8, 4096]");
  try {
    m.net = make_network(m.info.architecture);
  } catch (const InputError& e) {
    PTYCHO_INPUT_ERROR_IF(true, path << ": " << e.what());
  }
  m.info.parameters = parameter_count(*m.net);
  torch::serialize::InputArchive net;
  try {
    PTYCHO_INPUT_ERROR_IF(!ar.try_read("network", net), path << ": not a ptycho model file (no 'network')");
    m.net->load(net);
  } catch (const c10::Error& e) {
    PTYCHO_INPUT_ERROR_IF(true, path << ": the weights do not fit a '" << m.info.architecture << "' network ("
                                     << e.what_without_backtrace() << ")");
  }
  for (const auto& p : m.net->parameters())
    PTYCHO_INPUT_ERROR_IF(!torch::isfinite(p).all().item<bool>(), path << ": the weights hold NaN or infinity");
  if (extra) {
    try {
      extra(ar);
    } catch (const c10::Error& e) {
      PTYCHO_INPUT_ERROR_IF(true, path << ": " << e.what_without_backtrace());
    }
  }
  return m;
}

}  // namespace

Model load_model(const std::string& path, const std::function<void(torch::serialize::InputArchive&)>& extra) {
  return read_model(path, extra);
}

ModelInfo inspect_model(const std::string& path) { return read_model(path, {}).info; }

void keep_freed_memory() {
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    return true;
  }();
  (void)done;
}

torch::Tensor dihedral(const torch::Tensor& x, int t) {
  const long d = x.dim();
  torch::Tensor y = x;
  if (t & 1) y = y.flip({d - 2});
  if (t & 2) y = y.flip({d - 1});
  if (t & 4) y = y.transpose(d - 2, d - 1);
  return y;
}

torch::Tensor undo_dihedral(const torch::Tensor& x, int t) {
  const long d = x.dim();
  torch::Tensor y = x;
  if (t & 4) y = y.transpose(d - 2, d - 1);
  if (t & 2) y = y.flip({d - 1});
  if (t & 1) y = y.flip({d - 2});
  return y;
}

torch::Tensor forward_symmetrised(NetworkImpl& net, const torch::Tensor& input, int flips) {
  PTYCHO_INPUT_ERROR_IF(flips < 1 || flips > 8 || (flips & (flips - 1)) != 0,
                        "nn: --nn-flips must be 1, 2, 4 or 8, got " << flips);
  torch::Tensor sum;
  for (int t = 0; t < flips; ++t) {
    const torch::Tensor out =
        undo_dihedral(net.forward(dihedral(input, t).contiguous(torch::MemoryFormat::ChannelsLast)), t);
    sum = t == 0 ? out : sum + out;
  }
  return flips > 1 ? sum / double(flips) : sum;
}

}  // namespace ptycho::learned
