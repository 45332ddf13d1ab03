#include "ptycho/io/scan_formats.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "scan_reader_detail.hpp"
#include "scan_writer_detail.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

namespace ptycho::io {

namespace {

using MaskView = View2<std::uint8_t, HostSpace>;

/// fold_slice's default detector (eiger_APS) pixel [m], taken when a _para
/// file does not say.
constexpr double kFoldSliceDefaultPixel = 75e-6;

/// ptychodus's batch layout (api/io.py StandardFileLayout).
constexpr const char* kPtychodusPatterns = "diffraction.h5";
constexpr const char* kPtychodusProduct = "product-in.h5";

/// The product-in.h5 beside a ptychodus diffraction.h5.
std::string ptychodus_product(const std::string& patterns) {
  return (std::filesystem::path(patterns).parent_path() / kPtychodusProduct).string();
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// STEM and EXT of STEM_<kind>.EXT (EXT hdf5 or h5), or false.
bool split_pair_name(const std::string& path, const std::string& kind, std::string& stem, std::string& ext) {
  for (const char* e : {".hdf5", ".h5"}) {
    const std::string tail = "_" + kind + e;
    if (ends_with(path, tail)) {
      stem = path.substr(0, path.size() - tail.size());
      ext = e;
      return true;
    }
  }
  return false;
}

/// Reads a numeric dataset holding `n` values in any shape whose other extents are 1.
std::vector<double> read_vector(const H5File& f, const std::string& path, long n, const std::string& what) {
  PTYCHO_INPUT_ERROR_IF(!f.exists(path), f.name() << ": " << path << " does not exist (" << what << ")");
  std::vector<hsize_t> dims;
  std::vector<double> v = f.read_doubles(path, &dims);
  long longest = 0;
  for (hsize_t d : dims) longest = std::max(longest, long(d));
  PTYCHO_INPUT_ERROR_IF(long(v.size()) != n || (n > 1 && longest != n),
                        f.name() << ": " << path << " has shape " << shape_string(dims) << "; expected " << n
                                 << " values (" << what << ")");
  for (size_t j = 0; j < v.size(); ++j)
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(v[j]), f.name() << ": " << path << " has a non-finite value at " << j);
  return v;
}

/// A positive finite scalar (any shape of one element).
double read_positive(const H5File& f, const std::string& path, const std::string& what) {
  PTYCHO_INPUT_ERROR_IF(!f.exists(path), f.name() << ": " << path << " does not exist (the " << what << ")");
  const double v = f.read_scalar(path);
  PTYCHO_INPUT_ERROR_IF(!std::isfinite(v) || v <= 0,
                        f.name() << ": " << path << " is " << v << "; the " << what << " must be positive");
  return v;
}

/// Marks in `mask` every pixel whose weight is not positive in any frame of
/// the weights dataset `path` ((n, M, M) or (M, M)), read a slab at a time.
void mask_from_weights(const H5File& f, const std::string& path, long n, int m, MaskView& mask) {
  H5Id dset = f.open_dataset(path);
  const std::vector<hsize_t> dims = f.extents(dset.get(), path);
  if (dims.size() == 1 && dims[0] == 0) return;  // PtyPy's "no weights" (ptyd.rst)
  const bool per_frame = dims == std::vector<hsize_t>{hsize_t(n), hsize_t(m), hsize_t(m)};
  const bool common = dims == std::vector<hsize_t>{hsize_t(m), hsize_t(m)};
  PTYCHO_INPUT_ERROR_IF(!per_frame && !common, f.name() << ": " << path << " has shape " << shape_string(dims)
                                                        << ", expected (" << n << ", " << m << ", " << m << ") or ("
                                                        << m << ", " << m << ") weights");
  const std::string context = f.where("cannot read " + path);
  H5Id ftype = checked_id(H5Dget_type(dset.get()), context);
  // h5py's bools are an enum, which HDF5 does not convert to numbers: read the
  // base integers of an enum; everything else as double.
  const bool is_enum = H5Tget_class(ftype.get()) == H5T_ENUM;
  H5Id mem = is_enum ? checked_id(H5Tget_native_type(ftype.get(), H5T_DIR_ASCEND), context) : H5Id();
  const size_t element = is_enum ? H5Tget_size(mem.get()) : sizeof(double);
  const size_t mm = size_t(m) * m;
  const long frames = per_frame ? n : 1;
  const long slab = std::max<long>(1, long((size_t(32) << 20) / (mm * element)));
  std::vector<unsigned char> raw(size_t(std::min(slab, frames)) * mm * element);
  for (long first = 0; first < frames; first += slab) {
    const long count = std::min(slab, frames - first);
    H5Id space = checked_id(H5Dget_space(dset.get()), context);
    std::vector<hsize_t> start(dims.size(), 0), extent = dims;
    if (per_frame) {
      start[0] = hsize_t(first);
      extent[0] = hsize_t(count);
    }
    check_h5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, extent.data(), nullptr), context);
    H5Id memspace = checked_id(H5Screate_simple(int(extent.size()), extent.data(), nullptr), context);
    check_h5(H5Dread(dset.get(), is_enum ? mem.get() : H5T_NATIVE_DOUBLE, memspace.get(), space.get(), H5P_DEFAULT,
                     raw.data()),
             context);
    for (long j = 0; j < count; ++j)
      for (size_t p = 0; p < mm; ++p) {
        bool good;
        if (is_enum) {
          good = false;
          for (size_t b = 0; b < element; ++b) good |= raw[(size_t(j) * mm + p) * element + b] != 0;
        } else {
          double w;
          std::memcpy(&w, raw.data() + (size_t(j) * mm + p) * sizeof(double), sizeof(double));
          good = w > 0;
        }
        if (!good) mask.data()[p] = 1;
      }
  }
}

}  // namespace

// ---------------------------------------------------------------- formats

const char* format_name(ScanFormat format) {
  switch (format) {
    case ScanFormat::cxi: return "CXI";
    case ScanFormat::ptyd: return "PtyPy .ptyd";
    case ScanFormat::fold_slice: return "fold_slice _dp/_para";
    case ScanFormat::ptychodus: return "ptychodus diffraction.h5 + product-in.h5";
  }
  return "?";
}

ScanFormat detect_scan_format(const std::string& path) {
  silence_hdf5_errors();
  H5File f = H5File::open_read(path);
  if (f.exists("/entry_1")) return ScanFormat::cxi;
  if (f.is_group("/meta") && f.is_group("/chunks")) return ScanFormat::ptyd;
  if (f.exists("/dp") || f.exists("/ppX")) return ScanFormat::fold_slice;
  if (f.exists("/patterns") && f.exists("/indexes")) return ScanFormat::ptychodus;
  PTYCHO_INPUT_ERROR_IF(true, path << ": not a scan file ptycho reads: it has no /entry_1 (CXI), no /meta and /chunks "
                                      "(PtyPy .ptyd), no /dp or /ppX (fold_slice) and no /patterns and /indexes "
                                      "(ptychodus)");
  return ScanFormat::cxi;
}

ScanFormat format_of_name(const std::string& path) {
  std::string stem, ext;
  if (ends_with(path, ".ptyd")) return ScanFormat::ptyd;
  if (split_pair_name(path, "dp", stem, ext) || split_pair_name(path, "para", stem, ext)) return ScanFormat::fold_slice;
  if (std::filesystem::path(path).filename() == kPtychodusPatterns) return ScanFormat::ptychodus;
  return ScanFormat::cxi;
}

FoldSlicePair fold_slice_pair(const std::string& path) {
  std::string stem, ext;
  if (split_pair_name(path, "dp", stem, ext) || split_pair_name(path, "para", stem, ext))
    return {stem + "_dp" + ext, stem + "_para" + ext};
  PTYCHO_INPUT_ERROR_IF(true, path << ": a fold_slice scan is a pair STEM_dp.hdf5 and STEM_para.hdf5 (or .h5); "
                                      "this name is neither, so its partner cannot be found");
  return {};
}

std::vector<std::string> scan_files(const std::string& path) {
  // By content where the file can be read (ptychodus's patterns file may have any name), else by name.
  bool ptychodus = format_of_name(path) == ScanFormat::ptychodus;
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) {
    try {
      ptychodus = ptychodus || detect_scan_format(path) == ScanFormat::ptychodus;
    } catch (const InputError&) {
    }
  }
  if (ptychodus) return {path, ptychodus_product(path)};
  if (format_of_name(path) != ScanFormat::fold_slice) return {path};
  const FoldSlicePair pair = fold_slice_pair(path);
  return {pair.dp, pair.para};
}

CxiHeader read_cxi_header(const std::string& path, const ReadOptions& options) {
  silence_hdf5_errors();
  CxiHeader h;
  if (options.description.given()) {
    h = detail::read_described_header(path, options);
    if (!options.probe_file.empty()) detail::read_probe_file(h, options.probe_file);
    return h;
  }
  switch (detect_scan_format(path)) {
    case ScanFormat::cxi: h = detail::read_cxi_format_header(path, options); break;
    case ScanFormat::ptyd: h = detail::read_ptyd_header(path, options); break;
    case ScanFormat::fold_slice: h = detail::read_fold_slice_header(path, options); break;
    case ScanFormat::ptychodus: h = detail::read_ptychodus_header(path, options); break;
  }
  if (!options.probe_file.empty()) detail::read_probe_file(h, options.probe_file);
  return h;
}

// ---------------------------------------------------------------- PtyPy .ptyd

CxiHeader detail::read_ptyd_header(const std::string& path, const ReadOptions& options) {
  H5File f = H5File::open_read(path);
  CxiHeader h;
  h.info.source = path;
  h.layout.format = format_name(ScanFormat::ptyd);

  // Chunks in numeric order; their frames one after another.
  std::vector<std::pair<long, std::string>> chunks;
  for (const std::string& name : f.members("/chunks")) {
    const bool numeric = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
    PTYCHO_INPUT_ERROR_IF(!numeric || name.size() > 9,
                          path << ": /chunks/" << name << " is not a numbered chunk (PtyPy names them 0, 1, 2, ...)");
    chunks.emplace_back(std::stol(name), "/chunks/" + name);
  }
  PTYCHO_INPUT_ERROR_IF(chunks.empty(), path << ": /chunks holds no chunks of frames");
  std::sort(chunks.begin(), chunks.end());
  std::vector<double> x, y;
  int m = 0;
  for (const auto& [number, group] : chunks) {
    (void)number;
    const std::string data = group + "/data";
    PTYCHO_INPUT_ERROR_IF(!f.exists(data), path << ": " << data << " does not exist (the chunk's frames)");
    std::string type;
    FrameBlock block = frames_block(f, data, type);
    PTYCHO_INPUT_ERROR_IF(block.raster_cols > 0, path << ": " << data << " has 4 dimensions; .ptyd frames are (n, M, M)");
    const int side = frame_side(f, data);
    PTYCHO_INPUT_ERROR_IF(m != 0 && side != m, path << ": " << data << " has frames of " << side << " x " << side
                                                    << " but the first chunk's are " << m << " x " << m);
    m = side;
    if (h.layout.blocks.empty()) {
      h.layout.frames = data;
      h.layout.frames_type = type;
    }
    block.first = h.info.num_frames;
    h.info.num_frames += block.count;
    // positions (n, 2) = (y, x) [m]
    const std::string pos = group + "/positions";
    PTYCHO_INPUT_ERROR_IF(!f.exists(pos), path << ": " << pos << " does not exist (the chunk's positions)");
    std::vector<hsize_t> dims;
    const std::vector<double> p = f.read_doubles(pos, &dims);
    PTYCHO_INPUT_ERROR_IF(dims != (std::vector<hsize_t>{hsize_t(block.count), 2}),
                          path << ": " << pos << " has shape " << shape_string(dims) << " but " << data << " has "
                               << block.count << " frames; expected (" << block.count << ", 2) = (y, x) in metres");
    for (long j = 0; j < block.count; ++j) {
      PTYCHO_INPUT_ERROR_IF(!std::isfinite(p[2 * j]) || !std::isfinite(p[2 * j + 1]),
                            path << ": " << pos << " has a non-finite value at position " << j);
      y.push_back(p[2 * j]);
      x.push_back(p[2 * j + 1]);
    }
    h.layout.blocks.push_back(block);
  }
  h.layout.translation = chunks.front().second + "/positions (y, x)";
  h.info.geometry.frame_size = m;

  // meta: energy [keV], distance [m], psize [m] (y, x) or one value, shape, centre.
  DetectorGeometry& g = h.info.geometry;
  // h5rw stores None as a placeholder with type "None": such entries say nothing.
  const auto given = [&](const char* key) {
    return f.exists(key) && f.string_attribute(key, "type").value_or("") != "None";
  };
  PTYCHO_INPUT_ERROR_IF(!given("/meta/energy"), path << ": /meta/energy does not exist (the photon energy in keV)");
  g.energy_j = read_positive(f, "/meta/energy", "photon energy in keV") * 1e3 * kJoulePerEv;
  PTYCHO_INPUT_ERROR_IF(g.energy_j < 1e-18 || g.energy_j > 1.6e-12,
                        path << ": /meta/energy is " << g.energy_j / kJoulePerEv / 1e3
                             << " keV, which is not a plausible photon energy (.ptyd stores keV)");
  g.distance_m = read_positive(f, "/meta/distance", "sample-detector distance in m");
  PTYCHO_INPUT_ERROR_IF(!f.exists("/meta/psize"), path << ": /meta/psize does not exist (the detector pixel size in m)");
  {
    std::vector<hsize_t> dims;
    const std::vector<double> ps = f.read_doubles("/meta/psize", &dims);
    PTYCHO_INPUT_ERROR_IF(ps.size() != 1 && ps.size() != 2, path << ": /meta/psize has shape " << shape_string(dims)
                                                                  << ", expected one value or (y, x)");
    g.pixel_y_m = ps[0];
    g.pixel_x_m = ps.back();
    PTYCHO_INPUT_ERROR_IF(!(g.pixel_x_m > 0) || !(g.pixel_y_m > 0) || !std::isfinite(g.pixel_x_m + g.pixel_y_m),
                          path << ": /meta/psize must be positive");
  }
  if (given("/meta/shape")) {
    const std::vector<double> shape = f.read_doubles("/meta/shape");
    const bool ok = (shape.size() == 1 || shape.size() == 2) && shape[0] == m && shape.back() == m;
    PTYCHO_INPUT_ERROR_IF(!ok, path << ": /meta/shape does not match the frames of " << m << " x " << m
                                    << " in " << h.layout.frames << " (ptycho reads frames already cropped)");
  }
  if (given("/meta/center")) {
    const std::vector<double> c = f.read_doubles("/meta/center");
    const bool ok = (c.size() == 1 || c.size() == 2) && std::abs(c[0] - m / 2) <= 0.5 && std::abs(c.back() - m / 2) <= 0.5;
    PTYCHO_INPUT_ERROR_IF(!ok, path << ": /meta/center is not the frame centre (" << m / 2 << ", " << m / 2
                                    << "); ptycho needs the beam at pixel M/2: recentre the frames");
  }
  // meta/num_frames may count frames a scan that ended early never saved: the chunks are what there is.

  // Weights, > 0 = good, per frame or common: a pixel bad in any frame is masked.
  h.mask = MaskView(Kokkos::view_alloc(std::string("ptycho::mask")), m, m);
  for (size_t c = 0; c < chunks.size(); ++c) {
    const std::string weights = chunks[c].second + "/weights";
    if (!f.exists(weights)) continue;
    mask_from_weights(f, weights, h.layout.blocks[c].count, m, h.mask);
    if (h.layout.mask.empty()) h.layout.mask = "/chunks/*/weights (0 = masked)";
  }
  long invalid = 0;
  for (size_t p = 0; p < h.mask.size(); ++p) invalid += h.mask.data()[p];
  PTYCHO_INPUT_ERROR_IF(invalid == long(h.mask.size()), path << ": the weights mark every pixel invalid (0 in some frame)");
  f.close();
  finish_header(h, x, y, options);
  return h;
}

// ---------------------------------------------------------------- fold_slice

CxiHeader detail::read_fold_slice_header(const std::string& path, const ReadOptions& options) {
  const FoldSlicePair pair = fold_slice_pair(path);
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::exists(pair.dp),
                        path << ": the fold_slice frames " << pair.dp << " do not exist");
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::exists(pair.para),
                        path << ": the fold_slice positions " << pair.para << " do not exist");
  H5File dp = H5File::open_read(pair.dp);
  H5File para = H5File::open_read(pair.para);
  CxiHeader h;
  h.info.source = path;
  h.layout.format = format_name(ScanFormat::fold_slice);
  PTYCHO_INPUT_ERROR_IF(!dp.exists("/dp"), pair.dp << ": /dp does not exist (the frames of a fold_slice scan)");
  FrameBlock block = frames_block(dp, "/dp", h.layout.frames_type);
  PTYCHO_INPUT_ERROR_IF(block.raster_cols > 0, pair.dp << ": /dp has 4 dimensions; fold_slice frames are (N, M, M)");
  h.layout.blocks.push_back(block);
  h.layout.frames = "/dp";
  h.info.num_frames = block.count;
  const int m = frame_side(dp, "/dp");
  DetectorGeometry& g = h.info.geometry;
  g.frame_size = m;

  // Positions: the probe at column ppX / dx and row ppY / dx [m].
  const std::vector<double> x = read_vector(para, "/ppX", block.count, "one x position per frame of " + pair.dp + " in m");
  const std::vector<double> y = read_vector(para, "/ppY", block.count, "one y position per frame of " + pair.dp + " in m");
  h.layout.translation = pair.para + ":/ppX, /ppY";

  // Geometry: lambda and dx; the distance and the pixel if the file has them.
  const double lambda = read_positive(para, "/lambda", "wavelength in m");
  PTYCHO_INPUT_ERROR_IF(lambda < 1e-13 || lambda > 2e-7, pair.para << ": /lambda is " << lambda
                                                                   << " m, which is not a plausible X-ray wavelength");
  const double dx = read_positive(para, "/dx", "object pixel size in m");
  g.energy_j = kHcEvMetre / lambda * kJoulePerEv;
  if (para.exists("/z") && para.exists("/ds")) {
    g.distance_m = read_positive(para, "/z", "sample-detector distance in m");
    g.pixel_x_m = g.pixel_y_m = read_positive(para, "/ds", "detector pixel size in m");
    const double implied = lambda * g.distance_m / (m * g.pixel_x_m);
    PTYCHO_INPUT_ERROR_IF(std::abs(implied - dx) > 1e-6 * dx,
                          pair.para << ": /dx is " << dx << " m but /lambda, /z and /ds give " << implied
                                    << " m for frames of " << m);
  } else if (para.exists("/z")) {  // the pixel that gives dx at this distance
    g.distance_m = read_positive(para, "/z", "sample-detector distance in m");
    g.pixel_x_m = g.pixel_y_m = lambda * g.distance_m / (m * dx);
  } else {
    g.pixel_x_m = g.pixel_y_m = kFoldSliceDefaultPixel;
    g.distance_m = dx * m * kFoldSliceDefaultPixel / lambda;
  }
  h.mask = read_mask(dp, "/mask", m);
  if (dp.exists("/mask")) h.layout.mask = pair.dp + ":/mask";
  dp.close();
  para.close();
  finish_header(h, x, y, options);
  return h;
}

// ---------------------------------------------------------------- ptychodus

CxiHeader detail::read_ptychodus_header(const std::string& path, const ReadOptions& options) {
  const std::string product_path = ptychodus_product(path);
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::exists(product_path),
                        path << ": ptychodus patterns take their positions and geometry from " << product_path
                             << " (ptychodus's batch layout), which does not exist");
  H5File f = H5File::open_read(path);
  H5File product = H5File::open_read(product_path);
  CxiHeader h;
  h.info.source = path;
  h.layout.format = format_name(ScanFormat::ptychodus);
  FrameBlock block = frames_block(f, "/patterns", h.layout.frames_type);
  PTYCHO_INPUT_ERROR_IF(block.raster_cols > 0, path << ": /patterns has 4 dimensions; ptychodus's are (N, M, M)");
  h.layout.frames = "/patterns";
  const int m = frame_side(f, "/patterns");
  const long stored = block.count;
  const std::vector<double> indexes = read_vector(f, "/indexes", stored, "one index per pattern");
  for (long i = 0; i < stored; ++i)
    PTYCHO_INPUT_ERROR_IF(indexes[i] != std::floor(indexes[i]) || std::abs(indexes[i]) > 9e15,
                          path << ": /indexes has " << indexes[i] << " at " << i << "; indexes are integers");

  // Positions by index: probe_position_indexes, _x_m, _y_m.
  std::vector<hsize_t> dims;
  PTYCHO_INPUT_ERROR_IF(!product.exists("/probe_position_indexes"),
                        product_path << ": /probe_position_indexes does not exist (the positions' pattern indexes)");
  const std::vector<double> pindex = product.read_doubles("/probe_position_indexes", &dims);
  const long np = long(pindex.size());
  const std::vector<double> px = read_vector(product, "/probe_position_x_m", np, "one x per position index, in m");
  const std::vector<double> py = read_vector(product, "/probe_position_y_m", np, "one y per position index, in m");
  std::map<long long, size_t> where;
  for (long j = 0; j < np; ++j) {
    const double k = pindex[j];
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(k) || k != std::floor(k) || std::abs(k) > 9e15,
                          product_path << ": /probe_position_indexes has " << k << " at " << j << "; indexes are integers");
    PTYCHO_INPUT_ERROR_IF(!where.emplace(static_cast<long long>(k), size_t(j)).second,
                          product_path << ": /probe_position_indexes has " << k << " twice");
  }
  std::vector<double> x, y;
  std::vector<long> kept;
  for (long i = 0; i < stored; ++i) {
    const auto it = where.find(static_cast<long long>(indexes[i]));
    if (it == where.end()) continue;
    kept.push_back(i);
    x.push_back(px[it->second]);
    y.push_back(py[it->second]);
  }
  PTYCHO_INPUT_ERROR_IF(kept.size() < 2, path << ": fewer than 2 of its /indexes have a position in " << product_path
                                              << ":/probe_position_indexes");
  if (long(kept.size()) < stored) {
    block.stored = stored;
    block.count = long(kept.size());
    block.kept = std::move(kept);
    h.layout.dropped = stored - block.count;
  }
  h.layout.blocks.push_back(block);
  h.info.num_frames = block.count;
  h.layout.translation = product_path + ":/probe_position_x_m, /probe_position_y_m";

  // Geometry: the energy and the distance; the detector pixel that gives the probe's pixel.
  DetectorGeometry& g = h.info.geometry;
  g.frame_size = m;
  const auto attribute = [&](const char* name, const char* what) {
    const std::optional<double> v = product.numeric_attribute("/", name);
    PTYCHO_INPUT_ERROR_IF(!v || !std::isfinite(*v) || *v <= 0,
                          product_path << ": the root attribute " << name << " (" << what << ") is missing or not positive");
    return *v;
  };
  g.energy_j = attribute("probe_energy_eV", "photon energy in eV") * kJoulePerEv;
  g.distance_m = attribute("detector_object_distance_m", "sample-detector distance in m");
  PTYCHO_INPUT_ERROR_IF(!product.exists("/probe"), product_path << ": /probe does not exist (with its pixel size)");
  const std::optional<double> pw = product.numeric_attribute("/probe", "pixel_width_m");
  const std::optional<double> ph = product.numeric_attribute("/probe", "pixel_height_m");
  PTYCHO_INPUT_ERROR_IF(!pw || !ph || !(*pw > 0) || !(*ph > 0),
                        product_path << ": /probe needs positive attributes pixel_width_m and pixel_height_m");
  g.pixel_x_m = g.wavelength_m() * g.distance_m / (m * *pw);
  g.pixel_y_m = g.wavelength_m() * g.distance_m / (m * *ph);
  if (f.exists("/bad_pixels")) {
    h.mask = read_mask(f, "/bad_pixels", m);
    h.layout.mask = "/bad_pixels";
  }
  h.probe = probe_from_modes(product, "/probe", m, h.info.probe_source);
  h.info.probe_source = product_path + ":" + h.info.probe_source;
  h.layout.probe = product_path + ":/probe";
  f.close();
  product.close();
  finish_header(h, x, y, options);
  return h;
}

// ---------------------------------------------------------------- described

CxiHeader detail::read_described_header(const std::string& path, const ReadOptions& options) {
  const Description& d = options.description;
  H5File f = H5File::open_read(path);
  CxiHeader h;
  h.info.source = path;
  h.layout.format = "HDF5 described by the job";
  PTYCHO_INPUT_ERROR_IF(!f.exists(d.frames), path << ": " << d.frames << " does not exist (frames_dataset)");
  h.layout.blocks.push_back(frames_block(f, d.frames, h.layout.frames_type));
  h.layout.frames = d.frames;
  const long n = h.layout.blocks.back().count;
  h.info.num_frames = n;
  const int m = frame_side(f, d.frames);

  PTYCHO_INPUT_ERROR_IF(d.positions.empty() || !f.exists(d.positions),
                        path << ": " << (d.positions.empty() ? std::string("(none given)") : d.positions)
                             << " does not exist (positions_dataset)");
  std::vector<hsize_t> dims;
  const std::vector<double> t = f.read_doubles(d.positions, &dims);
  const bool rows = dims.size() == 2 && long(dims[0]) == n && (dims[1] == 2 || dims[1] == 3);
  const bool cols = dims.size() == 2 && long(dims[1]) == n && (dims[0] == 2 || dims[0] == 3);
  PTYCHO_INPUT_ERROR_IF(!rows && !cols, path << ": " << d.positions << " has shape " << shape_string(dims) << " but "
                                             << d.frames << " has " << n << " frames; expected (" << n
                                             << ", 2) or (2, " << n << ") (positions_dataset)");
  std::vector<double> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  for (long j = 0; j < n; ++j) {
    const double a = rows ? t[size_t(j) * dims[1]] : t[size_t(j)];
    const double b = rows ? t[size_t(j) * dims[1] + 1] : t[size_t(n + j)];
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(a) || !std::isfinite(b),
                          path << ": " << d.positions << " has a non-finite value at position " << j);
    x[j] = (d.yx ? b : a) * d.unit_m * (d.negate_x ? -1 : 1);
    y[j] = (d.yx ? a : b) * d.unit_m * (d.negate_y ? -1 : 1);
  }
  h.layout.translation = d.positions + (d.yx ? " (y, x)" : " (x, y)") +
                         (d.negate_x || d.negate_y ? std::string(d.negate_x && d.negate_y ? ", both negated"
                                                                  : d.negate_x ? ", x negated"
                                                                               : ", y negated")
                                                   : std::string());
  DetectorGeometry& g = h.info.geometry;
  g.frame_size = m;
  g.energy_j = d.energy_j;
  g.distance_m = d.distance_m;
  g.pixel_x_m = g.pixel_y_m = d.pixel_m;
  PTYCHO_INPUT_ERROR_IF(!(g.energy_j > 0) || !(g.distance_m > 0) || !(g.pixel_x_m > 0),
                        path << ": a described file needs energy_kev, distance_m and pixel_size_m (positive)");
  if (!d.mask.empty()) {
    PTYCHO_INPUT_ERROR_IF(!f.exists(d.mask), path << ": " << d.mask << " does not exist (mask_dataset)");
    h.mask = read_mask(f, d.mask, m);
    h.layout.mask = d.mask;
  }
  f.close();
  finish_header(h, x, y, options);
  return h;
}

// ---------------------------------------------------------------- writers

namespace {

/// Writes a scan in one format, frames in slabs.
class ScanWriter {
 public:
  virtual ~ScanWriter() = default;
  virtual void frames(long first, const float* data, long count) = 0;
  /// Closes and renames every file onto its name.
  virtual void commit() = 0;
  std::vector<std::string> files;
  std::vector<std::string> lost;
};

/// A format of two files, the frames in the first (`m_frames`) and what
/// describes them in the second (`m_side`): both renamed onto their names
/// only once both are written and closed. (The two renames are not one
/// step: if the second failed, the first would already be in place.)
class TwoFileWriter : public ScanWriter {
 protected:
  TwoFileWriter(const std::string& frames_path, const std::string& side_path, const char* frames_dataset)
      : m_frames_out(frames_path),
        m_side_out(side_path),
        m_frames(H5File::create(m_frames_out.temp_path(), frames_path)),
        m_side(H5File::create(m_side_out.temp_path(), side_path)),
        m_dataset(frames_dataset) {
    files = {frames_path, side_path};
  }

 public:
  void frames(long first, const float* data, long count) override {
    detail::write_frame_slab(m_frames, m_dataset, first, data, count, m);
  }
  void commit() override {
    m_frames.close();
    m_side.close();
    m_frames_out.commit();
    m_side_out.commit();
  }

 protected:
  AtomicFile m_frames_out, m_side_out;
  H5File m_frames, m_side;
  std::string m_dataset;
  int m = 0;
};

/// The metadata every writer needs: positions in metres, x along columns.
struct ScanMeta {
  DetectorGeometry geometry;
  std::vector<double> x_m, y_m;
  MaskView mask;  ///< 1 = invalid, turned as the frames
  bool has_mask = false;
  HostCView2 probe;
  std::string probe_source;
  HostRView2 dark;  ///< turned as the frames
  std::string dark_source;
  long n = 0;
};

ScanMeta scan_meta(const CxiHeader& h) {
  ScanMeta s;
  s.geometry = h.info.geometry;
  s.n = h.info.num_frames;
  const double dx = s.geometry.object_pixel_x_m(), dy = s.geometry.object_pixel_y_m();
  for (const Position& p : h.info.positions) {
    s.x_m.push_back((p.col - double(h.info.grid_offset_col)) * dx);
    s.y_m.push_back((p.row - double(h.info.grid_offset_row)) * dy);
  }
  s.mask = h.mask;
  for (size_t p = 0; p < h.mask.size(); ++p) s.has_mask |= h.mask.data()[p] != 0;
  s.probe = h.probe;
  s.probe_source = h.info.probe_source;
  s.dark = h.dark;
  s.dark_source = h.layout.dark;
  return s;
}

class CxiWriter : public ScanWriter {
 public:
  CxiWriter(const std::string& path, const ScanMeta& s) : m_out(path), m_file(H5File::create(m_out.temp_path(), path)) {
    m = s.geometry.frame_size;
    detail::CxiMetadata meta;
    meta.geometry = s.geometry;
    meta.x_m = s.x_m;
    meta.y_m = s.y_m;
    meta.probe = s.probe;
    meta.dark = s.dark;
    if (s.has_mask) meta.mask = s.mask;
    meta.program_name = "ptycho convert";
    meta.instrument_name = "ptycho convert";
    detail::write_cxi_metadata(m_file, meta);
    detail::create_frames(m_file, kFrames, s.n, m);
    m_file.soft_link(kFrames, "/entry_1/data_1/data");
    files.push_back(path);
  }
  void frames(long first, const float* data, long count) override {
    detail::write_frame_slab(m_file, kFrames, first, data, count, m);
  }
  void commit() override {
    m_file.close();
    m_out.commit();
  }

 private:
  static constexpr const char* kFrames = "/entry_1/instrument_1/detector_1/data";
  AtomicFile m_out;
  H5File m_file;
  int m = 0;
};

/// Writes h5rw's `type` attribute, as PtyPy's own writer does.
void h5rw_type(H5File& f, const std::string& path, const char* type) { f.write_attribute(path, "type", std::string(type)); }

class PtydWriter : public ScanWriter {
 public:
  PtydWriter(const std::string& path, const ScanMeta& s) : m_out(path), m_file(H5File::create(m_out.temp_path(), path)) {
    const DetectorGeometry& g = s.geometry;
    m = g.frame_size;
    for (const char* group : {"/meta", "/chunks", "/info", "/chunks/0"}) {
      m_file.create_group(group);
      h5rw_type(m_file, group, "dict");
    }
    auto scalar = [&](const std::string& p, double v) {
      m_file.write_scalar(p, v);
      h5rw_type(m_file, p, "scalar");
    };
    auto pair = [&](const std::string& p, double a, double b, bool integer) {
      if (integer) {
        const long v[2] = {long(a), long(b)};
        m_file.write(p, H5T_NATIVE_LONG, H5T_STD_I64LE, {2}, v);
      } else {
        const double v[2] = {a, b};
        m_file.write(p, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {2}, v);
      }
      h5rw_type(m_file, p, "array");
    };
    scalar("/meta/energy", g.energy_j / kJoulePerEv / 1e3);
    scalar("/meta/distance", g.distance_m);
    pair("/meta/psize", g.pixel_y_m, g.pixel_x_m, false);
    pair("/meta/shape", m, m, true);
    pair("/meta/center", m / 2, m / 2, false);
    m_file.write_scalar("/meta/num_frames", s.n);
    h5rw_type(m_file, "/meta/num_frames", "scalar");
    scalar("/meta/version", 0.1);
    m_file.write_string("/meta/label", "ptycho convert");
    h5rw_type(m_file, "/meta/label", "string");

    std::vector<double> pos(2 * size_t(s.n));
    std::vector<long> indices(size_t(s.n));
    for (long j = 0; j < s.n; ++j) {
      pos[2 * j] = s.y_m[j];
      pos[2 * j + 1] = s.x_m[j];
      indices[j] = j;
    }
    m_file.write("/chunks/0/positions", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(s.n), 2}, pos.data());
    h5rw_type(m_file, "/chunks/0/positions", "array");
    m_file.write("/chunks/0/indices", H5T_NATIVE_LONG, H5T_STD_I64LE, {hsize_t(s.n)}, indices.data());
    h5rw_type(m_file, "/chunks/0/indices", "arraylist");
    detail::create_frames(m_file, kFrames, s.n, m);
    h5rw_type(m_file, kFrames, "array");
    // Weights per frame (PtyPy reads weights[i]): 1 good, 0 masked.
    const std::string context = m_file.where("cannot write /chunks/0/weights");
    H5Id dcpl = checked_id(H5Pcreate(H5P_DATASET_CREATE), context);
    const hsize_t chunk[3] = {1, hsize_t(m), hsize_t(m)};
    check_h5(H5Pset_chunk(dcpl.get(), 3, chunk), context);
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) check_h5(H5Pset_deflate(dcpl.get(), 4), context);
    m_file.write("/chunks/0/weights", H5T_NATIVE_UINT8, H5T_STD_U8LE, {hsize_t(s.n), hsize_t(m), hsize_t(m)}, nullptr,
                 dcpl.get());
    h5rw_type(m_file, "/chunks/0/weights", "array");
    m_weight.resize(size_t(m) * m);
    for (size_t p = 0; p < m_weight.size(); ++p) m_weight[p] = s.mask.size() > 0 && s.mask.data()[p] ? 0 : 1;
    files.push_back(path);
    if (s.probe.size() > 0) lost.push_back("the probe guess (" + s.probe_source + "): .ptyd holds no probe");
    if (s.dark.size() > 0) lost.push_back("the dark (" + s.dark_source + "): .ptyd holds none");
  }
  void frames(long first, const float* data, long count) override {
    detail::write_frame_slab(m_file, kFrames, first, data, count, m);
    const std::string context = m_file.where("cannot write /chunks/0/weights");
    H5Id dset = m_file.open_dataset("/chunks/0/weights");
    for (long j = 0; j < count; ++j) {
      H5Id space = checked_id(H5Dget_space(dset.get()), context);
      const hsize_t start[3] = {hsize_t(first + j), 0, 0}, extent[3] = {1, hsize_t(m), hsize_t(m)};
      check_h5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr), context);
      H5Id mem = checked_id(H5Screate_simple(3, extent, nullptr), context);
      check_h5(H5Dwrite(dset.get(), H5T_NATIVE_UINT8, mem.get(), space.get(), H5P_DEFAULT, m_weight.data()), context);
    }
  }
  void commit() override {
    m_file.close();
    m_out.commit();
  }

 private:
  static constexpr const char* kFrames = "/chunks/0/data";
  AtomicFile m_out;
  H5File m_file;
  std::vector<std::uint8_t> m_weight;
  int m = 0;
};

class FoldSliceWriter : public TwoFileWriter {
 public:
  FoldSliceWriter(const FoldSlicePair& pair, const ScanMeta& s) : TwoFileWriter(pair.dp, pair.para, "/dp") {
    const DetectorGeometry& g = s.geometry;
    m = g.frame_size;
    PTYCHO_INPUT_ERROR_IF(std::abs(g.pixel_x_m - g.pixel_y_m) > 1e-9 * g.pixel_x_m,
                          pair.para << ": fold_slice has one pixel size (/dx) but the scan's detector pixels are "
                                    << g.pixel_x_m << " x " << g.pixel_y_m << " m");
    detail::create_frames(m_frames, "/dp", s.n, m);
    if (s.has_mask) {
      m_frames.write("/mask", H5T_NATIVE_UINT8, H5T_STD_U8LE, {hsize_t(m), hsize_t(m)}, s.mask.data());
    }
    m_side.write("/ppX", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(s.n)}, s.x_m.data());
    m_side.write("/ppY", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(s.n)}, s.y_m.data());
    auto one = [&](const char* p, double v) { m_side.write(p, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {1}, &v); };
    one("/lambda", g.wavelength_m());
    one("/dx", g.object_pixel_x_m());
    one("/z", g.distance_m);
    one("/ds", g.pixel_x_m);
    if (s.probe.size() > 0) lost.push_back("the probe guess (" + s.probe_source + "): fold_slice's pair holds no probe");
    if (s.dark.size() > 0) lost.push_back("the dark (" + s.dark_source + "): fold_slice's pair holds none");
  }
};

/// ptychodus's batch layout: diffraction.h5 (patterns, indexes, bad pixels as
/// h5py's bool) and product-in.h5 (a product: the probe, a flat object, the
/// positions, the energy and the distance).
class PtychodusWriter : public TwoFileWriter {
 public:
  PtychodusWriter(const std::string& path, const ScanMeta& s, const CxiHeader& h)
      : TwoFileWriter(path, ptychodus_product(path), "/patterns") {
    const DetectorGeometry& g = s.geometry;
    m = g.frame_size;
    detail::create_frames(m_frames, "/patterns", s.n, m);
    std::vector<long long> index(size_t(s.n));
    for (long j = 0; j < s.n; ++j) index[j] = j;
    m_frames.write("/indexes", H5T_NATIVE_LLONG, H5T_STD_I64LE, {hsize_t(s.n)}, index.data());
    {  // h5py's bool: an enum {FALSE, TRUE} over int8.
      const std::string context = m_frames.where("cannot write /bad_pixels");
      H5Id type = checked_id(H5Tenum_create(H5T_NATIVE_INT8), context);
      const signed char no = 0, yes = 1;
      check_h5(H5Tenum_insert(type.get(), "FALSE", &no), context);
      check_h5(H5Tenum_insert(type.get(), "TRUE", &yes), context);
      std::vector<signed char> bad(size_t(m) * m, 0);
      for (size_t p = 0; p < bad.size() && s.mask.size() > 0; ++p) bad[p] = s.mask.data()[p] ? 1 : 0;
      m_frames.write("/bad_pixels", type.get(), type.get(), {hsize_t(m), hsize_t(m)}, bad.data());
    }
    // The product: attributes, positions, probe, a flat object on ptycho's grid.
    const double dx = g.object_pixel_x_m(), dy = g.object_pixel_y_m();
    m_side.write_attribute("/", "name", std::string("ptycho convert"));
    m_side.write_attribute("/", "comments", std::string("written by ptycho convert from ") + h.info.source);
    m_side.write_attribute("/", "detector_object_distance_m", g.distance_m);
    m_side.write_attribute("/", "probe_energy_eV", g.energy_ev());
    m_side.write_attribute("/", "exposure_time_s", 0.0);
    m_side.write("/probe_position_indexes", H5T_NATIVE_LLONG, H5T_STD_I64LE, {hsize_t(s.n)}, index.data());
    m_side.write("/probe_position_x_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(s.n)}, s.x_m.data());
    m_side.write("/probe_position_y_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {hsize_t(s.n)}, s.y_m.data());
    H5Id mem = make_complex_type(), file_type = make_complex64_file_type();
    m_side.write("/probe", mem.get(), file_type.get(), {1, hsize_t(m), hsize_t(m)}, s.probe.data());
    m_side.write_attribute("/probe", "pixel_width_m", dx);
    m_side.write_attribute("/probe", "pixel_height_m", dy);
    const long rows = h.info.object_rows, cols = h.info.object_cols;
    std::vector<cfloat> ones(size_t(rows) * size_t(cols), cfloat(1, 0));
    m_side.write("/object", mem.get(), file_type.get(), {1, hsize_t(rows), hsize_t(cols)}, ones.data());
    m_side.write_attribute("/object", "pixel_width_m", dx);
    m_side.write_attribute("/object", "pixel_height_m", dy);
    m_side.write_attribute("/object", "center_x_m", ((double(cols) - 1) / 2 - double(h.info.grid_offset_col)) * dx);
    m_side.write_attribute("/object", "center_y_m", ((double(rows) - 1) / 2 - double(h.info.grid_offset_row)) * dy);
    m_side.write("/object_layer_spacing_m", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {0}, nullptr);
    m_side.write("/loss_values", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, {0}, nullptr);
    if (s.dark.size() > 0) lost.push_back("the dark (" + s.dark_source + "): ptychodus's layout holds none");
  }
};

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) return std::filesystem::equivalent(a, b, ec);
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

}  // namespace

ConvertReport convert_scan(const std::string& in, const std::string& out, ScanFormat format, const ReadOptions& options,
                           size_t chunk_bytes) {
  silence_hdf5_errors();
  ConvertReport report;
  report.from = options.description.given() ? ScanFormat::cxi : detect_scan_format(in);  // (described: any HDF5)
  report.to = format;
  std::vector<std::string> outputs = {out};
  if (format == ScanFormat::fold_slice) {
    const FoldSlicePair pair = fold_slice_pair(out);
    outputs = {pair.dp, pair.para};
  }
  PTYCHO_INPUT_ERROR_IF(format == ScanFormat::ptychodus && std::filesystem::path(out).filename() != kPtychodusPatterns,
                        out << ": ptychodus's batch layout is a folder's diffraction.h5 and product-in.h5: name the "
                               "output DIR/diffraction.h5");
  if (format == ScanFormat::ptychodus) outputs = {out, ptychodus_product(out)};
  for (const std::string& i : scan_files(in))
    for (const std::string& o : outputs)
      PTYCHO_INPUT_ERROR_IF(same_file(i, o), o << ": is the input " << i << "; ptycho convert never overwrites its input");

  const CxiHeader header = read_cxi_header(in, options);
  ScanMeta meta = scan_meta(header);
  if (format == ScanFormat::ptychodus && meta.probe.size() == 0) {
    // A product needs a probe: the estimate reconstruct would start from.
    std::vector<long> all(size_t(header.info.num_frames));
    for (size_t i = 0; i < all.size(); ++i) all[i] = long(i);
    meta.probe = estimate_probe(read_frame_statistics(MPI_COMM_SELF, in, all, options, nullptr, chunk_bytes));
  }
  std::unique_ptr<ScanWriter> writer;
  switch (format) {
    case ScanFormat::cxi: writer = std::make_unique<CxiWriter>(out, meta); break;
    case ScanFormat::ptyd: writer = std::make_unique<PtydWriter>(out, meta); break;
    case ScanFormat::fold_slice: writer = std::make_unique<FoldSliceWriter>(fold_slice_pair(out), meta); break;
    case ScanFormat::ptychodus: writer = std::make_unique<PtychodusWriter>(out, meta, header); break;
  }
  const int m = header.info.geometry.frame_size;
  const long n = header.info.num_frames;
  const long chunk = std::max<long>(1, long(chunk_bytes / (size_t(m) * m * sizeof(float))));
  for (long first = 0; first < n; first += chunk) {
    std::vector<long> index(size_t(std::min(chunk, n - first)));
    for (size_t i = 0; i < index.size(); ++i) index[i] = first + long(i);
    const HostRView3 frames = read_scan_frames(MPI_COMM_SELF, header, index, options);
    writer->frames(first, frames.data(), long(index.size()));
  }
  writer->commit();
  report.frames = n;
  report.files = writer->files;
  report.lost = writer->lost;
  if (!header.layout.monitor.empty())
    report.lost.push_back("the monitor (" + header.layout.monitor + ")" +
                          (header.layout.dropped ? " and the " + std::to_string(header.layout.dropped) +
                                                       " frames it leaves out"
                                                 : std::string()));
  return report;
}

}  // namespace ptycho::io
