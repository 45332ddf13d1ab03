// PNG previews: write, read back, colour maps, previews, errors.
#include "io_fixtures.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/png.hpp"

#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <fstream>
#include <vector>

namespace ptycho {
namespace {

std::string scratch(const std::string& name) { return test::scratch_path("test_io_png", name); }

TEST(Png, GrayRoundTripWithAGivenRange) {
  HostRView2 img("img", 5, 7);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) img(r, c) = float(r * 7 + c);  // 0 .. 34
  const std::string path = scratch("gray.png");
  io::PngOptions opt;
  opt.lo = 0;
  opt.hi = 34;
  io::write_png(path, img, opt);
  const HostRView2 back = io::read_png(path);
  ASSERT_EQ(back.extent(0), 5u);
  ASSERT_EQ(back.extent(1), 7u);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c)
      EXPECT_NEAR(back(r, c), std::round(255.0 * img(r, c) / 34.0) / 255.0, 1e-6) << r << " " << c;
  EXPECT_EQ(back(0, 0), 0.0f);  // row 0 is the top row
  EXPECT_EQ(back(4, 6), 1.0f);
}

TEST(Png, SixteenBitFilesReadLinearly) {
  // A 16-bit gray PNG (what numpy users write for precise images) is linear:
  // its values come back as stored / 65535, not through the sRGB curve of 8 bits.
  const std::string path = scratch("sixteen.png");
  std::vector<png_uint_16> values = {0, 1000, 20000, 32768, 50000, 65535};
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = 3;
  image.height = 2;
  image.format = PNG_FORMAT_LINEAR_Y;
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, values.data(), 0, nullptr)) << image.message;
  const HostRView2 back = io::read_png(path);
  ASSERT_EQ(back.extent(0), 2u);
  ASSERT_EQ(back.extent(1), 3u);
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(back(k / 3, k % 3), values[k] / 65535.0, 1e-6) << k;
}

TEST(Png, AutomaticRangeClipsOutliers) {
  HostRView2 img("img", 40, 50);
  for (int r = 0; r < 40; ++r)
    for (int c = 0; c < 50; ++c) img(r, c) = float(c) / 49.0f;
  img(0, 0) = 1e6f;  // one hot pixel
  img(1, 1) = NAN;   // and a hole
  const std::string path = scratch("auto.png");
  io::write_png(path, img);
  const HostRView2 back = io::read_png(path);
  EXPECT_EQ(back(0, 0), 1.0f);
  EXPECT_EQ(back(1, 1), 0.0f);
  // Without clipping the ramp would be black everywhere; with it, it spans the range.
  EXPECT_LT(back(20, 0), 0.05f);
  EXPECT_GT(back(20, 49), 0.95f);
  EXPECT_NEAR(back(20, 25), 0.5f, 0.05f);
}

TEST(Png, CyclicColourMapReadsBackAsLuminance) {
  HostRView2 img("phase", 8, 64);
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 64; ++c) img(r, c) = float(-M_PI + 2 * M_PI * c / 64.0);
  io::PngOptions opt;
  opt.lo = -M_PI;
  opt.hi = M_PI;
  opt.colour_map = io::ColourMap::cyclic;
  const std::string path = scratch("cyclic.png");
  io::write_png(path, img, opt);
  const HostRView2 back = io::read_png(path);
  ASSERT_EQ(back.extent(1), 64u);
  float lo = 1, hi = 0;
  for (int c = 0; c < 64; ++c) {
    lo = std::min(lo, back(3, c));
    hi = std::max(hi, back(3, c));
  }
  EXPECT_GT(hi - lo, 0.3f);  // hues differ in luminance (blue dark, yellow bright)
  EXPECT_GE(lo, 0.0f);
  EXPECT_LE(hi, 1.0f);
}

TEST(Png, PreviewsOfObjectAndProbeModes) {
  HostCView2 object("object", 30, 40);
  for (int r = 0; r < 30; ++r)
    for (int c = 0; c < 40; ++c) object(r, c) = Kokkos::polar(0.5f + 0.01f * r, 0.05f * c + 2.5f);
  HostCView3 modes("modes", 3, 16, 16);
  for (int k = 0; k < 3; ++k)
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 16; ++c)
        modes(k, r, c) = cfloat(float(k + 1) * std::exp(-((r - 8) * (r - 8) + (c - 8) * (c - 8)) / 10.0f), 0);
  const std::string dir = scratch("previews/run1");
  io::write_previews(dir, object, modes);
  const HostRView2 amp = io::read_png(dir + "/amplitude.png");
  const HostRView2 phase = io::read_png(dir + "/phase.png");
  const HostRView2 probe = io::read_png(dir + "/probe.png");
  EXPECT_EQ(amp.extent(0), 30u);
  EXPECT_EQ(amp.extent(1), 40u);
  EXPECT_EQ(phase.extent(1), 40u);
  EXPECT_EQ(probe.extent(0), 16u);
  EXPECT_EQ(probe.extent(1), 3u * 16u + 2u * 2u);
  EXPECT_LT(amp(2, 20), amp(27, 20));      // amplitude grows down the rows
  EXPECT_LT(phase(15, 3), phase(15, 36));  // phase grows along the columns, unwrapped about its mean
  EXPECT_EQ(probe(8, 2 * 18 + 8), 1.0f);   // the strongest mode's peak is white
  EXPECT_NEAR(probe(8, 8), 1.0f / 3.0f, 0.01f);
  EXPECT_EQ(probe(8, 16), 0.0f);  // the gap
  io::PreviewOptions cyclic;
  cyclic.cyclic_phase = true;
  io::write_previews(dir, object, modes, cyclic);
  EXPECT_EQ(io::read_png(dir + "/phase.png").extent(1), 40u);
}

TEST(Png, ErrorsNameTheFile) {
  const std::string text = scratch("not_a.png");
  std::ofstream(text) << "hello";
  try {
    io::read_png(text);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_TRUE(test::contains(e.what(), text + ": not a readable PNG file"));
  }
  const std::string missing = scratch("missing.png");
  EXPECT_THROW(io::read_png(missing), InputError);
  HostRView2 img("img", 2, 2);
  EXPECT_THROW(io::write_png(scratch("no_such_dir/x.png"), img), InputError);
}

}  // namespace
}  // namespace ptycho
