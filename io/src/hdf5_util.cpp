#include "ptycho/io/hdf5_util.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

namespace ptycho::io {

std::string shape_string(const std::vector<hsize_t>& dims) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  if (dims.size() == 1) os << ",";
  os << ")";
  return os.str();
}

namespace {

hsize_t element_count(const std::vector<hsize_t>& dims) {
  hsize_t n = 1;
  for (hsize_t d : dims) n *= d;
  return n;
}

/// The element count of dataset `dset` (shape `dims`) before it is read into
/// memory, checked against what the file stores: a damaged header may claim
/// a shape whose product overflows, or gigabytes the file does not hold
/// (found by tests/fuzz/fuzz_cxi_header). Chunked data may expand (gzip: at
/// most about 1032 to 1; unwritten chunks are the fill value), other layouts
/// may not; either may add 1 MiB of fill. Throws InputError naming `file: path`.
hsize_t stored_element_count(hid_t dset, const std::vector<hsize_t>& dims, const std::string& file,
                             const std::string& path) {
  hsize_t n = 1;
  for (hsize_t d : dims) {
    PTYCHO_INPUT_ERROR_IF(d != 0 && n > ~hsize_t(0) / d,
                          file << ": " << path << " has shape " << shape_string(dims) << ": too many elements");
    n *= d;
  }
  if (n == 0) return 0;
  H5Id type(H5Dget_type(dset));
  H5Id dcpl(H5Dget_create_plist(dset));
  const long double claimed = (long double)n * (type ? H5Tget_size(type.get()) : 1);
  const hsize_t stored = H5Dget_storage_size(dset);
  const bool chunked = dcpl && H5Pget_layout(dcpl.get()) == H5D_CHUNKED;
  const long double limit = (chunked ? 1100.0L : 1.0L) * stored + (1 << 20);
  PTYCHO_INPUT_ERROR_IF(claimed > limit, file << ": " << path << " has shape " << shape_string(dims) << " ("
                                              << double(claimed) << " bytes) but the file stores " << stored
                                              << " bytes of it (a damaged file?)");
  return n;
}

/// The element count of dataset `dset` about to be read whole into memory:
/// checked against what the file stores (stored_element_count), then its
/// `bytes` per element against the memory this machine has available, so a
/// file that declares a dataset larger than memory is refused before
/// anything is allocated.
hsize_t count_to_read(hid_t dset, const std::vector<hsize_t>& dims, double bytes, const std::string& file,
                      const std::string& path) {
  const hsize_t n = stored_element_count(dset, dims, file, path);
  const double total = bytes * double(n);
  const double available = available_memory_bytes();
  PTYCHO_INPUT_ERROR_IF(available > 0 && total > available,
                        file << ": " << path << " has shape " << shape_string(dims) << ", " << format_bytes(total)
                             << " to read, more than the " << format_bytes(available)
                             << " of memory this machine has available");
  return n;
}

herr_t walk_innermost(unsigned n, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (n != 0 || !err) return 0;
  if (err->desc && *err->desc) {
    *out = err->desc;
  } else {
    char buf[256] = {0};
    if (H5Eget_msg(err->min_num, nullptr, buf, sizeof(buf)) > 0) *out = buf;
  }
  return 0;
}

/// Link creation property list that creates missing parent groups.
H5Id intermediate_lcpl(const std::string& context) {
  H5Id lcpl = checked_id(H5Pcreate(H5P_LINK_CREATE), context);
  check_h5(H5Pset_create_intermediate_group(lcpl.get(), 1), context);
  return lcpl;
}

/// MPI-IO file access. For files being written, metadata is also read by one
/// rank and broadcast, and written collectively: every metadata operation on
/// such a file must then be made by all ranks. Files being read keep
/// independent metadata reads, so that ranks may read different amounts
/// independently.
H5Id parallel_fapl(MPI_Comm comm, bool collective_metadata, const std::string& context) {
  H5Id fapl = checked_id(H5Pcreate(H5P_FILE_ACCESS), context);
  check_h5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), context);
  if (collective_metadata) {
    check_h5(H5Pset_all_coll_metadata_ops(fapl.get(), 1), context);
    check_h5(H5Pset_coll_metadata_write(fapl.get(), 1), context);
  }
  return fapl;
}

/// Memory type for reading strings of file type `ftype`: variable or fixed.
H5Id string_mem_type(hid_t ftype, const std::string& context) {
  H5Id mtype = checked_id(H5Tcopy(H5T_C_S1), context);
  const htri_t vl = H5Tis_variable_str(ftype);
  check_h5(vl, context);
  check_h5(H5Tset_size(mtype.get(), vl > 0 ? H5T_VARIABLE : H5Tget_size(ftype)), context);
  check_h5(H5Tset_cset(mtype.get(), H5Tget_cset(ftype)), context);
  check_h5(H5Tset_strpad(mtype.get(), vl > 0 ? H5T_STR_NULLTERM : H5Tget_strpad(ftype)), context);
  return mtype;
}

/// Strings of `n` elements read from a dataset or attribute into a buffer.
std::vector<std::string> unpack_strings(hid_t ftype, std::vector<char>& fixed, std::vector<char*>& vl, size_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  if (H5Tis_variable_str(ftype) > 0) {
    for (size_t i = 0; i < n; ++i) out.emplace_back(vl[i] ? vl[i] : "");
  } else {
    const size_t size = H5Tget_size(ftype);
    for (size_t i = 0; i < n; ++i) {
      const char* s = fixed.data() + i * size;
      std::string str(s, strnlen(s, size));
      while (!str.empty() && str.back() == ' ') str.pop_back();  // space-padded (Fortran) strings
      out.push_back(std::move(str));
    }
  }
  return out;
}

}  // namespace

void H5Id::reset() {
  if (m_id < 0) return;
  close();
}

herr_t H5Id::close() {
  if (m_id < 0) return 0;
  herr_t status = 0;
  switch (H5Iget_type(m_id)) {
    case H5I_FILE:
      status = H5Fclose(m_id);
      break;
    case H5I_GROUP:
      status = H5Gclose(m_id);
      break;
    case H5I_DATASET:
      status = H5Dclose(m_id);
      break;
    case H5I_DATASPACE:
      status = H5Sclose(m_id);
      break;
    case H5I_DATATYPE:
      status = H5Tclose(m_id);
      break;
    case H5I_ATTR:
      status = H5Aclose(m_id);
      break;
    case H5I_GENPROP_LST:
      status = H5Pclose(m_id);
      break;
    default:
      status = H5Oclose(m_id);
      break;
  }
  m_id = H5I_INVALID_HID;
  return status;
}

namespace {
/// Debian's hdf5-filter-plugin (LZ4, BZip2) installs its filters for the
/// serial HDF5 only; bitshuffle installs for both. The serial folder is
/// searched after the default one unless HDF5_PLUGIN_PATH says otherwise.
constexpr const char* kSerialPluginFolder = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins";
}  // namespace

void silence_hdf5_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  static const bool plugins = [] {
    std::error_code ec;
    if (std::getenv("HDF5_PLUGIN_PATH") == nullptr && std::filesystem::is_directory(kSerialPluginFolder, ec))
      H5PLappend(kSerialPluginFolder);
    return true;
  }();
  (void)plugins;
}

bool path_exists(hid_t file, const std::string& path) {
  // Walk the path one component at a time: H5Lexists fails on a missing parent.
  std::string partial;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += "/" + part;
    if (H5Lexists(file, partial.c_str(), H5P_DEFAULT) <= 0) return false;
    if (H5Oexists_by_name(file, partial.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

std::string hdf5_error_detail() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, &out);
  return out;
}

void throw_hdf5_error(const std::string& context) {
  const std::string detail = hdf5_error_detail();
  throw InputError(detail.empty() ? context : context + ": " + detail);
}

H5Id checked_id(hid_t id, const std::string& context) {
  if (id < 0) throw_hdf5_error(context);
  return H5Id(id);
}

H5Id make_complex_type(bool double_precision) {
  const size_t size = double_precision ? sizeof(double) : sizeof(float);
  const hid_t member = double_precision ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
  const std::string context = "cannot make the complex compound type";
  H5Id type = checked_id(H5Tcreate(H5T_COMPOUND, 2 * size), context);
  check_h5(H5Tinsert(type.get(), "r", 0, member), context);
  check_h5(H5Tinsert(type.get(), "i", size, member), context);
  return type;
}

H5Id make_complex64_file_type() {
  const std::string context = "cannot make the complex64 file type";
  H5Id type = checked_id(H5Tcreate(H5T_COMPOUND, 8), context);
  check_h5(H5Tinsert(type.get(), "r", 0, H5T_IEEE_F32LE), context);
  check_h5(H5Tinsert(type.get(), "i", 4, H5T_IEEE_F32LE), context);
  return type;
}

std::string type_name(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      return std::string(is_signed ? "int" : "uint") + std::to_string(8 * H5Tget_size(type));
    }
    case H5T_FLOAT:
      return "float" + std::to_string(8 * H5Tget_size(type));
    case H5T_STRING:
      return "string";
    case H5T_ENUM:
      return "enum";
    case H5T_COMPOUND: {
      if (H5Tget_nmembers(type) == 2) {
        H5Id m0(H5Tget_member_type(type, 0));
        H5Id m1(H5Tget_member_type(type, 1));
        if (m0 && m1 && H5Tget_class(m0.get()) == H5T_FLOAT && H5Tget_class(m1.get()) == H5T_FLOAT)
          return "complex" + std::to_string(8 * H5Tget_size(type));
      }
      return "compound";
    }
    default:
      return "non-numeric";
  }
}

// ----------------------------------------------------------------- H5File

H5File H5File::open_read(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::exists(status), path << ": no such file");
  PTYCHO_INPUT_ERROR_IF(std::filesystem::is_directory(status), path << ": is a directory, not an HDF5 file");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  PTYCHO_INPUT_ERROR_IF(is_hdf5 == 0, path << ": not an HDF5 file");
  if (is_hdf5 < 0) throw_hdf5_error(path + ": cannot be read");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw_hdf5_error(path + ": cannot be opened as HDF5 (truncated or damaged?)");
  return H5File(H5Id(id), path);
}

H5File H5File::open_read_parallel(MPI_Comm comm, const std::string& path) {
  H5Id fapl = parallel_fapl(comm, false, path + ": cannot set up parallel access");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0) throw_hdf5_error(path + ": cannot be opened as HDF5 (truncated or damaged?)");
  return H5File(H5Id(id), path);
}

H5File H5File::open_write(const std::string& path, const std::string& display_name) {
  const std::string name = display_name.empty() ? path : display_name;
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) throw_hdf5_error(name + ": cannot be opened for writing");
  return H5File(H5Id(id), name);
}

H5File H5File::open_write_parallel(MPI_Comm comm, const std::string& path, const std::string& display_name) {
  const std::string name = display_name.empty() ? path : display_name;
  H5Id fapl = parallel_fapl(comm, true, name + ": cannot set up parallel access");
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
  if (id < 0) throw_hdf5_error(name + ": cannot be opened for writing");
  return H5File(H5Id(id), name);
}

H5File H5File::create(const std::string& path, const std::string& display_name) {
  const std::string name = display_name.empty() ? path : display_name;
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw_hdf5_error(name + ": cannot be created");
  return H5File(H5Id(id), name);
}

H5File H5File::create_parallel(MPI_Comm comm, const std::string& path, const std::string& display_name) {
  const std::string name = display_name.empty() ? path : display_name;
  H5Id fapl = parallel_fapl(comm, true, name + ": cannot set up parallel access");
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) throw_hdf5_error(name + ": cannot be created");
  return H5File(H5Id(id), name);
}

void H5File::close() {
  if (!m_file) return;
  if (m_file.close() < 0) throw_hdf5_error(m_name + ": cannot be closed (data may not have been written)");
}

H5Id H5File::open_object(const std::string& path) const {
  PTYCHO_INPUT_ERROR_IF(!exists(path), m_name << ": " << path << " does not exist");
  return checked_id(H5Oopen(id(), path.c_str(), H5P_DEFAULT), where("cannot open " + path));
}

namespace {
herr_t collect_member_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> H5File::members(const std::string& path) const {
  H5Id obj = open_object(path);
  PTYCHO_INPUT_ERROR_IF(H5Iget_type(obj.get()) != H5I_GROUP, m_name << ": " << path << " is not a group");
  std::vector<std::string> names;
  check_h5(H5Literate(obj.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_member_name, &names),
           where("cannot list " + path));
  return names;
}

bool H5File::is_group(const std::string& path) const {
  if (!exists(path)) return false;
  H5Id obj(H5Oopen(id(), path.c_str(), H5P_DEFAULT));
  return obj && H5Iget_type(obj.get()) == H5I_GROUP;
}

H5Id H5File::open_dataset(const std::string& path) const {
  H5Id obj = open_object(path);
  PTYCHO_INPUT_ERROR_IF(H5Iget_type(obj.get()) != H5I_DATASET, m_name << ": " << path << " is not a dataset");
  return obj;
}

std::vector<hsize_t> H5File::extents(hid_t dset, const std::string& path) const {
  H5Id space = checked_id(H5Dget_space(dset), where("cannot get the shape of " + path));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  check_h5(rank, where("cannot get the shape of " + path));
  std::vector<hsize_t> dims(rank);
  if (rank > 0)
    check_h5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), where("cannot get the shape of " + path));
  return dims;
}

std::vector<double> H5File::read_doubles(const std::string& path, std::vector<hsize_t>* dims_out) const {
  H5Id dset = open_dataset(path);
  H5Id type = checked_id(H5Dget_type(dset.get()), where("cannot get the type of " + path));
  const H5T_class_t cls = H5Tget_class(type.get());
  PTYCHO_INPUT_ERROR_IF(cls != H5T_INTEGER && cls != H5T_FLOAT,
                        m_name << ": " << path << " holds " << type_name(type.get()) << " values, expected numbers");
  const std::vector<hsize_t> dims = extents(dset.get(), path);
  std::vector<double> values(count_to_read(dset.get(), dims, sizeof(double), m_name, path));
  if (!values.empty())
    check_h5(H5Dread(dset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
             where("cannot read " + path));
  if (dims_out) *dims_out = dims;
  return values;
}

double H5File::read_scalar(const std::string& path) const {
  std::vector<hsize_t> dims;
  const std::vector<double> v = read_doubles(path, &dims);
  PTYCHO_INPUT_ERROR_IF(v.size() != 1,
                        m_name << ": " << path << " should hold one value but has shape " << shape_string(dims));
  return v[0];
}

std::string H5File::read_string(const std::string& path) const {
  const std::vector<std::string> v = read_strings(path);
  PTYCHO_INPUT_ERROR_IF(v.size() != 1, m_name << ": " << path << " should hold one string but holds " << v.size());
  return v[0];
}

std::vector<std::string> H5File::read_strings(const std::string& path) const {
  H5Id dset = open_dataset(path);
  const std::string context = where("cannot read " + path);
  H5Id ftype = checked_id(H5Dget_type(dset.get()), context);
  PTYCHO_INPUT_ERROR_IF(H5Tget_class(ftype.get()) != H5T_STRING,
                        m_name << ": " << path << " holds " << type_name(ftype.get()) << " values, expected strings");
  const std::vector<hsize_t> dims = extents(dset.get(), path);
  PTYCHO_INPUT_ERROR_IF(dims.size() > 1, m_name << ": " << path << " has shape " << shape_string(dims)
                                                << ", expected a string or a 1-D array of strings");
  const size_t n =
      count_to_read(dset.get(), dims, double(std::max<size_t>(sizeof(char*), H5Tget_size(ftype.get()))), m_name, path);
  H5Id mtype = string_mem_type(ftype.get(), context);
  std::vector<char> fixed;
  std::vector<char*> vl;
  if (n == 0) return {};
  if (H5Tis_variable_str(ftype.get()) > 0) {
    vl.assign(n, nullptr);
    check_h5(H5Dread(dset.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, vl.data()), context);
    std::vector<std::string> out = unpack_strings(ftype.get(), fixed, vl, n);
    H5Id space = checked_id(H5Dget_space(dset.get()), context);
    H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, vl.data());
    return out;
  }
  fixed.assign(n * H5Tget_size(ftype.get()), '\0');
  check_h5(H5Dread(dset.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed.data()), context);
  return unpack_strings(ftype.get(), fixed, vl, n);
}

std::optional<std::string> H5File::string_attribute(const std::string& path, const std::string& attr) const {
  if (!exists(path)) return std::nullopt;
  if (H5Aexists_by_name(id(), path.c_str(), attr.c_str(), H5P_DEFAULT) <= 0) return std::nullopt;
  const std::string context = where("cannot read attribute " + attr + " of " + path);
  H5Id a = checked_id(H5Aopen_by_name(id(), path.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), context);
  H5Id ftype = checked_id(H5Aget_type(a.get()), context);
  if (H5Tget_class(ftype.get()) != H5T_STRING) return std::nullopt;
  H5Id space = checked_id(H5Aget_space(a.get()), context);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n != 1) return std::nullopt;
  H5Id mtype = string_mem_type(ftype.get(), context);
  std::vector<char> fixed;
  std::vector<char*> vl;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    vl.assign(1, nullptr);
    check_h5(H5Aread(a.get(), mtype.get(), vl.data()), context);
    std::string out = unpack_strings(ftype.get(), fixed, vl, 1)[0];
    H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, vl.data());
    return out;
  }
  fixed.assign(H5Tget_size(ftype.get()), '\0');
  check_h5(H5Aread(a.get(), mtype.get(), fixed.data()), context);
  return unpack_strings(ftype.get(), fixed, vl, 1)[0];
}

std::optional<double> H5File::numeric_attribute(const std::string& path, const std::string& attr) const {
  if (!exists(path)) return std::nullopt;
  if (H5Aexists_by_name(id(), path.c_str(), attr.c_str(), H5P_DEFAULT) <= 0) return std::nullopt;
  const std::string context = where("cannot read attribute " + attr + " of " + path);
  H5Id a = checked_id(H5Aopen_by_name(id(), path.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), context);
  H5Id ftype = checked_id(H5Aget_type(a.get()), context);
  const H5T_class_t cls = H5Tget_class(ftype.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) return std::nullopt;
  H5Id space = checked_id(H5Aget_space(a.get()), context);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  double value = 0;
  check_h5(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &value), context);
  return value;
}

std::vector<cfloat> H5File::read_complex(const std::string& path, std::vector<hsize_t>& dims) const {
  H5Id dset = open_dataset(path);
  const std::string context = where("cannot read " + path);
  H5Id ftype = checked_id(H5Dget_type(dset.get()), context);
  dims = extents(dset.get(), path);
  const size_t count = count_to_read(dset.get(), dims, 3 * sizeof(float), m_name, path);
  const H5T_class_t cls = H5Tget_class(ftype.get());
  std::vector<cfloat> out;
  if (cls == H5T_COMPOUND) {
    // Map the members by name onto {float re, float im}, whatever the writer called them.
    const int nmembers = H5Tget_nmembers(ftype.get());
    PTYCHO_INPUT_ERROR_IF(nmembers != 2, m_name << ": " << path << " is a compound of " << nmembers
                                                << " members, expected a complex number {r, i}");
    std::string names[2];
    for (unsigned k = 0; k < 2; ++k) {
      char* name = H5Tget_member_name(ftype.get(), k);
      PTYCHO_INPUT_ERROR_IF(!name, m_name << ": " << path << ": cannot read the member names of its type");
      names[k] = name;
      H5free_memory(name);
      H5Id mt(H5Tget_member_type(ftype.get(), k));
      const H5T_class_t mc = mt ? H5Tget_class(mt.get()) : H5T_NO_CLASS;
      PTYCHO_INPUT_ERROR_IF(mc != H5T_FLOAT && mc != H5T_INTEGER, m_name << ": " << path << ": member " << names[k]
                                                                         << " of its compound type is not a number");
    }
    auto is_real = [](std::string s) {
      std::transform(s.begin(), s.end(), s.begin(), ::tolower);
      return s == "r" || s == "re" || s == "real";
    };
    auto is_imag = [](std::string s) {
      std::transform(s.begin(), s.end(), s.begin(), ::tolower);
      return s == "i" || s == "im" || s == "imag" || s == "imaginary";
    };
    int re = -1, im = -1;
    for (int k = 0; k < 2; ++k) {
      if (is_real(names[k])) re = k;
      if (is_imag(names[k])) im = k;
    }
    PTYCHO_INPUT_ERROR_IF(re < 0 || im < 0, m_name << ": " << path << " is a compound {" << names[0] << ", " << names[1]
                                                   << "}, expected a complex number {r, i}");
    H5Id mtype = checked_id(H5Tcreate(H5T_COMPOUND, sizeof(cfloat)), context);
    check_h5(H5Tinsert(mtype.get(), names[re].c_str(), 0, H5T_NATIVE_FLOAT), context);
    check_h5(H5Tinsert(mtype.get(), names[im].c_str(), sizeof(float), H5T_NATIVE_FLOAT), context);
    out.resize(count);
    if (!out.empty()) check_h5(H5Dread(dset.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), context);
    return out;
  }
  PTYCHO_INPUT_ERROR_IF(cls != H5T_INTEGER && cls != H5T_FLOAT, m_name << ": " << path << " holds "
                                                                       << type_name(ftype.get())
                                                                       << " values, expected complex numbers");
  std::vector<float> real(count);
  if (!real.empty())
    check_h5(H5Dread(dset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, real.data()), context);
  if (dims.size() >= 3 && dims.back() == 2) {
    // (..., 2): real and imaginary parts in the last dimension.
    dims.pop_back();
    out.resize(real.size() / 2);
    for (size_t k = 0; k < out.size(); ++k) out[k] = cfloat(real[2 * k], real[2 * k + 1]);
  } else {
    out.resize(real.size());
    for (size_t k = 0; k < out.size(); ++k) out[k] = cfloat(real[k], 0.0f);
  }
  return out;
}

void H5File::write(const std::string& path, hid_t mem_type, hid_t file_type, const std::vector<hsize_t>& dims,
                   const void* data, hid_t dcpl) {
  const std::string context = where("cannot write " + path);
  H5Id space = dims.empty()
                   ? checked_id(H5Screate(H5S_SCALAR), context)
                   : checked_id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), context);
  H5Id lcpl = intermediate_lcpl(context);
  H5Id dset = checked_id(H5Dcreate2(id(), path.c_str(), file_type, space.get(), lcpl.get(), dcpl, H5P_DEFAULT),
                         where("cannot create " + path));
  if (data && element_count(dims) > 0)
    check_h5(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), context);
  check_h5(dset.close(), context);
}

void H5File::write_scalar(const std::string& path, double value) {
  write(path, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {}, &value);
}

void H5File::write_scalar(const std::string& path, long value) {
  const long long v = value;
  write(path, H5T_NATIVE_LLONG, H5T_STD_I64LE, {}, &v);
}

namespace {
H5Id vl_string_type(const std::string& context) {
  H5Id type = checked_id(H5Tcopy(H5T_C_S1), context);
  check_h5(H5Tset_size(type.get(), H5T_VARIABLE), context);
  check_h5(H5Tset_cset(type.get(), H5T_CSET_UTF8), context);
  return type;
}
}  // namespace

void H5File::write_string(const std::string& path, const std::string& value) {
  H5Id type = vl_string_type(where("cannot write " + path));
  const char* p = value.c_str();
  write(path, type.get(), type.get(), {}, &p);
}

void H5File::write_strings(const std::string& path, const std::vector<std::string>& values) {
  H5Id type = vl_string_type(where("cannot write " + path));
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& s : values) ptrs.push_back(s.c_str());
  write(path, type.get(), type.get(), {static_cast<hsize_t>(values.size())}, ptrs.data());
}

void H5File::write_attribute(const std::string& path, const std::string& attr, double value) {
  const std::string context = where("cannot write attribute " + attr + " of " + path);
  H5Id space = checked_id(H5Screate(H5S_SCALAR), context);
  H5Id a = checked_id(H5Acreate_by_name(id(), path.c_str(), attr.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT,
                                        H5P_DEFAULT, H5P_DEFAULT),
                      context);
  check_h5(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value), context);
  check_h5(a.close(), context);
}

void H5File::write_attribute(const std::string& path, const std::string& attr, const std::string& value) {
  const std::string context = where("cannot write attribute " + attr + " of " + path);
  H5Id type = vl_string_type(context);
  H5Id space = checked_id(H5Screate(H5S_SCALAR), context);
  H5Id a = checked_id(H5Acreate_by_name(id(), path.c_str(), attr.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                        H5P_DEFAULT, H5P_DEFAULT),
                      context);
  const char* p = value.c_str();
  check_h5(H5Awrite(a.get(), type.get(), &p), context);
  check_h5(a.close(), context);
}

void H5File::soft_link(const std::string& target, const std::string& link_path) {
  const std::string context = where("cannot create the link " + link_path + " -> " + target);
  H5Id lcpl = intermediate_lcpl(context);
  check_h5(H5Lcreate_soft(target.c_str(), id(), link_path.c_str(), lcpl.get(), H5P_DEFAULT), context);
}

void H5File::create_group(const std::string& path) {
  if (exists(path)) return;
  const std::string context = where("cannot create the group " + path);
  H5Id lcpl = intermediate_lcpl(context);
  H5Id g = checked_id(H5Gcreate2(id(), path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), context);
  check_h5(g.close(), context);
}

}  // namespace ptycho::io
