#pragma once
/// The far-field forward model of shared/docs/CONVENTIONS.md:
///
///     I_j(q) = sum_k | F_c{ P_k(r - r_j) O(r) } |^2
///
/// F_c is the centred unitary DFT (FramePlan). The patch of frame j starts at
/// floor(r_j - M/2); the fractional remainder shifts the probe modes by the
/// Fourier shift theorem, exactly as ptybench's `shifted_probe`.
#include "ptycho/core/fft.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"

#include <vector>

namespace ptycho {

/// Sub-pixel translation of probe modes by the Fourier shift theorem:
/// out_k = IDFT( DFT(in_k) * exp(-2 pi i (f_r d_r + f_c d_c)) ), f = fftfreq(M).
/// A shift of (0, 0) copies. Owns its frequency tables; allocates nothing per call.
class ProbeShifter {
 public:
  explicit ProbeShifter(int frame_size);
  int frame_size() const { return m_frame_size; }
  /// Shifts every mode of `in` (K, M, M) by (d_row, d_col) pixels into `out` (K, M, M).
  /// `in` and `out` may be the same view.
  void shift(const CView3& in, double d_row, double d_col, const CView3& out) const;

 private:
  int m_frame_size;
  FramePlan m_plan;
  View1<double> m_freq;  ///< fftfreq(M), in cycles per pixel
};

/// Computes model intensities for a set of positions. Built once for a frame
/// size, number of modes and batch size; holds its work buffers.
class ForwardModel {
 public:
  ForwardModel(int frame_size, int num_modes, int batch = 16);

  /// intensities(j, :, :) = sum_k |F_c{ shift(P_k, frac_j) * O[patch_j] }|^2 for
  /// every position j. `object` (H, W), `probe_modes` (K, M, M), `out` (N, M, M).
  /// Throws if a patch leaves the object.
  void intensities(const CView2& object, const CView3& probe_modes, const std::vector<Position>& positions,
                   const RView3& out) const;

 private:
  int m_frame_size, m_num_modes, m_batch;
  FramePlan m_plan;
  ProbeShifter m_shifter;
  CView3 m_shifted;  ///< (K, M, M)
  CView3 m_waves;    ///< (batch*K, M, M)
};

/// Host convenience: model intensities (N, M, M) of a host object, host modes
/// and positions. Copies to and from the execution space.
HostRView3 model_intensities(const HostCView2& object, const HostCView3& probe_modes,
                             const std::vector<Position>& positions);

}  // namespace ptycho
