#include "ptycho/jobs/analysis.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/analysis_file.hpp"
#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/io/png.hpp"
#include "ptycho/jobs/memory_check.hpp"
#include "ptycho/jobs/output_paths.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/parallel/gather.hpp"
#include "ptycho/parallel/slab_plan.hpp"

#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ptycho::jobs {

namespace fs = std::filesystem;

namespace {

using io::detail::collectively;

constexpr double kPi = 3.14159265358979323846;
/// Previews are decimated to at most this many pixels on a side.
constexpr long kPreviewSide = 1024;

/// The box of the probe centres [px], clipped to the grid; without
/// positions, the grid less 10 % on each side.
Rect scanned_box(const std::vector<Position>& p, long rows, long cols) {
  const Rect grid{0, 0, rows, cols};
  if (p.empty()) return grow(grid, -std::max(1L, std::min(rows, cols) / 10), grid);
  double r0 = p[0].row, r1 = p[0].row, c0 = p[0].col, c1 = p[0].col;
  for (const auto& q : p) {
    r0 = std::min(r0, q.row);
    r1 = std::max(r1, q.row);
    c0 = std::min(c0, q.col);
    c1 = std::max(c1, q.col);
  }
  const long a = long(std::floor(r0)), b = long(std::ceil(c0));
  return intersect(grid, Rect{a, b, long(std::ceil(r1)) + 1 - a, long(std::floor(c1)) + 1 - b});
}

double sum_all(MPI_Comm comm, double v) {
  double s = 0;
  io::detail::check_mpi(MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce");
  return s;
}

/// A real image as a complex field (imaginary part 0), less its weighted mean.
std::vector<cfloat> centred(const ObjectTransforms& t, const std::vector<float>& v, const float* w) {
  double s = 0, sw = 0;
  for (long k = 0; k < t.slab_size(); ++k) {
    s += double(w[k]) * v[k];
    sw += w[k];
  }
  s = sum_all(t.comm(), s);
  sw = sum_all(t.comm(), sw);
  const float mean = sw > 0 ? float(s / sw) : 0.0f;
  std::vector<cfloat> out(v.size());
  for (size_t k = 0; k < v.size(); ++k) out[k] = cfloat(v[k] - mean, 0.0f);
  return out;
}

std::vector<float> amplitude_of(const cfloat* o, long n) {
  std::vector<float> v(size_t(std::max(1L, n)));
  for (long k = 0; k < n; ++k) v[k] = Kokkos::abs(o[k]);
  return v;
}

std::vector<float> phase_of(const cfloat* o, long n) {
  std::vector<float> v(size_t(std::max(1L, n)));
  for (long k = 0; k < n; ++k) v[k] = std::atan2(o[k].imag(), o[k].real());
  return v;
}

/// Peak resident memory of this process [bytes] (getrusage).
double peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;
}

/// A decimated copy of a slab-distributed image on rank 0 (every k-th row
/// and column), for previews; empty on the other ranks.
HostRView2 decimated_on_root(const ObjectTransforms& t, const std::vector<float>& v) {
  const long k = std::max(1L, (std::max(t.rows(), t.cols()) + kPreviewSide - 1) / kPreviewSide);
  const long rows = (t.rows() + k - 1) / k, cols = (t.cols() + k - 1) / k;
  const Rect& s = t.slab();
  const long first = (s.row0 + k - 1) / k, last = s.rows > 0 ? (s.row1() - 1) / k : first - 1;
  const long n = std::max(0L, last - first + 1);
  HostCView2 tile("ptycho::preview_tile", n, n > 0 ? cols : 0);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < cols; ++j) tile(i, j) = cfloat(v[((first + i) * k - s.row0) * t.cols() + j * k], 0.0f);
  const HostCView2 whole =
      gather_tiles(t.comm(), tile, Rect{first, 0, n, n > 0 ? cols : 0}, rows, cols, 0);
  if (whole.size() == 0) return HostRView2();
  HostRView2 out("ptycho::preview", rows, cols);
  for (long i = 0; i < rows; ++i)
    for (long j = 0; j < cols; ++j) out(i, j) = whole(i, j).real();
  return out;
}

std::string stem_folder(const std::string& result) {
  const fs::path p(result);
  return (p.parent_path() / (p.stem().string() + "_analysis")).string();
}

}  // namespace

FrcReport fourier_ring_correlation_of(ObjectTransforms& t, cfloat* a, cfloat* b,
                                      const std::vector<Position>& positions_a,
                                      const std::vector<Position>& positions_b, double pixel_size_m) {
  const long n = t.slab_size();
  FrcReport r;
  r.pixel_size_m = pixel_size_m;
  r.region = intersect(scanned_box(positions_a, t.rows(), t.cols()), scanned_box(positions_b, t.rows(), t.cols()));
  PTYCHO_INPUT_ERROR_IF(r.region.rows < 16 || r.region.cols < 16,
                        "FRC: the two reconstructions share a scanned region of only " << r.region.rows << "x"
                                                                                      << r.region.cols << " pixels");
  // A cosine-squared edge half the region wide (a Hann window along the
  // shorter side): a narrower edge leaks the strong low frequencies into the
  // rings beyond the resolution, where both halves share the leak and the FRC
  // reads it as signal (measured: a 10 % edge put the cutoff of an object
  // band-limited at 0.15 per px at 0.186, this one at 0.163).
  const double taper = 0.5 * double(std::min(r.region.rows, r.region.cols));
  std::vector<float> window(size_t(std::max(1L, n)));
  tukey_window(t, r.region, taper, window.data());
  remove_phase_ramp(t, a, fit_phase_ramp(t, a, window.data()));
  remove_phase_ramp(t, b, fit_phase_ramp(t, b, window.data()));
  r.shift = register_shift(t, a, b, window.data());
  shift_field(t, b, r.shift);
  // The phase offset between them, after the shift.
  double re = 0, im = 0;
  for (long k = 0; k < n; ++k) {
    const cfloat p = a[k] * Kokkos::conj(b[k]) * window[k];
    re += p.real();
    im += p.imag();
  }
  re = sum_all(t.comm(), re);
  im = sum_all(t.comm(), im);
  const float c = float(std::cos(std::atan2(im, re))), s = float(std::sin(std::atan2(im, re)));
  for (long k = 0; k < n; ++k) b[k] *= cfloat(c, s);
  r.complex_curve = fourier_ring_correlation(t, a, b, window.data());
  {
    const auto ca = centred(t, amplitude_of(a, n), window.data());
    const auto cb = centred(t, amplitude_of(b, n), window.data());
    r.amplitude_curve = fourier_ring_correlation(t, ca.data(), cb.data(), window.data());
  }
  {
    const auto ca = centred(t, phase_of(a, n), window.data());
    const auto cb = centred(t, phase_of(b, n), window.data());
    r.phase_curve = fourier_ring_correlation(t, ca.data(), cb.data(), window.data());
  }
  if (pixel_size_m > 0) {
    r.resolution_half_bit_m = half_period_resolution(r.complex_curve.cutoff_half_bit, pixel_size_m);
    r.resolution_one_seventh_m = half_period_resolution(r.complex_curve.cutoff_one_seventh, pixel_size_m);
  }
  return r;
}

FrcReport fourier_ring_correlation_of(MPI_Comm comm, const io::ResultData& a, const io::ResultData& b) {
  const long rows = a.layout.object_rows, cols = a.layout.object_cols;
  PTYCHO_INPUT_ERROR_IF(b.layout.object_rows != rows || b.layout.object_cols != cols,
                        "FRC: the two objects are " << rows << "x" << cols << " and " << b.layout.object_rows << "x"
                                                    << b.layout.object_cols << " pixels");
  ObjectTransforms t(comm, rows, cols);
  std::vector<cfloat> sa(size_t(std::max(1L, t.slab_size()))), sb(sa.size());
  for (const auto* r : {&a, &b}) {
    SlabPlan plan(comm, r->layout.owned, rows, cols);
    const HostCView2& tile = r->object_tile;
    const long stride = tile.size() ? long(tile.stride(0)) : r->layout.owned.cols;
    plan.to_slabs(tile.data(), std::max(stride, r->layout.owned.cols), (r == &a ? sa : sb).data());
  }
  return fourier_ring_correlation_of(t, sa.data(), sb.data(), a.positions, b.positions, a.pixel_size_m);
}

std::string frc_json(const FrcReport& r, const std::string& first, const std::string& second) {
  nlohmann::json j;
  j["first"] = first;
  j["second"] = second;
  j["pixel_size_nm"] = r.pixel_size_m * 1e9;
  j["region_px"] = {r.region.row0, r.region.col0, r.region.rows, r.region.cols};
  j["shift_px"] = {r.shift.row, r.shift.col};
  j["resolution_half_bit_nm"] = r.resolution_half_bit_m * 1e9;
  j["resolution_one_seventh_nm"] = r.resolution_one_seventh_m * 1e9;
  const auto curve = [](const FrcCurve& c) {
    nlohmann::json k;
    k["cutoff_half_bit_per_px"] = c.cutoff_half_bit;
    k["cutoff_one_seventh_per_px"] = c.cutoff_one_seventh;
    k["reached_half_bit"] = c.reached_half_bit;
    k["reached_one_seventh"] = c.reached_one_seventh;
    k["frc"] = c.frc;
    return k;
  };
  j["complex"] = curve(r.complex_curve);
  j["amplitude"] = curve(r.amplitude_curve);
  j["phase"] = curve(r.phase_curve);
  j["frequency_per_px"] = r.complex_curve.frequency;
  j["half_bit_threshold"] = r.complex_curve.half_bit;
  j["resolution_note"] = "half-period resolution: pixel_size / (2 * cutoff); 0.5 per px is Nyquist";
  return j.dump(1);
}

void write_frc_plot(const std::string& path, const FrcReport& r) {
  std::vector<io::PlotSeries> series;
  series.push_back({"complex", r.complex_curve.frequency, r.complex_curve.frc, false});
  series.push_back({"amplitude", r.amplitude_curve.frequency, r.amplitude_curve.frc, false});
  series.push_back({"phase", r.phase_curve.frequency, r.phase_curve.frc, false});
  series.push_back({"1/2 bit", r.complex_curve.frequency, r.complex_curve.half_bit, true});
  std::vector<double> flat_x, flat_y;
  for (int i = 0; i <= 100; ++i) {
    flat_x.push_back(0.005 * i);
    flat_y.push_back(1.0 / 7.0);
  }
  series.push_back({"1/7", flat_x, flat_y, true});
  io::LinePlotOptions o;
  o.x_lo = 0;
  o.x_hi = 0.5;
  o.y_lo = 0;
  o.y_hi = 1;
  char label[160];
  if (r.pixel_size_m > 0)
    std::snprintf(label, sizeof label, "frequency (1/px): 1/2 bit at %.3g nm half period", r.resolution_half_bit_m * 1e9);
  else
    std::snprintf(label, sizeof label, "frequency (1/px): 1/2 bit at %.3g/px", r.complex_curve.cutoff_half_bit);
  o.x_label = label;
  o.y_label = "FRC";
  io::write_line_plot(path, series, o);
}

void add_frc_to_result(MPI_Comm comm, const std::string& path, long rows, long cols, const FrcReport& r,
                       const std::string& compared_with) {
  io::AnalysisRecord rec;
  rec.group = "/entry_1/process_1/frc";
  rec.arrays["frequency_per_px"] = r.complex_curve.frequency;
  rec.arrays["frc_complex"] = r.complex_curve.frc;
  rec.arrays["frc_amplitude"] = r.amplitude_curve.frc;
  rec.arrays["frc_phase"] = r.phase_curve.frc;
  rec.arrays["half_bit_threshold"] = r.complex_curve.half_bit;
  rec.scalars["cutoff_half_bit_per_px"] = r.complex_curve.cutoff_half_bit;
  rec.scalars["cutoff_one_seventh_per_px"] = r.complex_curve.cutoff_one_seventh;
  rec.scalars["resolution_half_bit_m"] = r.resolution_half_bit_m;
  rec.scalars["resolution_one_seventh_m"] = r.resolution_one_seventh_m;
  rec.scalars["shift_row_px"] = r.shift.row;
  rec.scalars["shift_col_px"] = r.shift.col;
  rec.strings["compared_with"] = compared_with;
  io::add_to_result(comm, path, rows, cols, {}, {rec});
}

int run_analyze(MPI_Comm comm, const AnalyzeOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const AnalyzeOptions& o = options;
  PTYCHO_INPUT_ERROR_IF(o.frc_with.empty() && !o.remove_ramp && !o.unwrap && !o.filter,
                        "ptycho analyze: nothing to do: give --frc RESULT2, --remove-ramp, --unwrap or --filter");
  const std::string previews = o.previews.empty() ? stem_folder(o.result) : o.previews;
  io::ResultHeader head, head_b;
  collectively(comm, [&] {
    head = io::read_result_header(o.result);
    if (!o.frc_with.empty()) {
      head_b = io::read_result_header(o.frc_with);
      PTYCHO_INPUT_ERROR_IF(head_b.rows != head.rows || head_b.cols != head.cols,
                            "--frc " << o.frc_with << ": its object is " << head_b.rows << "x" << head_b.cols
                                     << " pixels, " << o.result << "'s " << head.rows << "x" << head.cols
                                     << ": the FRC needs two reconstructions on one grid");
      PTYCHO_INPUT_ERROR_IF(head.pixel_size_m > 0 && head_b.pixel_size_m > 0 &&
                                std::abs(head_b.pixel_size_m / head.pixel_size_m - 1) > 1e-6,
                            "--frc " << o.frc_with << ": its pixel size " << head_b.pixel_size_m << " m differs from "
                                     << o.result << "'s " << head.pixel_size_m << " m");
    }
    PTYCHO_INPUT_ERROR_IF(head.rows < 16 || head.cols < 16,
                          o.result << ": the object is " << head.rows << "x" << head.cols
                                   << " pixels: too small to analyse (at least 16x16)");
  });
  // Memory, before anything large is allocated or any folder made: per pixel
  // of this rank's slab, the object (8 bytes), the FFT-MPI buffers (12) and a
  // float slab (4); the FRC holds a second object, a spectrum and two centred
  // copies (32 more).
  {
    const Slab slab = fftw_slab(comm, head.rows, head.cols);
    MemoryNeed need;
    need.bytes = double(slab.alloc) * (o.frc_with.empty() ? 24.0 : 56.0) + kProcessOverheadBytes;
    std::ostringstream what;
    what << "ptycho analyze of a " << head.rows << "x" << head.cols << " object";
    need.what = what.str();
    check_memory(comm, need);
  }
  collectively(comm, [&] {
    if (rank == 0) {
      PathPlan plan;
      plan.output(o.result, "the result", true);
      if (!o.frc_with.empty()) plan.input(o.frc_with, "--frc");
      std::vector<std::string> files = {"analysis.json"};
      if (!o.frc_with.empty()) files.push_back("frc.png");
      if (o.remove_ramp || o.filter) files.insert(files.end(), {"processed_amplitude.png", "processed_phase.png"});
      if (o.unwrap) files.push_back("phase_unwrapped.png");
      plan.output_folder(previews, "--previews", files);
      plan.check();
      plan.create_folders();
    }
  });
  ObjectTransforms t(comm, head.rows, head.cols);
  const long n = t.slab_size();
  const double slab_mb = double(n) * sizeof(cfloat) / 1048576.0;
  nlohmann::json summary;
  summary["result"] = o.result;
  summary["object_px"] = {head.rows, head.cols};
  summary["ranks"] = size;

  if (!o.frc_with.empty()) {
    std::vector<cfloat> a(size_t(std::max(1L, n))), b(a.size());
    io::read_object_rows(comm, o.result, t.slab().row0, t.slab().rows, head.cols, a.data());
    io::read_object_rows(comm, o.frc_with, t.slab().row0, t.slab().rows, head.cols, b.data());
    const FrcReport r = fourier_ring_correlation_of(t, a.data(), b.data(), head.positions, head_b.positions,
                                                    head.pixel_size_m);
    add_frc_to_result(comm, o.result, head.rows, head.cols, r, o.frc_with);
    collectively(comm, [&] {
      if (rank != 0) return;
      write_frc_plot((fs::path(previews) / "frc.png").string(), r);
    });
    summary["frc"] = nlohmann::json::parse(frc_json(r, o.result, o.frc_with));
    if (rank == 0) {
      if (head.pixel_size_m > 0)
        std::printf("ptycho analyze: FRC of %s and %s: %.3g nm at 1/2 bit%s, %.3g nm at 1/7%s (shift %.2f, %.2f px)\n",
                    o.result.c_str(), o.frc_with.c_str(), r.resolution_half_bit_m * 1e9,
                    r.complex_curve.reached_half_bit ? "" : " (Nyquist: the curve never fell below)",
                    r.resolution_one_seventh_m * 1e9, r.complex_curve.reached_one_seventh ? "" : " (Nyquist)",
                    r.shift.row, r.shift.col);
      else
        std::printf("ptycho analyze: FRC cutoff %.4g per pixel at 1/2 bit (no pixel size in %s)\n",
                    r.complex_curve.cutoff_half_bit, o.result.c_str());
    }
  }

  if (o.remove_ramp || o.filter || o.unwrap) {
    std::vector<cfloat> a(size_t(std::max(1L, n)));
    io::read_object_rows(comm, o.result, t.slab().row0, t.slab().rows, head.cols, a.data());
    const Rect box = scanned_box(head.positions, head.rows, head.cols);
    std::vector<std::string> done;
    std::vector<io::SlabField> fields;
    if (o.remove_ramp) {
      // The weight (1 on the scanned box) borrows the DCT buffer, free until the unwrapping.
      tukey_window(t, box, 0.0, t.real_data());
      const PhaseRamp ramp = fit_phase_ramp(t, a.data(), t.real_data());
      remove_phase_ramp(t, a.data(), ramp);
      done.push_back("remove-ramp");
      summary["ramp"] = {{"slope_row_rad_per_px", ramp.slope_row},
                         {"slope_col_rad_per_px", ramp.slope_col},
                         {"offset_rad", ramp.offset}};
    }
    if (o.filter) {
      std::copy(a.begin(), a.begin() + n, t.complex_data());
      apply_fourier_filter(t, *o.filter);
      std::copy(t.complex_data(), t.complex_data() + n, a.begin());
      std::ostringstream f;
      f << (o.filter->kind == FourierFilter::Kind::lowpass    ? "lowpass"
            : o.filter->kind == FourierFilter::Kind::highpass ? "highpass"
                                                               : "bandpass")
        << " low " << o.filter->low << " high " << o.filter->high << " width " << o.filter->width << " per px";
      done.push_back(f.str());
    }
    std::string ops;
    for (const auto& d : done) ops += (ops.empty() ? "" : ", ") + d;
    if (o.remove_ramp || o.filter) {
      io::SlabField f;
      f.path = "/entry_1/analysis_1/object";
      f.complex_data = a.data();
      f.row0 = t.slab().row0;
      f.rows = t.slab().rows;
      f.attributes["operations"] = ops;
      f.attributes["source"] = "/entry_1/image_1/data";
      fields.push_back(f);
    }
    std::vector<float> unwrapped;
    if (o.unwrap) {
      unwrapped = phase_of(a.data(), n);
      unwrap_phase(t, unwrapped.data(), unwrapped.data());  // in place
      // The constant: the mean over the scanned region is made zero.
      double s = 0, sw = 0;
      for (long k = 0; k < n; ++k)
        if (box.contains(t.slab().row0 + k / head.cols, k % head.cols)) {
          s += unwrapped[k];
          sw += 1;
        }
      s = sum_all(comm, s);
      sw = sum_all(comm, sw);
      const float mean = sw > 0 ? float(s / sw) : 0.0f;
      for (long k = 0; k < n; ++k) unwrapped[k] -= mean;
      io::SlabField f;
      f.path = "/entry_1/analysis_1/phase_unwrapped";
      f.real_data = unwrapped.data();
      f.row0 = t.slab().row0;
      f.rows = t.slab().rows;
      f.attributes["operations"] = ops.empty() ? std::string("unwrap") : ops + ", unwrap";
      f.attributes["method"] = "least squares (Ghiglia and Romero), DCT, made congruent to the wrapped phase";
      fields.push_back(f);
    }
    io::add_to_result(comm, o.result, head.rows, head.cols, fields, {});
    // Previews, decimated.
    const auto write = [&](const char* name, const std::vector<float>& v, io::ColourMap map, double lo, double hi) {
      const HostRView2 img = decimated_on_root(t, v);
      collectively(comm, [&] {
        if (rank != 0) return;
        io::PngOptions p;
        p.colour_map = map;
        p.lo = lo;
        p.hi = hi;
        io::write_png((fs::path(previews) / name).string(), img, p);
      });
    };
    if (o.remove_ramp || o.filter) {
      write("processed_amplitude.png", amplitude_of(a.data(), n), io::ColourMap::gray, 0, 0);
      write("processed_phase.png", phase_of(a.data(), n), io::ColourMap::cyclic, -kPi, kPi);
    }
    if (o.unwrap) write("phase_unwrapped.png", unwrapped, io::ColourMap::gray, 0, 0);
    summary["operations"] = ops.empty() ? std::string("unwrap") : (o.unwrap ? ops + ", unwrap" : ops);
  }

  double peak = peak_rss_bytes(), peak_max = 0;
  MPI_Allreduce(&peak, &peak_max, 1, MPI_DOUBLE, MPI_MAX, comm);
  summary["peak_memory_per_rank_mb"] = peak_max / 1048576.0;
  summary["object_slab_per_rank_mb"] = slab_mb;
  summary["fft_buffers_per_rank_mb"] = double(t.buffer_bytes()) / 1048576.0;
  collectively(comm, [&] {
    if (rank != 0) return;
    const std::string path = (fs::path(previews) / "analysis.json").string();
    const std::string temp = path + ".tmp";
    {
      std::ofstream f(temp);
      f << summary.dump(1) << "\n";
      PTYCHO_INPUT_ERROR_IF(!f, path << ": cannot be written");
    }
    fs::rename(temp, path);
  });
  if (rank == 0)
    std::printf("ptycho analyze: %s: %ldx%ld object on %d rank%s; peak memory per rank %.0f MB (object slab %.0f MB, "
                "FFT buffers %.0f MB); previews and analysis.json in %s\n",
                o.result.c_str(), head.rows, head.cols, size, size == 1 ? "" : "s", peak_max / 1048576.0, slab_mb,
                double(t.buffer_bytes()) / 1048576.0, previews.c_str());
  return 0;
}

}  // namespace ptycho::jobs
