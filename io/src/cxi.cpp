#include "ptycho/io/cxi.hpp"

#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/first_guess.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "scan_reader_detail.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <cctype>
#include <cmath>
#include <complex>
#include <cstring>
#include <iterator>
#include <limits>
#include <sstream>

namespace ptycho::io {

namespace {

using detail::check_mpi;
using detail::collectively;
using MaskView = View2<std::uint8_t, HostSpace>;

constexpr const char* kFramesPaths[] = {"/entry_1/data_1/data", "/entry_1/instrument_1/detector_1/data"};
constexpr const char* kTranslationPaths[] = {"/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation"};
constexpr const char* kProbePaths[] = {"/entry_1/instrument_1/source_1/probe",
                                       "/entry_1/instrument_1/source_1/illumination",
                                       "/entry_1/instrument_1/detector_1/probe"};
constexpr const char* kResultProbePath = "/entry_1/image_2/data";  // a result's probe modes
constexpr const char* kEnergyPath = "/entry_1/instrument_1/source_1/energy";
constexpr const char* kDistancePath = "/entry_1/instrument_1/detector_1/distance";
constexpr const char* kPixelXPath = "/entry_1/instrument_1/detector_1/x_pixel_size";
constexpr const char* kPixelYPath = "/entry_1/instrument_1/detector_1/y_pixel_size";
constexpr const char* kMaskPath = "/entry_1/instrument_1/detector_1/mask";
constexpr const char* kMonitorPath = "/entry_1/data_1/monitor";
constexpr const char* kBasisPath = "/entry_1/instrument_1/detector_1/basis_vectors";
/// The dark: CXI's name (cdtools reads it), then PyNX's.
constexpr const char* kDarkPaths[] = {"/entry_1/instrument_1/detector_1/data_dark",
                                      "/entry_1/instrument_1/detector_1/dark"};
/// CXI's PIXEL_IS_IN_MASK: invalid, saturated, hot, dead, shadowed, in the
/// peak mask, to be ignored, bad, missing (bits 0-7 and 9).
constexpr std::uint64_t kCxiMaskedBits = 0x2ff;

/// Largest extent of the object grid along an axis [pixels].
constexpr long kMaxGridExtent = 1L << 20;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

const char* first_existing(const H5File& f, const char* const* paths, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (f.exists(paths[i])) return paths[i];
  return nullptr;
}

struct Unit {
  const char* name;  ///< lower case
  double factor;     ///< to SI
};
constexpr Unit kLengthUnits[] = {{"", 1},           {"m", 1},     {"metre", 1}, {"metres", 1},       {"meter", 1},
                                 {"meters", 1},     {"mm", 1e-3}, {"um", 1e-6}, {"\xc2\xb5m", 1e-6}, {"micron", 1e-6},
                                 {"microns", 1e-6}, {"nm", 1e-9}};
constexpr Unit kEnergyUnits[] = {
    {"", 1}, {"j", 1}, {"joule", 1}, {"joules", 1}, {"ev", kJoulePerEv}, {"kev", 1e3 * kJoulePerEv}};

/// The factor from a `units` attribute to SI, or 0 if the unit is unknown
/// (an empty attribute means SI).
template <size_t N>
double unit_factor(const Unit (&table)[N], const std::string& units) {
  const std::string u = lower(units);
  for (const Unit& unit : table)
    if (u == unit.name) return unit.factor;
  return 0.0;
}

/// A required scalar in SI units, converted from its `units` attribute if it has one.
double read_si_scalar(const H5File& f, const char* path, const char* what, bool energy) {
  const char* si = energy ? "J" : "m";
  PTYCHO_INPUT_ERROR_IF(!f.exists(path),
                        f.name() << ": " << path << " does not exist (the " << what << " in " << si << " is required)");
  double v = f.read_scalar(path);
  if (auto units = f.string_attribute(path, "units")) {
    const double factor = energy ? unit_factor(kEnergyUnits, *units) : unit_factor(kLengthUnits, *units);
    PTYCHO_INPUT_ERROR_IF(factor == 0, f.name() << ": " << path << " has units \"" << *units << "\", expected " << si);
    v *= factor;
  }
  PTYCHO_INPUT_ERROR_IF(!std::isfinite(v) || v <= 0,
                        f.name() << ": " << path << " is " << v << "; the " << what << " must be positive");
  return v;
}

double read_energy_j(const H5File& f) {
  const double v = read_si_scalar(f, kEnergyPath, "photon energy", true);
  // 6 eV .. 10 MeV: anything else is almost surely not in joules.
  PTYCHO_INPUT_ERROR_IF(v < 1e-18 || v > 1.6e-12, f.name() << ": " << kEnergyPath << " is " << v << " J ("
                                                           << v / kJoulePerEv / 1e3
                                                           << " keV), which is not a plausible photon energy; "
                                                              "CXI stores the energy in joules");
  return v;
}

template <class T>
void orient_in_place(T* frames, size_t count, int m, const Orientation& o) {
  if (o.identity()) return;
  const size_t mm = size_t(m) * m;
  std::vector<T> tmp(mm);
  for (size_t j = 0; j < count; ++j) {
    T* f = frames + j * mm;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        // Output pixel (r, c) comes from input (r', c'): undo the flips, then the transpose.
        const int rr = o.flip_y ? m - 1 - r : r, cc = o.flip_x ? m - 1 - c : c;
        tmp[size_t(r) * m + c] = o.transpose ? f[size_t(cc) * m + rr] : f[size_t(rr) * m + cc];
      }
    std::copy(tmp.begin(), tmp.end(), f);
  }
}

/// The eight orientations; each turns a 2 x 2 frame differently.
std::vector<Orientation> all_orientations() {
  std::vector<Orientation> all;
  for (int k = 0; k < 8; ++k) all.push_back(Orientation{(k & 4) != 0, (k & 2) != 0, (k & 1) != 0});
  return all;
}

/// The orientation that turns the 2 x 2 frame {0, 1, 2, 3} into `corners`.
Orientation orientation_of(const std::array<int, 4>& corners) {
  for (const Orientation& o : all_orientations()) {
    std::array<int, 4> f = {0, 1, 2, 3};
    orient_in_place(f.data(), 1, 2, o);
    if (f == corners) return o;
  }
  PTYCHO_THROW_IF(true, "orientation_of: not a turn of a square");
  return {};
}


/// The file's probe as (M, M), or an empty view; `source` receives its description.
HostCView2 read_probe(const H5File& f, int m, std::string& path_out, std::string& source, bool results_too = false) {
  const char* path = first_existing(f, kProbePaths, std::size(kProbePaths));
  if (!path && results_too && f.exists(kResultProbePath)) path = kResultProbePath;
  if (!path) return HostCView2();
  path_out = path;
  return detail::probe_from_modes(f, path, m, source);
}

/// CXI's basis_vectors: the lab (x, y, z) step [m] along the frames' rows
/// (slow axis) and columns (fast axis); the default, [[0, -py, 0], [-px, 0, 0]],
/// is the scan's own frame. A basis that turns the default by quarter turns
/// and flips sets h.layout.stored to the turn that undoes it (and swaps the
/// pixel sizes if it swaps the axes). Read as (2, 3), rows the vectors (the
/// CXI specification), or (3, 2), columns the vectors (as cdtools writes it).
void read_basis_vectors(const H5File& f, CxiHeader& h) {
  if (!f.exists(kBasisPath)) return;
  std::vector<hsize_t> dims;
  const std::vector<double> v = f.read_doubles(kBasisPath, &dims);
  const bool rows = dims == std::vector<hsize_t>{2, 3}, cols = dims == std::vector<hsize_t>{3, 2};
  PTYCHO_INPUT_ERROR_IF(!rows && !cols, f.name() << ": " << kBasisPath << " has shape " << shape_string(dims)
                                                 << ", expected (2, 3): the steps along the rows and columns in (x, y, z)");
  double step[2][3];  // [row/column axis][x, y, z]
  for (int a = 0; a < 2; ++a)
    for (int k = 0; k < 3; ++k) step[a][k] = rows ? v[size_t(a) * 3 + k] : v[size_t(k) * 2 + a];
  // Each axis must run along x or along y: the frames are turned, never resampled.
  int along[2], sign[2];  // along: 0 = x, 1 = y
  double size[2];
  for (int a = 0; a < 2; ++a) {
    const double len = std::sqrt(step[a][0] * step[a][0] + step[a][1] * step[a][1] + step[a][2] * step[a][2]);
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(len) || len <= 0,
                          f.name() << ": " << kBasisPath << " has a zero or non-finite step along the frames' "
                                   << (a == 0 ? "rows" : "columns"));
    const int k = std::abs(step[a][0]) >= std::abs(step[a][1]) ? 0 : 1;
    const bool aligned = std::abs(step[a][1 - k]) <= 1e-6 * len && std::abs(step[a][2]) <= 1e-6 * len;
    PTYCHO_INPUT_ERROR_IF(!aligned, f.name() << ": " << kBasisPath << " is not a quarter turn or flip of the default "
                                             << "[[0, -y_pixel_size, 0], [-x_pixel_size, 0, 0]] (a tilted or rotated "
                                                "detector); ptycho turns frames but does not resample them");
    along[a] = k;
    sign[a] = step[a][k] < 0 ? -1 : 1;
    size[a] = len;
  }
  PTYCHO_INPUT_ERROR_IF(along[0] == along[1], f.name() << ": " << kBasisPath << " has both frame axes along "
                                                       << (along[0] == 0 ? "x" : "y"));
  // Where the corners of a 2 x 2 stored frame land in the scan's frame, whose
  // rows run along -y and columns along -x (the default): a stored index that
  // steps along -y or -x keeps its order, one along +y or +x is reversed. Each
  // scan-frame corner holds the stored index i * 2 + j it came from.
  std::array<int, 4> canonical{};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      int u = 0, w = 0;  // scan-frame row and column
      (along[0] == 1 ? u : w) = sign[0] < 0 ? i : 1 - i;
      (along[1] == 1 ? u : w) = sign[1] < 0 ? j : 1 - j;
      canonical[size_t(u * 2 + w)] = i * 2 + j;
    }
  h.layout.stored = orientation_of(canonical);
  h.layout.stored_source = kBasisPath;
  // Only the axes and their signs are taken from the basis (its lengths may
  // be in other units, or unit directions): x_pixel_size and y_pixel_size
  // are the steps along the stored columns and rows (as cdtools writes them),
  // so they trade places when the frames' axes are swapped.
  (void)size;
  if (along[0] == 0) std::swap(h.info.geometry.pixel_x_m, h.info.geometry.pixel_y_m);
}

/// The file's dark as (M, M), averaged over any leading axes; an empty view if none.
HostRView2 read_dark(const H5File& f, int m, const MaskView& mask, std::string& path_out) {
  const char* path = first_existing(f, kDarkPaths, std::size(kDarkPaths));
  if (!path) return HostRView2();
  std::vector<hsize_t> dims;
  const std::vector<double> v = f.read_doubles(path, &dims);
  const bool ok = dims.size() >= 2 && dims[dims.size() - 2] == hsize_t(m) && dims.back() == hsize_t(m) && !v.empty();
  PTYCHO_INPUT_ERROR_IF(!ok, f.name() << ": " << path << " has shape " << shape_string(dims) << " but the frames are "
                                      << m << " x " << m << "; a dark is (M, M) or (K, M, M)");
  const size_t mm = size_t(m) * m, count = v.size() / mm;
  HostRView2 dark(Kokkos::view_alloc(std::string("ptycho::dark")), m, m);
  for (size_t k = 0; k < count; ++k)
    for (size_t p = 0; p < mm; ++p) {
      const double x = v[k * mm + p];
      if (mask.data()[p]) continue;  // a masked pixel's dark is never used
      PTYCHO_INPUT_ERROR_IF(!std::isfinite(x), f.name() << ": " << path << " has a non-finite value at element "
                                                        << k * mm + p);
      dark.data()[p] += float(x / double(count));
    }
  path_out = path;
  return dark;
}

/// The monitor (data_1/monitor, (N,) or a raster's (rows, columns), one
/// value per frame): as PyNX does, frames whose monitor is at most 0.1 x its
/// median (a closed shutter, a lost beam) are left out, with their positions.
void read_monitor(const H5File& f, CxiHeader& h, std::vector<double>& x, std::vector<double>& y) {
  if (!f.exists(kMonitorPath)) return;
  const long n = h.info.num_frames;
  std::vector<hsize_t> dims;
  const std::vector<double> v = f.read_doubles(kMonitorPath, &dims);
  PTYCHO_INPUT_ERROR_IF(long(v.size()) != n, f.name() << ": " << kMonitorPath << " has shape " << shape_string(dims)
                                                      << " but there are " << n << " frames; expected one value each");
  for (long j = 0; j < n; ++j)
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(v[j]), f.name() << ": " << kMonitorPath << " has a non-finite value at frame " << j);
  std::vector<double> sorted = v;
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
  const double median = sorted[size_t(n / 2)];
  PTYCHO_INPUT_ERROR_IF(!(median > 0), f.name() << ": " << kMonitorPath << " has the median " << median
                                                << "; a monitor counts the incident beam, so it must be positive");
  h.layout.monitor = kMonitorPath;
  std::vector<long> kept;
  std::vector<double> kx, ky;
  for (long j = 0; j < n; ++j)
    if (v[j] > 0.1 * median) {
      kept.push_back(j);
      kx.push_back(x[j]);
      ky.push_back(y[j]);
    }
  if (long(kept.size()) == n) return;
  PTYCHO_INPUT_ERROR_IF(kept.size() < 2, f.name() << ": " << kMonitorPath << " leaves fewer than 2 frames above 0.1 x "
                                                  << "its median");
  FrameBlock& b = h.layout.blocks.front();
  b.stored = b.count;
  b.count = long(kept.size());
  b.kept = std::move(kept);
  h.layout.dropped = n - b.count;
  h.info.num_frames = b.count;
  x = std::move(kx);
  y = std::move(ky);
}

// ---------------------------------------------------------------- header broadcast

std::vector<char> pack_header(const CxiHeader& h) {
  detail::BytePacker p;
  const ScanInfo& s = h.info;
  p.put(s.source);
  p.put(s.geometry.frame_size);
  p.put(s.geometry.energy_j);
  p.put(s.geometry.distance_m);
  p.put(s.geometry.pixel_x_m);
  p.put(s.geometry.pixel_y_m);
  p.put(s.num_frames);
  p.put_array(s.positions.data(), s.positions.size());
  p.put(s.object_rows);
  p.put(s.object_cols);
  p.put(s.grid_offset_row);
  p.put(s.grid_offset_col);
  p.put(s.probe_source);
  p.put(h.layout.format);
  p.put(long(h.layout.blocks.size()));
  for (const FrameBlock& b : h.layout.blocks) {
    p.put(b.file);
    p.put(b.dataset);
    p.put(b.first);
    p.put(b.count);
    p.put(b.raster_cols);
    p.put(b.stored);
    p.put_array(b.kept.data(), b.kept.size());
  }
  p.put(h.layout.stored.transpose);
  p.put(h.layout.stored.flip_y);
  p.put(h.layout.stored.flip_x);
  p.put(h.layout.stored_source);
  p.put(h.layout.frames);
  p.put(h.layout.frames_type);
  p.put(h.layout.translation);
  p.put(h.layout.translation_transposed);
  p.put(h.layout.mask);
  p.put(h.layout.dark);
  p.put(h.layout.monitor);
  p.put(h.layout.dropped);
  p.put(h.layout.probe);
  p.put_array(h.mask.data(), h.mask.size());
  p.put_array(h.probe.data(), h.probe.size());
  p.put_array(h.dark.data(), h.dark.size());
  p.put(s.background_source);
  return std::move(p.bytes());
}

CxiHeader unpack_header(const std::vector<char>& bytes) {
  detail::ByteUnpacker u(bytes);
  CxiHeader h;
  ScanInfo& s = h.info;
  s.source = u.get_string();
  s.geometry.frame_size = u.get<int>();
  s.geometry.energy_j = u.get<double>();
  s.geometry.distance_m = u.get<double>();
  s.geometry.pixel_x_m = u.get<double>();
  s.geometry.pixel_y_m = u.get<double>();
  s.num_frames = u.get<long>();
  s.positions.resize(u.peek_count());
  u.get_array(s.positions.data(), s.positions.size());
  s.object_rows = u.get<long>();
  s.object_cols = u.get<long>();
  s.grid_offset_row = u.get<long>();
  s.grid_offset_col = u.get<long>();
  s.probe_source = u.get_string();
  h.layout.format = u.get_string();
  h.layout.blocks.resize(size_t(u.get<long>()));
  for (FrameBlock& b : h.layout.blocks) {
    b.file = u.get_string();
    b.dataset = u.get_string();
    b.first = u.get<long>();
    b.count = u.get<long>();
    b.raster_cols = u.get<long>();
    b.stored = u.get<long>();
    b.kept.resize(u.peek_count());
    u.get_array(b.kept.data(), b.kept.size());
  }
  h.layout.stored.transpose = u.get<bool>();
  h.layout.stored.flip_y = u.get<bool>();
  h.layout.stored.flip_x = u.get<bool>();
  h.layout.stored_source = u.get_string();
  h.layout.frames = u.get_string();
  h.layout.frames_type = u.get_string();
  h.layout.translation = u.get_string();
  h.layout.translation_transposed = u.get<bool>();
  h.layout.mask = u.get_string();
  h.layout.dark = u.get_string();
  h.layout.monitor = u.get_string();
  h.layout.dropped = u.get<long>();
  h.layout.probe = u.get_string();
  const int m = s.geometry.frame_size;
  h.mask = MaskView(Kokkos::view_alloc(std::string("ptycho::mask"), Kokkos::WithoutInitializing), m, m);
  u.get_array(h.mask.data(), h.mask.size());
  if (u.peek_count() > 0) {
    h.probe = HostCView2(Kokkos::view_alloc(std::string("ptycho::probe"), Kokkos::WithoutInitializing), m, m);
    u.get_array(h.probe.data(), h.probe.size());
  } else {
    (void)u.get<long long>();  // the empty probe's element count
  }
  if (u.peek_count() > 0) {
    h.dark = HostRView2(Kokkos::view_alloc(std::string("ptycho::dark"), Kokkos::WithoutInitializing), m, m);
    u.get_array(h.dark.data(), h.dark.size());
  } else {
    (void)u.get<long long>();  // the empty dark's element count
  }
  s.background_source = u.get_string();
  return h;
}

// ---------------------------------------------------------------- frames

/// Fills invalid pixels of `img` (M*M) with the mean of their valid (or
/// already filled) 8-neighbours, one ring per pass, until none is left.
void fill_invalid(std::vector<double>& img, const MaskView& mask, int m) {
  std::vector<std::uint8_t> known(size_t(m) * m);
  long left = 0;
  for (size_t p = 0; p < known.size(); ++p) {
    known[p] = mask.data()[p] == 0;
    left += !known[p];
  }
  std::vector<std::uint8_t> next;
  while (left > 0) {
    next = known;
    long filled = 0;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        const size_t p = size_t(r) * m + c;
        if (known[p]) continue;
        double sum = 0;
        int count = 0;
        for (int dr = -1; dr <= 1; ++dr)
          for (int dc = -1; dc <= 1; ++dc) {
            const int rr = r + dr, cc = c + dc;
            if ((dr == 0 && dc == 0) || rr < 0 || rr >= m || cc < 0 || cc >= m) continue;
            const size_t q = size_t(rr) * m + cc;
            if (known[q]) {
              sum += img[q];
              ++count;
            }
          }
        if (count > 0) {
          img[p] = sum / count;
          next[p] = 1;
          ++filled;
        }
      }
    if (filled == 0) break;  // every pixel invalid: nothing to fill from
    left -= filled;
    known.swap(next);
  }
}

/// Frames start + k * stride + [0, block) for k < count: one strided hyperslab.
struct SlabGroup {
  long start, stride, count, block;
};

/// The frames of one H5Dread: index[lo, hi), selected as a union of groups.
struct ReadBatch {
  size_t lo = 0, hi = 0;
  std::vector<SlabGroup> groups;
};

/// Most hyperslabs OR-ed into one selection: HDF5 1.10 builds unions in
/// quadratic time (10k single-frame runs take a second, 50k over a minute).
constexpr size_t kMaxGroupsPerRead = 256;

/// Plans the reads of the frames `index` (strictly ascending): runs of
/// consecutive frames; runs of equal length at equal spacing merged into
/// strided hyperslabs (a round-robin share is one hyperslab); cut into reads
/// of at most `max_frames` frames and kMaxGroupsPerRead hyperslabs.
std::vector<ReadBatch> plan_reads(const std::vector<long>& index, size_t max_frames, long row_length) {
  // Maximal runs, cut to at most max_frames frames (and at the ends of raster rows).
  std::vector<std::pair<long, long>> runs;  // (start, length)
  for (size_t i = 0; i < index.size();) {
    size_t j = i + 1;
    while (j < index.size() && index[j] == index[j - 1] + 1 && j - i < max_frames &&
           (row_length == 0 || index[j] % row_length != 0))
      ++j;
    runs.emplace_back(index[i], long(j - i));
    i = j;
  }
  // Runs of one length at one spacing become one group (not in a raster:
  // there each run is one hyperslab within a row).
  std::vector<SlabGroup> groups;
  for (size_t g = 0; g < runs.size();) {
    SlabGroup s{runs[g].first, 1, 1, runs[g].second};
    size_t h = g + 1;
    if (row_length == 0 && h < runs.size() && runs[h].second == s.block) {
      s.stride = runs[h].first - s.start;
      while (h < runs.size() && runs[h].second == s.block && runs[h].first - runs[h - 1].first == s.stride) ++h;
      s.count = long(h - g);
    }
    groups.push_back(s);
    g = h;
  }
  // Reads of at most max_frames frames and kMaxGroupsPerRead groups.
  std::vector<ReadBatch> batches;
  ReadBatch current;
  size_t frames = 0;
  auto close = [&] {
    if (current.groups.empty()) return;
    current.hi = current.lo + frames;
    batches.push_back(current);
    current = ReadBatch();
    current.lo = batches.back().hi;
    frames = 0;
  };
  for (const SlabGroup& g : groups) {
    long done = 0;
    while (done < g.count) {
      const long fit = long((max_frames - frames) / size_t(g.block));
      if (fit == 0) {
        close();
        continue;
      }
      const long take = std::min(fit, g.count - done);
      current.groups.push_back(SlabGroup{g.start + done * g.stride, g.stride, take, g.block});
      frames += size_t(take * g.block);
      done += take;
      if (frames == max_frames || current.groups.size() == kMaxGroupsPerRead) close();
    }
  }
  close();
  return batches;
}

/// Selects the union of `groups` in `space`: (N, M, M), or with row_length >
/// 0 a raster (N / row_length, row_length, M, M) whose groups lie within rows.
void select_groups(hid_t space, const std::vector<SlabGroup>& groups, int m, long row_length,
                   const std::string& context) {
  for (size_t g = 0; g < groups.size(); ++g) {
    const H5S_seloper_t op = g == 0 ? H5S_SELECT_SET : H5S_SELECT_OR;
    if (row_length > 0) {
      const hsize_t start[4] = {hsize_t(groups[g].start / row_length), hsize_t(groups[g].start % row_length), 0, 0};
      const hsize_t count[4] = {1, 1, 1, 1};
      const hsize_t block[4] = {1, hsize_t(groups[g].block), hsize_t(m), hsize_t(m)};
      check_h5(H5Sselect_hyperslab(space, op, start, nullptr, count, block), context);
      continue;
    }
    const hsize_t start[3] = {hsize_t(groups[g].start), 0, 0};
    const hsize_t stride[3] = {hsize_t(std::max(groups[g].stride, 1L)), 1, 1};
    const hsize_t count[3] = {hsize_t(groups[g].count), 1, 1};
    const hsize_t block[3] = {hsize_t(groups[g].block), hsize_t(m), hsize_t(m)};
    check_h5(H5Sselect_hyperslab(space, op, start, stride, count, block), context);
  }
}

/// The shape a frame block's dataset must have.
std::vector<hsize_t> block_shape(const FrameBlock& b, int m) {
  const long stored = b.kept.empty() ? b.count : b.stored;
  if (b.raster_cols > 0) return {hsize_t(stored / b.raster_cols), hsize_t(b.raster_cols), hsize_t(m), hsize_t(m)};
  return {hsize_t(stored), hsize_t(m), hsize_t(m)};
}

/// Reads the frames index[lo, hi) (global indices) of one block into frames[lo, hi).
void read_block(MPI_Comm comm, const FrameBlock& block, int m, const std::vector<long>& index, size_t lo, size_t hi,
                const HostRView3& frames, FrameTransfer transfer, size_t max_read_bytes) {
  const std::string& frames_path = block.dataset;
  H5File file = H5File::open_read_parallel(comm, block.file);
  const std::string context = file.where("cannot read " + frames_path);
  H5Id dset = file.open_dataset(frames_path);
  const std::vector<hsize_t> dims = file.extents(dset.get(), frames_path);
  PTYCHO_INPUT_ERROR_IF(dims != block_shape(block, m), file.name() << ": " << frames_path << " changed shape while being read");
  H5Id dxpl = checked_id(H5Pcreate(H5P_DATASET_XFER), context);
  check_h5(H5Pset_dxpl_mpio(dxpl.get(),
                            transfer == FrameTransfer::collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT),
           context);

  // Read the file's own (native) type and convert to float in memory: HDF5
  // turns a collective read that needs a type conversion into independent I/O.
  H5Id file_type = checked_id(H5Dget_type(dset.get()), context);
  H5Id native = checked_id(H5Tget_native_type(file_type.get(), H5T_DIR_ASCEND), context);
  const htri_t is_float = H5Tequal(native.get(), H5T_NATIVE_FLOAT);
  check_h5(is_float, context);
  const size_t native_size = H5Tget_size(native.get());
  const size_t element_bytes = is_float > 0 ? sizeof(float) : std::max(native_size, sizeof(float));

  // Reads of at most max_read_bytes; with collective transfer every rank
  // makes the same number of H5Dread calls (empty selections where done).
  const size_t mm = size_t(m) * m;
  const size_t max_frames = std::max<size_t>(1, max_read_bytes / (mm * element_bytes));
  std::vector<long> local(index.begin() + long(lo), index.begin() + long(hi));
  for (long& i : local) i = block.kept.empty() ? i - block.first : block.kept[size_t(i - block.first)];
  const std::vector<ReadBatch> batches = plan_reads(local, max_frames, block.raster_cols);
  long n_batches = long(batches.size());
  if (transfer == FrameTransfer::collective) {
    const long mine = n_batches;
    check_mpi(MPI_Allreduce(&mine, &n_batches, 1, MPI_LONG, MPI_MAX, comm), "MPI_Allreduce");
  }
  std::vector<unsigned char> raw;
  if (is_float == 0 && !local.empty()) raw.resize(std::min(max_frames, local.size()) * mm * element_bytes);
  double dummy = 0;
  for (long b = 0; b < n_batches; ++b) {
    const bool have = size_t(b) < batches.size();
    const size_t blo = have ? lo + batches[b].lo : 0;
    const size_t bhi = have ? lo + batches[b].hi : 0;
    H5Id file_space = checked_id(H5Dget_space(dset.get()), context);
    H5Id mem_space;
    void* buffer = &dummy;
    if (have) {
      select_groups(file_space.get(), batches[b].groups, m, block.raster_cols, context);
      const hsize_t mdims[3] = {hsize_t(bhi - blo), hsize_t(m), hsize_t(m)};
      mem_space = checked_id(H5Screate_simple(3, mdims, nullptr), context);
      buffer = is_float > 0 ? static_cast<void*>(frames.data() + blo * mm) : static_cast<void*>(raw.data());
    } else {
      check_h5(H5Sselect_none(file_space.get()), context);
      const hsize_t mdims[3] = {1, hsize_t(m), hsize_t(m)};
      mem_space = checked_id(H5Screate_simple(3, mdims, nullptr), context);
      check_h5(H5Sselect_none(mem_space.get()), context);
    }
    check_h5(H5Dread(dset.get(), native.get(), mem_space.get(), file_space.get(), dxpl.get(), buffer), context);
    if (is_float == 0 && have) {
      // In place: the buffer holds max(native, float) bytes per element.
      const size_t count = (bhi - blo) * mm;
      check_h5(H5Tconvert(native.get(), H5T_NATIVE_FLOAT, count, raw.data(), nullptr, H5P_DEFAULT), context);
      std::memcpy(static_cast<void*>(frames.data() + blo * mm), raw.data(), count * sizeof(float));
    }
  }
  dset.reset();
  file.close();
}

/// Reads the frames `index` (global, ascending) of every block into `frames`
/// (collective: every rank visits every block).
void read_frames(MPI_Comm comm, const CxiHeader& header, const std::vector<long>& index, const HostRView3& frames,
                 FrameTransfer transfer, size_t max_read_bytes) {
  const int m = header.info.geometry.frame_size;
  // Blocks no rank reads from are skipped by every rank (the opens and reads are collective).
  const size_t nb = header.layout.blocks.size();
  std::vector<size_t> lo(nb), hi(nb);
  std::vector<int> needed(nb), any(nb);
  for (size_t b = 0; b < nb; ++b) {
    const FrameBlock& block = header.layout.blocks[b];
    lo[b] = size_t(std::lower_bound(index.begin(), index.end(), block.first) - index.begin());
    hi[b] = size_t(std::lower_bound(index.begin(), index.end(), block.first + block.count) - index.begin());
    needed[b] = hi[b] > lo[b];
  }
  check_mpi(MPI_Allreduce(needed.data(), any.data(), int(nb), MPI_INT, MPI_LOR, comm), "MPI_Allreduce");
  for (size_t b = 0; b < nb; ++b)
    if (any[b]) read_block(comm, header.layout.blocks[b], m, index, lo[b], hi[b], frames, transfer, max_read_bytes);
}

}  // namespace

namespace detail {

/// Checks the shape of a frames dataset: (N, M, M) or a raster (R, C, M, M),
/// M even and at most kMaxFrameSize.
void check_frames_shape(const std::string& path, const std::string& frames, const std::vector<hsize_t>& dims) {
  PTYCHO_INPUT_ERROR_IF(dims.size() != 3 && dims.size() != 4, path << ": " << frames << " has shape " << shape_string(dims)
                                                                    << ", expected (N, M, M) frames or a raster (rows, columns, M, M)");
  PTYCHO_INPUT_ERROR_IF(dims[0] == 0 || (dims.size() == 4 && dims[1] == 0), path << ": " << frames << " holds no frames");
  const hsize_t a = dims[dims.size() - 2], b = dims.back();
  PTYCHO_INPUT_ERROR_IF(a != b, path << ": " << frames << " has frames of " << a << " x " << b
                                     << " pixels; frames must be square");
  PTYCHO_INPUT_ERROR_IF(a < 2 || a % 2 != 0 || a > hsize_t(kMaxFrameSize),
                        path << ": " << frames << " has frames of " << a << " x " << b
                             << " pixels; the frame size must be even and at most " << kMaxFrameSize
                             << " (crop the frames about the beam centre)");
}


FrameBlock frames_block(const H5File& f, const std::string& frames, std::string& type_out) {
  const std::string& path = f.name();
  H5Id dset = f.open_dataset(frames);
  const std::vector<hsize_t> dims = f.extents(dset.get(), frames);
  H5Id type = checked_id(H5Dget_type(dset.get()), f.where("cannot read the type of " + frames));
  type_out = type_name(type.get());
  const H5T_class_t cls = H5Tget_class(type.get());
  PTYCHO_INPUT_ERROR_IF(cls != H5T_INTEGER && cls != H5T_FLOAT,
                        path << ": " << frames << " holds " << type_out << " values, expected counts (integers or floats)");
  check_frames_shape(path, frames, dims);
  check_filters(f, dset.get(), frames);
  FrameBlock block;
  block.file = path;
  block.dataset = frames;
  block.count = long(dims[0]);
  if (dims.size() == 4) {  // a raster (rows, columns, M, M), as NXcxi_ptycho allows
    block.count = long(dims[0] * dims[1]);
    block.raster_cols = long(dims[1]);
  }
  return block;
}

int frame_side(const H5File& f, const std::string& frames) {
  H5Id dset = f.open_dataset(frames);
  return int(f.extents(dset.get(), frames).back());
}

void check_filters(const H5File& f, hid_t dset, const std::string& frames) {
  H5Id dcpl = checked_id(H5Dget_create_plist(dset), f.where("cannot read the storage of " + frames));
  const int n = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t n_values = 0;
    char name[256] = {0};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), unsigned(i), &flags, &n_values, nullptr, sizeof(name), name, &config);
    if (id < 0 || H5Zfilter_avail(id) > 0) continue;
    PTYCHO_INPUT_ERROR_IF(true, f.name() << ": " << frames << " is compressed with HDF5 filter " << id
                                         << (name[0] ? std::string(" (") + name + ")" : std::string())
                                         << ", which this HDF5 cannot load: install its plugin (Debian: bitshuffle, "
                                            "hdf5-filter-plugin) or point HDF5_PLUGIN_PATH at it");
  }
}

void finish_header(CxiHeader& h, const std::vector<double>& x_m, const std::vector<double>& y_m,
                   const ReadOptions& options) {
  ScanInfo& info = h.info;
  const ObjectGrid grid = place_on_object_grid(x_m, y_m, info.geometry, options.margin_px, info.source);
  info.positions = grid.positions;
  info.object_rows = grid.rows;
  info.object_cols = grid.cols;
  info.grid_offset_row = grid.shift_row;
  info.grid_offset_col = grid.shift_col;
  const int m = info.geometry.frame_size;
  if (h.mask.size() == 0) h.mask = MaskView(Kokkos::view_alloc(std::string("ptycho::mask")), m, m);
  orient_frames(h.mask.data(), 1, m, then(h.layout.stored, options.orientation));
  if (h.dark.size() > 0) orient_frames(h.dark.data(), 1, m, then(h.layout.stored, options.orientation));
  info.probe_source = h.probe.size() > 0 ? info.probe_source : std::string(kEstimatedProbeSource);
}

}  // namespace detail

MaskView detail::read_mask(const H5File& f, const std::string& mask_path, int m) {
  MaskView mask(Kokkos::view_alloc(std::string("ptycho::mask")), m, m);
  if (!f.exists(mask_path)) return mask;
  H5Id dset = f.open_dataset(mask_path);
  const std::vector<hsize_t> dims = f.extents(dset.get(), mask_path);
  PTYCHO_INPUT_ERROR_IF(dims.size() != 2 || dims[0] != hsize_t(m) || dims[1] != hsize_t(m),
                        f.name() << ": " << mask_path << " has shape " << shape_string(dims) << " but the frames are "
                                 << m << " x " << m);
  H5Id ftype = checked_id(H5Dget_type(dset.get()), f.where("cannot read " + mask_path));
  const size_t n = size_t(m) * m;
  if (H5Tget_class(ftype.get()) == H5T_ENUM) {
    // h5py writes bool arrays as an enum over an integer: read the integers.
    H5Id native =
        checked_id(H5Tget_native_type(ftype.get(), H5T_DIR_ASCEND), f.where("cannot read " + mask_path));
    const size_t size = H5Tget_size(native.get());
    std::vector<unsigned char> raw(n * size);
    check_h5(H5Dread(dset.get(), native.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()),
             f.where("cannot read " + mask_path));
    for (size_t p = 0; p < n; ++p) {
      bool nonzero = false;
      for (size_t b = 0; b < size; ++b) nonzero |= raw[p * size + b] != 0;
      mask.data()[p] = nonzero ? 1 : 0;
    }
  } else {
    // An integer mask holds CXI's pixel mask bit flags (Maia 2012,
    // cxidb.org): a pixel is masked if any of kCxiMaskedBits is set; the
    // other flags (noisy, out of the resolution limits, artifact corrected,
    // failed artifact correction, peak for the hit finder, background
    // corrected) only describe it, and a mask of 0 and 1 reads as before.
    // Any other type: nonzero (NaN included) masks the pixel.
    const bool flags = H5Tget_class(ftype.get()) == H5T_INTEGER;
    dset.reset();
    const std::vector<double> v = f.read_doubles(mask_path);
    for (size_t p = 0; p < n; ++p)
      mask.data()[p] = flags ? (v[p] < 0 || (static_cast<std::uint64_t>(v[p]) & kCxiMaskedBits) != 0) : v[p] != 0;
  }
  long invalid = 0;
  for (size_t p = 0; p < n; ++p) invalid += mask.data()[p];
  PTYCHO_INPUT_ERROR_IF(invalid == long(n),
                        f.name() << ": " << mask_path
                                 << " marks every pixel invalid (CXI: nonzero masks a pixel; in an integer mask, "
                                    "any of the bits 0x2ff)");
  return mask;
}

/// PtyPy's .ptyr: the probe storage content/probe/<ID>/data (K, M, M), its
/// pixel `_psize` (y, x) [m], which must be the scan's object pixel.
HostCView2 read_ptyr_probe(const H5File& f, const CxiHeader& h, std::string& path, std::string& source) {
  const std::vector<std::string> ids = f.members("/content/probe");
  PTYCHO_INPUT_ERROR_IF(ids.empty(), f.name() << ": /content/probe holds no probe storage");
  const std::string group = "/content/probe/" + ids.front();
  const int m = h.info.geometry.frame_size;
  if (f.exists(group + "/_psize")) {
    const std::vector<double> ps = f.read_doubles(group + "/_psize");
    const double dy = h.info.geometry.object_pixel_y_m(), dx = h.info.geometry.object_pixel_x_m();
    PTYCHO_INPUT_ERROR_IF(ps.empty(), f.name() << ": " << group << "/_psize is empty");
    const bool ok = std::abs(ps.front() - dy) <= 1e-3 * dy && std::abs(ps.back() - dx) <= 1e-3 * dx;
    PTYCHO_INPUT_ERROR_IF(!ok, f.name() << ": " << group << "/_psize is " << ps.front() << " x " << ps.back()
                                        << " m (y, x) but the scan's object pixel is " << dy << " x " << dx
                                        << " m: the probe does not fit this scan");
  }
  path = group + "/data";
  PTYCHO_INPUT_ERROR_IF(!f.exists(path), f.name() << ": " << path << " does not exist (PtyPy's probe storage)");
  return detail::probe_from_modes(f, path, m, source);
}

HostCView2 detail::probe_from_modes(const H5File& f, const std::string& path, int m, std::string& source) {
  std::vector<hsize_t> dims;
  const std::vector<cfloat> v = f.read_complex(path, dims);
  const size_t nd = dims.size();
  const bool square = nd >= 2 && dims[nd - 2] == hsize_t(m) && dims[nd - 1] == hsize_t(m);
  PTYCHO_INPUT_ERROR_IF(!square || nd > 4 || v.empty(), f.name() << ": " << path << " has shape " << shape_string(dims)
                                                               << " but the frames are " << m << " x " << m);
  const size_t n = size_t(m) * m;
  const size_t modes = nd >= 3 ? size_t(dims[nd - 3]) : 1;  // of the first OPR mode
  double power_all = 0, power_0 = 0;
  for (size_t k = 0; k < modes * n; ++k) {
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(v[k].real()) || !std::isfinite(v[k].imag()),
                          f.name() << ": " << path << " has a non-finite value at element " << k);
    const double p = double(v[k].real()) * v[k].real() + double(v[k].imag()) * v[k].imag();
    power_all += p;
    if (k < n) power_0 += p;
  }
  PTYCHO_INPUT_ERROR_IF(power_0 <= 0, f.name() << ": " << path << " is zero everywhere");
  HostCView2 probe(Kokkos::view_alloc(std::string("ptycho::probe"), Kokkos::WithoutInitializing), m, m);
  const float scale = modes > 1 ? float(std::sqrt(power_all / power_0)) : 1.0f;
  for (size_t p = 0; p < n; ++p) probe.data()[p] = v[p] * scale;
  source = path;
  if (modes > 1) source += " (mode 0 of " + std::to_string(modes) + ", scaled to the power of all)";
  if (nd == 4 && dims[0] > 1) source += " (the first of " + std::to_string(dims[0]) + " OPR modes)";
  return probe;
}

void detail::read_probe_file(CxiHeader& h, const std::string& file) {
  const int m = h.info.geometry.frame_size;
  H5File f = H5File::open_read(file);
  std::string path, source;
  HostCView2 probe =
      f.is_group("/content/probe") ? read_ptyr_probe(f, h, path, source) : read_probe(f, m, path, source, true);
  PTYCHO_INPUT_ERROR_IF(probe.size() == 0, file << ": no probe: none of " << kProbePaths[0] << ", " << kProbePaths[1]
                                                << ", " << kProbePaths[2] << ", " << kResultProbePath
                                                << " or PtyPy's /content/probe exists");
  f.close();
  h.probe = probe;
  h.layout.probe = file + ":" + path;
  h.info.probe_source = file + ":" + source;
}

// ---------------------------------------------------------------- public

ObjectGrid place_on_object_grid(const std::vector<double>& x_m, const std::vector<double>& y_m,
                                const DetectorGeometry& geometry, int margin_px, const std::string& source) {
  PTYCHO_THROW_IF(x_m.size() != y_m.size(), "place_on_object_grid: " << x_m.size() << " x but " << y_m.size() << " y");
  PTYCHO_THROW_IF(x_m.empty(), "place_on_object_grid: no positions");
  PTYCHO_INPUT_ERROR_IF(margin_px < 0, "the object-grid margin must not be negative, got " << margin_px);
  const int m = geometry.frame_size;
  const double dy = geometry.object_pixel_y_m();
  const double dx = geometry.object_pixel_x_m();
  PTYCHO_THROW_IF(!(dy > 0) || !(dx > 0) || m <= 0, "place_on_object_grid: invalid geometry");
  auto snap = [](double v) {
    const double r = std::nearbyint(v);
    return std::abs(v - r) < 1e-6 ? r : v;
  };
  const size_t n = x_m.size();
  std::vector<Position> px(n);
  long min_r = std::numeric_limits<long>::max(), min_c = min_r;
  long max_r = std::numeric_limits<long>::min(), max_c = max_r;
  for (size_t j = 0; j < n; ++j) {
    px[j].row = snap(y_m[j] / dy);
    px[j].col = snap(x_m[j] / dx);
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(px[j].row) || !std::isfinite(px[j].col) || std::abs(px[j].row) > 1e15 ||
                              std::abs(px[j].col) > 1e15,
                          source << (source.empty() ? "" : ": ") << "position " << j << " (" << x_m[j] << ", " << y_m[j]
                                 << ") m is not usable");
    const PatchOrigin o = patch_origin(px[j].row, px[j].col, m);
    min_r = std::min(min_r, o.row);
    max_r = std::max(max_r, o.row);
    min_c = std::min(min_c, o.col);
    max_c = std::max(max_c, o.col);
  }
  const double span_r = double(max_r - min_r) + m + 2.0 * margin_px;
  const double span_c = double(max_c - min_c) + m + 2.0 * margin_px;
  PTYCHO_INPUT_ERROR_IF(span_r > kMaxGridExtent || span_c > kMaxGridExtent,
                        source << (source.empty() ? "" : ": ") << "the scan spans " << span_r << " x " << span_c
                               << " object pixels of " << dy * 1e9 << " x " << dx * 1e9
                               << " nm; are the translations in metres?");
  ObjectGrid g;
  g.shift_row = margin_px - min_r;
  g.shift_col = margin_px - min_c;
  g.positions.resize(n);
  long lo_r = std::numeric_limits<long>::max(), lo_c = lo_r, hi_r = std::numeric_limits<long>::min(), hi_c = hi_r;
  for (size_t j = 0; j < n; ++j) {
    g.positions[j].row = px[j].row + double(g.shift_row);
    g.positions[j].col = px[j].col + double(g.shift_col);
    // Extents from the shifted positions with the engines' own patch_origin.
    const PatchOrigin o = patch_origin(g.positions[j].row, g.positions[j].col, m);
    lo_r = std::min(lo_r, o.row);
    lo_c = std::min(lo_c, o.col);
    hi_r = std::max(hi_r, o.row + m);
    hi_c = std::max(hi_c, o.col + m);
  }
  PTYCHO_THROW_IF(lo_r < margin_px || lo_c < margin_px,
                  "place_on_object_grid: a patch starts at (" << lo_r << ", " << lo_c << "), inside the margin");
  g.rows = hi_r + margin_px;
  g.cols = hi_c + margin_px;
  return g;
}

std::string Orientation::text() const {
  if (identity()) return "as stored";
  std::string s;
  const auto add = [&](const char* what) { s += (s.empty() ? "" : ", then ") + std::string(what); };
  if (transpose) add("transposed");
  if (flip_y) add("flipped up-down");
  if (flip_x) add("flipped left-right");
  return s;
}

Orientation then(const Orientation& first, const Orientation& second) {
  std::array<int, 4> f = {0, 1, 2, 3};
  orient_in_place(f.data(), 1, 2, first);
  orient_in_place(f.data(), 1, 2, second);
  return orientation_of(f);
}

Orientation inverse(const Orientation& o) {
  for (const Orientation& candidate : all_orientations())
    if (then(o, candidate).identity()) return candidate;
  PTYCHO_THROW_IF(true, "inverse: no orientation undoes " << o.text());
  return {};
}

void orient_frames(float* frames, size_t count, int m, const Orientation& o) { orient_in_place(frames, count, m, o); }
void orient_frames(std::uint8_t* frames, size_t count, int m, const Orientation& o) {
  orient_in_place(frames, count, m, o);
}

CxiHeader detail::read_cxi_format_header(const std::string& path, const ReadOptions& options) {
  H5File f = H5File::open_read(path);
  CxiHeader h;
  ScanInfo& info = h.info;
  info.source = path;

  // Frames: (N, M, M) numbers, M even.
  const char* frames = first_existing(f, kFramesPaths, std::size(kFramesPaths));
  PTYCHO_INPUT_ERROR_IF(!frames,
                        path << ": no frames: neither " << kFramesPaths[0] << " nor " << kFramesPaths[1] << " exists");
  h.layout.frames = frames;
  h.layout.blocks.push_back(detail::frames_block(f, frames, h.layout.frames_type));
  info.num_frames = h.layout.blocks.back().count;
  info.geometry.frame_size = detail::frame_side(f, frames);
  const long n = info.num_frames;
  const int m = info.geometry.frame_size;

  // Translation: (N, 3) or (3, N) [m]; (N, 2) and (2, N) are taken as (x, y).
  const char* translation = first_existing(f, kTranslationPaths, std::size(kTranslationPaths));
  PTYCHO_INPUT_ERROR_IF(!translation, path << ": no positions: neither " << kTranslationPaths[0] << " nor "
                                           << kTranslationPaths[1] << " exists");
  h.layout.translation = translation;
  std::vector<double> x, y;  // allocated once the file is known to hold n positions
  {
    std::vector<hsize_t> dims;
    const std::vector<double> t = f.read_doubles(translation, &dims);
    if (dims.size() == 3 && (dims[2] == 2 || dims[2] == 3) && long(dims[0] * dims[1]) == n)
      dims = {dims[0] * dims[1], dims[2]};  // a raster's (rows, columns, 3)
    PTYCHO_INPUT_ERROR_IF(dims.size() != 2, path << ": " << translation << " has shape " << shape_string(dims)
                                                 << ", expected (N, 3) or (3, N)");
    const auto a = long(dims[0]), b = long(dims[1]);
    const bool per_row = (b == 2 || b == 3);  // (N, 3): one row per position
    const bool per_col = (a == 2 || a == 3);  // (3, N): PyNX
    PTYCHO_INPUT_ERROR_IF(!per_row && !per_col, path << ": " << translation << " has shape " << shape_string(dims)
                                                     << ", expected (N, 3) or (3, N)");
    const bool transposed = !(per_row && a == n) && per_col;
    const long count = transposed ? b : (per_row ? a : b);
    PTYCHO_INPUT_ERROR_IF(count != n, path << ": " << frames << " has " << n << " frames but " << translation << " has "
                                           << count << " positions");
    h.layout.translation_transposed = transposed;
    x.resize(n);
    y.resize(n);
    for (long j = 0; j < n; ++j) {
      x[j] = transposed ? t[0 * n + j] : t[j * b + 0];
      y[j] = transposed ? t[1 * n + j] : t[j * b + 1];
      PTYCHO_INPUT_ERROR_IF(!std::isfinite(x[j]) || !std::isfinite(y[j]),
                            path << ": " << translation << " has a non-finite value at position " << j);
    }
  }

  read_monitor(f, h, x, y);

  // Geometry [SI].
  info.geometry.energy_j = read_energy_j(f);
  info.geometry.distance_m = read_si_scalar(f, kDistancePath, "sample-detector distance", false);
  info.geometry.pixel_x_m = read_si_scalar(f, kPixelXPath, "detector pixel size", false);
  info.geometry.pixel_y_m = read_si_scalar(f, kPixelYPath, "detector pixel size", false);

  read_basis_vectors(f, h);

  // Mask, probe, object grid.
  h.mask = detail::read_mask(f, kMaskPath, m);
  if (f.exists(kMaskPath)) h.layout.mask = kMaskPath;
  h.probe = read_probe(f, m, h.layout.probe, info.probe_source);
  h.dark = read_dark(f, m, h.mask, h.layout.dark);
  info.background_source = h.layout.dark;
  f.close();
  detail::finish_header(h, x, y, options);
  return h;
}

ScanInfo read_scan_info(const std::string& path, const ReadOptions& options) {
  return read_cxi_header(path, options).info;
}

namespace {

/// Calls its argument once for every chunk of this rank's frames: (data, frames in the chunk).
using ChunkVisitor = std::function<void(const std::function<void(const float*, size_t)>&)>;

/// FrameStatistics of the frames `for_each_chunk` visits (twice: once for the
/// global magnitude, once for the fixed-point sums), over all ranks of `comm`.
FrameStatistics statistics_of_chunks(MPI_Comm comm, const MaskView& mask, const ChunkVisitor& for_each_chunk) {
  const int m = int(mask.extent(0));
  const size_t mm = size_t(m) * m;
  const std::uint8_t* invalid = mask.data();

  // Pass 1: the global magnitude, to pick one fixed-point scale for all ranks.
  double local[2] = {0.0, -std::numeric_limits<double>::infinity()};  // max |v|, max v
  long counts[3] = {0, 0, 0};                                         // frames, negative, non-finite
  for_each_chunk([&](const float* data, size_t n) {
    counts[0] += long(n);
    for (size_t j = 0; j < n; ++j)
      for (size_t p = 0; p < mm; ++p) {
        if (invalid[p]) continue;
        const double v = data[j * mm + p];
        if (!std::isfinite(v)) {
          ++counts[2];
          continue;
        }
        local[0] = std::max(local[0], std::abs(v));
        local[1] = std::max(local[1], v);
        counts[1] += v < 0;
      }
  });
  double global[2];
  long global_counts[3];
  check_mpi(MPI_Allreduce(local, global, 2, MPI_DOUBLE, MPI_MAX, comm), "MPI_Allreduce");
  check_mpi(MPI_Allreduce(counts, global_counts, 3, MPI_LONG, MPI_SUM, comm), "MPI_Allreduce");

  FrameStatistics s;
  s.frame_size = m;
  s.num_frames = global_counts[0];
  s.negative_values = global_counts[1];
  s.nonfinite_values = global_counts[2];
  s.max_count = s.num_frames > 0 ? global[1] : 0.0;
  s.mean_frame.assign(mm, 0.0);
  if (s.num_frames == 0) return s;

  // Pass 2: per-pixel sums in 64-bit fixed point, |sum| < 2^61 by the scale.
  int exponent = 0;
  if (global[0] > 0) {
    int e2 = 0;
    std::frexp(double(s.num_frames) * global[0], &e2);  // N max|v| < 2^e2
    exponent = 61 - e2;
  }
  std::vector<std::int64_t> sums(mm, 0), total(mm, 0);
  for_each_chunk([&](const float* data, size_t n) {
    for (size_t j = 0; j < n; ++j)
      for (size_t p = 0; p < mm; ++p) {
        const double v = data[j * mm + p];
        if (invalid[p] || !std::isfinite(v)) continue;
        sums[p] += std::llround(std::ldexp(v, exponent));
      }
  });
  for (size_t off = 0; off < mm; off += size_t(1) << 26) {
    const int count = int(std::min(mm - off, size_t(1) << 26));
    check_mpi(MPI_Allreduce(sums.data() + off, total.data() + off, count, MPI_INT64_T, MPI_SUM, comm), "MPI_Allreduce");
  }
  __int128 valid_total = 0;
  for (size_t p = 0; p < mm; ++p) {
    if (invalid[p]) continue;
    valid_total += total[p];
    s.mean_frame[p] = std::ldexp(double(total[p]), -exponent) / double(s.num_frames);
  }
  s.mean_total_counts = std::ldexp(double(valid_total), -exponent) / double(s.num_frames);
  fill_invalid(s.mean_frame, mask, m);
  double filled = 0;
  for (double v : s.mean_frame) filled += v;
  s.filled_total_counts = filled;
  return s;
}

/// The header of `path`, read by rank 0 and broadcast (errors on every rank).
CxiHeader shared_header(MPI_Comm comm, const std::string& path, const ReadOptions& options) {
  const int rank = detail::comm_rank(comm);
  CxiHeader header;
  std::vector<char> bytes;
  collectively(comm, [&] {
    if (rank == 0) {
      header = read_cxi_header(path, options);
      bytes = pack_header(header);
    }
  });
  detail::broadcast_bytes(comm, bytes, 0);
  if (rank != 0) header = unpack_header(bytes);
  return header;
}

}  // namespace

FrameStatistics frame_statistics(MPI_Comm comm, const HostRView3& frames, const MaskView& mask) {
  const int m = int(mask.extent(0));
  PTYCHO_THROW_IF(mask.extent(1) != size_t(m), "frame_statistics: the mask is not square");
  const size_t n_local = frames.extent(0);
  PTYCHO_THROW_IF(n_local > 0 && (frames.extent(1) != size_t(m) || frames.extent(2) != size_t(m)),
                  "frame_statistics: frames of " << frames.extent(1) << " x " << frames.extent(2) << " but a mask of "
                                                 << m << " x " << m);
  return statistics_of_chunks(comm, mask, [&](const std::function<void(const float*, size_t)>& visit) {
    visit(frames.data(), n_local);
  });
}

FrameStatistics read_frame_statistics(MPI_Comm comm, const std::string& path, const std::vector<long>& my_frames,
                                      const ReadOptions& options, CxiHeader* header_out, size_t chunk_bytes) {
  silence_hdf5_errors();
  const CxiHeader header = shared_header(comm, path, options);
  const long n = header.info.num_frames;
  const int m = header.info.geometry.frame_size;
  const size_t mm = size_t(m) * m;
  collectively(comm, [&] {
    for (size_t i = 0; i < my_frames.size(); ++i)
      PTYCHO_THROW_IF(my_frames[i] < 0 || my_frames[i] >= n || (i > 0 && my_frames[i] <= my_frames[i - 1]),
                      "read_frame_statistics: frame indices must be ascending in [0, " << n << ")");
  });
  const Orientation turn = then(header.layout.stored, options.orientation);
  const size_t chunk = std::max<size_t>(1, chunk_bytes / (mm * sizeof(float)));
  long chunks = long((my_frames.size() + chunk - 1) / chunk);
  const long mine = chunks;
  check_mpi(MPI_Allreduce(&mine, &chunks, 1, MPI_LONG, MPI_MAX, comm), "MPI_Allreduce");
  HostRView3 buffer(Kokkos::view_alloc(std::string("ptycho::statistics::chunk"), Kokkos::WithoutInitializing),
                    std::min(chunk, my_frames.size()), m, m);
  // Every rank reads as many chunks as the rank with the most (collective reads), empty ones at its end.
  const ChunkVisitor visit_chunks = [&](const std::function<void(const float*, size_t)>& visit) {
    for (long c = 0; c < chunks; ++c) {
      const size_t lo = std::min(my_frames.size(), size_t(c) * chunk);
      const size_t hi = std::min(my_frames.size(), lo + chunk);
      const std::vector<long> index(my_frames.begin() + long(lo), my_frames.begin() + long(hi));
      collectively(comm, [&] { read_frames(comm, header, index, buffer, options.transfer, options.max_read_bytes); });
      orient_frames(buffer.data(), hi - lo, m, turn);
      visit(buffer.data(), hi - lo);
    }
  };
  FrameStatistics stats = statistics_of_chunks(comm, header.mask, visit_chunks);
  if (header_out) *header_out = header;
  return stats;
}

HostCView2 estimate_probe(const FrameStatistics& stats) {
  return probe_from_mean_pattern(stats.mean_frame, stats.frame_size, stats.filled_total_counts);
}

HostRView3 read_scan_frames(MPI_Comm comm, const CxiHeader& header, const std::vector<long>& index,
                            const ReadOptions& options) {
  silence_hdf5_errors();
  const int m = header.info.geometry.frame_size;
  HostRView3 frames;
  collectively(comm, [&] {
    for (size_t i = 0; i < index.size(); ++i)
      PTYCHO_THROW_IF(index[i] < 0 || index[i] >= header.info.num_frames || (i > 0 && index[i] <= index[i - 1]),
                      "read_scan_frames: frame indices must be ascending in [0, " << header.info.num_frames << ")");
    frames = HostRView3(Kokkos::view_alloc(std::string("ptycho::frames"), Kokkos::WithoutInitializing), index.size(),
                        m, m);
  });
  collectively(comm, [&] { read_frames(comm, header, index, frames, options.transfer, options.max_read_bytes); });
  orient_frames(frames.data(), index.size(), m, then(header.layout.stored, options.orientation));
  return frames;
}

Dataset read_cxi(MPI_Comm comm, const std::string& path, const std::vector<long>& my_frames,
                 const ReadOptions& options) {
  silence_hdf5_errors();
  const int rank = detail::comm_rank(comm);

  // Metadata, mask and probe: read by rank 0, broadcast to all.
  const CxiHeader header = shared_header(comm, path, options);
  const long n = header.info.num_frames;
  const int m = header.info.geometry.frame_size;
  const size_t mm = size_t(m) * m;

  Dataset ds;
  collectively(comm, [&] {
    for (size_t i = 0; i < my_frames.size(); ++i) {
      PTYCHO_THROW_IF(my_frames[i] < 0 || my_frames[i] >= n,
                      "read_cxi: frame index " << my_frames[i] << " is outside [0, " << n << ") of " << path);
      PTYCHO_THROW_IF(i > 0 && my_frames[i] <= my_frames[i - 1], "read_cxi: frame indices must be strictly ascending");
    }
    ds.frames = HostRView3(Kokkos::view_alloc(std::string("ptycho::frames"), Kokkos::WithoutInitializing),
                           my_frames.size(), m, m);
  });
  ds.info = header.info;
  ds.frame_index = my_frames;
  ds.mask = header.mask;
  ds.background = header.dark;

  // This rank's frames, converted to float by HDF5.
  collectively(comm,
               [&] { read_frames(comm, header, my_frames, ds.frames, options.transfer, options.max_read_bytes); });
  orient_frames(ds.frames.data(), my_frames.size(), m, then(header.layout.stored, options.orientation));

  // Non-finite counts in valid pixels are an error; in masked pixels they are ignored.
  collectively(comm, [&] {
    for (size_t j = 0; j < my_frames.size(); ++j)
      for (size_t p = 0; p < mm; ++p) {
        float& v = ds.frames.data()[j * mm + p];
        if (std::isfinite(v)) continue;
        PTYCHO_INPUT_ERROR_IF(!header.mask.data()[p], path << ": " << header.layout.frames << " frame " << my_frames[j]
                                                           << " has the value " << v << " at pixel (" << p / m << ", "
                                                           << p % m << ")");
        v = 0.0f;
      }
  });

  const FrameStatistics stats = frame_statistics(comm, ds.frames, ds.mask);
  const bool from_file = header.probe.size() > 0;
  collectively(comm, [&] {
    PTYCHO_INPUT_ERROR_IF(stats.max_count > kMaxCount,
                          path << ": " << header.layout.frames << " holds counts up to " << stats.max_count
                               << " in a valid pixel; ptycho computes in single precision and accepts at most "
                               << kMaxCount << ": divide the frames by a constant (the probe scales with its square root)");
    PTYCHO_INPUT_ERROR_IF(
        !(stats.filled_total_counts > 0) && (!from_file || options.probe_scaling == ProbeScaling::to_mean_counts),
        path << ": " << header.layout.frames
             << " has no positive counts in any valid pixel; cannot scale a probe to the counts");
    if (from_file) {
      ds.probe = header.probe;
      if (options.probe_scaling == ProbeScaling::to_mean_counts) scale_probe_to_power(ds.probe, stats.filled_total_counts);
    } else if (rank == 0) {
      ds.probe = estimate_probe(stats);
    }
  });
  if (!from_file) {
    if (rank != 0)
      ds.probe = HostCView2(Kokkos::view_alloc(std::string("ptycho::probe"), Kokkos::WithoutInitializing), m, m);
    std::vector<char> probe_bytes;
    if (rank == 0)
      probe_bytes.assign(reinterpret_cast<const char*>(ds.probe.data()),
                         reinterpret_cast<const char*>(ds.probe.data() + mm));
    detail::broadcast_bytes(comm, probe_bytes, 0);
    std::memcpy(static_cast<void*>(ds.probe.data()), probe_bytes.data(), mm * sizeof(cfloat));
  }
  return ds;
}

std::vector<long> block_of_frames(long num_frames, int rank, int size) {
  PTYCHO_THROW_IF(size <= 0 || rank < 0 || rank >= size || num_frames < 0,
                  "block_of_frames: rank " << rank << " of " << size << ", " << num_frames << " frames");
  const long base = num_frames / size, extra = num_frames % size;
  const long begin = rank * base + std::min<long>(rank, extra);
  const long count = base + (rank < extra ? 1 : 0);
  std::vector<long> out(count);
  for (long i = 0; i < count; ++i) out[i] = begin + i;
  return out;
}

}  // namespace ptycho::io
