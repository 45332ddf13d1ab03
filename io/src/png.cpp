#include "ptycho/io/png.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <tuple>
#include <vector>

namespace ptycho::io {

namespace {

constexpr double kPi = 3.14159265358979323846;

/// The [p, 100 - p] percentiles of the finite values of `image`.
std::pair<double, double> percentile_range(const HostRView2& image, double percent) {
  std::vector<float> v;
  v.reserve(image.size());
  for (size_t r = 0; r < image.extent(0); ++r)
    for (size_t c = 0; c < image.extent(1); ++c)
      if (std::isfinite(image(r, c))) v.push_back(image(r, c));
  if (v.empty()) return {0.0, 1.0};
  const double p = std::clamp(percent, 0.0, 50.0) / 100.0;
  const size_t lo_k = size_t(std::floor(p * double(v.size() - 1)));
  const size_t hi_k = size_t(std::ceil((1.0 - p) * double(v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + lo_k, v.end());
  const double lo = v[lo_k];
  std::nth_element(v.begin(), v.begin() + hi_k, v.end());
  const double hi = v[hi_k];
  return {lo, hi};
}

/// RGB of hue `t` in [0, 1) on the colour wheel (full saturation and value).
void hue_to_rgb(double t, unsigned char* rgb) {
  const double h = 6.0 * (t - std::floor(t));
  const int sector = int(h) % 6;
  const double f = h - std::floor(h);
  const auto up = static_cast<unsigned char>(std::lround(255.0 * f));
  const auto down = static_cast<unsigned char>(std::lround(255.0 * (1.0 - f)));
  const unsigned char table[6][3] = {{255, up, 0},   {down, 255, 0}, {0, 255, up},
                                     {0, down, 255}, {up, 0, 255},   {255, 0, down}};
  rgb[0] = table[sector][0];
  rgb[1] = table[sector][1];
  rgb[2] = table[sector][2];
}

void write_pixels(const std::string& path, const std::vector<unsigned char>& pixels, size_t rows, size_t cols,
                  bool rgb) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(cols);
  image.height = png_uint_32(rows);
  image.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  AtomicFile out(path);
  if (!png_image_write_to_file(&image, out.temp_path().c_str(), 0, pixels.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    PTYCHO_INPUT_ERROR_IF(true, path << ": cannot write the PNG: " << message);
  }
  out.commit();
}

}  // namespace

void write_png(const std::string& path, const HostRView2& image, const PngOptions& options) {
  const size_t rows = image.extent(0), cols = image.extent(1);
  PTYCHO_THROW_IF(rows == 0 || cols == 0, "write_png: " << path << ": empty image");
  PTYCHO_THROW_IF(rows > 0x7fffffff || cols > 0x7fffffff, "write_png: " << path << ": image too large");
  double lo = options.lo, hi = options.hi;
  if (!(lo < hi)) std::tie(lo, hi) = percentile_range(image, options.clip_percent);
  const double span = hi > lo ? hi - lo : 1.0;
  const bool rgb = options.colour_map == ColourMap::cyclic;
  std::vector<unsigned char> pixels(rows * cols * (rgb ? 3 : 1));
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) {
      const double v = image(r, c);
      const double t = std::isfinite(v) ? (v - lo) / span : 0.0;
      const size_t p = r * cols + c;
      if (rgb) {
        hue_to_rgb(t, &pixels[3 * p]);  // wraps: lo and hi get the same colour
      } else {
        pixels[p] = static_cast<unsigned char>(std::lround(255.0 * std::clamp(t, 0.0, 1.0)));
      }
    }
  write_pixels(path, pixels, rows, cols, rgb);
}

HostRView2 read_png(const std::string& path) {
  std::error_code ec;
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::is_regular_file(path, ec), path << ": no such file");
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    const std::string message = image.message;
    png_image_free(&image);
    PTYCHO_INPUT_ERROR_IF(true, path << ": not a readable PNG file: " << message);
  }
  image.format = PNG_FORMAT_GRAY;  // libpng converts colour to luminance and drops alpha
  std::vector<unsigned char> pixels(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    PTYCHO_INPUT_ERROR_IF(true, path << ": cannot read the PNG: " << message);
  }
  const size_t rows = image.height, cols = image.width;
  HostRView2 out(Kokkos::view_alloc(std::string("ptycho::png"), Kokkos::WithoutInitializing), rows, cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) out(r, c) = float(pixels[r * cols + c]) / 255.0f;
  return out;
}

void write_previews(const std::string& dir, const HostCView2& object, const HostCView3& probe_modes,
                    const PreviewOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PTYCHO_INPUT_ERROR_IF(ec || !std::filesystem::is_directory(dir),
                        dir << ": cannot create the preview directory" << (ec ? ": " + ec.message() : std::string()));
  const std::filesystem::path base(dir);
  const size_t h = object.extent(0), w = object.extent(1);
  PTYCHO_THROW_IF(h == 0 || w == 0, "write_previews: empty object");

  HostRView2 amplitude(Kokkos::view_alloc(std::string("ptycho::preview_amplitude"), Kokkos::WithoutInitializing), h, w);
  HostRView2 phase(Kokkos::view_alloc(std::string("ptycho::preview_phase"), Kokkos::WithoutInitializing), h, w);
  // Reference phase: that of the object's sum, so that the phase is centred near 0.
  cdouble sum(0.0, 0.0);
  for (size_t r = 0; r < h; ++r)
    for (size_t c = 0; c < w; ++c) sum += cdouble(object(r, c).real(), object(r, c).imag());
  const double ref = Kokkos::abs(sum) > 0 ? std::atan2(sum.imag(), sum.real()) : 0.0;
  const cdouble rot(std::cos(-ref), std::sin(-ref));
  for (size_t r = 0; r < h; ++r)
    for (size_t c = 0; c < w; ++c) {
      const cdouble v = cdouble(object(r, c).real(), object(r, c).imag()) * rot;
      amplitude(r, c) = float(Kokkos::abs(v));
      phase(r, c) = float(std::atan2(v.imag(), v.real()));
    }
  write_png((base / "amplitude.png").string(), amplitude);
  PngOptions phase_options;
  if (options.cyclic_phase) {
    phase_options.lo = -kPi;
    phase_options.hi = kPi;
    phase_options.colour_map = ColourMap::cyclic;
  }
  write_png((base / "phase.png").string(), phase, phase_options);

  // Probe modes side by side with a 2-pixel gap, one common range.
  const size_t k = probe_modes.extent(0), m = probe_modes.extent(1);
  if (k == 0 || m == 0) return;
  const size_t gap = 2;
  HostRView2 strip(Kokkos::view_alloc(std::string("ptycho::preview_probe")), m, k * m + (k - 1) * gap);
  float peak = 0;
  for (size_t q = 0; q < k; ++q)
    for (size_t r = 0; r < m; ++r)
      for (size_t c = 0; c < probe_modes.extent(2) && c < m; ++c) {
        const float a = Kokkos::abs(probe_modes(q, r, c));
        strip(r, q * (m + gap) + c) = a;
        if (std::isfinite(a)) peak = std::max(peak, a);
      }
  PngOptions probe_options;
  probe_options.lo = 0;
  probe_options.hi = peak > 0 ? peak : 1.0;
  write_png((base / "probe.png").string(), strip, probe_options);
}

}  // namespace ptycho::io
