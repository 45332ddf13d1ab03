#pragma once
/// Training samples for "scan" models (scan_features.hpp): whole scans
/// simulated on the fly with core/'s simulator (the benchmark's forward
/// model and probe family), of procedurally generated objects (synth.hpp),
/// at random overlaps, photon levels and masks; each reconstructed by the
/// same multi-frame estimate the nn engine makes; each frame's window of
/// it, with the true object's window, is a sample.
#include "features.hpp"
#include "synth.hpp"

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

namespace ptycho::learned {

struct ScanSamples {
  Features features;   ///< of B windows
  torch::Tensor truth;  ///< (B, M, M) complex: the true object's windows
};

class ScanSampler {
 public:
  /// `iterations` of ML make each scan's estimate (the model's
  /// feature_iterations).
  ScanSampler(int frame_size, int iterations, std::uint64_t seed);
  /// `count` samples, from as many new scans as that takes (at most
  /// kWindowsPerScan windows of each, the rest kept for the next call).
  ScanSamples batch(long count);
  /// Scans simulated so far.
  long scans() const { return m_scans; }

  static constexpr long kWindowsPerScan = 16;

 private:
  void simulate_scan();

  int m_frame_size, m_iterations;
  Synthesizer m_images;
  std::mt19937_64 m_rng;
  long m_scans = 0;
  std::vector<torch::Tensor> m_input, m_baseline, m_weight, m_turn, m_truth;  ///< samples not yet handed out
};

}  // namespace ptycho::learned
