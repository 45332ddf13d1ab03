#include "features.hpp"

namespace ptycho::learned {

namespace {

/// The model amplitude sqrt(sum_k |DFT(waves_k)|^2 / M^2), (B, 1, M, M), and
/// the far fields (B, K, M, M).
std::pair<torch::Tensor, torch::Tensor> far_field(const torch::Tensor& waves) {
  const double m = double(waves.size(-1));
  torch::Tensor far = torch::fft::fft2(waves);
  torch::Tensor amp = (torch::real(far).square() + torch::imag(far).square()).sum(1, true).div(m * m).add(1e-12).sqrt();
  return {amp, far};
}

torch::Tensor valid_4d(const torch::Tensor& valid) {
  return valid.dim() == 2 ? valid.view({1, 1, valid.size(0), valid.size(1)}) : valid.unsqueeze(1);
}

}  // namespace

Features make_features(const torch::Tensor& frames, const torch::Tensor& valid, const torch::Tensor& probes,
                       int iterations) {
  torch::NoGradGuard no_grad;
  const long b = probes.size(0), m = probes.size(-1);
  const torch::Tensor measured = frames.clamp_min(0).sqrt().unsqueeze(1);  // (B, 1, M, M)
  const torch::Tensor v = valid_4d(valid);
  const torch::Tensor illum = (torch::real(probes).square() + torch::imag(probes).square()).sum(1);  // (B, M, M)
  const torch::Tensor peak = std::get<0>(illum.view({b, -1}).max(1)).clamp_min(1e-30).view({b, 1, 1});
  const torch::Tensor weight = illum / peak;
  const torch::Tensor denom = (illum + 1e-3 * peak).unsqueeze(1);
  const torch::Tensor conj_probes = torch::conj(probes);
  torch::Tensor object = torch::ones({b, 1, m, m}, probes.options());
  for (int it = 0; it < iterations; ++it) {
    auto [amp, far] = far_field(probes * object);
    const torch::Tensor ratio = torch::where(v > 0, measured / amp.clamp_min(1e-12), torch::ones_like(amp));
    const torch::Tensor back = torch::fft::ifft2(far * ratio);
    object = (conj_probes * back).sum(1, true) / denom;
  }
  object = object.squeeze(1);
  const torch::Tensor lit = (weight / 0.1).clamp_max(1.0);
  Features f;
  f.baseline = object * lit;
  f.weight = weight;
  f.input = torch::stack({torch::real(f.baseline), torch::imag(f.baseline), weight.sqrt()}, 1).contiguous();
  return f;
}

Features make_raw_features(const torch::Tensor& frames, const torch::Tensor& valid, const torch::Tensor& probes) {
  torch::NoGradGuard no_grad;
  const long b = probes.size(0);
  const torch::Tensor v = valid.dim() == 2 ? valid.unsqueeze(0).expand({b, valid.size(0), valid.size(1)}) : valid;
  const torch::Tensor counts = frames.clamp_min(0) * v;  // (B, M, M)
  const torch::Tensor pixels = v.sum({1, 2}).clamp_min(1);
  const torch::Tensor rms = (counts.sum({1, 2}) / pixels).clamp_min(1e-30).sqrt().view({b, 1, 1});
  const torch::Tensor illum = (torch::real(probes).square() + torch::imag(probes).square()).sum(1);  // (B, M, M)
  const torch::Tensor peak = std::get<0>(illum.view({b, -1}).max(1)).clamp_min(1e-30).view({b, 1, 1});
  const torch::Tensor flat = far_field(probes).first.squeeze(1).square();  // a flat object's intensity
  const torch::Tensor scale = (counts.sum({1, 2}) / (flat * v).sum({1, 2}).clamp_min(1e-30)).sqrt();
  Features f;
  f.weight = illum / peak;
  f.baseline = torch::zeros({b, probes.size(-2), probes.size(-1)}, probes.options());
  f.input = torch::stack({counts.sqrt() / rms, v, f.weight.sqrt()}, 1).contiguous();
  f.turn = torch::complex(scale, torch::zeros_like(scale)).view({b, 1, 1});
  return f;
}

torch::Tensor patch_from_output(const Features& f, const torch::Tensor& output) {
  const torch::Tensor patch = f.baseline + torch::complex(output.select(1, 0), output.select(1, 1));
  return f.turn.defined() ? patch * f.turn : patch;
}

torch::Tensor patch_loss(const torch::Tensor& patch, const torch::Tensor& truth, const torch::Tensor& weight) {
  auto power = [](const torch::Tensor& z) { return torch::real(z).square() + torch::imag(z).square(); };
  const torch::Tensor pp = (weight * power(patch)).sum({1, 2});
  const torch::Tensor tt = (weight * power(truth)).sum({1, 2});
  const torch::Tensor cross = (weight * torch::conj(patch) * truth).sum({1, 2});
  const torch::Tensor overlap = (power(cross) + 1e-20).sqrt();
  return ((pp + tt - 2 * overlap) / tt.clamp_min(1e-20)).mean();
}

}  // namespace ptycho::learned
