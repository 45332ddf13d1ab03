// gather_tiles at 1-4 ranks: every rank's tile of an odd-sized object lands
// where its rect says, on every choice of root; a rank with an empty tile
// and pixels no tile covers (zeros) included.
#include "ptycho/core/error.hpp"
#include "ptycho/parallel/gather.hpp"
#include "mpi_world.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

using namespace ptycho;
using test::world_rank;
using test::world_size;

namespace {

cfloat value(long r, long c) { return cfloat(float(r) + 0.5f, float(-c) - 0.25f); }

/// Rank q's tile: a band of rows of uneven height; the last rank's is empty
/// when there are 3 or more ranks, and the bottom `uncovered` rows are nobody's.
Rect tile_of(int q, int n, long rows, long cols, long uncovered) {
  const long usable = rows - uncovered;
  const int holders = n >= 3 ? n - 1 : n;
  if (q >= holders) return Rect{0, 0, 0, 0};
  const long r0 = usable * q / holders, r1 = usable * (q + 1) / holders;
  return Rect{r0, 3, r1 - r0, cols - 3};  // the first 3 columns are nobody's either
}

}  // namespace

TEST(Gather, TilesLandWhereTheirRectsSay) {
  const int me = world_rank(), n = world_size();
  const long rows = 37, cols = 29, uncovered = 2;
  const Rect mine = tile_of(me, n, rows, cols, uncovered);
  HostCView2 tile("tile", mine.rows, mine.cols);
  for (long r = 0; r < mine.rows; ++r)
    for (long c = 0; c < mine.cols; ++c) tile(r, c) = value(mine.row0 + r, mine.col0 + c);
  for (int root = 0; root < n; ++root) {
    const HostCView2 whole = gather_tiles(MPI_COMM_WORLD, tile, mine, rows, cols, root);
    if (me != root) {
      EXPECT_EQ(whole.size(), 0u);
      continue;
    }
    ASSERT_EQ(long(whole.extent(0)), rows);
    ASSERT_EQ(long(whole.extent(1)), cols);
    long wrong = 0;
    for (long r = 0; r < rows; ++r)
      for (long c = 0; c < cols; ++c) {
        const bool covered = r < rows - uncovered && c >= 3;
        const cfloat expected = covered ? value(r, c) : cfloat(0, 0);
        wrong += whole(r, c) != expected;
      }
    EXPECT_EQ(wrong, 0) << "root " << root;
  }
}

TEST(Gather, ATileThatDisagreesWithItsRectIsRefused) {
  HostCView2 tile("tile", 2, 3);
  EXPECT_THROW(gather_tiles(MPI_COMM_SELF, tile, Rect{0, 0, 3, 3}, 5, 5, 0), Error);
  EXPECT_THROW(gather_tiles(MPI_COMM_SELF, tile, Rect{4, 0, 2, 3}, 5, 5, 0), Error);
}
