#include "ptycho/io/png.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"

#include <png.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
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
  // libpng converts colour to luminance and drops alpha. A 16-bit file is
  // linear: it is read as 16-bit linear luminance (asking for 8-bit gray
  // would encode it with the sRGB curve); an 8-bit file is read as stored.
  const bool sixteen = (image.format & PNG_FORMAT_FLAG_LINEAR) != 0;
  image.format = sixteen ? PNG_FORMAT_LINEAR_Y : PNG_FORMAT_GRAY;
  std::vector<unsigned char> pixels(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    PTYCHO_INPUT_ERROR_IF(true, path << ": cannot read the PNG: " << message);
  }
  const size_t rows = image.height, cols = image.width;
  HostRView2 out(Kokkos::view_alloc(std::string("ptycho::png"), Kokkos::WithoutInitializing), rows, cols);
  const auto* wide = reinterpret_cast<const png_uint_16*>(pixels.data());
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      out(r, c) = sixteen ? float(wide[r * cols + c]) / 65535.0f : float(pixels[r * cols + c]) / 255.0f;
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

// ---- cost curve

namespace {

using Rgb = std::array<unsigned char, 3>;

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kGrid{225, 225, 225};
constexpr Rgb kDash{150, 150, 150};

/// Colours of the engines, in order of appearance (the Tableau 10 palette).
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

/// A 5x7 pixel font: each glyph is 7 rows of 5 bits, bit 4 the leftmost pixel.
struct Glyph {
  char c;
  unsigned char rows[7];
};
constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
};
constexpr int kGlyphAdvance = 6;  ///< 5 pixels and a space
constexpr int kGlyphHeight = 7;

/// An RGB pixel buffer to draw on; drawing outside it is clipped.
class Canvas {
 public:
  Canvas(int width, int height) : m_w(width), m_h(height), m_pixels(size_t(width) * size_t(height) * 3, 255) {}

  void set(int x, int y, const Rgb& c) {
    if (x < 0 || y < 0 || x >= m_w || y >= m_h) return;
    std::copy(c.begin(), c.end(), m_pixels.begin() + 3 * (size_t(y) * size_t(m_w) + size_t(x)));
  }

  /// Bresenham's line from (x0, y0) to (x1, y1), both ends included.
  void line(int x0, int y0, int x1, int y1, const Rgb& c) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    while (true) {
      set(x0, y0, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  void fill(int x0, int y0, int x1, int y1, const Rgb& c) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, c);
  }

  /// Text with its top-left corner at (x, y); lower case is drawn as upper
  /// case, characters without a glyph as spaces.
  void text(int x, int y, const std::string& s, const Rgb& c) {
    for (const char ch : s) {
      const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      for (const auto& g : kFont) {
        if (g.c != u) continue;
        for (int r = 0; r < kGlyphHeight; ++r)
          for (int b = 0; b < 5; ++b)
            if (g.rows[r] & (0x10 >> b)) set(x + b, y + r, c);
      }
      x += kGlyphAdvance;
    }
  }

  const std::vector<unsigned char>& pixels() const { return m_pixels; }

 private:
  int m_w, m_h;
  std::vector<unsigned char> m_pixels;
};

int text_width(const std::string& s) { return kGlyphAdvance * int(s.size()) - 1; }

/// A tick label for a cost: "0.5", "20", "1E-05".
std::string cost_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// Tick values on a log axis over [10^lo, 10^hi]: decades if there are at
/// least two (every n-th decade if there are many), else 1-2-5, else 1..9
/// per decade, else the two ends.
std::vector<double> log_ticks(double lo, double hi) {
  const int k0 = int(std::floor(lo)), k1 = int(std::ceil(hi));
  const int decade_step = std::max(1, (k1 - k0) / 8);
  const std::vector<std::vector<int>> mantissa_sets = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  for (const auto& mantissas : mantissa_sets) {
    std::vector<double> ticks;
    for (int k = k0; k <= k1; ++k) {
      if (mantissas.size() == 1 && (k - k0) % decade_step != 0) continue;
      for (const int m : mantissas) {
        const double v = m * std::pow(10.0, k);
        const double lv = std::log10(v);
        if (lv >= lo - 1e-9 && lv <= hi + 1e-9) ticks.push_back(v);
      }
    }
    if (ticks.size() >= 2) return ticks;
  }
  return {std::pow(10.0, lo), std::pow(10.0, hi)};
}

/// A tick step for [0, n] with about six ticks: 1, 2 or 5 times a power of 10.
long iteration_step(long n) {
  const double raw = std::max(1.0, double(n) / 6.0);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (m * magnitude >= raw) return std::max(1L, long(std::lround(m * magnitude)));
  return std::max(1L, long(std::lround(10 * magnitude)));
}

}  // namespace

void write_cost_curve(const std::string& path, const std::vector<double>& costs,
                      const std::vector<std::string>& engines, const CostCurveOptions& options) {
  PTYCHO_THROW_IF(
      !engines.empty() && engines.size() != costs.size(),
      "write_cost_curve: " << path << ": " << engines.size() << " engine names for " << costs.size() << " costs");
  PTYCHO_THROW_IF(options.width < 200 || options.height < 150,
                  "write_cost_curve: " << path << ": " << options.width << "x" << options.height
                                       << " is too small (at least 200x150)");
  const int width = options.width, height = options.height;
  const long n = long(costs.size());
  auto drawable = [&](long i) { return std::isfinite(costs[i]) && costs[i] > 0; };

  // The cost axis: the range of the drawable costs in log10, padded by 5 %.
  double lo = 0, hi = 0;
  bool any = false;
  for (long i = 0; i < n; ++i) {
    if (!drawable(i)) continue;
    const double v = std::log10(costs[i]);
    lo = any ? std::min(lo, v) : v;
    hi = any ? std::max(hi, v) : v;
    any = true;
  }
  if (!any) {
    lo = -1;
    hi = 0;
  } else if (hi - lo < 1e-6) {
    lo -= 0.5;
    hi += 0.5;
  } else {
    const double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
  }
  const std::vector<double> yticks = log_ticks(lo, hi);
  int label_width = 0;
  for (const double t : yticks) label_width = std::max(label_width, text_width(cost_label(t)));

  // The plot area, inside the axes.
  const int x0 = 14 + label_width, x1 = width - 16;
  const int y0 = 26, y1 = height - 40;
  auto x_of = [&](double iteration) { return x0 + int(std::lround(iteration / double(std::max(1L, n)) * (x1 - x0))); };
  auto y_of = [&](double cost) { return y1 - int(std::lround((std::log10(cost) - lo) / (hi - lo) * (y1 - y0))); };

  Canvas canvas(width, height);
  for (const double t : yticks) {
    const int y = y_of(t);
    canvas.line(x0 + 1, y, x1, y, kGrid);
    canvas.line(x0 - 4, y, x0, y, kBlack);
    const std::string label = cost_label(t);
    canvas.text(x0 - 7 - text_width(label), y - kGlyphHeight / 2, label, kBlack);
  }
  const long step = iteration_step(n);
  for (long i = 0; i <= std::max(1L, n); i += step) {
    const int x = x_of(double(i));
    canvas.line(x, y1, x, y1 + 4, kBlack);
    const std::string label = std::to_string(i);
    canvas.text(x - text_width(label) / 2, y1 + 8, label, kBlack);
  }
  canvas.text(4, 8, "cost", kBlack);
  canvas.text((x0 + x1) / 2 - text_width("iteration") / 2, height - 14, "iteration", kBlack);

  // Engines: a colour each; a dashed line and the name where each starts.
  std::map<std::string, Rgb> colour;
  auto colour_of = [&](long i) {
    if (engines.empty()) return kPalette[0];
    auto it = colour.find(engines[i]);
    if (it == colour.end()) {
      const Rgb c = kPalette[colour.size() % (sizeof kPalette / sizeof kPalette[0])];
      it = colour.emplace(engines[i], c).first;
    }
    return it->second;
  };
  int label_end = x0;
  for (long i = 0; i < n; ++i) {
    if (engines.empty() ? i != 0 : (i != 0 && engines[i] == engines[i - 1])) continue;
    const int x = i == 0 ? x0 : x_of(double(i) + 0.5);
    if (i != 0)
      for (int y = y0; y <= y1; y += 6) canvas.line(x, y, x, std::min(y + 2, y1), kDash);
    const std::string name = engines.empty() ? std::string() : engines[i];
    const int tx = std::max(x + 3, label_end + 6);
    if (!name.empty() && tx + text_width(name) <= width - 2) {
      canvas.text(tx, y0 - 12, name, colour_of(i));
      label_end = tx + text_width(name);
    }
  }

  // The curve, two pixels thick; a dot for each point when there are few.
  const bool dots = n <= 60;
  for (long i = 0; i < n; ++i) {
    if (!drawable(i)) continue;
    const Rgb c = colour_of(i);
    const int x = x_of(double(i + 1)), y = y_of(costs[i]);
    const bool isolated = (i == 0 || !drawable(i - 1)) && (i + 1 == n || !drawable(i + 1));
    if (dots || isolated) canvas.fill(x - 1, y - 1, x + 1, y + 1, c);
    if (i > 0 && drawable(i - 1)) {
      const int xp = x_of(double(i)), yp = y_of(costs[i - 1]);
      canvas.line(xp, yp, x, y, c);
      canvas.line(xp, yp + 1, x, y + 1, c);
    }
  }
  if (n == 0) canvas.text((x0 + x1) / 2 - text_width("no iterations") / 2, (y0 + y1) / 2, "no iterations", kBlack);

  // The axes last, over the grid.
  canvas.line(x0, y0, x0, y1, kBlack);
  canvas.line(x0, y1, x1, y1, kBlack);
  write_pixels(path, canvas.pixels(), size_t(height), size_t(width), true);
}

namespace {
/// Ticks at 1, 2 or 5 times a power of 10 over [lo, hi], about six of them.
std::vector<double> linear_ticks(double lo, double hi) {
  const double raw = (hi - lo) / 6.0;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * magnitude;
  for (const double m : {1.0, 2.0, 5.0})
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + 1e-9 * step; t += step)
    ticks.push_back(std::abs(t) < 1e-12 * step ? 0.0 : t);
  return ticks;
}
}  // namespace

void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const LinePlotOptions& options) {
  PTYCHO_THROW_IF(options.width < 200 || options.height < 150,
                  "write_line_plot: " << path << ": " << options.width << "x" << options.height << " is too small");
  PTYCHO_THROW_IF(!(options.x_hi > options.x_lo) || !(options.y_hi > options.y_lo),
                  "write_line_plot: " << path << ": an empty axis");
  for (const auto& s : series)
    PTYCHO_THROW_IF(s.x.size() != s.y.size(), "write_line_plot: " << path << ": series '" << s.name << "' has "
                                                                   << s.x.size() << " x and " << s.y.size() << " y");
  const int width = options.width, height = options.height;
  const std::vector<double> yticks = linear_ticks(options.y_lo, options.y_hi);
  const std::vector<double> xticks = linear_ticks(options.x_lo, options.x_hi);
  int label_width = 0;
  for (const double t : yticks) label_width = std::max(label_width, text_width(cost_label(t)));
  const int x0 = 14 + label_width, x1 = width - 16, y0 = 26, y1 = height - 40;
  auto x_of = [&](double x) {
    return x0 + int(std::lround((x - options.x_lo) / (options.x_hi - options.x_lo) * (x1 - x0)));
  };
  auto y_of = [&](double y) {
    const double c = std::clamp(y, options.y_lo, options.y_hi);
    return y1 - int(std::lround((c - options.y_lo) / (options.y_hi - options.y_lo) * (y1 - y0)));
  };
  Canvas canvas(width, height);
  for (const double t : yticks) {
    const int y = y_of(t);
    canvas.line(x0 + 1, y, x1, y, kGrid);
    canvas.line(x0 - 4, y, x0, y, kBlack);
    const std::string label = cost_label(t);
    canvas.text(x0 - 7 - text_width(label), y - kGlyphHeight / 2, label, kBlack);
  }
  for (const double t : xticks) {
    const int x = x_of(t);
    canvas.line(x, y1, x, y1 + 4, kBlack);
    const std::string label = cost_label(t);
    canvas.text(x - text_width(label) / 2, y1 + 8, label, kBlack);
  }
  canvas.text(4, 8, options.y_label, kBlack);
  canvas.text((x0 + x1) / 2 - text_width(options.x_label) / 2, height - 14, options.x_label, kBlack);
  int legend_x = x1;
  for (size_t k = series.size(); k-- > 0;) {
    const PlotSeries& s = series[k];
    const Rgb c = kPalette[k % (sizeof kPalette / sizeof kPalette[0])];
    legend_x -= text_width(s.name) + 22;
    for (int x = legend_x; x < legend_x + 14; ++x)
      if (!s.dashed || (x - legend_x) % 6 < 4) canvas.set(x, y0 - 9, c);
    canvas.text(legend_x + 16, y0 - 12, s.name, c);
    for (size_t i = 1; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || !std::isfinite(s.x[i - 1]) || !std::isfinite(s.y[i - 1]))
        continue;
      if (s.dashed && (i / 3) % 2 == 1) continue;
      const int xa = x_of(s.x[i - 1]), ya = y_of(s.y[i - 1]), xb = x_of(s.x[i]), yb = y_of(s.y[i]);
      canvas.line(xa, ya, xb, yb, c);
      if (!s.dashed) canvas.line(xa, ya + 1, xb, yb + 1, c);
    }
  }
  canvas.line(x0, y0, x0, y1, kBlack);
  canvas.line(x0, y1, x1, y1, kBlack);
  write_pixels(path, canvas.pixels(), size_t(height), size_t(width), true);
}

}  // namespace ptycho::io
