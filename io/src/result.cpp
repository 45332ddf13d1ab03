#include "ptycho/io/result.hpp"

#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

namespace ptycho::io {

namespace {

using detail::check_mpi;
using detail::collectively;

constexpr const char* kObjectPath = "/entry_1/image_1/data";
constexpr const char* kPositionsPath = "/entry_1/image_1/positions_px";
constexpr const char* kPixelSizePath = "/entry_1/image_1/pixel_size";
constexpr const char* kProbePath = "/entry_1/image_2/data";
constexpr const char* kProcessPath = "/entry_1/process_1";
constexpr const char* kPynxObjectPath = "/entry_1/result_1/data";
const std::set<std::string> kProcessEntries = {"program",      "version",        "command_line", "configuration",
                                               "cost_history", "engine_history", "background"};

static_assert(sizeof(Position) == 2 * sizeof(double), "Position must be two packed doubles");
static_assert(sizeof(cfloat) == 2 * sizeof(float), "cfloat must be two packed floats");

struct TileRect {
  long row0, col0, rows, cols, object_rows, object_cols;
};

/// Checks, identically on every rank, that the tiles of all ranks tile the object.
void check_tiling(const std::vector<TileRect>& tiles) {
  const TileRect& t0 = tiles[0];
  long double area = 0;
  for (size_t r = 0; r < tiles.size(); ++r) {
    const TileRect& t = tiles[r];
    PTYCHO_THROW_IF(t.object_rows != t0.object_rows || t.object_cols != t0.object_cols,
                    "write_result: rank " << r << " has an object of " << t.object_rows << " x " << t.object_cols
                                          << " but rank 0 has " << t0.object_rows << " x " << t0.object_cols);
    PTYCHO_THROW_IF(
        t.rows < 0 || t.cols < 0 ||
            (t.rows > 0 && t.cols > 0 &&
             (t.row0 < 0 || t.col0 < 0 || t.row0 + t.rows > t.object_rows || t.col0 + t.cols > t.object_cols)),
        "write_result: rank " << r << "'s tile [" << t.row0 << ", " << t.row0 + t.rows << ") x [" << t.col0 << ", "
                              << t.col0 + t.cols << ") leaves the object of " << t.object_rows << " x "
                              << t.object_cols);
    area += static_cast<long double>(t.rows) * t.cols;
    if (t.rows == 0 || t.cols == 0) continue;
    for (size_t q = 0; q < r; ++q) {
      const TileRect& u = tiles[q];
      if (u.rows == 0 || u.cols == 0) continue;
      const bool overlap =
          t.row0 < u.row0 + u.rows && u.row0 < t.row0 + t.rows && t.col0 < u.col0 + u.cols && u.col0 < t.col0 + t.cols;
      PTYCHO_THROW_IF(overlap, "write_result: the tiles of ranks " << q << " and " << r << " overlap");
    }
  }
  PTYCHO_THROW_IF(area != static_cast<long double>(t0.object_rows) * t0.object_cols,
                  "write_result: the tiles cover " << static_cast<double>(area) << " of the object's "
                                                   << t0.object_rows * t0.object_cols << " pixels");
}

/// Checks `r`; `root`: this is rank 0, whose positions are written.
void check_result(const ResultData& r, bool root) {
  const RankLayout& l = r.layout;
  PTYCHO_THROW_IF(l.object_rows <= 0 || l.object_cols <= 0,
                  "write_result: the object is " << l.object_rows << " x " << l.object_cols);
  const bool no_tile = r.object_tile.extent(0) == 0 || r.object_tile.extent(1) == 0;
  PTYCHO_THROW_IF(l.owned.empty() ? !no_tile
                                  : (r.object_tile.extent(0) != size_t(l.owned.rows) ||
                                     r.object_tile.extent(1) != size_t(l.owned.cols)),
                  "write_result: the object tile is " << r.object_tile.extent(0) << " x " << r.object_tile.extent(1)
                                                      << " but the layout's owned tile is " << l.owned.rows << " x "
                                                      << l.owned.cols);
  PTYCHO_THROW_IF(root && l.total_frames > 0 && long(r.positions.size()) != l.total_frames,
                  "write_result: " << r.positions.size() << " positions for the layout's " << l.total_frames
                                   << " frames");
  PTYCHO_THROW_IF(l.frame_size > 0 && r.probe_modes.extent(1) != size_t(l.frame_size),
                  "write_result: probe modes of " << r.probe_modes.extent(1) << " x " << r.probe_modes.extent(2)
                                                  << " for the layout's frames of " << l.frame_size << " x "
                                                  << l.frame_size);
  PTYCHO_THROW_IF(r.object_tile.size() > 0 && r.object_tile.stride(1) != 1,
                  "write_result: the object tile's columns must be contiguous");
  PTYCHO_THROW_IF(r.probe_modes.extent(0) == 0 || r.probe_modes.extent(1) == 0 ||
                      r.probe_modes.extent(1) != r.probe_modes.extent(2),
                  "write_result: probe modes of " << r.probe_modes.extent(0) << " x " << r.probe_modes.extent(1)
                                                  << " x " << r.probe_modes.extent(2));
  PTYCHO_THROW_IF(!(r.pixel_size_m > 0) || !std::isfinite(r.pixel_size_m),
                  "write_result: the pixel size is " << r.pixel_size_m << " m");
  auto check_name = [](const std::string& name) {
    PTYCHO_THROW_IF(name.empty() || name.find('/') != std::string::npos || name == "." || name == "..",
                    "write_result: \"" << name << "\" cannot name a dataset in process_1");
  };
  for (const auto& kv : r.process.metrics) check_name(kv.first);
  for (const auto& kv : r.process.notes) check_name(kv.first);
  PTYCHO_THROW_IF(r.process.metrics.count("background") || r.process.notes.count("background"),
                  "write_result: \"background\" names the background's dataset in process_1");
  PTYCHO_THROW_IF(r.background.size() > 0 && r.background.extent(0) != r.background.extent(1),
                  "write_result: a background of " << r.background.extent(0) << " x " << r.background.extent(1));
}

/// Rank 0's part: everything but the object, into the already written file.
/// The scan's geometry and the ptychodus product at the root (see result.hpp).
void write_ptychodus_product(H5File& f, const ResultData& r) {
  const std::string context = f.where("cannot write the ptychodus product");
  f.write_scalar("/entry_1/instrument_1/source_1/energy", r.energy_j);
  f.write_attribute("/entry_1/instrument_1/source_1/energy", "units", "J");
  f.write_scalar("/entry_1/instrument_1/detector_1/distance", r.distance_m);
  f.write_attribute("/entry_1/instrument_1/detector_1/distance", "units", "m");
  const double offset[2] = {r.grid_offset_row, r.grid_offset_col};
  f.write("/entry_1/image_1/grid_offset_px", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {2}, offset);
  f.write_attribute("/entry_1/image_1/grid_offset_px", "units",
                    "object pixels (row, col) of the scan's origin: pixel = metres / pixel_size + offset");
  constexpr double kElectronVolt = 1.602176634e-19;
  f.write_attribute("/", "name", r.name.empty() ? std::string("ptycho") : r.name);
  f.write_attribute("/", "comments", "ptycho " + r.process.version + ": " + r.process.command_line);
  f.write_attribute("/", "detector_object_distance_m", r.distance_m);
  f.write_attribute("/", "probe_energy_eV", r.energy_j / kElectronVolt);
  f.write_attribute("/", "exposure_time_s", 0.0);
  const double px = r.pixel_size_m;
  const size_t n = r.positions.size();
  std::vector<long long> index(n);
  std::vector<double> x(n), y(n);
  for (size_t j = 0; j < n; ++j) {
    index[j] = static_cast<long long>(j);
    x[j] = (r.positions[j].col - r.grid_offset_col) * px;
    y[j] = (r.positions[j].row - r.grid_offset_row) * px;
  }
  f.write("/probe_position_indexes", H5T_NATIVE_LLONG, H5T_STD_I64LE, {hsize_t(n)}, index.data());
  f.write("/probe_position_x_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(n)}, x.data());
  f.write("/probe_position_y_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(n)}, y.data());
  f.write("/object_layer_spacing_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {0}, nullptr);
  for (const auto& [link, target] : {std::pair<const char*, const char*>{"/object", kObjectPath},
                                     {"/probe", kProbePath},
                                     {"/loss_values", "/entry_1/process_1/cost_history"}})
    check_h5(H5Lcreate_hard(f.id(), target, f.id(), link, H5P_DEFAULT, H5P_DEFAULT), context + " " + link);
  const double rows = double(r.layout.object_rows), cols = double(r.layout.object_cols);
  f.write_attribute("/object", "pixel_width_m", px);
  f.write_attribute("/object", "pixel_height_m", px);
  f.write_attribute("/object", "center_x_m", ((cols - 1) / 2 - r.grid_offset_col) * px);
  f.write_attribute("/object", "center_y_m", ((rows - 1) / 2 - r.grid_offset_row) * px);
  f.write_attribute("/probe", "pixel_width_m", px);
  f.write_attribute("/probe", "pixel_height_m", px);
}

/// Creates the complex64 dataset `path` of shape `dims`, with the groups on
/// its path; `space` receives its file space (to select in).
H5Id create_complex_dataset(H5File& f, const char* path, const std::vector<hsize_t>& dims, H5Id& space) {
  const std::string context = f.where(std::string("cannot create ") + path);
  H5Id cplx_file = make_complex64_file_type();
  space = checked_id(H5Screate_simple(int(dims.size()), dims.data(), nullptr), context);
  H5Id lcpl = checked_id(H5Pcreate(H5P_LINK_CREATE), context);
  check_h5(H5Pset_create_intermediate_group(lcpl.get(), 1), context);
  return checked_id(H5Dcreate2(f.id(), path, cplx_file.get(), space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                    context);
}

/// Writes complex `buffer` (mem_space's selection) into file_space's
/// selection of `dset`, collectively (MPI-IO), and closes the dataset.
void write_complex_collectively(H5Id& dset, hid_t mem_space, hid_t file_space, const void* buffer,
                                const std::string& context) {
  H5Id cplx_mem = make_complex_type();
  H5Id dxpl = checked_id(H5Pcreate(H5P_DATASET_XFER), context);
  check_h5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), context);
  check_h5(H5Dwrite(dset.get(), cplx_mem.get(), mem_space, file_space, dxpl.get(), buffer), context);
  check_h5(dset.close(), context);
}

/// PyNX's object (collective): /entry_1/result_1/data, (1, rows, cols), the
/// rows upside down (PyNX stores the top row, largest y, first, and flips
/// on reading: pynx/ptycho/ptycho.py, save_obj_probe_cxi and
/// load_obj_probe_cxi). Each rank writes its tile, flipped, into the mirrored
/// rows.
void write_pynx_object(H5File& f, const RankLayout& layout, const TileRect& mine, const HostCView2& tile) {
  const std::string context = f.where(std::string("cannot write ") + kPynxObjectPath);
  H5Id file_space;
  H5Id dset = create_complex_dataset(f, kPynxObjectPath, {1, hsize_t(layout.object_rows), hsize_t(layout.object_cols)},
                                     file_space);
  // Blocks of rows, each flipped through a buffer of at most kBlockBytes
  // (not a copy of the whole tile), written independently: ranks need not
  // write as many blocks as each other.
  constexpr size_t kBlockBytes = size_t(8) << 20;
  if (mine.rows > 0 && mine.cols > 0) {
    H5Id cplx_mem = make_complex_type();
    const long block = std::max<long>(1, long(kBlockBytes / (sizeof(cfloat) * size_t(mine.cols))));
    std::vector<cfloat> flipped(size_t(std::min(block, mine.rows)) * mine.cols);
    for (long b0 = 0; b0 < mine.rows; b0 += block) {
      const long nb = std::min(block, mine.rows - b0);
      for (long r = 0; r < nb; ++r)
        for (long c = 0; c < mine.cols; ++c) flipped[size_t(nb - 1 - r) * mine.cols + c] = tile(b0 + r, c);
      // Tile rows b0..b0+nb-1 land, reversed, on the mirrored file rows.
      const hsize_t start[3] = {0, hsize_t(layout.object_rows - mine.row0 - b0 - nb), hsize_t(mine.col0)};
      const hsize_t count[3] = {1, hsize_t(nb), hsize_t(mine.cols)};
      check_h5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), context);
      H5Id mem_space = checked_id(H5Screate_simple(3, count, nullptr), context);
      check_h5(H5Dwrite(dset.get(), cplx_mem.get(), mem_space.get(), file_space.get(), H5P_DEFAULT, flipped.data()),
               context);
    }
  }
  check_h5(dset.close(), context);
}

/// The rest of PyNX's result layout (rank 0; see write_pynx_object): the
/// probe modes upside down in result_2/data, the pixel sizes PyNX reads,
/// and the links /entry_1/object and /entry_1/probe to result_1 and result_2.
void write_pynx_layout(H5File& f, const ResultData& r, const HostCView3& modes) {
  const std::string context = f.where("cannot write PyNX's layout");
  const long k = long(modes.extent(0)), m = long(modes.extent(1));
  std::vector<cfloat> flipped(size_t(k) * m * m);
  for (long a = 0; a < k; ++a)
    for (long row = 0; row < m; ++row)
      for (long c = 0; c < m; ++c) flipped[(size_t(a) * m + (m - 1 - row)) * m + c] = modes(a, row, c);
  H5Id cplx_mem = make_complex_type();
  H5Id cplx_file = make_complex64_file_type();
  f.write("/entry_1/result_2/data", cplx_mem.get(), cplx_file.get(), {hsize_t(k), hsize_t(m), hsize_t(m)},
          flipped.data());
  for (const char* group : {"/entry_1/result_1", "/entry_1/result_2"}) {
    f.write_scalar(std::string(group) + "/x_pixel_size", r.pixel_size_m);
    f.write_scalar(std::string(group) + "/y_pixel_size", r.pixel_size_m);
    f.write_string(std::string(group) + "/data_space", "real");
  }
  f.write_string("/entry_1/result_1/data_type", "electron density");
  f.write_attribute("/entry_1/result_1/data", "rows", "upside down (PyNX): /entry_1/image_1/data is the object");
  f.write_attribute("/entry_1/result_2/data", "rows", "upside down (PyNX): /entry_1/image_2/data are the modes");
  check_h5(H5Lcreate_soft("/entry_1/result_1", f.id(), "/entry_1/object", H5P_DEFAULT, H5P_DEFAULT),
           context + " /entry_1/object");
  check_h5(H5Lcreate_soft("/entry_1/result_2", f.id(), "/entry_1/probe", H5P_DEFAULT, H5P_DEFAULT),
           context + " /entry_1/probe");
}

void write_small_datasets(const std::string& temp, const std::string& path, const ResultData& r) {
  H5File f = H5File::open_write(temp, path);
  const std::string context = f.where("cannot write");
  H5Id cplx_mem = make_complex_type();
  H5Id cplx_file = make_complex64_file_type();

  const std::vector<hsize_t> pos_dims = {hsize_t(r.positions.size()), 2};
  f.write(kPositionsPath, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, pos_dims, r.positions.data());
  f.write_attribute(kPositionsPath, "units", "object pixels (row, col)");

  f.write_scalar(kPixelSizePath, r.pixel_size_m);
  f.write_attribute(kPixelSizePath, "units", "m");

  // The probe modes, contiguous (K, M, M).
  const HostCView3& p = r.probe_modes;
  HostCView3 modes(Kokkos::view_alloc(std::string("ptycho::probe_modes_out"), Kokkos::WithoutInitializing), p.extent(0),
                   p.extent(1), p.extent(2));
  Kokkos::deep_copy(modes, p);
  f.write(kProbePath, cplx_mem.get(), cplx_file.get(),
          {hsize_t(p.extent(0)), hsize_t(p.extent(1)), hsize_t(p.extent(2))}, modes.data());
  write_pynx_layout(f, r, modes);

  const ProcessInfo& pi = r.process;
  const std::string proc = kProcessPath;
  f.write_string(proc + "/program", pi.program);
  f.write_string(proc + "/version", pi.version);
  f.write_string(proc + "/command_line", pi.command_line);
  f.write_string(proc + "/configuration", pi.configuration);
  f.write(proc + "/cost_history", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(pi.cost_history.size())},
          pi.cost_history.data());
  f.write_strings(proc + "/engine_history", pi.engine_history);
  for (const auto& kv : pi.metrics) f.write_scalar(proc + "/" + kv.first, kv.second);
  for (const auto& kv : pi.notes) f.write_string(proc + "/" + kv.first, kv.second);
  if (r.background.size() > 0) {
    HostRView2 bg(Kokkos::view_alloc(std::string("ptycho::background_out"), Kokkos::WithoutInitializing),
                  r.background.extent(0), r.background.extent(1));
    Kokkos::deep_copy(bg, r.background);
    f.write(proc + "/background", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, {hsize_t(bg.extent(0)), hsize_t(bg.extent(1))},
            bg.data());
    f.write_attribute(proc + "/background", "units", "counts per pixel and frame");
  }
  if (r.energy_j > 0 && r.distance_m > 0) write_ptychodus_product(f, r);
  f.close();
}

}  // namespace

void write_result(MPI_Comm comm, const std::string& path, const ResultData& result) {
  silence_hdf5_errors();
  const int rank = detail::comm_rank(comm);
  const int size = detail::comm_size(comm);

  // Validate this rank's part, then that the tiles of all ranks tile the object.
  const HostCView2& tile = result.object_tile;
  collectively(comm, [&] {
    check_result(result, rank == 0);
    PTYCHO_THROW_IF(tile.extent(0) > 0 && tile.extent(1) > 0 && tile.extent(1) > size_t(tile.stride(0)),
                    "write_result: the tile's row stride is smaller than its width");
  });
  const RankLayout& layout = result.layout;
  TileRect mine{layout.owned.row0,    layout.owned.col0,  long(tile.extent(0)),
                long(tile.extent(1)), layout.object_rows, layout.object_cols};
  std::vector<TileRect> tiles(size);
  check_mpi(MPI_Allgather(&mine, int(sizeof(TileRect)), MPI_BYTE, tiles.data(), int(sizeof(TileRect)), MPI_BYTE, comm),
            "MPI_Allgather");
  collectively(comm, [&] { check_tiling(tiles); });

  // One temporary name for all ranks, chosen by rank 0.
  const std::string temp = detail::shared_temporary_path(comm, path);

  try {
    // The object, collectively from the tiles.
    collectively(comm, [&] {
      H5File f = H5File::create_parallel(comm, temp, path);
      const std::string context = f.where(std::string("cannot write ") + kObjectPath);
      H5Id file_space;
      H5Id dset = create_complex_dataset(f, kObjectPath, {hsize_t(layout.object_rows), hsize_t(layout.object_cols)},
                                         file_space);
      H5Id mem_space;
      const cfloat* buffer = nullptr;
      static const cfloat dummy{};
      if (mine.rows > 0 && mine.cols > 0) {
        const hsize_t start[2] = {hsize_t(mine.row0), hsize_t(mine.col0)};
        const hsize_t count[2] = {hsize_t(mine.rows), hsize_t(mine.cols)};
        check_h5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), context);
        // Memory: (rows, row stride) with the first `cols` columns selected.
        const hsize_t mdims[2] = {hsize_t(mine.rows), hsize_t(tile.stride(0))};
        mem_space = checked_id(H5Screate_simple(2, mdims, nullptr), context);
        const hsize_t zero[2] = {0, 0};
        check_h5(H5Sselect_hyperslab(mem_space.get(), H5S_SELECT_SET, zero, nullptr, count, nullptr), context);
        buffer = tile.data();
      } else {
        check_h5(H5Sselect_none(file_space.get()), context);
        const hsize_t mdims[2] = {1, 1};
        mem_space = checked_id(H5Screate_simple(2, mdims, nullptr), context);
        check_h5(H5Sselect_none(mem_space.get()), context);
        buffer = &dummy;
      }
      write_complex_collectively(dset, mem_space.get(), file_space.get(), buffer, context);
      write_pynx_object(f, layout, mine, tile);
      f.close();
    });
    // The small datasets, then the rename, by rank 0.
    collectively(comm, [&] {
      if (rank != 0) return;
      write_small_datasets(temp, path, result);
      if (std::rename(temp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        PTYCHO_INPUT_ERROR_IF(true, path << ": cannot move the finished file into place: " << std::strerror(err));
      }
    });
  } catch (...) {
    if (rank == 0) std::remove(temp.c_str());
    throw;
  }
}

bool is_result(const std::string& path) {
  silence_hdf5_errors();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || H5Fis_hdf5(path.c_str()) <= 0) return false;
  H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  return f && path_exists(f.get(), kObjectPath) && !path_exists(f.get(), "/entry_1/data_1");
}

ResultData read_result(const std::string& path) {
  silence_hdf5_errors();
  H5File f = H5File::open_read(path);
  ResultData r;
  {
    std::vector<hsize_t> dims;
    const std::vector<cfloat> obj = f.read_complex(kObjectPath, dims);
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2 && dims.size() != 3, path << ": " << kObjectPath << " has " << dims.size()
                                                                     << " dimensions, expected (H, W) or (S, H, W)");
    const size_t h = dims[dims.size() - 2], w = dims[dims.size() - 1];
    r.layout = RankLayout::whole(long(h), long(w), 0, 0);
    r.object_tile = HostCView2(Kokkos::view_alloc(std::string("ptycho::object"), Kokkos::WithoutInitializing), h, w);
    std::copy(obj.begin(), obj.begin() + h * w, r.object_tile.data());
  }
  if (f.exists(kPositionsPath)) {
    std::vector<hsize_t> dims;
    const std::vector<double> v = f.read_doubles(kPositionsPath, &dims);
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2 || dims[1] != 2,
                          path << ": " << kPositionsPath << " should have shape (N, 2)");
    r.positions.resize(dims[0]);
    for (size_t j = 0; j < dims[0]; ++j) r.positions[j] = Position{v[2 * j], v[2 * j + 1]};
  }
  if (f.exists(kProbePath)) {
    std::vector<hsize_t> dims;
    const std::vector<cfloat> v = f.read_complex(kProbePath, dims);
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2 && dims.size() != 3,
                          path << ": " << kProbePath << " should have shape (K, M, M)");
    if (dims.size() == 2) dims.insert(dims.begin(), 1);
    r.probe_modes = HostCView3(Kokkos::view_alloc(std::string("ptycho::probe_modes"), Kokkos::WithoutInitializing),
                               dims[0], dims[1], dims[2]);
    std::copy(v.begin(), v.end(), r.probe_modes.data());
  }
  r.layout = RankLayout::whole(r.layout.object_rows, r.layout.object_cols, long(r.positions.size()),
                               int(r.probe_modes.extent(1)));
  if (f.exists(kPixelSizePath)) r.pixel_size_m = f.read_scalar(kPixelSizePath);
  // The geometry and the grid's offset (results written since they were added).
  if (f.exists("/entry_1/instrument_1/source_1/energy"))
    r.energy_j = f.read_scalar("/entry_1/instrument_1/source_1/energy");
  if (f.exists("/entry_1/instrument_1/detector_1/distance"))
    r.distance_m = f.read_scalar("/entry_1/instrument_1/detector_1/distance");
  if (f.exists("/entry_1/image_1/grid_offset_px")) {
    const std::vector<double> o = f.read_doubles("/entry_1/image_1/grid_offset_px");
    if (o.size() == 2) {
      r.grid_offset_row = o[0];
      r.grid_offset_col = o[1];
    }
  }
  if (const auto name = f.string_attribute("/", "name")) r.name = *name;
  if (f.exists(kProcessPath)) {
    ProcessInfo& pi = r.process;
    const std::string proc = kProcessPath;
    auto opt_string = [&](const char* name, std::string& out) {
      if (f.exists(proc + "/" + name)) out = f.read_string(proc + "/" + name);
    };
    opt_string("program", pi.program);
    opt_string("version", pi.version);
    opt_string("command_line", pi.command_line);
    opt_string("configuration", pi.configuration);
    if (f.exists(proc + "/cost_history")) pi.cost_history = f.read_doubles(proc + "/cost_history");
    if (f.exists(proc + "/engine_history")) pi.engine_history = f.read_strings(proc + "/engine_history");
    if (f.exists(proc + "/background")) {
      std::vector<hsize_t> dims;
      const std::vector<double> v = f.read_doubles(proc + "/background", &dims);
      PTYCHO_INPUT_ERROR_IF(dims.size() != 2, path << ": " << proc << "/background should have shape (M, M)");
      r.background = HostRView2("ptycho::background", dims[0], dims[1]);
      for (size_t i = 0; i < v.size(); ++i) r.background.data()[i] = float(v[i]);
    }
    const std::vector<std::string> names = f.members(kProcessPath);
    for (const std::string& name : names) {
      if (kProcessEntries.count(name)) continue;
      const std::string p = proc + "/" + name;
      H5Id dset(H5Dopen2(f.id(), p.c_str(), H5P_DEFAULT));
      if (!dset) continue;  // a group or something else: not ours
      H5Id type = checked_id(H5Dget_type(dset.get()), f.where("cannot read " + p));
      const H5T_class_t cls = H5Tget_class(type.get());
      const std::vector<hsize_t> dims = f.extents(dset.get(), p);
      hsize_t count = 1;
      for (hsize_t d : dims) count *= d;
      if (count != 1) continue;
      if (cls == H5T_INTEGER || cls == H5T_FLOAT) pi.metrics[name] = f.read_scalar(p);
      if (cls == H5T_STRING) pi.notes[name] = f.read_string(p);
    }
  }
  f.close();
  return r;
}

}  // namespace ptycho::io
