#pragma once
/// Whole-object analysis of results: `ptycho analyze`, and the FRC of
/// `ptycho reconstruct --halves`. The object stays distributed: each rank
/// holds one FFTW-MPI row slab (read so from a file, or moved there from
/// the reconstruction's tiles by a SlabPlan), and the operations of
/// ptycho/parallel/object_analysis.hpp run on the slabs.
///
/// Resolution by FRC: the two objects (two independent reconstructions,
/// e.g. of the two halves of a scan) are compared over the region both
/// scanned (the box of both scans' probe centres), apodised by a window
/// whose cosine-squared edges are half the region's shorter side wide. Each loses its phase ramp and offset; the second is registered
/// onto the first (sub-pixel shift, then the phase offset between them).
/// The FRC is computed for the complex object, its amplitude and its phase.
/// The resolution is the half period at the 1/2-bit threshold (van Heel
/// and Schatz 2005) and at 1/7, in metres.
#include "ptycho/core/types.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/parallel/object_analysis.hpp"

#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

namespace ptycho::jobs {

/// The FRC of two objects on one grid.
struct FrcReport {
  FrcCurve complex_curve;    ///< of the complex objects
  FrcCurve amplitude_curve;  ///< of their amplitudes (mean removed)
  FrcCurve phase_curve;      ///< of their phases (ramp and offset removed)
  Shift shift;               ///< the second object's shift onto the first [px]
  Rect region;               ///< the region compared [px]
  double pixel_size_m = 0;
  /// Half-period resolutions [m] of the complex FRC; 0 if the pixel size is unknown.
  double resolution_half_bit_m = 0;
  double resolution_one_seventh_m = 0;
};

/// The FRC of `a` and `b` (slabs of `t`'s grid; both are changed: ramps
/// removed, b registered onto a). `positions_a` and `positions_b` are the
/// probe centres [px] of each (the region both scanned); `margin` pixels of
/// the grid's edge are left out when there are none. Collective.
FrcReport fourier_ring_correlation_of(ObjectTransforms& t, cfloat* a, cfloat* b,
                                      const std::vector<Position>& positions_a,
                                      const std::vector<Position>& positions_b, double pixel_size_m);

/// The FRC of two reconstructions held as tiles (ResultData: each rank its
/// own tile, placed by layout.owned), through SlabPlans onto FFTW-MPI slabs.
/// The two may be tiled differently; their grids must agree. Collective.
FrcReport fourier_ring_correlation_of(MPI_Comm comm, const io::ResultData& a, const io::ResultData& b);

/// The FRC as JSON text (resolutions in nm, cutoffs in cycles per pixel, the curves).
std::string frc_json(const FrcReport& r, const std::string& first, const std::string& second);
/// Writes the FRC plot (the three curves, the 1/2-bit threshold and 1/7) as a PNG (serial).
void write_frc_plot(const std::string& path, const FrcReport& r);
/// The FRC as a record for the result's /entry_1/process_1/frc.
void add_frc_to_result(MPI_Comm comm, const std::string& path, long rows, long cols, const FrcReport& r,
                       const std::string& compared_with);

/// What `ptycho analyze` does.
struct AnalyzeOptions {
  std::string result;    ///< the result to analyse (datasets are added to it)
  std::string frc_with;  ///< a second result for the FRC; empty: no FRC
  bool remove_ramp = false;
  bool unwrap = false;
  std::optional<FourierFilter> filter;
  std::string previews;  ///< folder for the PNGs and analysis.json; default: RESULT-stem_analysis beside RESULT
};

/// Runs `ptycho analyze` (collective): checks every path first, reads the
/// object(s) as slabs, computes what `options` asks, adds the processed
/// object (/entry_1/analysis_1/object), the unwrapped phase
/// (/entry_1/analysis_1/phase_unwrapped) and the FRC (/entry_1/process_1/frc)
/// to the result, and writes previews, frc.png and analysis.json. Prints a
/// summary with the peak memory per rank. Returns the exit code (0).
int run_analyze(MPI_Comm comm, const AnalyzeOptions& options);

}  // namespace ptycho::jobs
