#pragma once
/// A ptychographic scan as the engines see it: this rank's frames, every
/// position, the mask, the geometry and the probe guess. Filled by io/ from a
/// CXI file or by the simulator.
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ptycho {

/// Metadata and positions of the whole scan (small; every rank holds it).
struct ScanInfo {
  std::string source;               ///< file the scan came from, for messages
  DetectorGeometry geometry;
  long num_frames = 0;              ///< N, over all ranks
  /// Probe centres in object pixels (row, col), input order, on the object
  /// grid chosen by the reader (positions in metres / object pixel + offset).
  std::vector<Position> positions;
  long object_rows = 0;             ///< H of the object grid holding all patches plus a margin
  long object_cols = 0;             ///< W
  /// Where the grid lies: a position (x, y) [m] of the scan is at object pixel
  /// (y / pixel + grid_offset_row, x / pixel + grid_offset_col).
  long grid_offset_row = 0;
  long grid_offset_col = 0;
  std::string probe_source;         ///< dataset path of the probe guess, or "estimated from data"
  std::string background_source;    ///< dataset path of the file's dark (Dataset::background); "" if none
};

/// One rank's share of the scan.
struct Dataset {
  ScanInfo info;
  /// Global indices of this rank's frames, ascending; frames(i) is frame index[i].
  std::vector<long> frame_index;
  /// This rank's measured intensities [counts], (n_local, M, M), zero frequency at the centre.
  HostRView3 frames;
  /// (M, M): 1 where a detector pixel is INVALID (CXI convention), 0 where valid.
  View2<std::uint8_t, HostSpace> mask;
  /// The probe guess (M, M), scaled to counts, from the file or estimated.
  HostCView2 probe;
  /// Optional (M, M) detector background to start from [counts per pixel and
  /// frame], e.g. the file's dark; empty: none (the engines start from 0).
  HostRView2 background;
};

}  // namespace ptycho
