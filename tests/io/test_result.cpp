// The result writer: the contract's layout, collective writes from tiles that
// give the same bytes as a serial write, round trips, and atomicity.
#include "io_fixtures.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "ptycho/io/result.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace ptycho {
namespace {

using io::ResultData;
using test::contains;

constexpr long kRows = 37, kCols = 53;  // odd on purpose
constexpr int kModes = 2, kM = 8, kN = 5;

std::string scratch(const std::string& name) { return test::scratch_path("test_io_result", name); }

HostCView2 make_object() {
  HostCView2 o("object", kRows, kCols);
  for (long r = 0; r < kRows; ++r)
    for (long c = 0; c < kCols; ++c) o(r, c) = cfloat(float(r) + 0.01f * float(c), -float(c) + 0.5f * float(r));
  return o;
}

/// A result whose tile is set by the caller.
ResultData make_result() {
  ResultData r;
  r.layout = RankLayout::whole(kRows, kCols, kN, kM);
  for (int j = 0; j < kN; ++j) r.positions.push_back(Position{10.25 + j, 20.5 - 0.125 * j});
  r.probe_modes = HostCView3("modes", kModes, kM, kM);
  for (int k = 0; k < kModes; ++k)
    for (int y = 0; y < kM; ++y)
      for (int x = 0; x < kM; ++x) r.probe_modes(k, y, x) = cfloat(float(k + y), float(x) - 0.5f * float(k));
  r.pixel_size_m = 1e-8;
  r.process.version = "0.1.0";
  r.process.command_line = "ptycho reconstruct in.cxi --out out.h5";
  r.process.configuration = R"({"engines":[{"name":"DM","iterations":2}]})";
  r.process.cost_history = {3.0, 2.0, 1.5};
  r.process.engine_history = {"DM", "DM", "ML"};
  r.process.metrics = {{"seconds_per_iteration", 0.25}, {"probe_error_pct", 4.5}};
  r.process.notes = {{"hostname", "node-1"}};
  return r;
}

struct Tile {
  long r0 = 0, c0 = 0, rows = 0, cols = 0;
};

std::vector<long> split(long n, int part, int parts) {
  return io::block_of_frames(n, part, parts);  // contiguous blocks
}

/// This rank's tile in tiling `kind` of the object over `size` ranks.
Tile tile_for(int kind, int rank, int size) {
  Tile t;
  auto block = [](long n, int part, int parts, long& start, long& count) {
    const std::vector<long> b = split(n, part, parts);
    start = b.empty() ? 0 : b.front();
    count = long(b.size());
  };
  switch (kind) {
    case 0:  // row strips
      block(kRows, rank, size, t.r0, t.rows);
      t.cols = kCols;
      break;
    case 1:  // column strips (row-strided views)
      block(kCols, rank, size, t.c0, t.cols);
      t.rows = kRows;
      break;
    case 2:  // rank 0 the top half, the others the bottom half split by columns
      if (size == 1) {
        t.rows = kRows;
        t.cols = kCols;
      } else if (rank == 0) {
        t.rows = kRows / 2;
        t.cols = kCols;
      } else {
        t.r0 = kRows / 2;
        t.rows = kRows - kRows / 2;
        block(kCols, rank - 1, size - 1, t.c0, t.cols);
      }
      break;
    default:  // row strips over all but the last rank, which owns nothing
      if (size == 1) {
        t.rows = kRows;
        t.cols = kCols;
      } else if (rank < size - 1) {
        block(kRows, rank, size - 1, t.r0, t.rows);
        t.cols = kCols;
      }
  }
  return t;
}

HostCView2 tile_view(const HostCView2& object, const Tile& t) {
  if (t.rows == 0 || t.cols == 0) return HostCView2();
  // A subview of the whole object: LayoutRight with a row stride of kCols.
  return Kokkos::subview(object, std::make_pair(t.r0, t.r0 + t.rows), std::make_pair(t.c0, t.c0 + t.cols));
}

/// `r` with `view` as this rank's tile at `t`.
void place(ResultData& r, const HostCView2& view, const Tile& t) {
  r.object_tile = view;
  r.layout.owned = Rect{t.r0, t.c0, long(view.extent(0)), long(view.extent(1))};
}

/// make_result() with this rank's tile of `object` under tiling `kind`
/// (the tile views `object`, which must outlive the result).
ResultData tiled_result(const HostCView2& object, int kind) {
  const Tile t = tile_for(kind, test::world_rank(), test::world_size());
  ResultData r = make_result();
  place(r, tile_view(object, t), t);
  return r;
}

std::vector<char> raw_object_bytes(const std::string& path) {
  io::H5File f = io::H5File::open_read(path);
  io::H5Id dset = f.open_dataset("/entry_1/image_1/data");
  io::H5Id type(H5Dget_type(dset.get()));
  std::vector<char> bytes(size_t(kRows) * kCols * H5Tget_size(type.get()));
  EXPECT_GE(H5Dread(dset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), 0);
  return bytes;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

/// Names in the scratch folder that look like temporary files.
std::vector<std::string> leftover_temporaries() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(scratch("x")).parent_path()))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

TEST(ResultWrite, TilesGiveTheBytesOfASerialWrite) {
  const int rank = test::world_rank(), size = test::world_size();
  const HostCView2 object = make_object();
  const std::string reference = scratch("serial.h5");
  if (rank == 0) {
    ResultData r = make_result();
    r.object_tile = object;
    io::write_result(MPI_COMM_SELF, reference, r);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::vector<char> expected = raw_object_bytes(reference);
  for (int kind = 0; kind < 4; ++kind) {
    SCOPED_TRACE("tiling " + std::to_string(kind));
    const ResultData r = tiled_result(object, kind);
    const std::string path = scratch("tiled_" + std::to_string(kind) + ".h5");
    io::write_result(MPI_COMM_WORLD, path, r);
    const std::vector<char> got = raw_object_bytes(path);
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size()), 0);
    const ResultData back = io::read_result(path);
    ASSERT_EQ(back.layout.object_rows, kRows);
    ASSERT_EQ(back.layout.object_cols, kCols);
    EXPECT_EQ(back.layout.owned, (Rect{0, 0, kRows, kCols}));
    EXPECT_EQ(back.layout.total_frames, kN);
    EXPECT_EQ(back.layout.frame_size, kM);
    for (long y = 0; y < kRows; ++y)
      for (long x = 0; x < kCols; ++x) ASSERT_EQ(back.object_tile(y, x), object(y, x)) << y << " " << x;
  }
  EXPECT_TRUE(leftover_temporaries().empty());
}

TEST(ResultWrite, LayoutFollowsTheContract) {
  const std::string path = scratch("layout.h5");
  const int rank = test::world_rank(), size = test::world_size();
  const HostCView2 object = make_object();
  const Tile t = tile_for(0, rank, size);
  ResultData r = make_result();
  place(r, tile_view(object, t), t);
  io::write_result(MPI_COMM_WORLD, path, r);

  io::H5File f = io::H5File::open_read(path);
  auto check_complex64 = [&](const char* p, std::vector<hsize_t> dims) {
    io::H5Id dset = f.open_dataset(p);
    EXPECT_EQ(f.extents(dset.get(), p), dims) << p;
    io::H5Id type(H5Dget_type(dset.get()));
    ASSERT_EQ(H5Tget_class(type.get()), H5T_COMPOUND) << p;
    ASSERT_EQ(H5Tget_nmembers(type.get()), 2);
    EXPECT_EQ(H5Tget_size(type.get()), 8u);
    for (unsigned k = 0; k < 2; ++k) {
      char* name = H5Tget_member_name(type.get(), k);
      EXPECT_STREQ(name, k == 0 ? "r" : "i");
      H5free_memory(name);
      io::H5Id member(H5Tget_member_type(type.get(), k));
      EXPECT_TRUE(H5Tequal(member.get(), H5T_IEEE_F32LE) > 0);
      EXPECT_EQ(H5Tget_member_offset(type.get(), k), 4u * k);
    }
    EXPECT_EQ(io::type_name(type.get()), "complex64");
  };
  check_complex64("/entry_1/image_1/data", {hsize_t(kRows), hsize_t(kCols)});
  check_complex64("/entry_1/image_2/data", {hsize_t(kModes), hsize_t(kM), hsize_t(kM)});
  std::vector<hsize_t> dims;
  const std::vector<double> pos = f.read_doubles("/entry_1/image_1/positions_px", &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{kN, 2}));
  EXPECT_EQ(pos[2 * 3 + 0], 13.25);
  EXPECT_EQ(pos[2 * 3 + 1], 20.5 - 0.375);
  {
    io::H5Id dset = f.open_dataset("/entry_1/image_1/positions_px");
    io::H5Id type(H5Dget_type(dset.get()));
    EXPECT_TRUE(H5Tequal(type.get(), H5T_IEEE_F64LE) > 0);
  }
  EXPECT_EQ(f.read_scalar("/entry_1/image_1/pixel_size"), 1e-8);
  EXPECT_EQ(f.read_string("/entry_1/process_1/program"), "ptycho");
  EXPECT_EQ(f.read_string("/entry_1/process_1/configuration"), r.process.configuration);
  EXPECT_EQ(f.read_doubles("/entry_1/process_1/cost_history"), (std::vector<double>{3.0, 2.0, 1.5}));
  EXPECT_EQ(f.read_scalar("/entry_1/process_1/seconds_per_iteration"), 0.25);
}

TEST(ResultWrite, ReadResultRoundTrips) {
  const std::string path = scratch("roundtrip.h5");
  const HostCView2 object = make_object();
  const ResultData r = tiled_result(object, 2);
  io::write_result(MPI_COMM_WORLD, path, r);
  const ResultData back = io::read_result(path);
  ASSERT_EQ(back.positions.size(), size_t(kN));
  for (int j = 0; j < kN; ++j) {
    EXPECT_EQ(back.positions[j].row, r.positions[j].row);
    EXPECT_EQ(back.positions[j].col, r.positions[j].col);
  }
  ASSERT_EQ(back.probe_modes.extent(0), size_t(kModes));
  ASSERT_EQ(back.probe_modes.extent(1), size_t(kM));
  EXPECT_EQ(std::memcmp(back.probe_modes.data(), r.probe_modes.data(), r.probe_modes.size() * sizeof(cfloat)), 0);
  EXPECT_EQ(back.pixel_size_m, 1e-8);
  EXPECT_EQ(back.process.program, "ptycho");
  EXPECT_EQ(back.process.version, "0.1.0");
  EXPECT_EQ(back.process.command_line, r.process.command_line);
  EXPECT_EQ(back.process.configuration, r.process.configuration);
  EXPECT_EQ(back.process.cost_history, r.process.cost_history);
  EXPECT_EQ(back.process.engine_history, r.process.engine_history);
  EXPECT_EQ(back.process.metrics, r.process.metrics);
  EXPECT_EQ(back.process.notes, r.process.notes);
}

TEST(ResultWrite, TheBackgroundIsOptionalAndRoundTrips) {
  const std::string path = scratch("background.h5");
  const HostCView2 object = make_object();
  ResultData r = tiled_result(object, 0);
  io::write_result(MPI_COMM_WORLD, path, r);
  EXPECT_EQ(io::read_result(path).background.size(), 0u);  // none written, none read
  r.background = HostRView2("background", kM, kM);
  for (int y = 0; y < kM; ++y)
    for (int x = 0; x < kM; ++x) r.background(y, x) = 0.25f * float(y) + 3.0f * float(x);
  io::write_result(MPI_COMM_WORLD, path, r);
  const ResultData back = io::read_result(path);
  ASSERT_EQ(back.background.extent(0), size_t(kM));
  ASSERT_EQ(back.background.extent(1), size_t(kM));
  EXPECT_EQ(std::memcmp(back.background.data(), r.background.data(), r.background.size() * sizeof(float)), 0);
  EXPECT_EQ(back.process.metrics, r.process.metrics);  // the (M, M) dataset is no metric
}

TEST(ResultWrite, AFailedWriteLeavesTheExistingFile) {
  const int rank = test::world_rank(), size = test::world_size();
  const std::string path = scratch("precious.h5");
  const HostCView2 object = make_object();
  const Tile t = tile_for(0, rank, size);
  ResultData good = make_result();
  place(good, tile_view(object, t), t);
  io::write_result(MPI_COMM_WORLD, path, good);
  const std::vector<char> before = file_bytes(path);
  ASSERT_FALSE(before.empty());

  // Fails late, after the object is written: a metric named like a standard entry.
  ResultData clash = good;
  clash.process.metrics["program"] = 1.0;
  clash.object_tile = tile_view(make_object(), t);
  for (long x = 0; x < long(clash.object_tile.extent(1)) && clash.object_tile.extent(0) > 0; ++x)
    clash.object_tile(0, x) = cfloat(-1, -1);
  try {
    io::write_result(MPI_COMM_WORLD, path, clash);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), path + ": "));
    EXPECT_TRUE(contains(e.what(), "/entry_1/process_1/program"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(file_bytes(path), before);

  // Fails early: tiles that overlap (or leave the object, on one rank).
  ResultData overlap = good;
  place(overlap, object, Tile{size == 1 ? 1 : 0, 0, kRows, kCols});
  EXPECT_THROW(io::write_result(MPI_COMM_WORLD, path, overlap), Error);
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(file_bytes(path), before);

  // Fails at creation: a folder that does not exist.
  const std::string nowhere = scratch("no_such_folder/out.h5");
  try {
    io::write_result(MPI_COMM_WORLD, nowhere, good);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), nowhere + ": cannot be created"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_TRUE(leftover_temporaries().empty());
}

TEST(ResultWrite, EveryRankReportsABadTiling) {
  const int rank = test::world_rank(), size = test::world_size();
  ResultData r = make_result();
  const HostCView2 object = make_object();
  const Tile t = tile_for(0, rank, size);
  place(r, tile_view(object, t), t);
  r.layout.object_cols = kCols + (rank == size - 1 ? 1 : 0);  // the last rank disagrees on the object (or leaves a gap)
  try {
    io::write_result(MPI_COMM_WORLD, scratch("bad_tiling.h5"), r);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "write_result"));
  }
  EXPECT_FALSE(std::filesystem::exists(scratch("bad_tiling.h5")));
}

TEST(ResultWrite, ATileThatDisagreesWithItsLayoutIsRefused) {
  // The layout is the one checkpoints use: its tile, frame count and frame
  // size must match what the result holds, on every rank.
  const int rank = test::world_rank(), size = test::world_size();
  const HostCView2 object = make_object();
  const Tile t = tile_for(0, rank, size);
  const std::string path = scratch("disagrees.h5");
  if (rank == 0) std::filesystem::remove(path);  // from an earlier run
  MPI_Barrier(MPI_COMM_WORLD);
  auto refused = [&](const ResultData& r, const char* what) {
    try {
      io::write_result(MPI_COMM_WORLD, path, r);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), what)) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(path));
  };
  ResultData r = make_result();
  place(r, tile_view(object, t), t);
  ResultData wide = r;
  wide.layout.owned.cols += 1;  // the tile is narrower than its layout says
  refused(wide, "layout's owned tile");
  ResultData few = r;
  few.positions.pop_back();
  refused(few, "positions for the layout's");
  ResultData big = r;
  big.layout.frame_size = kM + 2;
  refused(big, "for the layout's frames");
  io::write_result(MPI_COMM_WORLD, path, r);
  EXPECT_TRUE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace ptycho
