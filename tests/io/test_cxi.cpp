// The CXI reader: real files, benchmark files, files written here in every
// accepted variant, clear errors, and parallel reads equal to serial ones.
#include "io_fixtures.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/cxi.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace ptycho {
namespace {

using test::contains;
using test::FixtureSpec;
using test::FrameType;

const std::string kPetra = test::shared_dir() + "/realdata/PETRAIII_P25_Near_Field_Ptycho.cxi";
const std::string kSiemens = test::shared_dir() + "/realdata/siemens_star_tike.cxi";
const std::string kStandard = test::shared_dir() + "/bench/data/standard_s00.cxi";

std::string scratch(const std::string& name) { return test::scratch_path("test_io_cxi", name); }

/// Rank 0 writes a fixture; every rank gets its path.
std::string make_fixture(const std::string& name, const FixtureSpec& spec) {
  const std::string path = scratch(name + ".cxi");
  if (test::world_rank() == 0) test::write_fixture(path, spec);
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

/// Reads the whole file on this rank alone.
Dataset read_serial(const std::string& path, const io::ReadOptions& options = {}) {
  const ScanInfo info = io::read_scan_info(path, options);
  return io::read_cxi(MPI_COMM_SELF, path, io::block_of_frames(info.num_frames, 0, 1), options);
}

/// The message every rank gets from a collective read of `path`, "" if none.
std::string collective_error(const std::string& path, const std::vector<long>& frames = {}) {
  try {
    io::read_cxi(MPI_COMM_WORLD, path, frames);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

double power(const HostCView2& p) {
  double s = 0;
  for (size_t k = 0; k < p.size(); ++k) s += double(Kokkos::abs(p.data()[k])) * Kokkos::abs(p.data()[k]);
  return s;
}

bool all_finite(const HostCView2& p) {
  for (size_t k = 0; k < p.size(); ++k)
    if (!std::isfinite(p.data()[k].real()) || !std::isfinite(p.data()[k].imag())) return false;
  return true;
}

long masked_count(const Dataset& ds) {
  long n = 0;
  for (size_t k = 0; k < ds.mask.size(); ++k) n += ds.mask.data()[k] != 0;
  return n;
}

// ---------------------------------------------------------------- object grid

TEST(CxiGrid, PlacesAllPatchesInsideTheMargin) {
  DetectorGeometry g;
  g.frame_size = 10;
  g.energy_j = 10e3 * kJoulePerEv;
  g.pixel_x_m = g.pixel_y_m = 75e-6;
  g.distance_m = 1e-8 * 10 * 75e-6 / g.wavelength_m();  // 10 nm pixels
  const double dx = g.object_pixel_x_m();
  // Negative, fractional and far-apart positions; x -> columns, y -> rows.
  const std::vector<double> x = {-3.25 * dx, 40.5 * dx, 7.0 * dx};
  const std::vector<double> y = {100.75 * dx, -20.1 * dx, 3.0 * dx};
  for (int margin : {0, 3, 8}) {
    const io::ObjectGrid grid = io::place_on_object_grid(x, y, g, margin);
    long min_r = 1 << 30, min_c = 1 << 30, max_r = -1, max_c = -1;
    for (size_t j = 0; j < x.size(); ++j) {
      const PatchOrigin o = patch_origin(grid.positions[j].row, grid.positions[j].col, g.frame_size);
      min_r = std::min(min_r, o.row);
      min_c = std::min(min_c, o.col);
      max_r = std::max(max_r, o.row + g.frame_size);
      max_c = std::max(max_c, o.col + g.frame_size);
      // The shift is a whole number of pixels: sub-pixel parts are kept.
      EXPECT_NEAR(grid.positions[j].row - y[j] / dx, double(grid.shift_row), 1e-9);
      EXPECT_NEAR(grid.positions[j].col - x[j] / dx, double(grid.shift_col), 1e-9);
    }
    EXPECT_EQ(min_r, margin);
    EXPECT_EQ(min_c, margin);
    EXPECT_EQ(grid.rows, max_r + margin);
    EXPECT_EQ(grid.cols, max_c + margin);
    // 120.85 rows between the extreme centres: floor(100.75 - 5) - floor(-20.1 - 5) = 95 - (-26) = 121.
    EXPECT_EQ(grid.rows, 121 + 10 + 2 * margin);
  }
}

TEST(CxiGrid, SnapsNearIntegersAndRejectsHugeSpans) {
  DetectorGeometry g;
  g.frame_size = 8;
  g.energy_j = 10e3 * kJoulePerEv;
  g.pixel_x_m = g.pixel_y_m = 75e-6;
  g.distance_m = 1.0;
  const double dx = g.object_pixel_x_m();
  // 12 px written through metres may come back as 11.999999999: floor must not flip.
  const io::ObjectGrid grid = io::place_on_object_grid({12.0 * dx * (1 - 1e-12)}, {12.0 * dx * (1 + 1e-12)}, g, 2);
  EXPECT_EQ(grid.positions[0].row - std::floor(grid.positions[0].row), 0.0);
  EXPECT_EQ(grid.positions[0].col - std::floor(grid.positions[0].col), 0.0);
  EXPECT_EQ(grid.rows, 8 + 4);
  // Positions in micrometres stored as if metres: a clear error.
  try {
    io::place_on_object_grid({0.0, 5.0}, {0.0, 5.0}, g, 8, "scan.cxi");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "scan.cxi"));
    EXPECT_TRUE(contains(e.what(), "metres"));
  }
}

// ---------------------------------------------------------------- real data

TEST(CxiRealData, PetraNearField) {
  const io::CxiHeader h = io::read_cxi_header(kPetra);
  const ScanInfo& info = h.info;
  EXPECT_EQ(info.num_frames, 200);
  EXPECT_EQ(info.geometry.frame_size, 100);
  EXPECT_NEAR(info.geometry.energy_ev() / 1e3, 12.66, 0.005);
  EXPECT_NEAR(info.geometry.distance_m, 1.12, 1e-6);
  EXPECT_NEAR(info.geometry.pixel_x_m, 55e-6, 1e-12);
  EXPECT_NEAR(info.geometry.pixel_y_m, 55e-6, 1e-12);
  EXPECT_EQ(h.layout.frames_type, "int32");
  EXPECT_EQ(h.layout.frames, "/entry_1/data_1/data");
  EXPECT_EQ(h.layout.translation, "/entry_1/sample_1/geometry_1/translation");
  EXPECT_FALSE(h.layout.translation_transposed);
  EXPECT_EQ(h.layout.mask, "/entry_1/instrument_1/detector_1/mask");
  EXPECT_EQ(info.positions.size(), 200u);
  EXPECT_EQ(info.probe_source, io::kEstimatedProbeSource);

  const int rank = test::world_rank(), size = test::world_size();
  const std::vector<long> mine = io::block_of_frames(200, rank, size);
  const Dataset ds = io::read_cxi(MPI_COMM_WORLD, kPetra, mine);
  EXPECT_EQ(masked_count(ds), 5);
  ASSERT_EQ(ds.frames.extent(0), mine.size());
  EXPECT_EQ(ds.info.probe_source, io::kEstimatedProbeSource);
  EXPECT_TRUE(all_finite(ds.probe));
  EXPECT_GT(power(ds.probe), 0.0);
  if (!mine.empty() && mine[0] == 0) {
    double total = 0;  // frame 0 summed over all pixels (h5py: 9665398)
    for (size_t k = 0; k < 100 * 100; ++k) total += ds.frames.data()[k];
    EXPECT_EQ(total, 9665398.0);
  }
}

TEST(CxiRealData, SiemensStar) {
  const io::CxiHeader h = io::read_cxi_header(kSiemens);
  EXPECT_EQ(h.info.num_frames, 516);
  EXPECT_EQ(h.info.geometry.frame_size, 128);
  EXPECT_NEAR(h.info.geometry.energy_ev(), 10e3, 1e-6);
  EXPECT_NEAR(h.info.geometry.object_pixel_m(), 10e-9, 1e-15);
  EXPECT_EQ(h.info.probe_source, "/entry_1/instrument_1/source_1/probe");
  EXPECT_EQ(h.layout.frames_type, "float32");
  EXPECT_TRUE(h.layout.mask.empty());
  ASSERT_EQ(h.probe.extent(0), 128u);
  EXPECT_NEAR(power(h.probe), 51.827164, 1e-3);  // as in the file (h5py)

  const int rank = test::world_rank(), size = test::world_size();
  const std::vector<long> mine = io::block_of_frames(516, rank, size);
  const Dataset ds = io::read_cxi(MPI_COMM_WORLD, kSiemens, mine);
  EXPECT_EQ(masked_count(ds), 0);
  // Scaled to the mean total counts per frame (h5py: 461212.9).
  EXPECT_NEAR(power(ds.probe) / 461212.9, 1.0, 1e-4);
  if (!mine.empty() && mine[0] == 0) {
    double total = 0;
    for (size_t k = 0; k < 128 * 128; ++k) total += ds.frames.data()[k];
    EXPECT_EQ(total, 456722.0);
  }
}

// ---------------------------------------------------------------- benchmark files

TEST(CxiBench, EveryFileMatchesItsTruth) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(test::shared_dir() + "/bench/data"))
    if (e.path().extension() == ".cxi") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 8u);
  const int rank = test::world_rank(), size = test::world_size();
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    const io::CxiHeader h = io::read_cxi_header(path);
    const ScanInfo& info = h.info;
    EXPECT_EQ(info.geometry.frame_size, 64);
    EXPECT_NEAR(info.geometry.energy_ev(), 10e3, 1e-6);
    EXPECT_NEAR(info.geometry.object_pixel_m(), 10e-9, 1e-15);
    EXPECT_EQ(info.probe_source, "/entry_1/instrument_1/source_1/probe");
    // The positions are the nominal ones of the truth file, moved by a whole number of pixels.
    const std::string truth = path.substr(0, path.size() - 4) + "_truth.h5";
    std::vector<hsize_t> dims;
    const std::vector<double> nominal = io::H5File::open_read(truth).read_doubles("/nominal_positions_px", &dims);
    ASSERT_EQ(long(dims[0]), info.num_frames);
    const double shift_r = std::round(info.positions[0].row - nominal[0]);
    const double shift_c = std::round(info.positions[0].col - nominal[1]);
    double worst = 0;
    for (long j = 0; j < info.num_frames; ++j) {
      worst = std::max(worst, std::abs(info.positions[j].row - nominal[2 * j] - shift_r));
      worst = std::max(worst, std::abs(info.positions[j].col - nominal[2 * j + 1] - shift_c));
      const PatchOrigin o = patch_origin(info.positions[j].row, info.positions[j].col, 64);
      EXPECT_GE(o.row, io::kDefaultMarginPx);
      EXPECT_GE(o.col, io::kDefaultMarginPx);
      EXPECT_LE(o.row + 64, info.object_rows - io::kDefaultMarginPx);
      EXPECT_LE(o.col + 64, info.object_cols - io::kDefaultMarginPx);
    }
    EXPECT_LT(worst, 1e-6);

    const std::vector<long> mine = io::block_of_frames(info.num_frames, rank, size);
    const Dataset ds = io::read_cxi(MPI_COMM_WORLD, path, mine);
    EXPECT_EQ(ds.frames.extent(0), mine.size());
    EXPECT_EQ(ds.frame_index, mine);
    EXPECT_TRUE(all_finite(ds.probe));
  }
}

// ---------------------------------------------------------------- written variants

TEST(CxiVariants, TransposedTranslationGivesTheSamePositions) {
  FixtureSpec spec;
  const std::string rows_path = make_fixture("translation_n3", spec);
  spec.transposed = true;
  const std::string cols_path = make_fixture("translation_3n", spec);
  const io::CxiHeader a = io::read_cxi_header(rows_path);
  const io::CxiHeader b = io::read_cxi_header(cols_path);
  EXPECT_FALSE(a.layout.translation_transposed);
  EXPECT_TRUE(b.layout.translation_transposed);
  ASSERT_EQ(a.info.positions.size(), 12u);
  ASSERT_EQ(b.info.positions.size(), 12u);
  for (size_t j = 0; j < 12; ++j) {
    EXPECT_EQ(a.info.positions[j].row, b.info.positions[j].row);
    EXPECT_EQ(a.info.positions[j].col, b.info.positions[j].col);
    double row = 0, col = 0;
    test::fixture_position(long(j), row, col);
    EXPECT_NEAR(a.info.positions[j].row - row, a.info.positions[0].row - 20.0, 1e-9) << j;
    EXPECT_NEAR(a.info.positions[j].col - col, a.info.positions[0].col - 25.0, 1e-9) << j;
  }
  // N == 3 is ambiguous: (3, 3) is read as (N, 3).
  FixtureSpec three;
  three.n = 3;
  const io::CxiHeader c = io::read_cxi_header(make_fixture("translation_33", three));
  EXPECT_FALSE(c.layout.translation_transposed);
  EXPECT_NEAR(c.info.positions[1].row - c.info.positions[0].row, 3.37, 1e-9);
}

TEST(CxiVariants, IntegerAndDoubleFramesBecomeFloatCounts) {
  const int rank = test::world_rank(), size = test::world_size();
  for (FrameType type : {FrameType::int32, FrameType::uint16, FrameType::uint32, FrameType::float64}) {
    FixtureSpec spec;
    spec.frame_type = type;
    const std::string path = make_fixture("frames_type_" + std::to_string(int(type)), spec);
    SCOPED_TRACE(path);
    const std::vector<long> mine = io::block_of_frames(spec.n, rank, size);
    const Dataset ds = io::read_cxi(MPI_COMM_WORLD, path, mine);
    for (size_t i = 0; i < mine.size(); ++i)
      for (int r = 0; r < spec.m; ++r)
        for (int c = 0; c < spec.m; ++c)
          ASSERT_EQ(ds.frames(i, r, c), float(test::fixture_count(mine[i], r, c))) << mine[i] << " " << r << " " << c;
  }
  const io::CxiHeader h =
      io::read_cxi_header(scratch("frames_type_" + std::to_string(int(FrameType::uint16)) + ".cxi"));
  EXPECT_EQ(h.layout.frames_type, "uint16");
}

TEST(CxiVariants, ProbeEstimatedFromTheMeanPattern) {
  const int rank = test::world_rank(), size = test::world_size();
  for (bool with_mask : {false, true}) {
    FixtureSpec spec;
    spec.with_probe = false;
    spec.with_mask = with_mask;
    const std::string path = make_fixture(std::string("no_probe") + (with_mask ? "_mask" : ""), spec);
    SCOPED_TRACE(path);
    const Dataset ds = io::read_cxi(MPI_COMM_WORLD, path, io::block_of_frames(spec.n, rank, size));
    EXPECT_EQ(ds.info.probe_source, io::kEstimatedProbeSource);
    ASSERT_EQ(ds.probe.extent(0), size_t(spec.m));
    EXPECT_TRUE(all_finite(ds.probe));
    // Mean total counts per frame over valid pixels; masked pixels are filled in.
    double total = 0, masked_fill = 0;
    for (long j = 0; j < spec.n; ++j)
      for (int r = 0; r < spec.m; ++r)
        for (int c = 0; c < spec.m; ++c)
          if (!with_mask || !test::fixture_masked(r, c)) total += test::fixture_count(j, r, c);
    total /= double(spec.n);
    if (with_mask) {
      EXPECT_EQ(masked_count(ds), 2);
      masked_fill = power(ds.probe) - total;  // what the two filled pixels add
      EXPECT_GT(masked_fill, 0.0);
      EXPECT_LT(masked_fill, 2 * 63.0);  // at most two pixels of the largest mean
    } else {
      EXPECT_NEAR(power(ds.probe) / total, 1.0, 1e-5);
    }
    // A centred zero-phase pattern gives a probe peaked at the centre.
    const float centre = Kokkos::abs(ds.probe(spec.m / 2, spec.m / 2));
    for (size_t k = 0; k < ds.probe.size(); ++k) EXPECT_LE(Kokkos::abs(ds.probe.data()[k]), centre * (1 + 1e-5f));
  }
}

// The frames' orientation: transpose, then flip up-down, then left-right,
// on a 3 x 3 frame whose pixels are numbered row by row.
TEST(CxiVariants, OrientationTurnsFramesInItsOrder) {
  const auto turned = [](io::Orientation o) {
    std::vector<float> f = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    io::orient_frames(f.data(), 1, 3, o);
    return f;
  };
  io::Orientation t;
  EXPECT_EQ(turned(t), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(t.text(), "as stored");
  t.transpose = true;
  EXPECT_EQ(turned(t), (std::vector<float>{0, 3, 6, 1, 4, 7, 2, 5, 8}));
  t.flip_y = true;  // the transposed frame, upside down
  EXPECT_EQ(turned(t), (std::vector<float>{2, 5, 8, 1, 4, 7, 0, 3, 6}));
  io::Orientation x;
  x.flip_x = true;
  EXPECT_EQ(turned(x), (std::vector<float>{2, 1, 0, 5, 4, 3, 8, 7, 6}));
  EXPECT_EQ(t.text(), "transposed, then flipped up-down");
  std::vector<std::uint8_t> mask = {1, 0, 0, 0};  // two frames of 2 x 2 turn alike
  mask.insert(mask.end(), {1, 0, 0, 0});
  io::orient_frames(mask.data(), 2, 2, x);
  EXPECT_EQ(mask, (std::vector<std::uint8_t>{0, 1, 0, 0, 0, 1, 0, 0}));
}

// Orientations compose and invert: then(a, b) turns a 5 x 5 frame as a and
// then b do, and inverse(a) undoes a, for all 8 x 8 pairs.
TEST(CxiVariants, OrientationsComposeAndInvert) {
  std::vector<io::Orientation> all;
  for (int k = 0; k < 8; ++k) all.push_back(io::Orientation{(k & 4) != 0, (k & 2) != 0, (k & 1) != 0});
  const auto turned = [](std::vector<float> f, const io::Orientation& o) {
    io::orient_frames(f.data(), 1, 5, o);
    return f;
  };
  std::vector<float> frame(25);
  for (int p = 0; p < 25; ++p) frame[p] = float(p);
  for (const io::Orientation& a : all) {
    EXPECT_EQ(turned(turned(frame, a), io::inverse(a)), frame) << a.text();
    for (const io::Orientation& b : all)
      EXPECT_EQ(turned(frame, io::then(a, b)), turned(turned(frame, a), b)) << a.text() << " then " << b.text();
  }
}

// A mask of CXI bit flags: pixels with a masking flag (dead, missing) are
// masked; flags that only describe a pixel (noisy, failed artifact
// correction 0x1000, background corrected) leave it valid. The same pixels
// as the 0/1 mask of the plain fixture.
TEST(CxiVariants, BitFlagMasksMaskOnlyTheMaskingFlags) {
  FixtureSpec plain;
  plain.with_mask = true;
  FixtureSpec flags = plain;
  flags.mask_flags = true;
  const Dataset a = read_serial(make_fixture("mask_plain", plain));
  const Dataset b = read_serial(make_fixture("mask_flags", flags));
  EXPECT_EQ(masked_count(b), 2);
  ASSERT_EQ(a.mask.size(), b.mask.size());
  EXPECT_EQ(std::memcmp(a.mask.data(), b.mask.data(), a.mask.size()), 0);
}

TEST(CxiVariants, ProbeFromTheFileScaledOrAsIs) {
  FixtureSpec spec;
  spec.probe_as_illumination = true;
  const std::string path = make_fixture("illumination", spec);
  const io::CxiHeader h = io::read_cxi_header(path);
  EXPECT_EQ(h.info.probe_source, "/entry_1/instrument_1/source_1/illumination");
  const int rank = test::world_rank(), size = test::world_size();
  const std::vector<long> mine = io::block_of_frames(spec.n, rank, size);
  io::ReadOptions as_is;
  as_is.probe_scaling = io::ProbeScaling::as_in_file;
  const Dataset raw = io::read_cxi(MPI_COMM_WORLD, path, mine, as_is);
  EXPECT_EQ(std::memcmp(raw.probe.data(), h.probe.data(), h.probe.size() * sizeof(cfloat)), 0);
  EXPECT_NEAR(h.probe(8, 8).real(), 1.0f, 1e-6f);
  EXPECT_NEAR(h.probe(8, 8).imag(), 0.8f, 1e-6f);
  const Dataset scaled = io::read_cxi(MPI_COMM_WORLD, path, mine);
  double total = 0;
  for (long j = 0; j < spec.n; ++j)
    for (int r = 0; r < spec.m; ++r)
      for (int c = 0; c < spec.m; ++c) total += test::fixture_count(j, r, c);
  EXPECT_NEAR(power(scaled.probe) / (total / spec.n), 1.0, 1e-5);
  // Same shape of probe, only scaled.
  const float ratio = scaled.probe(3, 4).real() / raw.probe(3, 4).real();
  EXPECT_NEAR(scaled.probe(10, 2).imag() / raw.probe(10, 2).imag(), ratio, 1e-4 * ratio);
}

TEST(CxiVariants, DetectorPathsWithoutDataLinks) {
  FixtureSpec spec;
  spec.frames_in_detector_only = true;
  const io::CxiHeader h = io::read_cxi_header(make_fixture("detector_only", spec));
  EXPECT_EQ(h.layout.frames, "/entry_1/instrument_1/detector_1/data");
  EXPECT_EQ(h.layout.translation, "/entry_1/sample_1/geometry_1/translation");
  EXPECT_EQ(h.info.num_frames, spec.n);
}

TEST(CxiVariants, UnitsAttributesAreHonoured) {
  FixtureSpec spec;
  spec.with_energy = false;
  const std::string kev = scratch("units_kev.cxi");
  const std::string bad = scratch("units_bad.cxi");
  if (test::world_rank() == 0) {
    for (const std::string& path : {kev, bad}) {
      test::write_fixture(path, spec);
      io::H5File f = io::H5File::open_write(path, path);
      f.write_scalar("/entry_1/instrument_1/source_1/energy", path == kev ? 10.0 : 10e3);
      f.write_attribute("/entry_1/instrument_1/source_1/energy", "units", std::string(path == kev ? "keV" : "furlong"));
      f.close();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_NEAR(io::read_scan_info(kev).geometry.energy_j, test::kFixtureEnergyJ, 1e-25);
  try {
    io::read_scan_info(bad);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), bad + ": /entry_1/instrument_1/source_1/energy has units \"furlong\""));
  }
}

// ---------------------------------------------------------------- errors

struct ErrorCase {
  const char* name;
  FixtureSpec spec;
  std::vector<std::string> expected;  // parts of the message besides the file name
};

TEST(CxiErrors, NameTheFileTheDatasetAndTheProblem) {
  std::vector<ErrorCase> cases;
  auto add = [&](const char* name, auto modify, std::vector<std::string> expected) {
    FixtureSpec s;
    modify(s);
    cases.push_back({name, s, std::move(expected)});
  };
  add("count_mismatch",
      [](FixtureSpec& s) {
        s.n = 3;
        s.translation_count = 5;
      },
      {"/entry_1/data_1/data has 3 frames but /entry_1/sample_1/geometry_1/translation has 5 positions"});
  add("count_mismatch_3n",
      [](FixtureSpec& s) {
        s.n = 4;
        s.translation_count = 7;
        s.transposed = true;
      },
      {"/entry_1/data_1/data has 4 frames but /entry_1/sample_1/geometry_1/translation has 7 positions"});
  add("no_frames", [](FixtureSpec& s) { s.with_frames = false; },
      {"no frames", "/entry_1/data_1/data", "/entry_1/instrument_1/detector_1/data"});
  add("no_energy", [](FixtureSpec& s) { s.with_energy = false; },
      {"/entry_1/instrument_1/source_1/energy does not exist"});
  add("bad_distance", [](FixtureSpec& s) { s.distance_m = -0.5; },
      {"/entry_1/instrument_1/detector_1/distance is -0.5", "positive"});
  add("non_square", [](FixtureSpec& s) { s.frame_cols = 18; }, {"/entry_1/data_1/data", "square"});
  add("odd_size", [](FixtureSpec& s) { s.m = 15; }, {"/entry_1/data_1/data", "15 x 15", "even"});
  add("translation_shape", [](FixtureSpec& s) { s.translation_width = 4; },
      {"/entry_1/sample_1/geometry_1/translation has shape (12, 4)", "(N, 3) or (3, N)"});
  add("mask_shape",
      [](FixtureSpec& s) {
        s.with_mask = true;
        s.mask_size = 8;
      },
      {"/entry_1/instrument_1/detector_1/mask has shape (8, 8) but the frames are 16 x 16"});
  add("probe_shape", [](FixtureSpec& s) { s.probe_size = 12; },
      {"/entry_1/instrument_1/source_1/probe has shape (12, 12) but the frames are 16 x 16"});
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = make_fixture(std::string("error_") + c.name, c.spec);
    // Serially on any rank...
    try {
      io::read_scan_info(path);
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_TRUE(contains(e.what(), path + ": "));
      for (const std::string& part : c.expected) EXPECT_TRUE(contains(e.what(), part));
    }
    // ...and collectively: every rank raises the same error.
    const std::string message = collective_error(path);
    EXPECT_TRUE(contains(message, path + ": "));
    for (const std::string& part : c.expected) EXPECT_TRUE(contains(message, part));
  }
}

TEST(CxiErrors, NonFiniteCountsOnOneRankStopEveryRank) {
  FixtureSpec spec;
  spec.nan_frame = spec.n - 1;  // held by the last rank only
  const std::string path = make_fixture("nan_frame", spec);
  const std::string message =
      collective_error(path, io::block_of_frames(spec.n, test::world_rank(), test::world_size()));
  EXPECT_TRUE(contains(message, path + ": /entry_1/data_1/data frame 11 has the value nan at pixel (2, 7)"));
}

TEST(CxiErrors, TruncatedMissingAndNonHdf5Files) {
  const std::string truncated = scratch("truncated.cxi");
  const std::string text = scratch("text.cxi");
  if (test::world_rank() == 0) {
    std::filesystem::copy_file(kStandard, truncated, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(truncated, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) * 4 / 10);
    std::ofstream(text) << "frames,x,y\n1,2,3\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string t = collective_error(truncated);
  EXPECT_TRUE(contains(t, truncated + ": "));
  EXPECT_TRUE(contains(t, "truncated"));
  EXPECT_EQ(collective_error(text), text + ": not an HDF5 file");
  const std::string missing = scratch("does_not_exist.cxi");
  EXPECT_EQ(collective_error(missing), missing + ": no such file");
  EXPECT_THROW(io::read_scan_info(text), InputError);
}

// ---------------------------------------------------------------- parallel = serial

/// The frames of `serial` listed in `index`, compared bit for bit with `part`.
void expect_same_frames(const Dataset& serial, const Dataset& part, const std::vector<long>& index) {
  ASSERT_EQ(part.frame_index, index);
  ASSERT_EQ(part.frames.extent(0), index.size());
  const size_t mm = serial.frames.extent(1) * serial.frames.extent(2);
  for (size_t i = 0; i < index.size(); ++i)
    ASSERT_EQ(std::memcmp(part.frames.data() + i * mm, serial.frames.data() + index[i] * mm, mm * sizeof(float)), 0)
        << "frame " << index[i];
  ASSERT_EQ(part.info.positions.size(), serial.info.positions.size());
  EXPECT_EQ(std::memcmp(part.info.positions.data(), serial.info.positions.data(),
                        serial.info.positions.size() * sizeof(Position)),
            0);
  EXPECT_EQ(part.info.object_rows, serial.info.object_rows);
  EXPECT_EQ(part.info.object_cols, serial.info.object_cols);
  EXPECT_EQ(std::memcmp(part.mask.data(), serial.mask.data(), serial.mask.size()), 0);
  // The probe (estimated or scaled) does not depend on how frames are split.
  EXPECT_EQ(std::memcmp(part.probe.data(), serial.probe.data(), serial.probe.size() * sizeof(cfloat)), 0);
}

TEST(CxiParallel, EachRankGetsExactlyTheSerialFrames) {
  const int rank = test::world_rank(), size = test::world_size();
  // PETRA: int32, chunks of 25 frames x 13 x 25 pixels, no probe (estimated).
  // standard_s00: float32, one gzip chunk per frame, probe in the file.
  for (const std::string& path : {kPetra, kStandard}) {
    SCOPED_TRACE(path);
    const Dataset serial = read_serial(path);
    const long n = serial.info.num_frames;
    std::vector<std::vector<long>> patterns;
    {
      std::vector<long> round_robin;  // non-contiguous
      for (long j = rank; j < n; j += size) round_robin.push_back(j);
      patterns.push_back(round_robin);
    }
    {
      // Uneven blocks with the last rank empty (when there are several ranks).
      const int used = size > 1 ? size - 1 : 1;
      patterns.push_back(rank < used ? io::block_of_frames(n, rank, used) : std::vector<long>());
    }
    {
      // Runs of one and two frames with gaps: rank 0 takes some, the others share the rest.
      auto owner = [&](long j) {
        if (size == 1) return 0;
        return (j % 5 == 0 || j % 5 == 1 || j % 7 == 3) ? 0 : 1 + int(j % (size - 1));
      };
      std::vector<long> scattered;
      for (long j = 0; j < n; ++j)
        if (owner(j) == rank) scattered.push_back(j);
      patterns.push_back(scattered);
    }
    for (size_t p = 0; p < patterns.size(); ++p) {
      SCOPED_TRACE("pattern " + std::to_string(p));
      const size_t frame_bytes = sizeof(float) * serial.frames.extent(1) * serial.frames.extent(2);
      for (io::FrameTransfer transfer : {io::FrameTransfer::collective, io::FrameTransfer::independent})
        for (size_t max_bytes : {size_t(1) << 28, 3 * frame_bytes}) {  // one read, or reads of 3 frames
          io::ReadOptions options;
          options.transfer = transfer;
          options.max_read_bytes = max_bytes;
          const Dataset part = io::read_cxi(MPI_COMM_WORLD, path, patterns[p], options);
          expect_same_frames(serial, part, patterns[p]);
        }
      // Together the ranks read every frame once.
      long count = long(patterns[p].size()), total = 0;
      MPI_Allreduce(&count, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
      EXPECT_EQ(total, n);
    }
  }
}

TEST(CxiParallel, ManyScatteredFrames) {
  // 40000 tiny frames; each rank reads a pseudo-random half of its round-robin
  // share: thousands of irregular runs, read in many hyperslab unions.
  FixtureSpec spec;
  spec.n = 40000;
  spec.m = 2;
  spec.frame_type = FrameType::uint16;
  const std::string path = make_fixture("many_frames", spec);
  const int rank = test::world_rank(), size = test::world_size();
  std::vector<long> mine;
  unsigned state = 12345u + unsigned(rank);
  for (long j = rank; j < spec.n; j += size) {
    state = state * 1103515245u + 12345u;
    if ((state >> 16) & 1) mine.push_back(j);
  }
  const Dataset ds = io::read_cxi(MPI_COMM_WORLD, path, mine);
  ASSERT_EQ(ds.frames.extent(0), mine.size());
  for (size_t i = 0; i < mine.size(); ++i)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 2; ++c) ASSERT_EQ(ds.frames(i, r, c), float(test::fixture_count(mine[i], r, c))) << mine[i];
}

TEST(CxiParallel, StatisticsDoNotDependOnTheSplit) {
  const int rank = test::world_rank(), size = test::world_size();
  const Dataset serial = read_serial(kSiemens);
  const io::FrameStatistics whole = io::frame_statistics(MPI_COMM_SELF, serial.frames, serial.mask);
  std::vector<long> mine;
  for (long j = rank; j < serial.info.num_frames; j += size) mine.push_back(j);
  const Dataset part = io::read_cxi(MPI_COMM_WORLD, kSiemens, mine);
  const io::FrameStatistics split = io::frame_statistics(MPI_COMM_WORLD, part.frames, part.mask);
  EXPECT_EQ(split.num_frames, 516);
  EXPECT_EQ(split.mean_total_counts, whole.mean_total_counts);
  EXPECT_EQ(split.max_count, 963.0);
  EXPECT_EQ(split.max_count, whole.max_count);
  ASSERT_EQ(split.mean_frame.size(), whole.mean_frame.size());
  EXPECT_EQ(std::memcmp(split.mean_frame.data(), whole.mean_frame.data(), whole.mean_frame.size() * sizeof(double)), 0);
  EXPECT_NEAR(whole.mean_total_counts, 461212.9, 0.1);
}

}  // namespace
}  // namespace ptycho
