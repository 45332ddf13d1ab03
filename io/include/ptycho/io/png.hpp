#pragma once
/// 8-bit PNG previews of images, objects, probes and cost curves, and a PNG reader.
///
/// Writers are atomic (temporary file beside the target, then rename). Row 0
/// of an image is the top row of the PNG.
#include "ptycho/core/types.hpp"

#include <string>
#include <vector>

namespace ptycho::io {

/// How values become pixels.
enum class ColourMap {
  gray,    ///< black (low) to white (high), 8-bit grayscale
  cyclic,  ///< a hue wheel (RGB) that wraps around: for phases over [-pi, pi]
};

/// Options of write_png.
struct PngOptions {
  /// Display range: values <= lo are black, >= hi white. If lo >= hi (the
  /// default) the range is picked from the data (see clip_percent).
  double lo = 0;
  double hi = 0;
  /// Automatic range: the clip_percent and (100 - clip_percent) percentiles
  /// of the finite values, so that a few outliers do not wash out the image.
  double clip_percent = 0.5;
  ColourMap colour_map = ColourMap::gray;
};

/// Writes `image` (rows, cols) as an 8-bit PNG. Non-finite values are drawn
/// as the low end of the range. Throws InputError if the file cannot be written.
void write_png(const std::string& path, const HostRView2& image, const PngOptions& options = {});

/// Reads a PNG (gray, gray+alpha, RGB, RGBA or palette, 8 or 16 bit) as
/// luminance in [0, 1], (rows, cols). Throws InputError naming the file if it
/// is missing or not a PNG.
HostRView2 read_png(const std::string& path);

/// Options of write_previews.
struct PreviewOptions {
  bool cyclic_phase = false;  ///< phase.png with the cyclic colour map over [-pi, pi] (default: gray, auto range)
};

/// Writes amplitude.png and phase.png of `object` (H, W) and probe.png (the
/// amplitudes of the K probe modes (K, M, M) side by side, on one range from
/// 0 to the largest amplitude) into the directory `dir`, which is created if
/// needed. The phase is shown relative to the object's mean phase, so a
/// global phase factor does not wrap it.
void write_previews(const std::string& dir, const HostCView2& object, const HostCView3& probe_modes,
                    const PreviewOptions& options = {});

/// Options of write_cost_curve.
struct CostCurveOptions {
  int width = 640;   ///< of the PNG [pixels], at least 200
  int height = 400;  ///< at least 150
};

/// Writes the cost curve of a reconstruction as an RGB PNG: `costs` (one per
/// iteration, as in ResultData's cost_history) against the iteration, on a
/// logarithmic cost axis with labelled ticks. `engines` names the engine of
/// each iteration (as engine_history; empty: one unnamed engine): each engine
/// has its own colour and its name over its part of the curve, and a dashed
/// line marks each change of engine. Costs that are not finite or not > 0
/// cannot be drawn on a log axis and leave a gap. The labels are drawn with a
/// built-in 5x7 pixel font (upper case). Atomic like write_png.
///
/// Throws ptycho::Error if `engines` is neither empty nor as long as `costs`
/// or the size is too small, InputError if the file cannot be written.
void write_cost_curve(const std::string& path, const std::vector<double>& costs,
                      const std::vector<std::string>& engines, const CostCurveOptions& options = {});

/// One curve of write_line_plot.
struct PlotSeries {
  std::string name;  ///< shown in the legend (upper case)
  std::vector<double> x, y;
  bool dashed = false;
};

/// Options of write_line_plot.
struct LinePlotOptions {
  int width = 640;   ///< at least 200
  int height = 400;  ///< at least 150
  std::string x_label, y_label;
  double x_lo = 0, x_hi = 1;  ///< the x axis
  double y_lo = 0, y_hi = 1;  ///< the y axis; points outside are clipped
};

/// Writes curves on linear axes as an RGB PNG, with ticks, labels and a
/// legend (the FRC plot of `ptycho analyze`). Non-finite points leave gaps.
/// Atomic like write_png. Throws ptycho::Error if a series' x and y differ
/// in length, the size is too small or an axis is empty; InputError if the
/// file cannot be written.
void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                     const LinePlotOptions& options = {});

}  // namespace ptycho::io
