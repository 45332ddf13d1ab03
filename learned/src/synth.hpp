#pragma once
/// Training data simulated on the fly: procedurally generated object
/// patches, probes of the simulator's zone-plate family, photon levels,
/// Poisson noise and detector masks. No benchmark scene and no
/// scikit-image picture is ever used: those are what the networks are
/// evaluated on.
#include <torch/torch.h>

#include <cstdint>

namespace ptycho::learned {

struct SynthOptions {
  int frame_size = 64;                          ///< M
  double photons_min = 1e4, photons_max = 1e7;  ///< expected counts per frame (unit object), log-uniform
  double mask_probability = 0.3;                ///< frames with a beam stop and dead pixels
};

/// One batch of training samples.
struct Batch {
  torch::Tensor truth;   ///< (B, M, M) complex64: the object patch
  torch::Tensor probes;  ///< (B, 1, M, M) complex64: signed, scaled to counts
  torch::Tensor frames;  ///< (B, M, M) float: noisy counts (garbage where masked)
  torch::Tensor valid;   ///< (B, M, M) float: 1 valid, 0 masked
};

class Synthesizer {
 public:
  Synthesizer(const SynthOptions& options, std::uint64_t seed);
  /// Images (B, M, M) in [0, 1]: fractal noise overlaid with random soft
  /// ellipses, bars and strokes; half of them covered by a dead-leaves
  /// image (occluding ellipses and rectangles of power-law sizes, flat,
  /// shaded or textured); random contrast and gamma.
  torch::Tensor images(long count);
  /// The same at another size (size, size).
  torch::Tensor images(long count, int size);
  /// Complex object patches from two independent images: amplitude in a
  /// random sub-range of [0.1, 1], phase over a random range of up to 2.5 rad.
  torch::Tensor objects(long count);
  /// Probes (B, 1, M, M) of the zone-plate family (core/simulate.hpp) with
  /// random pupil and spot sizes, signed, each of unit power: drawn from a
  /// pool made once (kProbePool probes), each flipped or transposed at random.
  torch::Tensor probes(long count);
  /// A whole batch: objects, probes scaled to random photon levels, noisy frames.
  Batch batch(long count);

 private:
  SynthOptions m_opt;
  torch::Generator m_gen;
  torch::Tensor m_pool;          ///< (kProbePool, M, M) unsigned probes
  torch::Tensor m_sign;          ///< (M, M) checkerboard (-1)^(r+c)
  torch::Tensor m_freq;          ///< (M, M) radial frequency [cycles/px]
  torch::Tensor m_rows, m_cols;  ///< (M, M) pixel coordinates
};

}  // namespace ptycho::learned
