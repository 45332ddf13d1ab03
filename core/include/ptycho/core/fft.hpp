#pragma once
/// Batched 2-D FFTs over stacks of M x M frames.
///
/// Convention (shared/docs/CONVENTIONS.md): the unitary DFT with the zero
/// frequency at the array centre, i.e. numpy's
/// `fftshift(fft2(ifftshift(x), norm="ortho"))`. For even M this equals
///     F_c(x)[k] = (-1)^(k_r + k_c) / M * DFT((-1)^(n_r + n_c) x)[k],
/// so the centring is a checkerboard sign before and after a plain DFT. The
/// plan fuses the signs and the 1/M scale into the transform of each frame
/// while the frame is in cache.
///
/// `Centring::none` gives the plain, unnormalised DFT (FFTW's), for engines
/// that fold the signs and the scale into their own kernels: since
/// |F_c(x)| = |DFT(s x)| / M with s the checkerboard, a modulus constraint
/// needs the real-space sign only.
///
/// A plan is built once for a frame size (FFTW planning happens then) and then
/// executed on any stack of that frame size, in place, allocating nothing.
/// It is non-copyable. Host execution spaces use FFTW single precision; a
/// CUDA build of Kokkos uses cuFFT.
#include "ptycho/core/error.hpp"
#include "ptycho/core/types.hpp"

#include <memory>

namespace ptycho {

enum class FftDirection { forward, backward };
enum class Centring { centred_unitary, none };

class FramePlan {
 public:
  /// Plans transforms of M x M frames (M even). `effort_measure` lets FFTW
  /// time candidate algorithms (FFTW_MEASURE; slower to build, faster to run:
  /// 0.19 ms per 256 x 256 frame here, against 0.63 ms with FFTW_ESTIMATE).
  /// Timed picks can differ between processes, so runs agree to rounding,
  /// not to the bit.
  explicit FramePlan(int frame_size, bool effort_measure = true);
  ~FramePlan();
  FramePlan(const FramePlan&) = delete;
  FramePlan& operator=(const FramePlan&) = delete;
  FramePlan(FramePlan&&) noexcept;
  FramePlan& operator=(FramePlan&&) noexcept;

  int frame_size() const { return m_frame_size; }

  /// Transforms every frame of `frames` (B, M, M) in place.
  void execute(const CView3& frames, FftDirection dir, Centring c = Centring::centred_unitary) const;
  void forward(const CView3& frames) const { execute(frames, FftDirection::forward); }
  void backward(const CView3& frames) const { execute(frames, FftDirection::backward); }

 private:
  struct Impl;
  int m_frame_size = 0;
  std::unique_ptr<Impl> m_impl;
};

/// The raw (unnormalised) inverse DFT, in double and in place, of every
/// (rows, cols) plane of a host array (K, rows, cols): for sums kept in the
/// Fourier domain in double (the probe update's sums of shifted frames), a
/// handful of transforms per iteration. Planned once, when built (FFTW in
/// double, FFTW_ESTIMATE: repeatable); execute() allocates nothing.
class HostInverseDft {
 public:
  HostInverseDft(int rows, int cols);
  ~HostInverseDft();
  HostInverseDft(const HostInverseDft&) = delete;
  HostInverseDft& operator=(const HostInverseDft&) = delete;
  /// Transforms every plane of `planes` (K, rows, cols) in place.
  void execute(const View3<cdouble, HostSpace>& planes) const;

 private:
  struct Impl;
  int m_rows, m_cols;
  std::unique_ptr<Impl> m_impl;
};

/// The checkerboard sign (-1)^(r + c) of the centring identity.
KOKKOS_INLINE_FUNCTION float centring_sign(int r, int c) { return ((r + c) & 1) ? -1.0f : 1.0f; }

}  // namespace ptycho
