#pragma once
/// Reading ptychographic scans from CXI (HDF5) files, in the layout of
/// shared/docs/CONVENTIONS.md:
///
///   frames       /entry_1/data_1/data, else /entry_1/instrument_1/detector_1/data
///                (N, M, M), any integer or float type, often a soft link,
///                possibly gzip-compressed
///   translation  /entry_1/sample_1/geometry_1/translation, else /entry_1/data_1/translation
///                metres, (N, 3) = (x, y, z) or (3, N); x -> columns, y -> rows
///   energy       /entry_1/instrument_1/source_1/energy [J]
///   distance     /entry_1/instrument_1/detector_1/distance [m]
///   pixel sizes  /entry_1/instrument_1/detector_1/{x,y}_pixel_size [m]
///   mask         /entry_1/instrument_1/detector_1/mask, optional (M, M), nonzero = INVALID
///   probe guess  /entry_1/instrument_1/source_1/probe, else .../source_1/illumination,
///                else .../detector_1/probe, optional, complex (M, M)
///
/// Every user error is a ptycho::InputError naming the file, the dataset and
/// what is wrong, e.g. `scan.cxi: /entry_1/data_1/data has 3 frames but
/// /entry_1/sample_1/geometry_1/translation has 5 positions`.
///
/// The object grid. The reader picks the object grid: positions in metres are
/// divided by the object pixel size (rows from y, columns from x) and then
/// moved by a whole number of pixels so that the smallest patch start,
/// floor(r - M/2), sits `margin_px` pixels from the edge; the grid holds all
/// patches plus the margin on each side. The shift is an integer, so the
/// sub-pixel part of each position is kept exactly. The grid depends on the
/// file and the margin only, never on the number of ranks.
#include "ptycho/core/dataset.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ptycho::io {

/// Default margin of the object grid around all patches [object pixels]:
/// room for later position refinement.
constexpr int kDefaultMarginPx = 8;

/// The largest count read_cxi accepts in a valid pixel: intensities, their
/// squares and sums over a frame stay well inside single precision.
constexpr double kMaxCount = 1e12;

/// The largest frame side the reader accepts [pixels]: the header's mask and
/// probe of such frames are read before the memory check.
constexpr int kMaxFrameSize = 8192;

/// The probe_source of a probe guessed from the data.
inline const char* const kEstimatedProbeSource = "estimated from the mean diffraction pattern";

/// How read_cxi scales the probe guess it returns.
enum class ProbeScaling {
  /// sum |P|^2 = the mean total counts per frame (masked pixels filled in), so
  /// that an object of amplitude about 1 reproduces the counts. Default.
  to_mean_counts,
  /// A probe from the file is returned unchanged. (A probe estimated from the
  /// data is always scaled to the counts.)
  as_in_file,
};

/// How read_cxi moves the frames from the file.
enum class FrameTransfer {
  collective,   ///< MPI-IO collective transfer (default)
  independent,  ///< each rank reads on its own
};

/// Options of the CXI reader.
/// How a detector's frames are turned on reading, when the detector's axes
/// are not the scan's (PyNX's detector_orientation): transposed first
/// (rows and columns swapped), then flipped up-down (flip_y: rows reversed),
/// then left-right (flip_x: columns reversed). The mask turns with them; the
/// positions and the probe guess, in the sample plane, do not.
struct Orientation {
  bool transpose = false;
  bool flip_y = false;
  bool flip_x = false;
  bool identity() const { return !transpose && !flip_y && !flip_x; }
  /// "as stored", or e.g. "transposed, then flipped left-right".
  std::string text() const;
};

/// The orientation that turns frames as `first` does and then as `then` does.
Orientation then(const Orientation& first, const Orientation& then);

/// The orientation whose turn undoes `o`'s.
Orientation inverse(const Orientation& o);

/// Turns `count` frames of M x M, stored one after another, in place as `o` says.
void orient_frames(float* frames, size_t count, int m, const Orientation& o);
void orient_frames(std::uint8_t* frames, size_t count, int m, const Orientation& o);

/// A plain HDF5 file described by the user (job keys frames_dataset, ...):
/// frames and positions at given paths, the geometry given as numbers.
struct Description {
  std::string frames;     ///< (N, M, M) or a raster (R, C, M, M); empty: the file's own format
  std::string positions;  ///< (N, 2), (2, N), (N, 3) or (3, N)
  bool yx = false;        ///< the positions' first coordinate is y (rows), not x
  double unit_m = 1;      ///< metres per unit of the positions
  bool negate_x = false;  ///< the file's x runs against the scan's columns
  bool negate_y = false;  ///< the file's y runs against the scan's rows
  double energy_j = 0, distance_m = 0, pixel_m = 0;
  std::string mask;       ///< optional (M, M), nonzero = invalid (CXI's rules)
  bool given() const { return !frames.empty(); }
};

struct ReadOptions {
  int margin_px = kDefaultMarginPx;  ///< object-grid margin around all patches [object pixels]
  ProbeScaling probe_scaling = ProbeScaling::to_mean_counts;
  FrameTransfer transfer = FrameTransfer::collective;
  /// Most bytes (as float) that one H5Dread moves; larger shares are read in
  /// several calls (MPI-IO counts are ints, and the conversion buffer is this big).
  size_t max_read_bytes = size_t(1) << 28;
  Orientation orientation;  ///< applied to the frames and the mask as they are read
  /// Take the probe guess from this file instead of the scan's: a scan with a
  /// probe (CXI: source_1/probe, source_1/illumination or detector_1/probe),
  /// a result (/entry_1/image_2/data) or a PtyPy .ptyr (the first storage of
  /// /content/probe, whose _psize must be the scan's object pixel); modes'
  /// power folded into the first. Empty: the scan's own, or estimated.
  std::string probe_file;
  /// Read the file as the user describes it instead of by its format.
  Description description;
};

/// One dataset of frames: global frames [first, first + count) of the scan.
struct FrameBlock {
  std::string file;      ///< the HDF5 file that holds it
  std::string dataset;   ///< (count, M, M), or (count / raster_cols, raster_cols, M, M)
  long first = 0;        ///< global index of its first frame
  long count = 0;        ///< frames in it
  long raster_cols = 0;  ///< > 0: a 4-D raster of rows of this many frames, read row-major
  /// The frames of the dataset the scan keeps (ascending, row-major in a
  /// raster; the monitor leaves some out): frame first + i is stored frame
  /// kept[i]. Empty: all, in order.
  std::vector<long> kept;
  long stored = 0;  ///< frames in the dataset (count, unless some are left out)
};

/// Where the pieces of a scan were found in its file(s) (dataset paths as they
/// were opened, soft links not resolved).
struct CxiLayout {
  std::string format = "CXI";           ///< the input format (see scan_formats.hpp)
  std::vector<FrameBlock> blocks;       ///< the frames' datasets, in global frame order
  /// The turn that brings the stored frames onto the scan's axes (x along
  /// columns, y along rows), by the file's own convention: CXI's
  /// basis_vectors, MATLAB's column-major order. Applied on reading, before
  /// ReadOptions::orientation.
  Orientation stored;
  std::string stored_source;            ///< what says so, e.g. "/entry_1/.../basis_vectors"; "" if as stored
  std::string frames;                   ///< e.g. /entry_1/data_1/data (the first block's dataset)
  std::string frames_type;              ///< type stored in the file: float32, int32, uint16, ...
  std::string translation;              ///< e.g. /entry_1/sample_1/geometry_1/translation
  bool translation_transposed = false;  ///< stored as (3, N) rather than (N, 3)
  std::string mask;                     ///< path of the mask, "" if the file has none
  std::string dark;                     ///< path of the dark, "" if the file has none
  std::string monitor;                  ///< path of the monitor, "" if the file has none
  long dropped = 0;                     ///< frames left out for their monitor (at most 0.1 x its median)
  std::string probe;                    ///< path of the probe guess, "" if the file has none
};

/// Everything about a scan except the frames: metadata, positions, mask and
/// the file's probe. Small; read serially by one rank.
struct CxiHeader {
  ScanInfo info;
  CxiLayout layout;
  /// (M, M): 1 where a detector pixel is INVALID, 0 where valid; all zero if the file has no mask.
  View2<std::uint8_t, HostSpace> mask;
  /// (M, M) probe guess exactly as in the file (for (K, M, M) modes: mode 0,
  /// scaled to the power of all modes), or an empty view if the file has none.
  HostCView2 probe;
  /// (M, M) dark [counts per pixel and frame]: detector_1/data_dark (CXI,
  /// cdtools) or detector_1/dark (PyNX), averaged over any leading axes and
  /// turned as the frames; an empty view if the file has none.
  HostRView2 dark;
};

/// Positions of a scan on the object grid (see the file comment).
struct ObjectGrid {
  std::vector<Position> positions;  ///< probe centres (row, col) [object pixels], input order
  long rows = 0;                    ///< H
  long cols = 0;                    ///< W
  long shift_row = 0;               ///< integer shift added to y / dx_y [object pixels]
  long shift_col = 0;               ///< integer shift added to x / dx_x [object pixels]
};

/// Places probe centres given in metres on an object grid of pixel size
/// (geometry.object_pixel_y_m(), geometry.object_pixel_x_m()), with `margin_px`
/// pixels around all M x M patches. Values within 1e-6 pixel of an integer are
/// taken as that integer, so that round-trips through metres do not flip
/// floor(). Throws InputError (naming `source`) if the grid would exceed 2^20
/// pixels along an axis (positions that are not in metres, typically).
ObjectGrid place_on_object_grid(const std::vector<double>& x_m, const std::vector<double>& y_m,
                                const DetectorGeometry& geometry, int margin_px, const std::string& source = "");

/// Reads and validates the metadata, positions, mask and probe guess of a scan
/// file, CXI or another format of scan_formats.hpp (serial; call on one
/// rank). Reads no frames.
CxiHeader read_cxi_header(const std::string& path, const ReadOptions& options = {});

/// The scan's metadata and positions on the object grid (serial; any rank).
/// probe_source is the dataset path of the file's probe, or
/// kEstimatedProbeSource if read_cxi will estimate one.
ScanInfo read_scan_info(const std::string& path, const ReadOptions& options = {});

/// Global statistics of the frames held by all ranks of `comm` (collective).
///
/// Sums are accumulated in 64-bit fixed point with one scale for all ranks,
/// so the results are bit-identical for any split of the frames over ranks.
/// Masked pixels and non-finite values are left out.
struct FrameStatistics {
  long num_frames = 0;  ///< frames over all ranks
  int frame_size = 0;   ///< M
  /// (M*M, row-major) mean counts per pixel over all frames; masked pixels are
  /// filled in with the mean of their valid neighbours (repeatedly, inwards).
  std::vector<double> mean_frame;
  double mean_total_counts = 0;    ///< mean over frames of the sum over valid pixels [counts]
  double filled_total_counts = 0;  ///< sum of mean_frame: the power a probe should carry [counts]
  double max_count = 0;            ///< largest valid value
  long negative_values = 0;        ///< valid values below zero, over all frames
  long nonfinite_values = 0;       ///< valid values that are NaN or infinite, over all frames
};

/// Computes FrameStatistics of this rank's `frames` (n_local, M, M) together
/// with every other rank of `comm`. `mask` (M, M): nonzero = invalid.
FrameStatistics frame_statistics(MPI_Comm comm, const HostRView3& frames, const View2<std::uint8_t, HostSpace>& mask);

/// FrameStatistics of this rank's frames `my_frames` (ascending global
/// indices) of the CXI file `path`, with every other rank of `comm`
/// (collective), read in chunks of about `chunk_bytes` so that no more than
/// one chunk is in memory: for describing a file larger than memory. The
/// header (read by rank 0, shared) is returned through `header_out`.
FrameStatistics read_frame_statistics(MPI_Comm comm, const std::string& path, const std::vector<long>& my_frames,
                                      const ReadOptions& options = {}, CxiHeader* header_out = nullptr,
                                      size_t chunk_bytes = size_t(64) << 20);

/// A probe guess from the mean diffraction pattern: the inverse centred
/// unitary DFT of sqrt(max(mean_frame, 0)) with zero phase, so that
/// sum |P|^2 = stats.filled_total_counts. Deterministic (FFTW estimate plans).
/// The arithmetic is core's probe_from_mean_pattern (core/first_guess.hpp).
HostCView2 estimate_probe(const FrameStatistics& stats);

/// Reads this rank's frames of a CXI file (collective over `comm`).
///
/// `my_frames`: global indices of the frames this rank reads, strictly
/// ascending, possibly empty or non-contiguous. Rank 0 reads the metadata and
/// broadcasts it; each rank then reads only its own frames with parallel HDF5
/// (MPI-IO), converted to float. The probe guess is the file's (scaled as
/// `options.probe_scaling` says) or, if the file has none, estimated from the
/// mean of the frames read by all ranks. Every rank returns the same info,
/// mask and probe. Errors are raised on every rank with the same message.
Dataset read_cxi(MPI_Comm comm, const std::string& path, const std::vector<long>& my_frames,
                 const ReadOptions& options = {});

/// Reads the frames `index` (global indices, strictly ascending) of the scan
/// `header` describes, as float, turned by the file's convention and then by
/// `options.orientation` (collective over `comm`; no checks of the values).
HostRView3 read_scan_frames(MPI_Comm comm, const CxiHeader& header, const std::vector<long>& index,
                            const ReadOptions& options = {});

/// A contiguous block split of N frames over `size` ranks: the indices of
/// rank `rank`'s block (the first N % size ranks get one more).
std::vector<long> block_of_frames(long num_frames, int rank, int size);

}  // namespace ptycho::io
