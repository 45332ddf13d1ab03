#pragma once
/// Benchmark metrics: the scoring of shared/docs/CONVENTIONS.md ("Benchmark
/// scoring"), reproducing shared/bench/ptybench.py `score` to rounding.
///
/// The pipeline, each step a function below so it can be tested alone:
///  1. `inscribed_box`: the square inscribed in the disc of true probe centres.
///  2. `coarse_offset` + `to_truth_grid`: the result object moved onto the
///     truth grid by round(median(result positions - true positions)).
///  3. `register_subpixel` + `fourier_shift`: sub-pixel registration as
///     skimage's `phase_cross_correlation(truth, rec, upsample_factor=20,
///     normalization=None)` (Guizar-Sicairos et al., Opt. Lett. 33, 156
///     (2008)), then the Fourier shift of scipy.ndimage.fourier_shift.
///  4. `complex_factor` and `fit_phase_ramp`: removal of the global complex
///     factor and of a linear phase ramp on the box.
///  5. `image_quality`: PSNR and SSIM (skimage defaults) of amplitude and
///     phase, with the data range of the truth.
///  6. `data_consistency`: 1 - ||y - y_hat|| / ||y|| over the valid detector
///     pixels, y_hat the forward model of the result.
///
/// Everything here runs on the host in double precision (images are small);
/// only the forward model of step 6 runs on the execution space. Images are
/// row-major (row, col), as numpy's.
#include "ptycho/core/types.hpp"

#include <cstdint>
#include <vector>

namespace ptycho {

using HostZView2 = View2<cdouble, HostSpace>;  ///< complex double image on the host
using HostDView2 = View2<double, HostSpace>;   ///< real double image on the host

/// A half-open pixel rectangle [row_begin, row_end) x [col_begin, col_end).
struct PixelBox {
  long row_begin = 0;
  long row_end = 0;
  long col_begin = 0;
  long col_end = 0;
  long rows() const { return row_end - row_begin; }
  long cols() const { return col_end - col_begin; }
};

/// The square inscribed in the disc of the scan: centre c = mean of the
/// positions, half-side r = max |p - c| / sqrt(2), rows [ceil(c_r - r),
/// floor(c_r + r)) and likewise for columns (ptybench `inscribed_box`).
/// Throws if `true_positions` is empty.
PixelBox inscribed_box(const std::vector<Position>& true_positions);

/// Whole-pixel offset between two object grids: truth pixel p sits at result
/// pixel p + offset.
struct GridOffset {
  long row = 0;
  long col = 0;
};

/// round(median(result - truth)) per axis, rounding halves to even as numpy
/// does. (0, 0) when the two lists differ in length or are empty (the result
/// carries no usable positions).
GridOffset coarse_offset(const std::vector<Position>& result_positions, const std::vector<Position>& true_positions);

/// The window of `rec` seen from a truth grid of rows x cols: out(p) = rec(p +
/// offset), zero where p + offset falls outside `rec` (ptybench `to_truth_grid`).
HostZView2 to_truth_grid(const HostZView2& rec, long rows, long cols, GridOffset offset);

/// A translation in pixels (row, col).
struct SubpixelShift {
  double row = 0;
  double col = 0;
};

/// The shift that registers `moving` onto `reference` (same shape): the peak
/// of the unnormalised cross-correlation IDFT(DFT(reference) conj(DFT(moving))),
/// refined to 1/upsample_factor pixel by a matrix-multiply DFT in a window of
/// ceil(1.5 upsample_factor) samples around it. Sign convention of skimage's
/// `phase_cross_correlation`: `fourier_shift(moving, shift)` lands on
/// `reference`. Shifts are in (-n/2, n/2] per axis.
SubpixelShift register_subpixel(const HostZView2& reference, const HostZView2& moving, int upsample_factor = 20);

/// Translates `image` in place by `shift` pixels, periodically:
/// image = IDFT(DFT(image) exp(-2 pi i (f_r s_r + f_c s_c))), f = fftfreq
/// (scipy.ndimage.fourier_shift applied to numpy's fft2).
void fourier_shift(const HostZView2& image, SubpixelShift shift);

/// The complex factor c = <rec, truth> / <rec, rec> (vdot) that best maps
/// `rec` onto `truth` in least squares; the denominator is floored at 1e-30.
cdouble complex_factor(const HostZView2& rec, const HostZView2& truth);

/// A linear phase, in radians: offset + per_row * row + per_col * col, with
/// (row, col) the pixel indices of the image it applies to.
struct PhaseRamp {
  double offset = 0;
  double per_row = 0;
  double per_col = 0;
};

/// The phase ramp that best explains angle(truth * conj(rec)) in least
/// squares weighted by |truth| (ptybench's weighted lstsq: residuals times
/// |truth|). Throws if the weights cannot determine a plane (e.g. all zero).
PhaseRamp fit_phase_ramp(const HostZView2& rec, const HostZView2& truth);

/// Multiplies `image` in place by exp(i ramp(row, col)).
void apply_phase_ramp(const HostZView2& image, const PhaseRamp& ramp);

/// The result of `align_to_truth`: the box crops of the aligned
/// reconstruction and of the truth, and the ambiguities that were removed.
struct Alignment {
  HostZView2 rec;       ///< aligned reconstruction on the box (rows x cols of the box)
  HostZView2 truth;     ///< truth on the box
  SubpixelShift shift;  ///< sub-pixel shift applied to the reconstruction
  cdouble factor;       ///< complex factor applied
  PhaseRamp ramp;       ///< phase ramp applied (box pixel coordinates)
};

/// Steps 2-4 of the pipeline (ptybench `align`): moves `rec` onto the truth
/// grid by `offset`, registers it to `truth` (whole image) at 1/20 pixel,
/// crops both to `box`, then removes the complex factor and the phase ramp.
/// `box` must lie inside `truth`.
Alignment align_to_truth(const HostZView2& rec, const HostZView2& truth, const PixelBox& box, GridOffset offset);

/// Peak signal-to-noise ratio [dB] of `image` against `reference`:
/// 10 log10(data_range^2 / max(mse, 1e-30)).
double psnr(const HostDView2& image, const HostDView2& reference, double data_range);

/// Mean structural similarity of two images of the same shape (at least
/// 7 x 7), as skimage.metrics.structural_similarity with its defaults for 2-D
/// float images: 7 x 7 uniform window (scipy uniform_filter, mode 'reflect'),
/// sample covariance (N/(N-1), N = 49), K1 = 0.01, K2 = 0.03, and the mean
/// over the image less a 3-pixel border.
double ssim(const HostDView2& image, const HostDView2& reference, double data_range);

/// PSNR [dB] and SSIM of one image against the truth.
struct ImageQuality {
  double psnr = 0;
  double ssim = 0;
};

/// PSNR and SSIM of `image` against `truth` with data range max(truth) -
/// min(truth), or 1 for a constant truth (ptybench `psnr_ssim`).
ImageQuality image_quality(const HostDView2& image, const HostDView2& truth);

/// 1 - ||y - y_hat|| / ||y|| over frames and valid pixels, where y =
/// `measured` (N, M, M) counts, `mask` (M, M) is nonzero on INVALID pixels
/// (an empty mask means all valid), and y_hat = model_intensities(object,
/// probe_modes, positions). Throws InputError if the frame counts or sizes
/// disagree, and Error if a position leaves the object.
double data_consistency(const HostRView3& measured, const View2<std::uint8_t, HostSpace>& mask,
                        const HostCView2& object, const HostCView3& probe_modes,
                        const std::vector<Position>& positions);

/// score_standard = 0.5 clip((psnr - 15)/30, 0, 1) + 0.5 ssim.
double standard_score(double psnr, double ssim);

/// score_blind = 0.4 clip((psnr - 15)/30, 0, 1) + 0.4 ssim + 0.2 consistency,
/// with a NaN consistency counted as 0.
double blind_score(double psnr, double ssim, double consistency);

/// A reconstruction as the scorer reads it (the result contract). Views are
/// borrowed, not copied.
struct ScoredReconstruction {
  HostCView2 object;                ///< (H, W), the first slice of a multislice object
  HostCView3 probe_modes;           ///< (K, M, M); empty if the result has none
  std::vector<Position> positions;  ///< final probe centres; empty if the result has none
};

/// The ground truth of a benchmark dataset (`*_truth.h5`).
struct GroundTruth {
  HostCView2 object;                ///< (H, W)
  std::vector<Position> positions;  ///< the true probe centres
  bool blind = false;               ///< a blind-tier dataset (any model error nonzero)
};

/// The measured frames for the data-consistency term.
struct MeasuredFrames {
  HostRView3 intensities;               ///< (N, M, M) counts; empty: no consistency term
  View2<std::uint8_t, HostSpace> mask;  ///< (M, M), nonzero = invalid; may be empty
};

/// Every number `ptybench.py score` reports.
struct BenchmarkScore {
  double psnr_amp = 0;        ///< PSNR of the amplitude [dB]
  double ssim_amp = 0;        ///< SSIM of the amplitude
  double psnr_phase = 0;      ///< PSNR of the phase [dB]
  double ssim_phase = 0;      ///< SSIM of the phase
  double psnr = 0;            ///< mean of the two PSNRs [dB]
  double ssim = 0;            ///< mean of the two SSIMs
  SubpixelShift shift;        ///< registration shift applied to the reconstruction [px]
  double score_standard = 0;  ///< standard-tier score in [0, 1]
  double consistency = 0;     ///< data consistency; NaN without data, probe or positions
  double score_blind = 0;     ///< blind-tier score
  bool blind = false;         ///< the dataset is of the blind tier (from the truth)
};

/// The whole benchmark score of `result` against `truth`; the consistency is
/// NaN if `measured.intensities`, the result's probe modes or its positions
/// are empty.
BenchmarkScore score_reconstruction(const ScoredReconstruction& result, const GroundTruth& truth,
                                    const MeasuredFrames& measured);

/// A double-precision host copy of a complex float image.
HostZView2 to_double(const HostCView2& image);

}  // namespace ptycho
