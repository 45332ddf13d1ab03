#include "ptycho/io/checkpoint.hpp"

#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace ptycho::io {

namespace {

using detail::check_mpi;
using detail::collectively;

constexpr const char* kRoot = "/ptycho_checkpoint";
constexpr int kFormatVersion = 1;

std::string dims_text(const std::vector<hsize_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s.empty() ? "a scalar" : s;
}

/// Runs of consecutive global frame indices: [first, last) pairs.
std::vector<std::pair<long, long>> runs_of(const std::vector<long>& frames) {
  std::vector<std::pair<long, long>> runs;
  for (long g : frames) {
    if (!runs.empty() && runs.back().second == g)
      ++runs.back().second;
    else
      runs.push_back({g, g + 1});
  }
  return runs;
}

/// The archive over an open (parallel) checkpoint file, for saving or loading.
class Hdf5Archive final : public StateArchive {
 public:
  Hdf5Archive(MPI_Comm comm, H5File file, const RankLayout& layout, bool loading)
      : m_comm(comm), m_file(std::move(file)), m_layout(layout), m_loading(loading),
        m_rank(detail::comm_rank(comm)) {}

  bool loading() const override { return m_loading; }
  H5File& file() { return m_file; }

  void set_local_frames(const std::vector<long>& g) override {
    for (size_t i = 0; i < g.size(); ++i)
      PTYCHO_THROW_IF(g[i] < 0 || g[i] >= m_layout.total_frames || (i > 0 && g[i] <= g[i - 1]),
                      "checkpoint: local frame " << g[i] << " is not in [0, " << m_layout.total_frames
                                                 << ") or not ascending");
    m_layout.frames = g;
  }

  bool contains(const std::string& name) override { return !m_loading || m_file.exists(path(name)); }

  void values(const std::string& name, std::vector<double>& v) override {
    const std::string p = path(name);
    if (m_loading) {
      v = m_file.read_doubles(p);  // every rank reads the small dataset whole
      return;
    }
    // Created by all (metadata is collective), written by rank 0.
    create(p, H5T_IEEE_F64LE, {hsize_t(v.size())});
    if (m_rank == 0 && !v.empty()) write_all(p, H5T_NATIVE_DOUBLE, v.data());
  }

  void text(const std::string& name, std::string& value) override {
    const std::string p = path(name);
    if (m_loading) {
      value = m_file.read_string(p);
      return;
    }
    // Fixed-length: parallel HDF5 cannot write variable-length data.
    H5Id type = checked_id(H5Tcopy(H5T_C_S1), m_file.where("cannot write " + p));
    check_h5(H5Tset_size(type.get(), std::max<size_t>(1, value.size())), m_file.where("cannot write " + p));
    create(p, type.get(), {});
    if (m_rank == 0) {
      std::string padded = value.empty() ? std::string(1, '\0') : value;
      write_all(p, type.get(), padded.data());
    }
  }

  void object_field(const std::string& name, const CView2& field) override {
    const std::string p = path(name);
    const Rect& e = m_layout.extent;
    PTYCHO_THROW_IF(long(field.extent(0)) != e.rows || long(field.extent(1)) != e.cols,
                    "checkpoint: object field " << name << " is " << field.extent(0) << "x" << field.extent(1)
                                                << ", the tile's extent " << e.rows << "x" << e.cols);
    const std::vector<hsize_t> dims = {hsize_t(m_layout.object_rows), hsize_t(m_layout.object_cols)};
    // Saving: the owned pixels; loading: the whole extent (halo included).
    const Rect r = m_loading ? e : m_layout.owned;
    const hsize_t fstart[2] = {hsize_t(r.row0), hsize_t(r.col0)};
    const hsize_t count[2] = {hsize_t(std::max(0L, r.rows)), hsize_t(std::max(0L, r.cols))};
    const hsize_t mdims[2] = {hsize_t(std::max(1L, e.rows)), hsize_t(std::max(1L, e.cols))};
    const hsize_t mstart[2] = {hsize_t(r.row0 - e.row0), hsize_t(r.col0 - e.col0)};
    const bool none = r.rows <= 0 || r.cols <= 0;
    auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), field);
    transfer_complex(p, dims, [&](hid_t fs, hid_t ms) {
      select(fs, none, fstart, count, 2);
      select(ms, none, mstart, count, 2);
    }, host.data(), mdims, 2);
    if (m_loading) Kokkos::deep_copy(field, host);
  }

  void frame_field(const std::string& name, const CView3& field) override {
    H5Id mem = make_complex_type();
    H5Id file_type = make_complex64_file_type();
    transfer_frames(name, field, mem.get(), file_type.get());
  }

  void frame_field(const std::string& name, const HalfCView3& field) override {
    transfer_frames(name, field, H5T_NATIVE_UINT32, H5T_STD_U32LE);
  }

  void frame_values(const std::string& name, std::vector<double>& v, int per_frame) override {
    const std::string p = path(name);
    const long n = long(m_layout.frames.size());
    PTYCHO_THROW_IF(per_frame < 1, "checkpoint: frame values " << name << " with " << per_frame << " per frame");
    if (m_loading) v.assign(size_t(n * per_frame), 0.0);
    PTYCHO_THROW_IF(long(v.size()) != n * per_frame, "checkpoint: frame values " << name << " hold " << v.size()
                                                                                 << " values for " << n << " frames");
    const std::vector<hsize_t> dims = {hsize_t(m_layout.total_frames), hsize_t(per_frame)};
    const auto runs = runs_of(m_layout.frames);
    const hsize_t mdims[2] = {hsize_t(std::max(1L, n)), hsize_t(per_frame)};
    std::vector<double> dummy(per_frame);
    transfer(p, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, dims, [&](hid_t fs, hid_t ms) {
      check_h5(H5Sselect_none(fs), m_file.where("cannot select in " + p));
      if (runs.empty()) {
        check_h5(H5Sselect_none(ms), m_file.where("cannot select in " + p));
        return;
      }
      for (const auto& [g0, g1] : runs) {
        const hsize_t start[2] = {hsize_t(g0), 0};
        const hsize_t count[2] = {hsize_t(g1 - g0), hsize_t(per_frame)};
        check_h5(H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, nullptr, count, nullptr),
                 m_file.where("cannot select in " + p));
      }
      check_h5(H5Sselect_all(ms), m_file.where("cannot select in " + p));
    }, v.empty() ? dummy.data() : v.data(), mdims, 2);
  }

  void shared_field(const std::string& name, const CView3& field) override {
    const std::string p = path(name);
    const std::vector<hsize_t> dims = {field.extent(0), field.extent(1), field.extent(2)};
    auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), field);
    H5Id mem = make_complex_type();
    if (m_loading) {
      check_extents(p, dims);
      H5Id dset = m_file.open_dataset(p);
      check_h5(H5Dread(dset.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data()),
               m_file.where("cannot read " + p));
      Kokkos::deep_copy(field, host);
      return;
    }
    H5Id file_type = make_complex64_file_type();
    create(p, file_type.get(), dims);
    if (m_rank == 0) write_all(p, mem.get(), host.data());
  }

 private:
  std::string path(const std::string& name) const { return std::string(kRoot) + "/" + name; }

  void check_extents(const std::string& p, const std::vector<hsize_t>& expected) {
    H5Id dset = m_file.open_dataset(p);
    const std::vector<hsize_t> got = m_file.extents(dset.get(), p);
    PTYCHO_INPUT_ERROR_IF(got != expected, m_file.name() << ": " << p << " is " << dims_text(got) << ", this run needs "
                                                         << dims_text(expected)
                                                         << " (a checkpoint of another scan or setup?)");
  }

  /// Creates dataset `p` (collective; parent groups as needed).
  void create(const std::string& p, hid_t file_type, const std::vector<hsize_t>& dims) {
    m_file.write(p, file_type, file_type, dims, nullptr);
  }

  /// Writes a whole dataset from this rank alone (independent transfer).
  void write_all(const std::string& p, hid_t mem_type, const void* data) {
    H5Id dset = m_file.open_dataset(p);
    check_h5(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), m_file.where("cannot write " + p));
  }

  /// A field of the local frames (num_local * per_frame, M, M), frame j's
  /// block at j * per_frame, by global frame index.
  template <class View>
  void transfer_frames(const std::string& name, const View& field, hid_t mem_type, hid_t file_type) {
    const std::string p = path(name);
    const long n = long(m_layout.frames.size());
    const int m = m_layout.frame_size;
    PTYCHO_THROW_IF(long(field.extent(1)) != m || long(field.extent(2)) != m || (n > 0 && field.extent(0) % n != 0),
                    "checkpoint: frame field " << name << " of " << field.extent(0) << "x" << field.extent(1) << "x"
                                               << field.extent(2) << " for " << n << " frames of " << m << "x" << m);
    // Every rank must agree on the blocks per frame; ranks without frames know none.
    long per = n > 0 ? long(field.extent(0)) / n : 0;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &per, 1, MPI_LONG, MPI_MAX, m_comm), "MPI_Allreduce");
    const std::vector<hsize_t> dims = {hsize_t(m_layout.total_frames * per), hsize_t(m), hsize_t(m)};
    const auto runs = runs_of(m_layout.frames);
    auto host = Kokkos::create_mirror_view_and_copy(HostSpace(), field);
    const hsize_t mdims[3] = {hsize_t(std::max(1L, n * per)), hsize_t(m), hsize_t(m)};
    transfer(p, mem_type, file_type, dims, [&](hid_t fs, hid_t ms) {
      if (runs.empty() || per == 0) {
        check_h5(H5Sselect_none(fs), m_file.where("cannot select in " + p));
        check_h5(H5Sselect_none(ms), m_file.where("cannot select in " + p));
        return;
      }
      check_h5(H5Sselect_none(fs), m_file.where("cannot select in " + p));
      for (const auto& [g0, g1] : runs) {
        const hsize_t start[3] = {hsize_t(g0 * per), 0, 0};
        const hsize_t count[3] = {hsize_t((g1 - g0) * per), hsize_t(m), hsize_t(m)};
        check_h5(H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, nullptr, count, nullptr),
                 m_file.where("cannot select in " + p));
      }
      check_h5(H5Sselect_all(ms), m_file.where("cannot select in " + p));
    }, host.data(), mdims, 3);
    if (m_loading) Kokkos::deep_copy(field, host);
  }

  template <class Select>
  void transfer_complex(const std::string& p, const std::vector<hsize_t>& dims, Select&& select_fn, cfloat* data,
                        const hsize_t* mdims, int mrank) {
    H5Id mem = make_complex_type();
    H5Id file_type = make_complex64_file_type();
    transfer(p, mem.get(), file_type.get(), dims, select_fn, data, mdims, mrank);
  }

  /// A collective transfer between `data` (extents mdims) and dataset `p`
  /// (created with `dims` when saving; checked against them when loading).
  template <class Select>
  void transfer(const std::string& p, hid_t mem_type, hid_t file_type, const std::vector<hsize_t>& dims,
                Select&& select_fn, void* data, const hsize_t* mdims, int mrank) {
    const std::string context = m_file.where((m_loading ? "cannot read " : "cannot write ") + p);
    if (m_loading)
      check_extents(p, dims);
    else
      create(p, file_type, dims);
    H5Id dset = m_file.open_dataset(p);
    H5Id fs = checked_id(H5Dget_space(dset.get()), context);
    H5Id ms = checked_id(H5Screate_simple(mrank, mdims, nullptr), context);
    select_fn(fs.get(), ms.get());
    H5Id dxpl = checked_id(H5Pcreate(H5P_DATASET_XFER), context);
    check_h5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), context);
    if (m_loading)
      check_h5(H5Dread(dset.get(), mem_type, ms.get(), fs.get(), dxpl.get(), data), context);
    else
      check_h5(H5Dwrite(dset.get(), mem_type, ms.get(), fs.get(), dxpl.get(), data), context);
  }

  void select(hid_t space, bool none, const hsize_t* start, const hsize_t* count, int) {
    if (none)
      check_h5(H5Sselect_none(space), m_file.where("cannot select"));
    else
      check_h5(H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr), m_file.where("cannot select"));
  }

  MPI_Comm m_comm;
  H5File m_file;
  RankLayout m_layout;
  bool m_loading;
  int m_rank;
};

}  // namespace

void write_checkpoint(MPI_Comm comm, const std::string& path, const RankLayout& layout,
                      const std::function<void(StateArchive&)>& save) {
  silence_hdf5_errors();
  const int rank = detail::comm_rank(comm);
  const std::string temp = detail::shared_temporary_path(comm, path);
  try {
    std::unique_ptr<Hdf5Archive> archive;
    collectively(comm, [&] {
      H5File f = H5File::create_parallel(comm, temp, path);
      f.create_group(kRoot);
      f.write_attribute(kRoot, "format_version", double(kFormatVersion));
      archive = std::make_unique<Hdf5Archive>(comm, std::move(f), layout, false);
    });
    // The saving calls are collective HDF5 calls: an error on one rank is
    // raised on all (no rank is left waiting in the next call).
    collectively(comm, [&] { save(*archive); });
    collectively(comm, [&] { archive->file().close(); });
    archive.reset();
    collectively(comm, [&] {
      if (rank != 0) return;
      if (std::rename(temp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        PTYCHO_INPUT_ERROR_IF(true, path << ": cannot move the finished checkpoint into place: " << std::strerror(err));
      }
    });
  } catch (...) {
    if (rank == 0) std::remove(temp.c_str());
    throw;
  }
}

std::unique_ptr<StateArchive> open_checkpoint(MPI_Comm comm, const std::string& path, const RankLayout& layout) {
  silence_hdf5_errors();
  std::unique_ptr<Hdf5Archive> archive;
  collectively(comm, [&] {
    // A missing, truncated or damaged file fails here with what is wrong with it.
    H5File::open_read(path).close();
    PTYCHO_INPUT_ERROR_IF(!is_checkpoint(path), path << ": not a ptycho checkpoint (no " << kRoot << " group)");
    H5File f = H5File::open_read_parallel(comm, path);
    const auto version = f.numeric_attribute(kRoot, "format_version");
    PTYCHO_INPUT_ERROR_IF(!version || int(*version) != kFormatVersion,
                          path << ": checkpoint format " << (version ? std::to_string(int(*version)) : "unknown")
                               << ", this program reads format " << kFormatVersion);
    archive = std::make_unique<Hdf5Archive>(comm, std::move(f), layout, true);
  });
  return archive;
}

bool is_checkpoint(const std::string& path) {
  silence_hdf5_errors();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  if (H5Fis_hdf5(path.c_str()) <= 0) return false;
  H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!f) return false;
  return path_exists(f.get(), kRoot);
}

std::string peek_checkpoint_text(const std::string& path, const std::string& name) {
  if (!is_checkpoint(path)) return "";
  try {
    H5File f = H5File::open_read(path);
    const std::string p = std::string(kRoot) + "/" + name;
    return f.exists(p) ? f.read_string(p) : std::string();
  } catch (const std::exception&) {
    return "";
  }
}

namespace {
struct Walk {
  const H5File* file = nullptr;
  long datasets = 0;
  double bytes = 0;
  std::string error;  ///< an exception cannot cross HDF5's C frames: kept here
};

void read_dataset(Walk* w, const char* name) {
  const std::string p = std::string(kRoot) + "/" + name;
  H5Id dset = w->file->open_dataset(p);
  H5Id type = checked_id(H5Dget_type(dset.get()), w->file->where("cannot read " + p));
  H5Id space = checked_id(H5Dget_space(dset.get()), w->file->where("cannot read " + p));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  const size_t size = H5Tget_size(type.get());
  std::vector<char> buffer(size_t(std::max<hssize_t>(1, n)) * size);
  // Read in the file's own type: a truncated or damaged file fails here.
  if (H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) > 0)
    return;  // not written by us; nothing to check
  check_h5(H5Dread(dset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()),
           w->file->where("cannot read " + p));
  ++w->datasets;
  w->bytes += double(n) * size;
}

herr_t read_through(hid_t, const char* name, const H5O_info_t* info, void* data) {
  auto* w = static_cast<Walk*>(data);
  if (info->type != H5O_TYPE_DATASET) return 0;
  try {
    read_dataset(w, name);
  } catch (const std::exception& e) {
    w->error = e.what();
    return -1;
  }
  return 0;
}
}  // namespace

CheckpointSummary inspect_checkpoint(const std::string& path) {
  silence_hdf5_errors();
  H5File f = H5File::open_read(path);  // a truncated or damaged file fails here, naming why
  PTYCHO_INPUT_ERROR_IF(!is_checkpoint(path), path << ": not a ptycho checkpoint (no " << kRoot << " group)");
  CheckpointSummary s;
  const std::string root = kRoot;
  if (f.exists(root + "/run/input")) s.input = f.read_string(root + "/run/input");
  if (f.exists(root + "/run/chain")) s.chain = f.read_string(root + "/run/chain");
  if (f.exists(root + "/run/low_memory")) s.low_memory = f.read_string(root + "/run/low_memory");
  if (f.exists(root + "/run/position")) {
    const auto v = f.read_doubles(root + "/run/position");
    if (v.size() >= 3) s.iteration = long(v[2]);
  }
  if (f.exists(root + "/run/object")) {
    H5Id d = f.open_dataset(root + "/run/object");
    const auto dims = f.extents(d.get(), root + "/run/object");
    if (dims.size() == 2) {
      s.object_rows = long(dims[0]);
      s.object_cols = long(dims[1]);
    }
  }
  if (f.exists(root + "/run/positions")) {
    H5Id d = f.open_dataset(root + "/run/positions");
    const auto dims = f.extents(d.get(), root + "/run/positions");
    if (!dims.empty()) s.frames = long(dims[0]);
  }
  if (f.exists(root + "/run/probe")) {
    H5Id d = f.open_dataset(root + "/run/probe");
    const auto dims = f.extents(d.get(), root + "/run/probe");
    if (dims.size() == 3) s.frame_size = int(dims[1]);
  }
  Walk w;
  w.file = &f;
  H5Id group = checked_id(H5Gopen2(f.id(), kRoot, H5P_DEFAULT), f.where(std::string("cannot open ") + kRoot));
  const herr_t status = H5Ovisit2(group.get(), H5_INDEX_NAME, H5_ITER_INC, read_through, &w, H5O_INFO_BASIC);
  PTYCHO_INPUT_ERROR_IF(!w.error.empty(), w.error);
  check_h5(status, f.where("cannot read the checkpoint's datasets"));
  s.datasets = w.datasets;
  s.megabytes = w.bytes / 1e6;
  f.close();
  return s;
}

void read_checkpoint_images(const std::string& path, HostCView2& object, HostCView3& probe) {
  silence_hdf5_errors();
  H5File f = H5File::open_read(path);
  const std::string root = kRoot;
  std::vector<hsize_t> dims;
  const std::vector<cfloat> o = f.read_complex(root + "/run/object", dims);
  PTYCHO_INPUT_ERROR_IF(dims.size() != 2, path << ": " << root << "/run/object is not 2-D");
  object = HostCView2("ptycho::checkpoint_object", dims[0], dims[1]);
  std::copy(o.begin(), o.end(), object.data());
  const std::vector<cfloat> p = f.read_complex(root + "/run/probe", dims);
  PTYCHO_INPUT_ERROR_IF(dims.size() != 3, path << ": " << root << "/run/probe is not 3-D");
  probe = HostCView3("ptycho::checkpoint_probe", dims[0], dims[1], dims[2]);
  std::copy(p.begin(), p.end(), probe.data());
  f.close();
}

}  // namespace ptycho::io
