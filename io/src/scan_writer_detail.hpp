#pragma once
/// Pieces of the CXI writer shared by write_cxi (cxi_writer.cpp) and
/// `ptycho convert` (scan_formats.cpp). Internal to ptycho_io.
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ptycho::io::detail {

/// Everything of a CXI scan but the frames.
struct CxiMetadata {
  DetectorGeometry geometry;
  std::vector<double> x_m, y_m;              ///< probe centres [m], x along columns, y along rows
  HostCView2 probe;                          ///< optional (M, M) probe guess
  View2<std::uint8_t, HostSpace> mask;       ///< optional (M, M), nonzero = invalid
  HostRView2 dark;                           ///< optional (M, M) dark [counts per pixel and frame]
  std::string program_name = "ptycho";       ///< /entry_1/program_name
  std::string instrument_name = "ptycho";    ///< /entry_1/instrument_1/name
};

/// Writes CXI's version, entry, instrument (energy, distance, pixel sizes,
/// basis vectors, probe, mask) and the translation, (3, N) in geometry_1 (PyNX)
/// and (N, 3) in data_1 (ptychodus, cdtools). Not the frames.
void write_cxi_metadata(H5File& f, const CxiMetadata& meta);

/// Creates the float32 frames dataset (N, M, M) at `path`, one chunk per
/// frame, gzip-compressed when this HDF5 has gzip.
void create_frames(H5File& f, const std::string& path, long n, int m);

/// Writes `count` frames (M x M, float) to the frames dataset at `path`, from frame `first` on.
void write_frame_slab(H5File& f, const std::string& path, long first, const float* data, long count, int m);

}  // namespace ptycho::io::detail
