// Position refinement with a large shift limit (issue P5/P6): a scan with a
// 60 nm (6 px RMS per axis) position error, refined with
// max_position_shift = 20 px, must run on any rank count -- the halo follows
// the largest shift limit of the chain (position_margin) -- and no patch may
// leave the object grid, which here is as tight as a file's (8 px around the
// nominal patches, io::kDefaultMarginPx), so frames at the scan's rim are
// pushed against its edge. The world run equals the one-rank run (to float
// rounding, the tolerance of test_rank_invariance).
//
// Also: an engine asked for a refinement it cannot do is an InputError
// before any work (check_chain), not silently ignored.
#include "mpi_world.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/parallel/driver.hpp"
#include "simulated_scan.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

using namespace ptycho;

namespace {

constexpr double kMaxShift = 20.0;  // [px]
constexpr long kGridMargin = 8;     // io::kDefaultMarginPx: the margin a file's grid gets

/// The CLI's `simulate --object-size 128 --probe-size 32 --step 5
/// --position-error 60 --seed 3`, with the nominal positions placed on a grid
/// as io::place_on_object_grid does: the patches shifted by a whole number of
/// pixels so that the first starts `margin` px from the edge, and the grid
/// ending `margin` px after the last.
const test::Scene* make_scene(long margin) {
  {
    sim::SimulationOptions o;
    o.object_size = 128;
    o.probe_size = 32;
    o.step = 5;
    o.position_error_nm = 60;
    o.seed = 3;
    auto* sc = const_cast<test::Scene*>(test::new_scene(o));
    ScanInfo& info = sc->info;
    info = test::scan_info(sc->sim, true);
    const int m = o.probe_size;
    long lo_r = std::numeric_limits<long>::max(), lo_c = lo_r, hi_r = 0, hi_c = 0;
    for (const Position& p : info.positions) {
      const PatchOrigin q = patch_origin(p.row, p.col, m);
      lo_r = std::min(lo_r, q.row);
      lo_c = std::min(lo_c, q.col);
      hi_r = std::max(hi_r, q.row + m);
      hi_c = std::max(hi_c, q.col + m);
    }
    for (Position& p : info.positions) {
      p.row += double(margin - lo_r);
      p.col += double(margin - lo_c);
    }
    info.object_rows = hi_r - lo_r + 2 * margin;
    info.object_cols = hi_c - lo_c + 2 * margin;
    return sc;
  }
}

/// On the grid a file gets (kGridMargin), or on one with a margin of 1 px,
/// whose edge the refined positions at the scan's rim run into.
const test::Scene& scene(bool tight = false) {
  static const test::Scene* normal = make_scene(kGridMargin);
  static const test::Scene* narrow = make_scene(1);
  return tight ? *narrow : *normal;
}

struct Outcome {
  HostCView2 tile;  ///< the owned tile
  Rect owned;
  std::vector<Position> positions;  ///< all, input order
  long migrated = 0;
};

Outcome refine(MPI_Comm comm, const std::string& chain, bool tight) {
  const test::Scene& s = scene(tight);
  EngineOptions base;
  base.refine_positions = true;
  base.max_position_shift = kMaxShift;
  ReconstructOptions opt;
  opt.chain = parse_chain(chain, base);
  DistributedReconstruction r(comm, s.info, opt);
  r.set_data(test::dataset_for(s.sim, s.info, r.my_frames()));
  r.run(nullptr);
  return {r.owned_object(), r.owned(), r.all_positions(), r.frames_migrated()};
}

/// The whole object of a one-rank run, on every rank of the world: rank 0
/// reconstructs it alone (MPI_COMM_SELF) and broadcasts it.
Outcome serial_on_rank0(const std::string& chain, bool tight) {
  const test::Scene& s = scene(tight);
  Outcome out;
  if (test::world_rank() == 0) out = refine(MPI_COMM_SELF, chain, tight);
  out.owned = Rect{0, 0, s.info.object_rows, s.info.object_cols};
  if (test::world_rank() != 0) out.tile = HostCView2("serial", s.info.object_rows, s.info.object_cols);
  MPI_Bcast(out.tile.data(), int(2 * out.tile.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  out.positions.resize(s.info.positions.size());
  MPI_Bcast(out.positions.data(), int(2 * out.positions.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return out;
}

/// ||world - serial|| / ||serial|| over the whole object (each rank its owned tile).
double tile_difference(const Outcome& world, const Outcome& serial) {
  double sums[2] = {0, 0};
  for (long r = 0; r < world.owned.rows; ++r)
    for (long c = 0; c < world.owned.cols; ++c) {
      const cfloat a = world.tile(r, c), b = serial.tile(world.owned.row0 + r, world.owned.col0 + c);
      sums[0] += std::pow(double(Kokkos::abs(a - b)), 2);
      sums[1] += std::pow(double(Kokkos::abs(b)), 2);
    }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::sqrt(sums[0] / sums[1]);
}

/// The message of the InputError `f` throws, or "" if it throws none.
std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}


/// Refines the positions by `chain` (max shift 20 px) on the world and on
/// one rank, and checks what must hold; returns how many patches touch the
/// grid's edge.
int check_large_shift(const std::string& chain, bool tight) {
  const test::Scene& s = scene(tight);
  const int m = s.info.geometry.frame_size;
  // The old halo (4 px beyond the frames' reach) is far below the limit: the
  // margin must come from the chain.
  EngineOptions base;
  base.refine_positions = true;
  base.max_position_shift = kMaxShift;
  EXPECT_EQ(position_margin(parse_chain(chain, base)), int(kMaxShift));

  Outcome world;
  EXPECT_NO_THROW(world = refine(MPI_COMM_WORLD, chain, tight));
  const Outcome serial = serial_on_rank0(chain, tight);
  EXPECT_EQ(world.positions.size(), s.info.positions.size());
  if (world.positions.size() != s.info.positions.size()) return 0;

  double largest = 0, moved = 0, position_diff = 0;
  int at_edge = 0;
  for (size_t j = 0; j < world.positions.size(); ++j) {
    const Position& p = world.positions[j];
    const Position& q = s.info.positions[j];
    largest = std::max({largest, std::abs(p.row - q.row), std::abs(p.col - q.col)});
    moved += std::hypot(p.row - q.row, p.col - q.col) / double(world.positions.size());
    position_diff = std::max(
        {position_diff, std::abs(p.row - serial.positions[j].row), std::abs(p.col - serial.positions[j].col)});
    // Every patch on the grid.
    const PatchOrigin o = patch_origin(p.row, p.col, m);
    EXPECT_GE(o.row, 0) << "frame " << j;
    EXPECT_GE(o.col, 0) << "frame " << j;
    EXPECT_LE(o.row + m, s.info.object_rows) << "frame " << j;
    EXPECT_LE(o.col + m, s.info.object_cols) << "frame " << j;
    at_edge += o.row == 0 || o.col == 0 || o.row + m == s.info.object_rows || o.col + m == s.info.object_cols;
  }
  const double diff = tile_difference(world, serial);
  if (test::world_rank() == 0)
    std::printf("%s, max shift %.0f px, grid margin %ld px, %d ranks: positions moved %.2f px on average, at most "
                "%.2f px per axis, %d patches at the grid's edge, %ld frames migrated; the object differs from one "
                "rank's by %.2e, the positions by %.2e px\n",
                chain.c_str(), kMaxShift, tight ? 1L : kGridMargin, test::world_size(), moved, largest, at_edge,
                world.migrated, diff, position_diff);
  EXPECT_GT(moved, 1.0);                 // the positions did move: the test means something
  EXPECT_GT(largest, 4.0 + 1.0);         // further than the old halo margin allowed
  EXPECT_LE(largest, kMaxShift + 1e-9);  // and never beyond the limit
  EXPECT_LT(diff, 1e-4);                 // rank invariance (test_rank_invariance's tolerance)
  EXPECT_LT(position_diff, 1e-2);
  return at_edge;
}

}  // namespace

class LargeShift : public ::testing::TestWithParam<std::string> {};

TEST_P(LargeShift, RunsOnAnyRankCountInsideTheShiftLimitAndTheGrid) { check_large_shift(GetParam(), false); }

INSTANTIATE_TEST_SUITE_P(Engines, LargeShift, ::testing::Values("raar:80", "dm:80", "ml:240"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param.substr(0, p.param.find(':'));
                         });

// With a margin of 1 px around the nominal patches, frames at the rim whose
// true positions lie further out are held at the grid's edge.
TEST(LargeShiftOnATightGrid, PatchesStopAtTheGridsEdge) { EXPECT_GT(check_large_shift("raar:80", true), 0); }

TEST(PositionMargin, IsTheLargestShiftOfTheEnginesThatRefinePositions) {
  EngineOptions base;
  EXPECT_EQ(position_margin(parse_chain("dm:10,ml:10", base)), 0);  // nothing moves
  base.refine_positions = true;
  base.max_position_shift = 2.5;
  auto chain = parse_chain("dm:10,ml:10", base);
  EXPECT_EQ(position_margin(chain), 3);
  chain[1].max_position_shift = 20;
  EXPECT_EQ(position_margin(chain), 20);
  chain[1].iterations = 0;  // an engine that does not run moves nothing
  EXPECT_EQ(position_margin(chain), 3);
  chain[0].max_position_shift = 1e300;
  EXPECT_EQ(position_margin(chain, 200), 200);
}

TEST(CheckChain, AnEngineAskedForWhatItCannotRefineIsAnInputError) {
  EngineOptions base;
  base.refine_positions = true;
  for (const std::string engine : {"epie", "rpie", "mpie", "sdr", "lsqml"}) {
    EXPECT_EQ(input_error([&] { parse_chain(engine + ":10", base); }),
              "--refine-positions: engine '" + engine +
                  "' does not refine positions (engines that do: dm, raar, ml)");
    EXPECT_EQ(input_error([&] { parse_chain("dm:10," + engine + ":5", base); }),
              "--refine-positions: engine '" + engine +
                  "' does not refine positions (engines that do: dm, raar, ml)");
  }
  for (const std::string engine : {"dm", "raar", "ml"}) EXPECT_NO_THROW(parse_chain(engine + ":10", base)) << engine;
  // Without position refinement every engine is fine, with probe and background too.
  base.refine_positions = false;
  base.refine_probe = true;
  base.background = BackgroundMode::constant;
  for (const auto& engine : engine_names()) EXPECT_NO_THROW(parse_chain(engine + ":10", base)) << engine;
  // check_chain sees the options as set per engine.
  auto chain = parse_chain("ml:5,epie:5", EngineOptions{});
  EXPECT_NO_THROW(check_chain(chain));
  chain[1].refine_positions = true;
  EXPECT_NE(input_error([&] { check_chain(chain); }).find("engine 'epie'"), std::string::npos);
  chain[1].refine_positions = false;
  chain[0].refine_positions = true;
  EXPECT_NO_THROW(check_chain(chain));
}

TEST(CheckChain, TheLearnedGuessTakesAModelAndLeavesRefiningToTheEnginesAfterIt) {
  EngineOptions base;
  auto chain = parse_chain("nn,ml:5", base);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0].name, "nn");
  EXPECT_EQ(chain[0].iterations, 1);
  EXPECT_TRUE(chain[0].model.empty());
  chain = parse_chain("nn:models/m.pt,dm:3", base);
  EXPECT_EQ(chain[0].model, "models/m.pt");
  EXPECT_EQ(chain_text(chain), "nn:models/m.pt,dm:3");
  EXPECT_NE(input_error([&] { parse_chain("nn:5,ml:5", base); }).find("nn takes a model file"), std::string::npos);
  EXPECT_NE(input_error([&] { parse_chain("nn:", base); }).find("nn takes a model file"), std::string::npos);
  // Refinements asked of the chain are the engines' after nn; nn alone cannot do them.
  base.refine_positions = true;
  base.refine_probe = true;
  EXPECT_NO_THROW(parse_chain("nn,ml:5", base));
  EXPECT_NE(input_error([&] { parse_chain("nn", base); }).find("engine 'nn' does not refine"), std::string::npos);
}
