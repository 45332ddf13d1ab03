// The cost-curve preview (io::write_cost_curve), as written at the end of
// `ptycho reconstruct --previews`: size, where the curve lies on the log
// axis, engine labels, costs that cannot be drawn, and argument errors.
#include "ptycho/core/error.hpp"
#include "ptycho/io/png.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace ptycho {
namespace {

namespace fs = std::filesystem;

std::string scratch(const std::string& name) {
  const fs::path dir = fs::current_path() / "scratch_test_jobs_cost_curve";
  fs::create_directories(dir);
  return (dir / name).string();
}

/// Pixels of the curve: neither the white background nor the light grid,
/// nor the black of axes and labels.
bool on_curve(float luminance) { return luminance > 0.02f && luminance < 0.75f; }

/// The mean row of curve pixels in column `col` between rows lo and hi; -1 if none.
double curve_row(const HostRView2& img, size_t col, size_t lo, size_t hi) {
  double sum = 0;
  int n = 0;
  for (size_t r = lo; r < hi; ++r)
    if (on_curve(img(r, col))) {
      sum += double(r);
      ++n;
    }
  return n ? sum / n : -1;
}

TEST(CostCurve, ADecreasingCostFallsFromTopLeftToBottomRight) {
  // Three decades over 100 iterations: a straight line on the log axis.
  std::vector<double> costs;
  for (int i = 0; i < 100; ++i) costs.push_back(std::pow(10.0, 1.0 - 3.0 * i / 99.0));
  const std::string path = scratch("falling.png");
  io::write_cost_curve(path, costs, {});
  const HostRView2 img = io::read_png(path);
  ASSERT_EQ(img.extent(0), 400u);
  ASSERT_EQ(img.extent(1), 640u);
  // Inside the plot (clear of the axes, the tick labels and the top margin).
  const size_t top = 30, bottom = 400 - 45;
  double previous = -1;
  for (const size_t col : {200u, 300u, 400u, 500u, 600u}) {
    const double row = curve_row(img, col, top, bottom);
    ASSERT_GE(row, 0) << "no curve in column " << col;
    EXPECT_GT(row, previous) << "the curve does not fall at column " << col;
    previous = row;
  }
  // Straight on the log axis: the rows rise linearly with the column.
  const double r200 = curve_row(img, 200, top, bottom), r400 = curve_row(img, 400, top, bottom),
               r600 = curve_row(img, 600, top, bottom);
  EXPECT_NEAR(r400 - r200, r600 - r400, 4.0);
  EXPECT_GT(r600 - r200, 0.4 * (bottom - top));
}

TEST(CostCurve, AConstantCostIsAFlatLineInTheMiddle) {
  const std::string path = scratch("flat.png");
  io::write_cost_curve(path, std::vector<double>(30, 0.5), std::vector<std::string>(30, "dm"));
  const HostRView2 img = io::read_png(path);
  const double left = curve_row(img, 200, 30, 355), right = curve_row(img, 600, 30, 355);
  ASSERT_GE(left, 0);
  EXPECT_NEAR(left, right, 1.0);
  EXPECT_NEAR(left, (26 + 360) / 2.0, 6.0);  // the plot spans rows 26 .. height - 40
}

TEST(CostCurve, EngineNamesAreDrawnAboveThePlot) {
  std::vector<double> costs;
  std::vector<std::string> engines;
  for (int i = 0; i < 40; ++i) {
    costs.push_back(1.0 / (1 + i));
    engines.push_back(i < 15 ? "dm" : "ml");
  }
  auto ink_in_top_margin = [](const HostRView2& img) {
    int n = 0;
    for (size_t r = 12; r < 22; ++r)
      for (size_t c = 60; c < img.extent(1); ++c) n += img(r, c) < 0.9f;
    return n;
  };
  io::write_cost_curve(scratch("named.png"), costs, engines);
  io::write_cost_curve(scratch("unnamed.png"), costs, {});
  EXPECT_GT(ink_in_top_margin(io::read_png(scratch("named.png"))), 20);
  EXPECT_EQ(ink_in_top_margin(io::read_png(scratch("unnamed.png"))), 0);
}

TEST(CostCurve, CostsThatCannotBeDrawnLeaveGapsAndEmptyHistoriesStillWrite) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NO_THROW(io::write_cost_curve(scratch("gaps.png"), {1.0, nan, 0.0, -1.0, inf, 0.1, 0.05}, {}));
  EXPECT_NO_THROW(io::write_cost_curve(scratch("none_drawable.png"), {0.0, nan}, {}));
  EXPECT_NO_THROW(io::write_cost_curve(scratch("one.png"), {0.3}, {"ml"}));
  io::write_cost_curve(scratch("empty.png"), {}, {});
  EXPECT_EQ(io::read_png(scratch("empty.png")).extent(1), 640u);
  io::CostCurveOptions small;
  small.width = 200;
  small.height = 150;
  io::write_cost_curve(scratch("small.png"), {3, 2, 1}, {"a", "b", "c"}, small);
  const HostRView2 img = io::read_png(scratch("small.png"));
  EXPECT_EQ(img.extent(0), 150u);
  EXPECT_EQ(img.extent(1), 200u);
}

TEST(CostCurve, BadArgumentsThrow) {
  EXPECT_THROW(io::write_cost_curve(scratch("mismatch.png"), {1, 2, 3}, {"dm", "dm"}), Error);
  io::CostCurveOptions tiny;
  tiny.width = 50;
  EXPECT_THROW(io::write_cost_curve(scratch("tiny.png"), {1, 2}, {}, tiny), Error);
  EXPECT_THROW(io::write_cost_curve(scratch("no_such_dir/x.png"), {1, 2}, {}), InputError);
}

}  // namespace
}  // namespace ptycho
