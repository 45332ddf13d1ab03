#pragma once
/// Reconstruction results in the result contract of shared/docs/CONVENTIONS.md:
///
///   /entry_1/image_1/data          complex64 (H, W): the object
///   /entry_1/image_1/positions_px  float64 (N, 2): final probe centres (row, col), input order
///   /entry_1/image_1/pixel_size    float64 [m]
///   /entry_1/image_2/data          complex64 (K, M, M): probe modes, scaled to counts
///   /entry_1/image_1/grid_offset_px float64 (2): (row, col) pixel of the scan's origin
///   /entry_1/instrument_1/source_1/energy [J], /entry_1/instrument_1/detector_1/distance [m]
///   /entry_1/process_1/...         program, version, command_line, configuration (JSON),
///                                  cost_history float64 (n_iter), engine_history (strings),
///                                  and one scalar dataset per metric and note;
///                                  optionally background float32 (M, M): the
///                                  refined detector background [counts per pixel and frame]
///
/// complex64 is the HDF5 compound {r: float32, i: float32}, which h5py reads as
/// numpy complex64.
///
/// The same file is a ptychodus product (its h5_product_file reader): at the
/// root, the attributes name, comments, detector_object_distance_m,
/// probe_energy_eV and exposure_time_s (0: unknown); the datasets
/// probe_position_indexes, probe_position_x_m and probe_position_y_m (the
/// final positions, in the scan's metres); hard links object (to
/// image_1/data, with pixel_width_m, pixel_height_m, center_x_m, center_y_m),
/// probe (to image_2/data, with its pixel sizes) and loss_values (to
/// process_1/cost_history); and object_layer_spacing_m, empty (one layer).
/// Pixel j of the object is centred at x = (j - grid_offset_col) pixel_size_m.
///
/// Writing is collective and atomic: the object is written collectively from
/// each rank's tile into `PATH.tmp.<pid>.<n>` beside PATH; rank 0 then adds the
/// small datasets, closes the file and renames it onto PATH. On any failure
/// the temporary file is removed and an existing PATH is left untouched.
#include "ptycho/core/rank_layout.hpp"
#include "ptycho/core/types.hpp"

#include <mpi.h>

#include <map>
#include <string>
#include <vector>

namespace ptycho::io {

/// Provenance and history of a reconstruction: /entry_1/process_1.
struct ProcessInfo {
  std::string program = "ptycho";
  std::string version;
  std::string command_line;
  std::string configuration;                ///< the configuration as JSON text
  std::vector<double> cost_history;         ///< cost per iteration
  std::vector<std::string> engine_history;  ///< engine of each iteration or stage, e.g. "DM", "ML"
  /// Scalars, one float64 dataset each under process_1, e.g. seconds_per_iteration,
  /// probe_error_pct, position_rms_shift_px. Names must differ from the entries above.
  std::map<std::string, double> metrics;
  /// Strings, one dataset each under process_1 (names as for metrics).
  std::map<std::string, std::string> notes;
};

/// A reconstruction result. The object is held as this rank's tile of the
/// global object, placed by `layout` (the type checkpoints use too): the
/// tile is layout.owned. For a serial writer, or as returned by read_result,
/// the layout is RankLayout::whole: one tile, the whole object at (0, 0).
///
/// Ownership: the views are shared handles (Kokkos reference counting); the
/// writer only reads them.
struct ResultData {
  /// Where this rank's tile lies: object_rows x object_cols is the whole
  /// object [px], owned the tile's rectangle. If total_frames (N) is set,
  /// there must be N positions; if frame_size (M) is set, the probe modes
  /// must be M x M. extent and frames are not used by results.
  RankLayout layout;
  /// This rank's owned tile (layout.owned.rows, layout.owned.cols),
  /// LayoutRight (a row-strided view is fine); may be empty. The tiles of
  /// all ranks must cover the object without overlap.
  HostCView2 object_tile;
  std::vector<Position> positions;  ///< final probe centres [object pixels], input order
  HostCView3 probe_modes;           ///< (K, M, M), scaled to counts
  double pixel_size_m = 0;          ///< object pixel size [m]
  /// The scan's photon energy [J] and detector distance [m], and where the
  /// grid lies: a scan position (x, y) [m] is at object pixel
  /// (y / pixel_size_m + grid_offset_row, x / pixel_size_m + grid_offset_col).
  /// With energy and distance known (> 0), the result is also a ptychodus
  /// product (see write_result).
  double energy_j = 0;
  double distance_m = 0;
  double grid_offset_row = 0;
  double grid_offset_col = 0;
  std::string name;  ///< the product's name (ptychodus): the scan's file stem
  /// The refined detector background (M, M) [counts], written to
  /// /entry_1/process_1/background; empty: none (not written).
  HostRView2 background;
  ProcessInfo process;
};

/// Writes `result` to `path` (collective over `comm`; atomic, see above).
///
/// Each rank passes its own tile; everything else (positions, probe modes,
/// pixel size, process) is taken from rank 0. Errors are raised on every
/// rank with the same message: a ptycho::InputError for file problems (the
/// message names the file and the dataset), a ptycho::Error for tiles that
/// do not tile the object.
void write_result(MPI_Comm comm, const std::string& path, const ResultData& result);

/// Reads a whole result file (serial). Accepts an object of (H, W) or
/// (S, H, W) (slice 0 is returned) and probe modes of (K, M, M) or (M, M).
/// positions_px, image_2, pixel_size, process_1 and its background are
/// optional; what is missing is left empty (pixel_size_m = 0).
ResultData read_result(const std::string& path);

/// True if `path` is an HDF5 file that holds a result (an object at
/// /entry_1/image_1/data) and no measured frames (/entry_1/data_1): serial;
/// false for a missing or unreadable file.
bool is_result(const std::string& path);

}  // namespace ptycho::io
