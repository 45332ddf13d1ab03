#pragma once
/// Pieces of the scan reader shared by the CXI reader (cxi.cpp) and the
/// other input formats (scan_formats.cpp). Internal to ptycho_io.
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <string>
#include <vector>

namespace ptycho::io::detail {

/// Checks a frames dataset's shape: (N, M, M) or a raster (R, C, M, M), M
/// even and at most kMaxFrameSize. Throws InputError naming `path` and `frames`.
void check_frames_shape(const std::string& path, const std::string& frames, const std::vector<hsize_t>& dims);

/// Throws InputError if `dset` (in `f`, at `frames`) needs an HDF5 filter this
/// library cannot load, naming it and its plugin.
void check_filters(const H5File& f, hid_t dset, const std::string& frames);

/// The block of frames at `frames` in `f`, its type and shape checked; its
/// stored type's name goes to `type_out`.
FrameBlock frames_block(const H5File& f, const std::string& frames, std::string& type_out);

/// The frame side M of the frames dataset at `frames`.
int frame_side(const H5File& f, const std::string& frames);

/// The mask at `path` in `f` as (M, M), 1 = invalid: CXI's rules (integer
/// masks are bit flags, see cxi.cpp; other types: nonzero masks); all valid
/// if `path` does not exist. Not turned.
View2<std::uint8_t, HostSpace> read_mask(const H5File& f, const std::string& path, int m);

/// Completes a header whose info (source, geometry, num_frames), layout,
/// probe and mask (or none: all valid) are set: places the positions x_m,
/// y_m [m] on the object grid, turns the mask as the frames will be turned,
/// and names the probe's source.
void finish_header(CxiHeader& h, const std::vector<double>& x_m, const std::vector<double>& y_m,
                   const ReadOptions& options);

/// Replaces h's probe guess by the probe of `file` (see ReadOptions::probe_file).
void read_probe_file(CxiHeader& h, const std::string& file);

/// The CXI reader proper (cxi.cpp) and the other formats' (scan_formats.cpp).
CxiHeader read_cxi_format_header(const std::string& path, const ReadOptions& options);
CxiHeader read_ptyd_header(const std::string& path, const ReadOptions& options);
CxiHeader read_fold_slice_header(const std::string& path, const ReadOptions& options);
CxiHeader read_ptychodus_header(const std::string& path, const ReadOptions& options);
CxiHeader read_described_header(const std::string& path, const ReadOptions& options);

/// A probe (M, M) from a complex dataset of 2 to 4 dimensions whose last two
/// are M x M (modes, or ptychodus's (OPR modes, modes, M, M)): the first mode
/// of the first OPR mode, scaled to the power of all of that OPR mode's
/// modes. `source` receives its description.
HostCView2 probe_from_modes(const H5File& f, const std::string& path, int m, std::string& source);

}  // namespace ptycho::io::detail
