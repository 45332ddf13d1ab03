#include "ptycho/io/analysis_file.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "ptycho/io/mpi_detail.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace ptycho::io {

namespace {

using detail::collectively;

constexpr const char* kObjectPath = "/entry_1/image_1/data";
constexpr const char* kPositionsPath = "/entry_1/image_1/positions_px";
constexpr const char* kPixelSizePath = "/entry_1/image_1/pixel_size";
constexpr const char* kProbePath = "/entry_1/image_2/data";

/// Removes the link `path` if it exists (its space is not reclaimed; HDF5 cannot).
void unlink_if_exists(hid_t file, const std::string& path, const std::string& context) {
  if (path_exists(file, path)) check_h5(H5Ldelete(file, path.c_str(), H5P_DEFAULT), context);
}

}  // namespace

ResultHeader read_result_header(const std::string& path) {
  silence_hdf5_errors();
  H5File f = H5File::open_read(path);
  PTYCHO_INPUT_ERROR_IF(!f.exists(kObjectPath), path << ": " << kObjectPath << " does not exist (not a ptycho result)");
  ResultHeader h;
  {
    H5Id d = f.open_dataset(kObjectPath);
    const std::vector<hsize_t> dims = f.extents(d.get(), kObjectPath);
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2 && !(dims.size() == 3 && dims[0] >= 1),
                          path << ": " << kObjectPath << " has " << dims.size()
                               << " dimensions, expected (H, W) or (S, H, W)");
    h.rows = long(dims[dims.size() - 2]);
    h.cols = long(dims[dims.size() - 1]);
  }
  if (f.exists(kPositionsPath)) {
    std::vector<hsize_t> dims;
    const std::vector<double> v = f.read_doubles(kPositionsPath, &dims);
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2 || dims[1] != 2,
                          path << ": " << kPositionsPath << " should have shape (N, 2)");
    for (size_t j = 0; j < dims[0]; ++j) {
      PTYCHO_INPUT_ERROR_IF(!std::isfinite(v[2 * j]) || !std::isfinite(v[2 * j + 1]),
                            path << ": " << kPositionsPath << ": position " << j << " is not finite");
      h.positions.push_back(Position{v[2 * j], v[2 * j + 1]});
    }
  }
  if (f.exists(kPixelSizePath)) h.pixel_size_m = f.read_scalar(kPixelSizePath);
  PTYCHO_INPUT_ERROR_IF(!(h.pixel_size_m >= 0) || !std::isfinite(h.pixel_size_m),
                        path << ": " << kPixelSizePath << " is " << h.pixel_size_m << ", not a pixel size");
  if (f.exists(kProbePath)) {
    H5Id d = f.open_dataset(kProbePath);
    const std::vector<hsize_t> dims = f.extents(d.get(), kProbePath);
    if (!dims.empty()) h.frame_size = long(dims.back());
  }
  return h;
}

void read_object_rows(MPI_Comm comm, const std::string& path, long row0, long rows, long cols, cfloat* out) {
  silence_hdf5_errors();
  collectively(comm, [&] {
    H5File f = H5File::open_read_parallel(comm, path);
    const std::string context = f.where(std::string("cannot read ") + kObjectPath);
    {  // every identifier closed before the file
    H5Id d = f.open_dataset(kObjectPath);
    const std::vector<hsize_t> dims = f.extents(d.get(), kObjectPath);
    const size_t nd = dims.size();
    PTYCHO_INPUT_ERROR_IF((nd != 2 && nd != 3) || long(dims[nd - 1]) != cols || long(dims[nd - 2]) < row0 + rows,
                          path << ": " << kObjectPath << " is not the object its header describes");
    H5Id file_space = checked_id(H5Dget_space(d.get()), context);
    H5Id mem_type = make_complex_type();
    static cfloat dummy{};
    H5Id mem_space;
    if (rows > 0) {
      hsize_t start[3] = {0, hsize_t(row0), 0}, count[3] = {1, hsize_t(rows), hsize_t(cols)};
      const int off = nd == 3 ? 0 : 1;
      check_h5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start + off, nullptr, count + off, nullptr),
               context);
      const hsize_t mdims[2] = {hsize_t(rows), hsize_t(cols)};
      mem_space = checked_id(H5Screate_simple(2, mdims, nullptr), context);
    } else {
      check_h5(H5Sselect_none(file_space.get()), context);
      const hsize_t mdims[1] = {1};
      mem_space = checked_id(H5Screate_simple(1, mdims, nullptr), context);
      check_h5(H5Sselect_none(mem_space.get()), context);
    }
    H5Id dxpl = checked_id(H5Pcreate(H5P_DATASET_XFER), context);
    check_h5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), context);
    check_h5(H5Dread(d.get(), mem_type.get(), mem_space.get(), file_space.get(), dxpl.get(), rows > 0 ? out : &dummy),
             context);
    }
    f.close();
  });
}

void add_to_result(MPI_Comm comm, const std::string& path, long rows, long cols, const std::vector<SlabField>& fields,
                   const std::vector<AnalysisRecord>& records) {
  silence_hdf5_errors();
  const int rank = detail::comm_rank(comm);
  const std::string temp = detail::shared_temporary_path(comm, path);
  try {
    collectively(comm, [&] {
      if (rank != 0) return;
      std::error_code ec;
      std::filesystem::copy_file(path, temp, std::filesystem::copy_options::overwrite_existing, ec);
      PTYCHO_INPUT_ERROR_IF(ec, path << ": cannot copy it to add the analysis (" << temp << "): " << ec.message());
    });
    collectively(comm, [&] {
      H5File f = H5File::open_write_parallel(comm, temp, path);
      for (const SlabField& field : fields) {
        const std::string context = f.where("cannot write " + field.path);
        unlink_if_exists(f.id(), field.path, context);
        H5Id mem_type = field.complex_data ? make_complex_type() : H5Id(H5Tcopy(H5T_NATIVE_FLOAT));
        H5Id file_type = field.complex_data ? make_complex64_file_type() : H5Id(H5Tcopy(H5T_IEEE_F32LE));
        const hsize_t dims[2] = {hsize_t(rows), hsize_t(cols)};
        H5Id file_space = checked_id(H5Screate_simple(2, dims, nullptr), context);
        H5Id lcpl = checked_id(H5Pcreate(H5P_LINK_CREATE), context);
        check_h5(H5Pset_create_intermediate_group(lcpl.get(), 1), context);
        H5Id dset = checked_id(H5Dcreate2(f.id(), field.path.c_str(), file_type.get(), file_space.get(), lcpl.get(),
                                          H5P_DEFAULT, H5P_DEFAULT),
                               f.where("cannot create " + field.path));
        static const cfloat dummy{};
        H5Id mem_space;
        const void* buffer = &dummy;
        if (field.rows > 0) {
          const hsize_t start[2] = {hsize_t(field.row0), 0}, count[2] = {hsize_t(field.rows), hsize_t(cols)};
          check_h5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), context);
          mem_space = checked_id(H5Screate_simple(2, count, nullptr), context);
          buffer = field.complex_data ? static_cast<const void*>(field.complex_data) : field.real_data;
        } else {
          check_h5(H5Sselect_none(file_space.get()), context);
          const hsize_t one[1] = {1};
          mem_space = checked_id(H5Screate_simple(1, one, nullptr), context);
          check_h5(H5Sselect_none(mem_space.get()), context);
        }
        H5Id dxpl = checked_id(H5Pcreate(H5P_DATASET_XFER), context);
        check_h5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), context);
        check_h5(H5Dwrite(dset.get(), mem_type.get(), mem_space.get(), file_space.get(), dxpl.get(), buffer), context);
        check_h5(dset.close(), context);
        for (const auto& [name, value] : field.attributes) f.write_attribute(field.path, name, value);
      }
      f.close();
    });
    collectively(comm, [&] {
      if (rank != 0) return;
      H5File f = H5File::open_write(temp, path);
      for (const AnalysisRecord& r : records) {
        const std::string context = f.where("cannot write " + r.group);
        unlink_if_exists(f.id(), r.group, context);
        f.create_group(r.group);
        for (const auto& [name, v] : r.scalars) f.write_scalar(r.group + "/" + name, v);
        for (const auto& [name, v] : r.strings) f.write_string(r.group + "/" + name, v);
        for (const auto& [name, v] : r.arrays)
          f.write(r.group + "/" + name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(v.size())}, v.data());
      }
      f.close();
      if (std::rename(temp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        PTYCHO_INPUT_ERROR_IF(true, path << ": cannot move the analysed file into place: " << std::strerror(err));
      }
    });
  } catch (...) {
    if (rank == 0) std::remove(temp.c_str());
    throw;
  }
}

}  // namespace ptycho::io
