#pragma once
/// What a network sees of one frame, and the loss it is trained with.
///
/// The features come from physics, not from the raw frame: a few
/// iterations of single-frame phase retrieval (error reduction with the
/// known probe modes and the measured amplitudes, from a flat object) give
/// an estimate of the object patch under the probe. The network then only
/// has to correct a real-space image (a local task, which a small U-Net
/// does well) instead of learning the Fourier transform.
///
/// Conventions (core/local_scan.hpp): probes are in the workspace's signed
/// convention, so the raw DFT of P~ O gives the detector wave, M times the
/// unitary one, with zero frequency at the centre, where the measured
/// counts have it; the model intensity is sum_k |DFT(P~_k O)|^2 / M^2.
#include <torch/torch.h>

namespace ptycho::learned {

struct Features {
  torch::Tensor input;     ///< (B, 3, M, M) float: Re, Im of estimate * lit, probe amplitude (max 1)
  torch::Tensor baseline;  ///< (B, M, M) complex: estimate * lit, which the network corrects
  torch::Tensor weight;    ///< (B, M, M) float: illumination sum_k |P_k|^2 / its max
  torch::Tensor turn;      ///< (B, 1, 1) complex, or undefined: a phase factor taken out of the
                           ///< estimate (scan features), put back by patch_from_output
};

/// frames (B, M, M) float counts; valid (M, M) or (B, M, M) float, 1 for
/// valid pixels; probes (B, K, M, M) complex64 (signed, scaled to counts).
/// `iterations` of error reduction.
Features make_features(const torch::Tensor& frames, const torch::Tensor& valid, const torch::Tensor& probes,
                       int iterations);

/// The network's complex patch (B, M, M) from its output (B, 2, M, M):
/// (baseline + correction) * turn.
torch::Tensor patch_from_output(const Features& f, const torch::Tensor& output);

/// The loss against the true patches (B, M, M) complex: the weighted
/// squared distance after the best global phase factor per sample (the
/// phase offset of one frame cannot be observed), relative to the weighted
/// power of the truth, averaged over the batch.
torch::Tensor patch_loss(const torch::Tensor& patch, const torch::Tensor& truth, const torch::Tensor& weight);

}  // namespace ptycho::learned
