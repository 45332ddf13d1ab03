#include "ptycho/core/metrics.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/forward.hpp"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

namespace ptycho {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// FFTW's (double) planner is not thread-safe; plan creation and destruction
// go through this lock. Execution needs none.
std::mutex& fftw_double_planner_mutex() {
  static std::mutex m;
  return m;
}

/// In-place unnormalised 2-D DFT of a contiguous host image (FFTW's sign:
/// FFTW_FORWARD = exp(-2 pi i ...), as numpy's fft2).
void dft2_in_place(const HostZView2& image, int direction) {
  PTYCHO_THROW_IF(!image.span_is_contiguous(), "metrics: the image to transform is not contiguous");
  const int rows = static_cast<int>(image.extent(0));
  const int cols = static_cast<int>(image.extent(1));
  if (rows == 0 || cols == 0) return;
  auto* p = reinterpret_cast<fftw_complex*>(image.data());
  fftw_plan plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(fftw_double_planner_mutex());
    // FFTW_ESTIMATE does not touch the array, so planning in place is safe.
    plan = fftw_plan_dft_2d(rows, cols, p, p, direction, FFTW_ESTIMATE);
  }
  PTYCHO_THROW_IF(!plan, "metrics: FFTW could not plan a " << rows << "x" << cols << " double transform");
  fftw_execute(plan);
  std::lock_guard<std::mutex> lock(fftw_double_planner_mutex());
  fftw_destroy_plan(plan);
}

/// numpy's fftfreq numerator: index i of an n-point DFT as a signed frequency.
long signed_frequency(long i, long n) { return i < (n + 1) / 2 ? i : i - n; }

/// numpy's round (halves to even), independent of the FPU rounding mode.
double round_half_even(double x) {
  if (std::fabs(x - std::trunc(x)) == 0.5) return 2.0 * std::round(0.5 * x);
  return std::round(x);
}

/// numpy's median of a copy of `v` (mean of the two middle values for even n).
double median(std::vector<double> v) {
  const size_t n = v.size();
  std::sort(v.begin(), v.end());
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

HostZView2 copy_of(const HostZView2& image) {
  HostZView2 out("ptycho::metrics::copy", image.extent(0), image.extent(1));
  Kokkos::deep_copy(out, image);
  return out;
}

/// scipy.ndimage 'reflect' boundary: (d c b a | a b c d | d c b a).
long reflect_index(long i, long n) {
  const long period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

/// The 2-D 7 x 7 mean filter of scipy.ndimage.uniform_filter(size=7,
/// mode='reflect'): a 1-D mean along rows (axis 0), then along columns.
std::vector<double> uniform_filter7(const std::vector<double>& in, long rows, long cols) {
  constexpr long radius = 3;
  constexpr double inv = 1.0 / (2 * radius + 1);
  std::vector<double> tmp(in.size()), out(in.size());
  for (long r = 0; r < rows; ++r) {
    for (long c = 0; c < cols; ++c) {
      double s = 0;
      for (long k = -radius; k <= radius; ++k) s += in[reflect_index(r + k, rows) * cols + c];
      tmp[r * cols + c] = s * inv;
    }
  }
  for (long r = 0; r < rows; ++r) {
    for (long c = 0; c < cols; ++c) {
      double s = 0;
      for (long k = -radius; k <= radius; ++k) s += tmp[r * cols + reflect_index(c + k, cols)];
      out[r * cols + c] = s * inv;
    }
  }
  return out;
}

void check_same_shape(const HostDView2& a, const HostDView2& b, const char* what) {
  PTYCHO_THROW_IF(a.extent(0) != b.extent(0) || a.extent(1) != b.extent(1),
                  what << ": images differ in shape, " << a.extent(0) << "x" << a.extent(1) << " vs " << b.extent(0)
                       << "x" << b.extent(1));
}

double clip01(double x) { return std::min(std::max(x, 0.0), 1.0); }

}  // namespace

PixelBox inscribed_box(const std::vector<Position>& true_positions) {
  PTYCHO_THROW_IF(true_positions.empty(), "inscribed_box: no positions");
  double cr = 0, cc = 0;
  for (const auto& p : true_positions) {
    cr += p.row;
    cc += p.col;
  }
  cr /= static_cast<double>(true_positions.size());
  cc /= static_cast<double>(true_positions.size());
  double rmax = 0;
  for (const auto& p : true_positions) rmax = std::max(rmax, std::hypot(p.row - cr, p.col - cc));
  const double half = rmax / std::sqrt(2.0);
  PixelBox box;
  box.row_begin = static_cast<long>(std::ceil(cr - half));
  box.row_end = static_cast<long>(std::floor(cr + half));
  box.col_begin = static_cast<long>(std::ceil(cc - half));
  box.col_end = static_cast<long>(std::floor(cc + half));
  return box;
}

GridOffset coarse_offset(const std::vector<Position>& result_positions, const std::vector<Position>& true_positions) {
  GridOffset off;
  if (result_positions.empty() || result_positions.size() != true_positions.size()) return off;
  std::vector<double> dr(result_positions.size()), dc(result_positions.size());
  for (size_t j = 0; j < result_positions.size(); ++j) {
    dr[j] = result_positions[j].row - true_positions[j].row;
    dc[j] = result_positions[j].col - true_positions[j].col;
  }
  off.row = static_cast<long>(round_half_even(median(std::move(dr))));
  off.col = static_cast<long>(round_half_even(median(std::move(dc))));
  return off;
}

HostZView2 to_truth_grid(const HostZView2& rec, long rows, long cols, GridOffset offset) {
  HostZView2 out("ptycho::to_truth_grid", rows, cols);  // zero-initialised
  const long rh = static_cast<long>(rec.extent(0)), rw = static_cast<long>(rec.extent(1));
  const long r0 = std::max(0L, -offset.row), c0 = std::max(0L, -offset.col);
  const long r1 = std::min(rows, rh - offset.row), c1 = std::min(cols, rw - offset.col);
  for (long r = r0; r < r1; ++r)
    for (long c = c0; c < c1; ++c) out(r, c) = rec(r + offset.row, c + offset.col);
  return out;
}

SubpixelShift register_subpixel(const HostZView2& reference, const HostZView2& moving, int upsample_factor) {
  PTYCHO_THROW_IF(reference.extent(0) != moving.extent(0) || reference.extent(1) != moving.extent(1),
                  "register_subpixel: images differ in shape, " << reference.extent(0) << "x" << reference.extent(1)
                                                                << " vs " << moving.extent(0) << "x"
                                                                << moving.extent(1));
  PTYCHO_THROW_IF(upsample_factor < 1, "register_subpixel: upsample factor must be >= 1, got " << upsample_factor);
  const long h = static_cast<long>(reference.extent(0)), w = static_cast<long>(reference.extent(1));
  PTYCHO_THROW_IF(h == 0 || w == 0, "register_subpixel: empty images");

  // Cross-power spectrum (unnormalised) and its inverse transform.
  HostZView2 product = copy_of(reference);
  HostZView2 moved = copy_of(moving);
  dft2_in_place(product, FFTW_FORWARD);
  dft2_in_place(moved, FFTW_FORWARD);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) product(r, c) *= Kokkos::conj(moved(r, c));
  HostZView2 correlation = copy_of(product);
  dft2_in_place(correlation, FFTW_BACKWARD);

  // Whole-pixel peak: the first maximum of |cc| in row-major order.
  long peak_r = 0, peak_c = 0;
  double peak = -1;
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const double a = Kokkos::abs(correlation(r, c));
      if (a > peak) {
        peak = a;
        peak_r = r;
        peak_c = c;
      }
    }
  double shift_r = static_cast<double>(peak_r > h / 2 ? peak_r - h : peak_r);
  double shift_c = static_cast<double>(peak_c > w / 2 ? peak_c - w : peak_c);

  if (upsample_factor > 1) {
    const double up = upsample_factor;
    shift_r = round_half_even(shift_r * up) / up;
    shift_c = round_half_even(shift_c * up) / up;
    const long region = static_cast<long>(std::ceil(up * 1.5));
    const double centre = std::trunc(region / 2.0);
    const double off_r = centre - shift_r * up, off_c = centre - shift_c * up;
    // Cross-correlation sampled at shift + (u - centre)/up: the inverse DFT
    // of `product` evaluated off the grid, separably (columns, then rows).
    std::vector<cdouble> row_kernel(region * h), col_kernel(region * w);
    for (long u = 0; u < region; ++u)
      for (long r = 0; r < h; ++r) {
        const double ph = kTwoPi * (u - off_r) * (signed_frequency(r, h) / (h * up));
        row_kernel[u * h + r] = cdouble(std::cos(ph), std::sin(ph));
      }
    for (long v = 0; v < region; ++v)
      for (long c = 0; c < w; ++c) {
        const double ph = kTwoPi * (v - off_c) * (signed_frequency(c, w) / (w * up));
        col_kernel[v * w + c] = cdouble(std::cos(ph), std::sin(ph));
      }
    std::vector<cdouble> partial(h * region);  // (h, region)
    for (long r = 0; r < h; ++r)
      for (long v = 0; v < region; ++v) {
        cdouble s = 0;
        for (long c = 0; c < w; ++c) s += product(r, c) * col_kernel[v * w + c];
        partial[r * region + v] = s;
      }
    long best_u = 0, best_v = 0;
    double best = -1;
    for (long u = 0; u < region; ++u)
      for (long v = 0; v < region; ++v) {
        cdouble s = 0;
        for (long r = 0; r < h; ++r) s += row_kernel[u * h + r] * partial[r * region + v];
        const double a = Kokkos::abs(s);
        if (a > best) {
          best = a;
          best_u = u;
          best_v = v;
        }
      }
    shift_r += (best_u - centre) / up;
    shift_c += (best_v - centre) / up;
  }
  // A single row or column carries no shift along that axis.
  if (h == 1) shift_r = 0;
  if (w == 1) shift_c = 0;
  return {shift_r, shift_c};
}

void fourier_shift(const HostZView2& image, SubpixelShift shift) {
  const long h = static_cast<long>(image.extent(0)), w = static_cast<long>(image.extent(1));
  if (h == 0 || w == 0) return;
  dft2_in_place(image, FFTW_FORWARD);
  const double norm = 1.0 / (static_cast<double>(h) * static_cast<double>(w));
  for (long r = 0; r < h; ++r) {
    const double pr = shift.row * signed_frequency(r, h) / h;
    for (long c = 0; c < w; ++c) {
      const double ph = -kTwoPi * (pr + shift.col * signed_frequency(c, w) / w);
      image(r, c) *= cdouble(norm * std::cos(ph), norm * std::sin(ph));
    }
  }
  dft2_in_place(image, FFTW_BACKWARD);
}

cdouble complex_factor(const HostZView2& rec, const HostZView2& truth) {
  PTYCHO_THROW_IF(rec.extent(0) != truth.extent(0) || rec.extent(1) != truth.extent(1),
                  "complex_factor: images differ in shape");
  cdouble num = 0;
  double den = 0;
  for (size_t r = 0; r < rec.extent(0); ++r)
    for (size_t c = 0; c < rec.extent(1); ++c) {
      num += Kokkos::conj(rec(r, c)) * truth(r, c);
      den += Kokkos::real(rec(r, c)) * Kokkos::real(rec(r, c)) + Kokkos::imag(rec(r, c)) * Kokkos::imag(rec(r, c));
    }
  return num / std::max(den, 1e-30);
}

PhaseRamp fit_phase_ramp(const HostZView2& rec, const HostZView2& truth) {
  PTYCHO_THROW_IF(rec.extent(0) != truth.extent(0) || rec.extent(1) != truth.extent(1),
                  "fit_phase_ramp: images differ in shape");
  const long h = static_cast<long>(rec.extent(0)), w = static_cast<long>(rec.extent(1));
  // Minimise sum w^2 (d - a - b row - c col)^2 with w = |t|, d = arg(t conj r).
  // Solved about the weighted centroid, where the normal equations are well
  // conditioned; the plane is the same as lstsq's.
  std::vector<double> wt(h * w), d(h * w);
  double s = 0, mr = 0, mc = 0, md = 0;
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const cdouble t = truth(r, c);
      const double a = std::hypot(t.real(), t.imag());
      const double w2 = a * a;
      const cdouble p = t * Kokkos::conj(rec(r, c));
      const double phase = std::atan2(p.imag(), p.real());
      wt[r * w + c] = w2;
      d[r * w + c] = phase;
      s += w2;
      mr += w2 * r;
      mc += w2 * c;
      md += w2 * phase;
    }
  PTYCHO_THROW_IF(!(s > 0), "fit_phase_ramp: the truth is zero on the whole box");
  mr /= s;
  mc /= s;
  md /= s;
  double srr = 0, scc = 0, src = 0, srd = 0, scd = 0;
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const double w2 = wt[r * w + c];
      const double yr = r - mr, yc = c - mc, dd = d[r * w + c] - md;
      srr += w2 * yr * yr;
      scc += w2 * yc * yc;
      src += w2 * yr * yc;
      srd += w2 * yr * dd;
      scd += w2 * yc * dd;
    }
  const double det = srr * scc - src * src;
  PTYCHO_THROW_IF(!(det > 1e-12 * srr * scc) || !(srr > 0) || !(scc > 0),
                  "fit_phase_ramp: the weighted pixels of a " << h << "x" << w << " box do not determine a plane");
  PhaseRamp ramp;
  ramp.per_row = (srd * scc - scd * src) / det;
  ramp.per_col = (scd * srr - srd * src) / det;
  ramp.offset = md - ramp.per_row * mr - ramp.per_col * mc;
  return ramp;
}

void apply_phase_ramp(const HostZView2& image, const PhaseRamp& ramp) {
  for (size_t r = 0; r < image.extent(0); ++r)
    for (size_t c = 0; c < image.extent(1); ++c) {
      const double ph = ramp.offset + ramp.per_row * static_cast<double>(r) + ramp.per_col * static_cast<double>(c);
      image(r, c) *= cdouble(std::cos(ph), std::sin(ph));
    }
}

Alignment align_to_truth(const HostZView2& rec, const HostZView2& truth, const PixelBox& box, GridOffset offset) {
  const long h = static_cast<long>(truth.extent(0)), w = static_cast<long>(truth.extent(1));
  PTYCHO_THROW_IF(box.row_begin < 0 || box.col_begin < 0 || box.row_end > h || box.col_end > w || box.rows() <= 0 ||
                      box.cols() <= 0,
                  "align_to_truth: box [" << box.row_begin << "," << box.row_end << ")x[" << box.col_begin << ","
                                          << box.col_end << ") is empty or leaves the " << h << "x" << w << " truth");
  Alignment al;
  HostZView2 moved = to_truth_grid(rec, h, w, offset);
  al.shift = register_subpixel(truth, moved, 20);
  fourier_shift(moved, al.shift);

  al.rec = HostZView2("ptycho::Alignment::rec", box.rows(), box.cols());
  al.truth = HostZView2("ptycho::Alignment::truth", box.rows(), box.cols());
  for (long r = 0; r < box.rows(); ++r)
    for (long c = 0; c < box.cols(); ++c) {
      al.rec(r, c) = moved(box.row_begin + r, box.col_begin + c);
      al.truth(r, c) = truth(box.row_begin + r, box.col_begin + c);
    }
  al.factor = complex_factor(al.rec, al.truth);
  for (long r = 0; r < box.rows(); ++r)
    for (long c = 0; c < box.cols(); ++c) al.rec(r, c) *= al.factor;
  al.ramp = fit_phase_ramp(al.rec, al.truth);
  apply_phase_ramp(al.rec, al.ramp);
  return al;
}

double psnr(const HostDView2& image, const HostDView2& reference, double data_range) {
  check_same_shape(image, reference, "psnr");
  PTYCHO_THROW_IF(image.size() == 0, "psnr: empty images");
  double sum = 0;
  for (size_t r = 0; r < image.extent(0); ++r)
    for (size_t c = 0; c < image.extent(1); ++c) {
      const double e = image(r, c) - reference(r, c);
      sum += e * e;
    }
  const double mse = sum / static_cast<double>(image.size());
  return 10.0 * std::log10(data_range * data_range / std::max(mse, 1e-30));
}

double ssim(const HostDView2& image, const HostDView2& reference, double data_range) {
  check_same_shape(image, reference, "ssim");
  const long h = static_cast<long>(image.extent(0)), w = static_cast<long>(image.extent(1));
  constexpr long win = 7, pad = (win - 1) / 2;
  PTYCHO_THROW_IF(h < win || w < win, "ssim: images of " << h << "x" << w << " are smaller than the 7x7 window");
  const size_t n = static_cast<size_t>(h * w);
  std::vector<double> x(n), y(n), xx(n), yy(n), xy(n);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const size_t i = static_cast<size_t>(r * w + c);
      x[i] = image(r, c);
      y[i] = reference(r, c);
      xx[i] = x[i] * x[i];
      yy[i] = y[i] * y[i];
      xy[i] = x[i] * y[i];
    }
  const auto ux = uniform_filter7(x, h, w), uy = uniform_filter7(y, h, w);
  const auto uxx = uniform_filter7(xx, h, w), uyy = uniform_filter7(yy, h, w), uxy = uniform_filter7(xy, h, w);
  const double np = static_cast<double>(win * win);
  const double cov_norm = np / (np - 1.0);
  const double c1 = (0.01 * data_range) * (0.01 * data_range);
  const double c2 = (0.03 * data_range) * (0.03 * data_range);
  double sum = 0;
  for (long r = pad; r < h - pad; ++r)
    for (long c = pad; c < w - pad; ++c) {
      const size_t i = static_cast<size_t>(r * w + c);
      const double vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
      const double vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
      const double vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
      const double a1 = 2 * ux[i] * uy[i] + c1, a2 = 2 * vxy + c2;
      const double b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1, b2 = vx + vy + c2;
      sum += (a1 * a2) / (b1 * b2);
    }
  return sum / static_cast<double>((h - 2 * pad) * (w - 2 * pad));
}

ImageQuality image_quality(const HostDView2& image, const HostDView2& truth) {
  check_same_shape(image, truth, "image_quality");
  PTYCHO_THROW_IF(truth.size() == 0, "image_quality: empty images");
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (size_t r = 0; r < truth.extent(0); ++r)
    for (size_t c = 0; c < truth.extent(1); ++c) {
      lo = std::min(lo, truth(r, c));
      hi = std::max(hi, truth(r, c));
    }
  const double range = (hi - lo) != 0.0 ? hi - lo : 1.0;
  return {psnr(image, truth, range), ssim(image, truth, range)};
}

double data_consistency(const HostRView3& measured, const View2<std::uint8_t, HostSpace>& mask,
                        const HostCView2& object, const HostCView3& probe_modes,
                        const std::vector<Position>& positions) {
  const size_t n = measured.extent(0), m = measured.extent(1);
  PTYCHO_INPUT_ERROR_IF(measured.extent(2) != m,
                        "data consistency: frames are " << m << "x" << measured.extent(2) << ", not square");
  PTYCHO_INPUT_ERROR_IF(positions.size() != n, "data consistency: the data have " << n << " frames but the result has "
                                                                                  << positions.size() << " positions");
  PTYCHO_INPUT_ERROR_IF(probe_modes.extent(1) != m || probe_modes.extent(2) != m,
                        "data consistency: probe modes are " << probe_modes.extent(1) << "x" << probe_modes.extent(2)
                                                             << " but frames are " << m << "x" << m);
  const bool has_mask = mask.size() != 0;
  PTYCHO_INPUT_ERROR_IF(
      has_mask && (mask.extent(0) != m || mask.extent(1) != m),
      "data consistency: mask is " << mask.extent(0) << "x" << mask.extent(1) << " but frames are " << m << "x" << m);
  const HostRView3 model = model_intensities(object, probe_modes, positions);
  double num = 0, den = 0;
  for (size_t j = 0; j < n; ++j)
    for (size_t r = 0; r < m; ++r)
      for (size_t c = 0; c < m; ++c) {
        if (has_mask && mask(r, c) != 0) continue;
        const double y = measured(j, r, c);
        const double e = y - static_cast<double>(model(j, r, c));
        num += e * e;
        den += y * y;
      }
  return 1.0 - std::sqrt(num) / std::sqrt(den);
}

double standard_score(double psnr_db, double ssim_value) {
  return 0.5 * clip01((psnr_db - 15.0) / 30.0) + 0.5 * ssim_value;
}

double blind_score(double psnr_db, double ssim_value, double consistency) {
  return 0.4 * clip01((psnr_db - 15.0) / 30.0) + 0.4 * ssim_value + 0.2 * (std::isnan(consistency) ? 0.0 : consistency);
}

HostZView2 to_double(const HostCView2& image) {
  HostZView2 out(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::to_double"), image.extent(0),
                 image.extent(1));
  for (size_t r = 0; r < image.extent(0); ++r)
    for (size_t c = 0; c < image.extent(1); ++c) out(r, c) = cdouble(image(r, c).real(), image(r, c).imag());
  return out;
}

BenchmarkScore score_reconstruction(const ScoredReconstruction& result, const GroundTruth& truth,
                                    const MeasuredFrames& measured) {
  PTYCHO_INPUT_ERROR_IF(result.object.size() == 0, "score: the result has an empty object");
  PTYCHO_INPUT_ERROR_IF(truth.object.size() == 0, "score: the truth has an empty object");
  const PixelBox box = inscribed_box(truth.positions);
  const GridOffset offset = coarse_offset(result.positions, truth.positions);
  const Alignment al = align_to_truth(to_double(result.object), to_double(truth.object), box, offset);

  const long h = box.rows(), w = box.cols();
  HostDView2 rec_amp("ptycho::score::rec_amp", h, w), true_amp("ptycho::score::true_amp", h, w);
  HostDView2 rec_phase("ptycho::score::rec_phase", h, w), true_phase("ptycho::score::true_phase", h, w);
  for (long r = 0; r < h; ++r)
    for (long c = 0; c < w; ++c) {
      const cdouble a = al.rec(r, c), t = al.truth(r, c);
      rec_amp(r, c) = std::hypot(a.real(), a.imag());
      true_amp(r, c) = std::hypot(t.real(), t.imag());
      rec_phase(r, c) = std::atan2(a.imag(), a.real());
      true_phase(r, c) = std::atan2(t.imag(), t.real());
    }
  const ImageQuality qa = image_quality(rec_amp, true_amp);
  const ImageQuality qp = image_quality(rec_phase, true_phase);

  BenchmarkScore s;
  s.psnr_amp = qa.psnr;
  s.ssim_amp = qa.ssim;
  s.psnr_phase = qp.psnr;
  s.ssim_phase = qp.ssim;
  s.psnr = 0.5 * (qa.psnr + qp.psnr);
  s.ssim = 0.5 * (qa.ssim + qp.ssim);
  s.shift = al.shift;
  s.score_standard = standard_score(s.psnr, s.ssim);
  const bool can_model =
      measured.intensities.size() != 0 && result.probe_modes.size() != 0 && !result.positions.empty();
  s.consistency = can_model ? data_consistency(measured.intensities, measured.mask, result.object, result.probe_modes,
                                               result.positions)
                            : std::numeric_limits<double>::quiet_NaN();
  s.score_blind = blind_score(s.psnr, s.ssim, s.consistency);
  s.blind = truth.blind;
  return s;
}

}  // namespace ptycho
