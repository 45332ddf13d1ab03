#pragma once
/// Small RAII helpers over the HDF5 C API, used inside io/ only.
///
/// Every failing HDF5 call becomes a ptycho::InputError whose message names
/// the file, the object and what went wrong, followed by the most specific
/// message on HDF5's error stack, e.g.
/// `out.h5: cannot create /entry_1/image_1/data: No space left on device`.
/// Call silence_hdf5_errors() first so HDF5 prints nothing itself.
#include "ptycho/core/types.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

namespace ptycho::io {

/// Owns an HDF5 identifier and closes it with the right H5*close.
class H5Id {
 public:
  H5Id() = default;
  explicit H5Id(hid_t id) : m_id(id) {}
  ~H5Id() { reset(); }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  H5Id(H5Id&& o) noexcept : m_id(o.m_id) { o.m_id = H5I_INVALID_HID; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = o.m_id;
      o.m_id = H5I_INVALID_HID;
    }
    return *this;
  }
  hid_t get() const { return m_id; }
  explicit operator bool() const { return m_id >= 0; }
  /// Closes the identifier (errors ignored: use H5File::close() where a close must succeed).
  void reset();
  /// Closes the identifier and returns the status of the close.
  herr_t close();

 private:
  hid_t m_id = H5I_INVALID_HID;
};

/// A dataset's extents for messages: "(3, 64, 64)", "(5,)".
std::string shape_string(const std::vector<hsize_t>& dims);

/// Turns off HDF5's automatic error stack printing (we report our own errors).
/// The first call also adds Debian's serial filter-plugin folder to HDF5's
/// plugin search path, unless HDF5_PLUGIN_PATH is set.
void silence_hdf5_errors();

/// True if `path` (absolute, soft links followed) names an existing object.
bool path_exists(hid_t file, const std::string& path);

/// The most specific message on HDF5's current error stack, or "" if it is empty.
/// Call it right after the failing call: the next API call clears the stack.
std::string hdf5_error_detail();

/// Throws InputError `context: <HDF5 detail>`.
[[noreturn]] void throw_hdf5_error(const std::string& context);

/// Throws InputError `context: <HDF5 detail>` if `status` is negative.
inline void check_h5(herr_t status, const std::string& context) {
  if (status < 0) throw_hdf5_error(context);
}

/// Takes ownership of `id`; throws InputError `context: <HDF5 detail>` if it is invalid.
H5Id checked_id(hid_t id, const std::string& context);

/// A native compound {r, i} of two floats (or doubles): what h5py writes for
/// complex64 (complex128). Its layout matches ptycho::cfloat (cdouble).
H5Id make_complex_type(bool double_precision = false);

/// The file type of complex64: compound {r: float32 LE, i: float32 LE}.
H5Id make_complex64_file_type();

/// A short name of an HDF5 type for messages: float32, int32, uint16, complex64, string, ...
std::string type_name(hid_t type);

/// A file opened for serial or parallel access that remembers its name, so that
/// every helper can say which file and which object failed. Objects are named
/// by absolute paths; soft links are followed. Not copyable; closing is
/// explicit (close()) where success matters, as before renaming a written file.
class H5File {
 public:
  /// Opens an existing file read-only (serial, sec2 driver). Checks that the file
  /// exists, is a regular file and is HDF5 (`FILE: not an HDF5 file`).
  static H5File open_read(const std::string& path);
  /// Opens an existing file read-only with the MPI-IO driver on `comm` (collective).
  static H5File open_read_parallel(MPI_Comm comm, const std::string& path);
  /// Opens an existing file read-write (serial). `display_name` (default: `path`)
  /// is the name messages use, e.g. the target of a temporary file.
  static H5File open_write(const std::string& path, const std::string& display_name);
  /// Opens an existing file read-write with the MPI-IO driver on `comm`
  /// (collective; metadata operations collective too); `display_name` as for open_write.
  static H5File open_write_parallel(MPI_Comm comm, const std::string& path, const std::string& display_name);
  /// Creates (truncates) a file (serial); `display_name` as for open_write.
  static H5File create(const std::string& path, const std::string& display_name = "");
  /// Creates (truncates) a file with the MPI-IO driver on `comm` (collective).
  static H5File create_parallel(MPI_Comm comm, const std::string& path, const std::string& display_name = "");

  H5File(H5File&&) = default;
  H5File& operator=(H5File&&) = default;

  hid_t id() const { return m_file.get(); }
  /// The file name as given, used in messages.
  const std::string& name() const { return m_name; }
  /// `name(): what`, the prefix of every message about this file.
  std::string where(const std::string& what) const { return m_name + ": " + what; }

  /// Closes the file and throws if HDF5 could not flush and close it.
  void close();

  // ---- reading
  /// True if the absolute `path` names an existing object (soft links followed).
  bool exists(const std::string& path) const { return path_exists(id(), path); }
  /// The names of the members of the group at `path`, in name order; throws
  /// `FILE: PATH does not exist` or `... is not a group`.
  std::vector<std::string> members(const std::string& path) const;
  /// True if `path` names an existing group.
  bool is_group(const std::string& path) const;
  /// Opens the dataset at `path`; throws `FILE: PATH does not exist` or `... is not a dataset`.
  H5Id open_dataset(const std::string& path) const;
  /// The extents of dataset `dset` (opened from `path`, for messages); {} for a scalar.
  std::vector<hsize_t> extents(hid_t dset, const std::string& path) const;
  /// Reads a whole numeric dataset converted to double; `dims` receives its extents.
  std::vector<double> read_doubles(const std::string& path, std::vector<hsize_t>* dims = nullptr) const;
  /// Reads a numeric dataset holding exactly one value (scalar or one element).
  double read_scalar(const std::string& path) const;
  /// Reads a scalar or one-element string dataset (fixed or variable length).
  std::string read_string(const std::string& path) const;
  /// Reads a 1-D array of strings (or a scalar string, as one element).
  std::vector<std::string> read_strings(const std::string& path) const;
  /// The string attribute `attr` of the object at `path`, if it exists and is a string.
  std::optional<std::string> string_attribute(const std::string& path, const std::string& attr) const;
  /// The numeric attribute `attr` of the object at `path` (one value), if it exists.
  std::optional<double> numeric_attribute(const std::string& path, const std::string& attr) const;
  /// Reads a complex dataset stored as a compound {r, i} (float or double, any
  /// member names r/re/real and i/im/imag), as a real array (imaginary part
  /// zero), or as a real array whose last extent is 2 (real, imaginary).
  /// `dims` receives the extents of the complex array.
  std::vector<cfloat> read_complex(const std::string& path, std::vector<hsize_t>& dims) const;

  // ---- writing (parent groups are created as needed)
  /// Creates dataset `path` of `file_type` and extents `dims` ({} for a scalar)
  /// and, unless `data` is null, writes `data` of `mem_type` to it.
  void write(const std::string& path, hid_t mem_type, hid_t file_type, const std::vector<hsize_t>& dims,
             const void* data, hid_t dcpl = H5P_DEFAULT);
  void write_scalar(const std::string& path, double value);
  void write_scalar(const std::string& path, long value);
  /// A scalar variable-length UTF-8 string (what h5py writes for a str).
  void write_string(const std::string& path, const std::string& value);
  /// A 1-D array of variable-length UTF-8 strings.
  void write_strings(const std::string& path, const std::vector<std::string>& values);
  void write_attribute(const std::string& path, const std::string& attr, double value);
  void write_attribute(const std::string& path, const std::string& attr, const std::string& value);
  /// Creates the soft link `link_path` pointing at `target`.
  void soft_link(const std::string& target, const std::string& link_path);
  /// Creates the group `path` and any missing parents.
  void create_group(const std::string& path);

 private:
  H5File(H5Id file, std::string name) : m_file(std::move(file)), m_name(std::move(name)) {}
  H5Id open_object(const std::string& path) const;
  H5Id m_file;
  std::string m_name;
};

}  // namespace ptycho::io
