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
  torch::Tensor turn;      ///< (B, 1, 1) complex, or undefined: a factor taken out of the features,
                           ///< put back by patch_from_output (the window's mean phase for scan
                           ///< features, the object's scale for raw features)
};

/// frames (B, M, M) float counts; valid (M, M) or (B, M, M) float, 1 for
/// valid pixels; probes (B, K, M, M) complex64 (signed, scaled to counts).
/// `iterations` of error reduction.
Features make_features(const torch::Tensor& frames, const torch::Tensor& valid, const torch::Tensor& probes,
                       int iterations);

/// Raw features (PtychoNN's input): the frame itself, with nothing
/// computed from it but its scale. input = the measured amplitude sqrt(I)
/// over its root mean square on valid pixels (0 where masked), the valid
/// mask, and the probe's amplitude (max 1); baseline = 0; weight as
/// above; turn = the object's scale s, from the energy the frame holds
/// against a flat object's: s^2 = sum_valid I / sum_valid sum_k |DFT P_k|^2 / M^2.
Features make_raw_features(const torch::Tensor& frames, const torch::Tensor& valid, const torch::Tensor& probes);

/// The network's complex patch (B, M, M) from its output (B, 2, M, M):
/// (baseline + correction) * turn.
torch::Tensor patch_from_output(const Features& f, const torch::Tensor& output);

/// The loss against the true patches (B, M, M) complex: the weighted
/// squared distance after the best global phase factor per sample (the
/// phase offset of one frame cannot be observed), relative to the weighted
/// power of the truth, averaged over the batch.
torch::Tensor patch_loss(const torch::Tensor& patch, const torch::Tensor& truth, const torch::Tensor& weight);

}  // namespace ptycho::learned
