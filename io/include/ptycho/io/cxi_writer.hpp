#pragma once
/// Writing simulated scans: a CXI file in the layout of ptybench's write_cxi
/// (shared/bench/ptybench.py), which read_cxi reads back, and the matching
/// ground-truth file in the layout of ptybench's make_dataset.
///
/// Both writers are serial (call them on one rank) and atomic: the file is
/// written to `PATH.tmp.<pid>.<n>` and renamed onto PATH once closed; on
/// failure an existing PATH is left untouched.
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ptycho::io {

/// A scan to write as CXI. The views are only read.
struct CxiScan {
  DetectorGeometry geometry;  ///< energy [J], distance [m], pixel sizes [m]; frame_size = M
  /// (N, M, M) counts, zero frequency at the centre; written as float32 with one
  /// gzip-compressed chunk per frame to /entry_1/instrument_1/detector_1/data.
  HostRView3 frames;
  /// Probe centres (row, col) [object pixels]. Written as the translation
  /// (N, 3) = (col * dx, row * dy, 0) [m] with the object pixel sizes of `geometry`.
  std::vector<Position> positions_px;
  /// Optional (M, M) probe guess, written complex64 to /entry_1/instrument_1/source_1/probe.
  HostCView2 probe;
  /// Optional (M, M) mask, nonzero = INVALID; written uint32 to .../detector_1/mask.
  View2<std::uint8_t, HostSpace> mask;
  std::string program_name = "ptycho";  ///< /entry_1/program_name
};

/// Writes `scan` to `path` as CXI (serial, atomic). Soft links
/// /entry_1/data_1/data and /entry_1/data_1/translation point at the frames
/// and at /entry_1/sample_1/geometry_1/translation.
void write_cxi(const std::string& path, const CxiScan& scan);

/// The ground truth of a simulated scan (ptybench's `*_truth.h5`).
struct TruthData {
  HostCView2 object;                           ///< (H, W) complex transmission
  HostCView3 probe_modes;                      ///< (K, M, M), scaled to counts
  std::vector<Position> positions_px;          ///< true probe centres [object pixels]
  std::vector<Position> nominal_positions_px;  ///< the positions written to the CXI file
  double probe_error_pct = 0;                  ///< relative L2 change of the probe from the file's [%]
  double position_error_nm = 0;                ///< RMS position error per axis [nm]
  double partial_coherence_nm = 0;             ///< Gaussian width of the illumination blur [nm]
  double photons_per_frame = 0;                ///< sum |P|^2 of the probe in the file
  std::string scenes;                          ///< "AMPLITUDE:PHASE" scene names
  double pixel_size_m = 0;                     ///< object pixel size [m]
  HostRView2 background;                       ///< (M, M) detector background [photons]; empty: none
};

/// Writes `truth` to `path` (serial, atomic): datasets object, probe_modes
/// (complex64), positions_px, nominal_positions_px (float64 (N, 2)), the
/// background (float32 (M, M), only if there is one) and root attributes
/// probe_error_pct, position_error_nm, partial_coherence_nm,
/// photons_per_frame, scenes and pixel_size_m.
void write_truth(const std::string& path, const TruthData& truth);

}  // namespace ptycho::io
