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
#include <string>

namespace ptycho {

enum class FftDirection { forward, backward };
enum class Centring { centred_unitary, none };

/// Where a FramePlan's FFTW plans came from.
enum class PlanSource {
  estimate,  ///< FFTW_ESTIMATE: asked for, or no wisdom folder could be used
  wisdom,    ///< imported from the saved wisdom file of this machine and frame size
  measured,  ///< timed here (FFTW_MEASURE) and saved as that file, then imported like the rest
};

class FramePlan {
 public:
  /// Plans transforms of M x M frames (M even). With `effort_measure` the
  /// plans are FFTW_MEASURE plans (0.19 ms per 256 x 256 frame here, against
  /// 0.63 ms with FFTW_ESTIMATE), but timed once per machine and frame size,
  /// not in every process: the first process to need them measures under an
  /// exclusive lock and saves FFTW's wisdom in fft_wisdom_path(M); every
  /// process, that one included, then plans from that file alone
  /// (FFTW_WISDOM_ONLY), so all processes and all runs on the machine
  /// execute the same algorithm and round alike. A corrupt or foreign file
  /// is replaced. With no usable wisdom folder, or without `effort_measure`,
  /// the plans are FFTW_ESTIMATE plans (repeatable too, slower); the former
  /// prints a one-line notice to stderr, once per process. Planning always
  /// starts from empty FFTW wisdom, so no plan depends on what the process
  /// planned before. The FFTW plans are single-threaded (frames run in
  /// parallel), so one wisdom serves every thread count.
  explicit FramePlan(int frame_size, bool effort_measure = true);
  ~FramePlan();
  FramePlan(const FramePlan&) = delete;
  FramePlan& operator=(const FramePlan&) = delete;
  FramePlan(FramePlan&&) noexcept;
  FramePlan& operator=(FramePlan&&) noexcept;

  int frame_size() const { return m_frame_size; }
  /// Frames transformed by every FramePlan of this process so far, either
  /// direction (a relaxed atomic count): benchmarks count an engine's own
  /// transforms with it.
  static long frames_transformed();
  /// How the FFTW plans were made.
  PlanSource plan_source() const;

  /// Transforms every frame of `frames` (B, M, M) in place.
  void execute(const CView3& frames, FftDirection dir, Centring c = Centring::centred_unitary) const;
  void forward(const CView3& frames) const { execute(frames, FftDirection::forward); }
  void backward(const CView3& frames) const { execute(frames, FftDirection::backward); }

 private:
  struct Impl;
  int m_frame_size = 0;
  std::unique_ptr<Impl> m_impl;
};

/// The folder of FramePlan's FFTW wisdom files: $PTYCHO_FFTW_WISDOM_DIR if
/// set and not empty, else $XDG_CACHE_HOME/ptycho, else $HOME/.cache/ptycho
/// ("" when none of these is set). Read from the environment at each call.
std::string fft_wisdom_dir();

/// The wisdom file FramePlan(frame_size) uses on this machine ("" when
/// fft_wisdom_dir() is ""): one per machine (host name and CPU model, from
/// /proc/cpuinfo), FFTW version, precision (single) and frame size. Beside
/// it, PATH.lock is the lock file of the process that measures.
std::string fft_wisdom_path(int frame_size);

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
