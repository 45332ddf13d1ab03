#include "synth.hpp"

#include "ptycho/core/simulate.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace ptycho::learned {

namespace {

constexpr int kShapes = 10;
constexpr long kProbePool = 192;

torch::Tensor uniform(const std::vector<long>& shape, double lo, double hi, torch::Generator& gen) {
  return at::rand(shape, gen, torch::kFloat) * float(hi - lo) + float(lo);
}

/// Each sample (B, M, M) rescaled to [0, 1].
torch::Tensor to_unit_range(const torch::Tensor& x) {
  const long b = x.size(0);
  const torch::Tensor flat = x.reshape({b, -1});
  const torch::Tensor lo = std::get<0>(flat.min(1)).view({b, 1, 1});
  const torch::Tensor hi = std::get<0>(flat.max(1)).view({b, 1, 1});
  return (x - lo) / (hi - lo).clamp_min(1e-6);
}

/// A dead-leaves image (Matheron's model, as in Achddou et al. 2021 and
/// Baradad et al. 2021): opaque ellipses and rectangles, radii drawn from
/// p(r) ~ r^-g (g 2.2 to 3) between 1.5-6 px and 15-50 % of the image,
/// painted front to back until the image is covered. Its statistics are
/// those of photographs (occlusion, sharp edges at every scale), which
/// fractal noise under a few shapes lacks. A leaf is flat, shaded by a gentle gradient, or
/// carries the texture `texture` (size x size, [0, 1]) at a random
/// contrast. Edges are antialiased over about one pixel; pixels still
/// uncovered at the end show `texture`.
void dead_leaves(float* out, const float* texture, int size, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const long n = long(size) * size;
  std::vector<float> cover(size_t(n), 0.0f);
  std::fill(out, out + n, 0.0f);
  const double rmin = 1.5 + 4.5 * u(rng), rmax = size * (0.15 + 0.35 * u(rng));
  const double e = 1.0 - (2.2 + 0.8 * u(rng));  // 1 - the exponent of p(r)
  const double a = std::pow(rmin, e), b = std::pow(rmax, e);
  long covered = 0;
  for (int leaf = 0; leaf < 6000 && covered < n - n / 500; ++leaf) {
    const double r1 = std::pow(a - u(rng) * (a - b), 1.0 / e);
    const double r2 = std::max(0.7, r1 * (0.3 + 0.7 * u(rng)));
    const double cy = u(rng) * size, cx = u(rng) * size, angle = u(rng) * M_PI;
    const bool box = u(rng) < 0.35;
    const double pick = u(rng);
    const float value = float(u(rng));
    const float contrast = pick < 0.4 ? 0.0f : float(0.6 * u(rng));                    // texture
    const double shade = pick < 0.7 ? 0.0 : 0.4 * (u(rng) - 0.5) / std::max(r1, 1.0);  // gradient per px
    const double ca = std::cos(angle), sa = std::sin(angle);
    const int ext = int(std::ceil(r1)) + 1;
    const int y0 = std::max(0, int(cy) - ext), y1 = std::min(size - 1, int(cy) + ext);
    const int x0 = std::max(0, int(cx) - ext), x1 = std::min(size - 1, int(cx) + ext);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const long i = long(y) * size + x;
        if (cover[size_t(i)] >= 1.0f) continue;
        const double dy = y - cy, dx = x - cx;
        const double p = (dx * ca + dy * sa), q = (-dx * sa + dy * ca);
        // Signed distance (in px, about) from the leaf's edge, negative inside.
        const double d = box ? std::max(std::abs(p) - r1, std::abs(q) - r2)
                             : (std::sqrt((p / r1) * (p / r1) + (q / r2) * (q / r2)) - 1.0) * r2;
        const float alpha = float(std::clamp(0.5 - d, 0.0, 1.0));
        if (alpha <= 0.0f) continue;
        const float v = value + contrast * (texture[i] - 0.5f) + float(shade * p);
        const float take = alpha * (1.0f - cover[size_t(i)]);
        out[i] += take * v;
        cover[size_t(i)] += take;
        if (cover[size_t(i)] >= 0.999f) {
          cover[size_t(i)] = 1.0f;
          ++covered;
        }
      }
  }
  for (long i = 0; i < n; ++i) out[i] += (1.0f - cover[size_t(i)]) * texture[i];
}

}  // namespace

Synthesizer::Synthesizer(const SynthOptions& options, std::uint64_t seed)
    : m_opt(options), m_gen(at::detail::createCPUGenerator(seed)) {
  const int m = m_opt.frame_size;
  const torch::Tensor idx = torch::arange(m, torch::kFloat);
  m_rows = idx.view({m, 1}).expand({m, m}).contiguous();
  m_cols = idx.view({1, m}).expand({m, m}).contiguous();
  m_sign = 1.0f - 2.0f * torch::remainder(m_rows + m_cols, 2.0f);
  const torch::Tensor f = torch::fft::fftfreq(m);
  m_freq = (f.view({m, 1}).square() + f.view({1, m}).square()).sqrt();
  const torch::Tensor pupil = uniform({kProbePool}, 0.12, 0.3, m_gen);
  const torch::Tensor spot = uniform({kProbePool}, m / 8.0, m / 3.5, m_gen);
  m_pool = torch::empty({kProbePool, m, m}, torch::kComplexFloat);
  for (long j = 0; j < kProbePool; ++j) {
    const HostCView2 p = sim::zone_plate_probe(m, pupil[j].item<double>(), spot[j].item<double>(), seed * 7919 + j);
    m_pool[j] = torch::from_blob(reinterpret_cast<void*>(p.data()), {m, m}, torch::kComplexFloat).clone();
  }
}

torch::Tensor Synthesizer::images(long count) { return images(count, m_opt.frame_size); }

torch::Tensor Synthesizer::images(long count, int size) {
  const int m = size;
  torch::Tensor freq = m_freq, rows = m_rows, cols = m_cols;
  if (size != m_opt.frame_size) {
    const torch::Tensor idx = torch::arange(m, torch::kFloat);
    rows = idx.view({m, 1}).expand({m, m}).contiguous();
    cols = idx.view({1, m}).expand({m, m}).contiguous();
    const torch::Tensor f = torch::fft::fftfreq(m);
    freq = (f.view({m, 1}).square() + f.view({1, m}).square()).sqrt();
  }
  // Fractal noise: white noise shaped to a 1/f^(beta/2) amplitude spectrum.
  const torch::Tensor beta = uniform({count, 1, 1}, 1.5, 3.5, m_gen);
  const torch::Tensor spectrum = torch::pow(freq.unsqueeze(0).square() + 1.0f / float(m * m), -beta / 4.0f);
  const torch::Tensor white = at::randn({count, m, m}, m_gen, torch::kFloat);
  torch::Tensor img = to_unit_range(torch::real(torch::fft::ifft2(torch::fft::fft2(white) * spectrum)));
  img = img * uniform({count, 1, 1}, 0.0, 1.0, m_gen) + uniform({count, 1, 1}, 0.0, 0.5, m_gen);
  // Soft shapes painted over it: ellipses and bars, thin ones being strokes.
  for (int s = 0; s < kShapes; ++s) {
    const torch::Tensor cy = uniform({count, 1, 1}, -0.2 * m, 1.2 * m, m_gen);
    const torch::Tensor cx = uniform({count, 1, 1}, -0.2 * m, 1.2 * m, m_gen);
    const torch::Tensor r1 = uniform({count, 1, 1}, 1.5, 0.5 * m, m_gen);
    const torch::Tensor r2 = (r1 * uniform({count, 1, 1}, 0.05, 1.0, m_gen)).clamp_min(0.7);
    const torch::Tensor angle = uniform({count, 1, 1}, 0.0, M_PI, m_gen);
    const torch::Tensor value = uniform({count, 1, 1}, 0.0, 1.0, m_gen);
    const torch::Tensor edge = uniform({count, 1, 1}, 0.3, 3.0, m_gen);
    const torch::Tensor on = (uniform({count, 1, 1}, 0.0, 1.0, m_gen) < 0.6).to(torch::kFloat);
    const torch::Tensor box = (uniform({count, 1, 1}, 0.0, 1.0, m_gen) < 0.4).to(torch::kFloat);
    const torch::Tensor dy = rows.unsqueeze(0) - cy, dx = cols.unsqueeze(0) - cx;
    const torch::Tensor u = (dx * torch::cos(angle) + dy * torch::sin(angle)) / r1;
    const torch::Tensor v = (-dx * torch::sin(angle) + dy * torch::cos(angle)) / r2;
    const torch::Tensor d = box * torch::maximum(u.abs(), v.abs()) + (1 - box) * (u.square() + v.square()).sqrt();
    const torch::Tensor mask = torch::sigmoid((1 - d) * r2 / edge) * on;
    img = img * (1 - mask) + value * mask;
  }
  img = to_unit_range(img);
  // Half of the images are dead leaves over that image (see dead_leaves).
  const torch::Tensor leaves = uniform({count}, 0.0, 1.0, m_gen) < 0.5;
  const torch::Tensor seeds = at::randint(1L << 40, {count}, m_gen, torch::kLong);
  img = img.contiguous();
  std::vector<float> layer(size_t(m) * m);
  for (long i = 0; i < count; ++i) {
    if (!leaves[i].item<bool>()) continue;
    std::mt19937_64 rng(std::uint64_t(seeds[i].item<long>()));
    float* im = img.data_ptr<float>() + i * long(m) * m;
    dead_leaves(layer.data(), im, m, rng);
    std::copy(layer.begin(), layer.end(), im);
  }
  img = to_unit_range(img);
  img = torch::pow(img.clamp_min(0), uniform({count, 1, 1}, 0.5, 2.0, m_gen));
  const torch::Tensor flip = (uniform({count, 1, 1}, 0.0, 1.0, m_gen) < 0.5).to(torch::kFloat);
  return flip * (1 - img) + (1 - flip) * img;
}

torch::Tensor Synthesizer::objects(long count) {
  const torch::Tensor a = images(count), p = images(count);
  const torch::Tensor lo = uniform({count, 1, 1}, 0.1, 0.9, m_gen);
  const torch::Tensor hi = torch::clamp_max(lo + uniform({count, 1, 1}, 0.05, 0.9, m_gen), 1.0);
  const torch::Tensor width = uniform({count, 1, 1}, 0.05, 2.5, m_gen);
  const torch::Tensor offset = uniform({count, 1, 1}, -M_PI, M_PI, m_gen);
  return torch::polar(lo + (hi - lo) * a, offset + width * p);
}

torch::Tensor Synthesizer::probes(long count) {
  const torch::Tensor pick = at::randint(kProbePool, {count}, m_gen, torch::kLong);
  torch::Tensor p = m_pool.index_select(0, pick);
  // One of the 8 flips and transposes of the square, per sample.
  const torch::Tensor r = at::randint(2, {3, count, 1, 1}, m_gen, torch::kLong).to(torch::kBool);
  p = torch::where(r[0], p.flip({1}), p);
  p = torch::where(r[1], p.flip({2}), p);
  p = torch::where(r[2], p.transpose(1, 2), p);
  return (p * m_sign).unsqueeze(1).contiguous();
}

Batch Synthesizer::batch(long count) {
  const int m = m_opt.frame_size;
  Batch b;
  b.truth = objects(count);
  const torch::Tensor photons =
      torch::exp(uniform({count, 1, 1, 1}, std::log(m_opt.photons_min), std::log(m_opt.photons_max), m_gen));
  b.probes = probes(count) * photons.sqrt();
  const torch::Tensor far = torch::fft::fft2(b.probes * b.truth.unsqueeze(1));
  const torch::Tensor expected = (torch::real(far).square() + torch::imag(far).square()).sum(1) / float(m * m);
  torch::Tensor frames = at::poisson(expected, m_gen);
  // Beam stops and dead pixels on some frames, with garbage counts in them.
  const torch::Tensor stop = (uniform({count, 1, 1}, 0.0, 1.0, m_gen) < m_opt.mask_probability).to(torch::kFloat);
  const torch::Tensor radius = uniform({count, 1, 1}, 1.0, 5.0, m_gen);
  const torch::Tensor r = ((m_rows - m / 2).square() + (m_cols - m / 2).square()).sqrt().unsqueeze(0);
  const torch::Tensor dead = (uniform({count, m, m}, 0.0, 1.0, m_gen) < 0.005).to(torch::kFloat);
  const torch::Tensor masked = torch::clamp_max(stop * ((r < radius).to(torch::kFloat) + dead), 1.0);
  b.valid = 1 - masked;
  const torch::Tensor peak = std::get<0>(frames.reshape({count, -1}).max(1)).view({count, 1, 1});
  const torch::Tensor garbage = uniform({count, m, m}, 0.0, 1.0, m_gen) * peak * 2;
  b.frames = frames * b.valid + garbage * masked;
  return b;
}

}  // namespace ptycho::learned
