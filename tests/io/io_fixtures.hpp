#pragma once
// Test helpers of tests/io: unique scratch paths per test binary and rank
// count, and small CXI files written with the HDF5 C API (through the thin
// io::H5File wrapper), in the variants the reader must accept or reject.
#include "../parallel/mpi_world.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ptycho::test {

/// A scratch path unique to this binary, this rank count and `name`
/// (tests at different rank counts may run at the same time).
inline std::string scratch_path(const std::string& binary, const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::current_path() / ("scratch_" + binary + "_np" + std::to_string(world_size()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

inline std::string shared_dir() { return PTYCHO_SHARED_DIR; }

/// True if `text` contains `part`; prints the text otherwise.
inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

enum class FrameType { float32, float64, int32, uint16, uint32 };

/// What write_fixture writes. The defaults make a valid 12-frame scan of
/// 16 x 16 float32 frames at 10 keV with 10 nm object pixels.
struct FixtureSpec {
  long n = 12;
  int m = 16;
  FrameType frame_type = FrameType::float32;
  bool transposed = false;      ///< translation (3, N) instead of (N, 3)
  long translation_count = -1;  ///< positions written (-1: n)
  int translation_width = 3;    ///< values per position (3: x, y, z)
  bool with_probe = true;
  bool probe_as_illumination = false;  ///< at source_1/illumination instead of source_1/probe
  int probe_size = -1;                 ///< probe extent (-1: m)
  bool with_mask = false;
  int mask_size = -1;  ///< mask extent (-1: m)
  /// CXI bit flags in the mask: masked pixels dead (0x8) and missing (0x200),
  /// the others with only flags that mask nothing (noisy 0x400, failed
  /// artifact correction 0x1000, background corrected 0x4000) or none.
  bool mask_flags = false;
  bool with_frames = true;
  bool frames_in_detector_only = false;  ///< no /entry_1/data_1 links
  bool with_energy = true;
  double distance_m = -1;  ///< -1: the distance giving 10 nm object pixels
  int frame_cols = -1;     ///< -1: m (set to make non-square frames)
  long nan_frame = -1;     ///< a frame with one NaN in a valid pixel
};

inline constexpr double kFixtureEnergyJ = 10e3 * kJoulePerEv;
inline constexpr double kFixturePixelM = 75e-6;
inline constexpr double kFixtureDxM = 10e-9;

inline double fixture_distance(int m) {
  const double wavelength = kHcEvMetre / 10e3;
  return kFixtureDxM * m * kFixturePixelM / wavelength;
}

/// Counts of frame j at (r, c): small integers, different in every frame.
inline double fixture_count(long j, int r, int c) { return double((j * 7 + r * 3 + c * 5) % 23 + (r == c ? 40 : 0)); }

/// Probe centre of frame j [object pixels], a wobbly raster.
inline void fixture_position(long j, double& row, double& col) {
  row = 20.0 + 3.0 * double(j % 4) + 0.37 * double(j % 3);
  col = 25.0 + 4.0 * double(j / 4) - 0.21 * double(j % 5);
}

inline bool fixture_masked(int r, int c) { return (r == 0 && c == 0) || (r == 3 && c == 5); }

inline void write_fixture(const std::string& path, const FixtureSpec& s) {
  io::silence_hdf5_errors();
  io::H5File f = io::H5File::create(path);
  const int m = s.m;
  const int cols = s.frame_cols > 0 ? s.frame_cols : m;
  const long n = s.n;
  if (s.with_frames) {
    std::vector<double> v(size_t(n) * m * cols);
    for (long j = 0; j < n; ++j)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < cols; ++c) v[(size_t(j) * m + r) * cols + c] = fixture_count(j, r, c);
    if (s.nan_frame >= 0) v[size_t(s.nan_frame) * m * cols + 2 * cols + 7] = NAN;
    const std::vector<hsize_t> dims = {hsize_t(n), hsize_t(m), hsize_t(cols)};
    const std::string path_frames = "/entry_1/instrument_1/detector_1/data";
    switch (s.frame_type) {
      case FrameType::float32: {
        std::vector<float> a(v.begin(), v.end());
        f.write(path_frames, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, dims, a.data());
        break;
      }
      case FrameType::float64:
        f.write(path_frames, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, dims, v.data());
        break;
      case FrameType::int32: {
        std::vector<std::int32_t> a(v.begin(), v.end());
        f.write(path_frames, H5T_NATIVE_INT32, H5T_STD_I32LE, dims, a.data());
        break;
      }
      case FrameType::uint16: {
        std::vector<std::uint16_t> a(v.begin(), v.end());
        f.write(path_frames, H5T_NATIVE_UINT16, H5T_STD_U16LE, dims, a.data());
        break;
      }
      case FrameType::uint32: {
        std::vector<std::uint32_t> a(v.begin(), v.end());
        f.write(path_frames, H5T_NATIVE_UINT32, H5T_STD_U32LE, dims, a.data());
        break;
      }
    }
    if (!s.frames_in_detector_only) f.soft_link(path_frames, "/entry_1/data_1/data");
  }
  const long count = s.translation_count >= 0 ? s.translation_count : n;
  const int w = s.translation_width;
  std::vector<double> t(size_t(count) * w, 0.0);
  for (long j = 0; j < count; ++j) {
    double row = 0, col = 0;
    fixture_position(j, row, col);
    const double x = col * kFixtureDxM, y = row * kFixtureDxM;
    if (s.transposed) {
      t[0 * count + j] = x;
      t[1 * count + j] = y;
    } else {
      t[w * j + 0] = x;
      t[w * j + 1] = y;
    }
  }
  const std::vector<hsize_t> tdims = s.transposed ? std::vector<hsize_t>{hsize_t(w), hsize_t(count)}
                                                  : std::vector<hsize_t>{hsize_t(count), hsize_t(w)};
  f.write("/entry_1/sample_1/geometry_1/translation", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, tdims, t.data());
  if (!s.frames_in_detector_only)
    f.soft_link("/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation");
  if (s.with_energy) f.write_scalar("/entry_1/instrument_1/source_1/energy", kFixtureEnergyJ);
  f.write_scalar("/entry_1/instrument_1/detector_1/distance", s.distance_m == -1 ? fixture_distance(m) : s.distance_m);
  f.write_scalar("/entry_1/instrument_1/detector_1/x_pixel_size", kFixturePixelM);
  f.write_scalar("/entry_1/instrument_1/detector_1/y_pixel_size", kFixturePixelM);
  if (s.with_probe) {
    const int pm = s.probe_size > 0 ? s.probe_size : m;
    std::vector<float> p(size_t(pm) * pm * 2);
    for (int r = 0; r < pm; ++r)
      for (int c = 0; c < pm; ++c) {
        const double d2 = (r - pm / 2.0) * (r - pm / 2.0) + (c - pm / 2.0) * (c - pm / 2.0);
        p[2 * (size_t(r) * pm + c)] = float(std::exp(-d2 / 8.0));
        p[2 * (size_t(r) * pm + c) + 1] = float(0.1 * r);
      }
    io::H5Id mem = io::make_complex_type();
    io::H5Id file = io::make_complex64_file_type();
    f.write(s.probe_as_illumination ? "/entry_1/instrument_1/source_1/illumination"
                                    : "/entry_1/instrument_1/source_1/probe",
            mem.get(), file.get(), {hsize_t(pm), hsize_t(pm)}, p.data());
  }
  if (s.with_mask) {
    const int mm = s.mask_size > 0 ? s.mask_size : m;
    std::vector<std::uint32_t> mask(size_t(mm) * mm, 0);
    for (int r = 0; r < mm; ++r)
      for (int c = 0; c < mm; ++c)
        mask[size_t(r) * mm + c] = !s.mask_flags   ? (fixture_masked(r, c) ? 1 : 0)
                                   : fixture_masked(r, c) ? (r == 0 ? 0x8u : 0x200u | 0x1000u)
                                   : std::uint32_t((r + c) % 4 == 0 ? 0x1000 : (r + c) % 4 == 1 ? 0x400 | 0x4000 : 0);
    f.write("/entry_1/instrument_1/detector_1/mask", H5T_NATIVE_UINT32, H5T_STD_U32LE, {hsize_t(mm), hsize_t(mm)},
            mask.data());
  }
  f.close();
}

}  // namespace ptycho::test
