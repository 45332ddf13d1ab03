#pragma once
/// The scan file formats ptycho reads and writes besides its own CXI layout,
/// and `ptycho convert`. Every reader fills the same CxiHeader (cxi.hpp), so
/// read_cxi, read_scan_info and read_frame_statistics read any of them, each
/// rank its own frames.
///
///  CXI         /entry_1/...: see cxi.hpp. Also read: frames as a 4-D raster
///              (rows, columns, M, M) with the translation (N, 3) or (rows,
///              columns, 3); detector_1/basis_vectors (2, 3) or cdtools' (3, 2),
///              when they turn the default [[0, -py, 0], [-px, 0, 0]] by
///              quarter turns and flips (anything else is refused).
///  PtyPy .ptyd /meta/{energy [keV], distance [m], psize [m] (y, x) or one
///              value, shape, center (row, col), num_frames} and
///              /chunks/<n>/{data (n, M, M), positions (n, 2) = (y, x) [m],
///              weights (n, M, M) or (M, M), > 0 = good}, chunks in numeric
///              order. A pixel whose weight is 0 in any frame is masked. The
///              beam centre must be the frame centre M/2.
///  fold_slice  a pair STEM_dp.hdf5 (/dp (N, M, M), rows along y, as the
///              APS scripts write it and fold_slice's eiger_APS detector and
///              ptychodus read it) and STEM_para.hdf5 (/ppX, /ppY [m]: the
///              probe at column ppX / dx and row ppY / dx; /lambda and /dx
///              [m]). The distance and the detector pixel are /z and /ds [m]
///              when present (ptycho writes them), else the pixel is taken as
///              75 um (fold_slice's eiger_APS) and the distance follows from
///              dx. An optional /mask (M, M) in the _dp file (ptycho's; nonzero
///              = invalid). MATLAB-written frames are transposed: read them
///              with --transpose.
///
///  ptychodus   its batch layout: diffraction.h5 (/patterns (N, M, M),
///              /indexes (N,), /bad_pixels (M, M), true = bad) and, in the same
///              folder, product-in.h5 (root attributes probe_energy_eV and
///              detector_object_distance_m; probe_position_indexes,
///              probe_position_x_m, probe_position_y_m; probe with
///              pixel_width_m and pixel_height_m, the object pixel). Patterns
///              are matched to positions by index (patterns without one are
///              left out); the detector pixel is the one that gives the probe's
///              pixel; the product's probe is the probe guess.
///
/// Either file of a fold_slice pair names the scan; diffraction.h5 names a
/// ptychodus scan.
#include "ptycho/io/cxi.hpp"

#include <string>
#include <vector>

namespace ptycho::io {

enum class ScanFormat { cxi, ptyd, fold_slice, ptychodus };

/// "CXI", "PtyPy .ptyd", "fold_slice _dp/_para", "ptychodus diffraction.h5 + product-in.h5".
const char* format_name(ScanFormat format);

/// The format of the scan file `path`, from its content. Throws InputError
/// naming the file if it is not HDF5 or none of the formats.
ScanFormat detect_scan_format(const std::string& path);

/// The format an output file name asks for: *.ptyd -> ptyd, *_dp.hdf5,
/// *_dp.h5, *_para.hdf5, *_para.h5 -> fold_slice, diffraction.h5 ->
/// ptychodus, anything else -> CXI.
ScanFormat format_of_name(const std::string& path);

/// A fold_slice pair named by either of its files: {STEM_dp.EXT, STEM_para.EXT}.
/// Throws InputError if the name is neither.
struct FoldSlicePair {
  std::string dp, para;
};
FoldSlicePair fold_slice_pair(const std::string& path);

/// The files a scan named `path` is read from, by its name: both files of a
/// fold_slice pair, else `path` itself.
std::vector<std::string> scan_files(const std::string& path);

/// What `ptycho convert` did.
struct ConvertReport {
  ScanFormat from = ScanFormat::cxi, to = ScanFormat::cxi;
  long frames = 0;
  std::vector<std::string> files;  ///< the files written
  std::vector<std::string> lost;   ///< what the output format cannot hold, e.g. "the probe guess"
};

/// Writes the scan `in` (any format) as `out` in `format` (serial: call on one
/// rank), turning the frames as `options.orientation` says, in chunks of
/// about `chunk_bytes` of frames so that large scans fit in memory. Every
/// output file is written atomically; `in` is never modified, and an output
/// that names an input file is refused.
ConvertReport convert_scan(const std::string& in, const std::string& out, ScanFormat format,
                           const ReadOptions& options = {}, size_t chunk_bytes = size_t(64) << 20);

}  // namespace ptycho::io
