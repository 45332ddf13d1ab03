// The object tiling (pure geometry, no MPI): exact partition of the grid,
// ownership of positions, extents holding every patch, the balance bound of
// decomposition.hpp, empty ranks and degenerate inputs, over odd sizes, every
// rank count 1..7 and explicit non-square grids.
#include "ptycho/core/error.hpp"
#include "ptycho/parallel/decomposition.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>

using namespace ptycho;

namespace {

long clamp_line(double x, long n) { return std::clamp<long>(static_cast<long>(std::floor(x)), 0, n - 1); }

/// The bound decomposition.hpp guarantees on the positions per rank.
long balance_bound(const std::vector<Position>& pos, long h, long w, RankGrid g) {
  if (pos.empty()) return 0;
  std::map<long, long> rows, cols;
  for (const Position& p : pos) {
    ++rows[clamp_line(p.row, h)];
    ++cols[clamp_line(p.col, w)];
  }
  long mr = 0, mc = 0;
  for (auto& kv : rows) mr = std::max(mr, kv.second);
  for (auto& kv : cols) mc = std::max(mc, kv.second);
  const long n = static_cast<long>(pos.size());
  const long band = (n + g.rows - 1) / g.rows + mr - 1;
  return (band + g.cols - 1) / g.cols + mc - 1;
}

/// Everything wrong with `dec` as a decomposition of `pos` on an h x w grid, or "" if nothing.
std::string violations(const Decomposition& dec, const std::vector<Position>& pos, long h, long w, int m, int margin,
                       int nranks) {
  std::ostringstream os;
  const Rect bounds{0, 0, h, w};
  if (dec.nranks() != nranks) os << "grid has " << dec.nranks() << " ranks; ";
  if (!(dec.bounds == bounds)) os << "bounds wrong; ";
  if (dec.halo != m / 2 + 1 + margin) os << "halo " << dec.halo << "; ";
  if (static_cast<int>(dec.owned.size()) != nranks || static_cast<int>(dec.extent.size()) != nranks ||
      static_cast<int>(dec.positions_of.size()) != nranks || dec.owner.size() != pos.size()) {
    os << "sizes wrong; ";
    return os.str();
  }
  // Exact partition: every pixel owned exactly once.
  std::vector<int> cover(h * w, 0);
  for (int q = 0; q < nranks; ++q) {
    const Rect& o = dec.owned[q];
    if (o.rows < 0 || o.cols < 0) os << "rank " << q << " has a negative size; ";
    if (!bounds.contains(o)) os << "rank " << q << " owned outside the grid; ";
    if (h >= dec.grid.rows && w >= dec.grid.cols && o.empty()) os << "rank " << q << " owns nothing; ";
    for (long r = std::max(0L, o.row0); r < std::min(h, o.row1()); ++r)
      for (long c = std::max(0L, o.col0); c < std::min(w, o.col1()); ++c) ++cover[r * w + c];
    const Rect want = o.empty() ? Rect{o.row0, o.col0, 0, 0} : grow(o, dec.halo, bounds);
    if (!(dec.extent[q] == want)) os << "rank " << q << " extent is not owned grown by the halo; ";
  }
  for (long i = 0; i < h * w; ++i)
    if (cover[i] != 1) {
      os << "pixel (" << i / w << ", " << i % w << ") owned " << cover[i] << " times; ";
      break;
    }
  // Ownership, positions_of, and every patch (also of the position moved by up to the margin) in the extent.
  std::vector<int> listed(pos.size(), 0);
  for (int q = 0; q < nranks; ++q) {
    const auto& list = dec.positions_of[q];
    if (!std::is_sorted(list.begin(), list.end())) os << "positions_of[" << q << "] not ascending; ";
    for (long j : list) {
      if (j < 0 || j >= static_cast<long>(pos.size()) || dec.owner[j] != q) {
        os << "positions_of[" << q << "] lists " << j << " wrongly; ";
        continue;
      }
      ++listed[j];
    }
  }
  const double shifts[] = {-double(margin), -margin + 0.25, -0.5, 0.0, 0.5, margin - 1e-9, double(margin)};
  for (std::size_t j = 0; j < pos.size(); ++j) {
    if (listed[j] != 1) os << "position " << j << " listed " << listed[j] << " times; ";
    const int q = dec.owner[j];
    if (q < 0 || q >= nranks) {
      os << "position " << j << " has owner " << q << "; ";
      continue;
    }
    if (!dec.owned[q].contains(clamp_line(pos[j].row, h), clamp_line(pos[j].col, w)))
      os << "position " << j << " not in its owner's rect; ";
    if (owner_of(dec, pos[j].row, pos[j].col) != q) os << "owner_of disagrees for position " << j << "; ";
    for (double dr : shifts)
      for (double dc : shifts) {
        const long r0 = static_cast<long>(std::floor(pos[j].row + dr - 0.5 * m));
        const long c0 = static_cast<long>(std::floor(pos[j].col + dc - 0.5 * m));
        const Rect patch = intersect(Rect{r0, c0, m, m}, bounds);
        if (!dec.extent[q].contains(patch)) {
          os << "patch of position " << j << " moved by (" << dr << ", " << dc << ") leaves the extent; ";
          dr = dc = 1e9;  // report once
        }
      }
  }
  long most = 0;
  for (const auto& list : dec.positions_of) most = std::max<long>(most, static_cast<long>(list.size()));
  const long bound = balance_bound(pos, h, w, dec.grid);
  if (most > bound) os << "a rank owns " << most << " positions, above the bound " << bound << "; ";
  return os.str();
}

/// Named position sets on an h x w grid with frame size m.
std::vector<std::pair<std::string, std::vector<Position>>> position_sets(long h, long w, int m, unsigned seed) {
  std::vector<std::pair<std::string, std::vector<Position>>> sets;
  std::mt19937 rng(seed);
  auto inside = [&](double lo, double hi) {
    if (hi <= lo) return std::uniform_real_distribution<double>(0, 1)(rng) * std::max(1e-3, hi);
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  const double half = 0.5 * m;
  std::vector<Position> uniform;
  for (int i = 0; i < 150; ++i) uniform.push_back({inside(half, h - half), inside(half, w - half)});
  sets.emplace_back("uniform", uniform);

  std::vector<Position> raster;  // integer coordinates, many sharing a row or a column
  for (long r = 2; r < h - 1; r += 5)
    for (long c = 3; c < w - 1; c += 4) raster.push_back({double(r), double(c)});
  sets.emplace_back("raster", raster);

  std::vector<Position> spiral;  // Fermat spiral about the centre
  for (int i = 0; i < 120; ++i) {
    const double rad = 0.45 * std::min(h, w) * std::sqrt(i / 120.0), th = i * 2.39996323;
    spiral.push_back({0.5 * h + rad * std::sin(th), 0.5 * w + rad * std::cos(th)});
  }
  sets.emplace_back("spiral", spiral);

  std::vector<Position> corner;  // all in the top-left corner: most tiles get none
  for (int i = 0; i < 40; ++i) corner.push_back({inside(0, 6), inside(0, 6)});
  sets.emplace_back("corner", corner);

  sets.emplace_back("two", std::vector<Position>{{0.3 * h, 0.6 * w}, {0.8 * h, 0.1 * w}});
  sets.emplace_back("none", std::vector<Position>{});
  sets.emplace_back("identical", std::vector<Position>(25, Position{0.5 * h + 0.3, 0.5 * w + 0.7}));
  sets.emplace_back("outside",
                    std::vector<Position>{
                        {-3.5, 2}, {h + 4.2, w * 0.5}, {h * 0.5, -0.1}, {h * 0.5, double(w)}, {h - 1e-9, w - 1e-9}});
  return sets;
}

}  // namespace

TEST(RankGrid, IsTheMostBalancedFactorisation) {
  EXPECT_EQ(rank_grid(1), (RankGrid{1, 1}));
  EXPECT_EQ(rank_grid(2), (RankGrid{2, 1}));
  EXPECT_EQ(rank_grid(3), (RankGrid{3, 1}));
  EXPECT_EQ(rank_grid(4), (RankGrid{2, 2}));
  EXPECT_EQ(rank_grid(6), (RankGrid{3, 2}));
  EXPECT_EQ(rank_grid(7), (RankGrid{7, 1}));
  EXPECT_EQ(rank_grid(12), (RankGrid{4, 3}));
  EXPECT_EQ(rank_grid(36), (RankGrid{6, 6}));
  for (int n = 1; n <= 200; ++n) {
    const RankGrid g = rank_grid(n);
    ASSERT_EQ(g.size(), n);
    ASSERT_GE(g.rows, g.cols);
    for (int d = g.cols + 1; d * d <= n; ++d) ASSERT_NE(n % d, 0) << n << " has a more balanced grid";
  }
  EXPECT_THROW(rank_grid(0), Error);
}

TEST(Decompose, ExhaustiveOverSizesRankCountsAndPositionSets) {
  int checked = 0;
  for (long h : {37L, 64L, 101L})
    for (long w : {37L, 64L, 101L})
      for (int m : {8, 9, 16}) {
        std::vector<std::optional<RankGrid>> grids;
        for (int n = 1; n <= 7; ++n) grids.emplace_back(std::nullopt);
        grids.emplace_back(RankGrid{3, 1});
        grids.emplace_back(RankGrid{1, 3});
        grids.emplace_back(RankGrid{2, 3});
        for (const auto& [name, pos] : position_sets(h, w, m, static_cast<unsigned>(h * 1000 + w + m)))
          for (std::size_t gi = 0; gi < grids.size(); ++gi) {
            const int nranks = grids[gi] ? grids[gi]->size() : static_cast<int>(gi) + 1;
            for (int margin : {0, 4}) {
              DecompositionOptions opt;
              opt.grid = grids[gi];
              opt.refine_margin = margin;
              const Decomposition dec = decompose(pos, h, w, m, nranks, opt);
              if (grids[gi]) EXPECT_EQ(dec.grid, *grids[gi]);
              EXPECT_EQ(violations(dec, pos, h, w, m, margin, nranks), "")
                  << name << " on " << h << " x " << w << ", M " << m << ", " << dec.grid.rows << " x " << dec.grid.cols
                  << " ranks, margin " << margin;
              ++checked;
            }
          }
      }
  EXPECT_EQ(checked, 3 * 3 * 3 * 8 * 10 * 2);
}

TEST(Decompose, DistinctCoordinatesBalanceToTheCeiling) {
  // No two positions share a pixel row or column: every rank gets at most ceil(N / R).
  for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 12}) {
    for (int count : {7, 50, 97}) {
      std::vector<Position> pos;
      for (int i = 0; i < count; ++i) pos.push_back({5.5 + i, 3.25 + (37 * i) % count});
      const Decomposition dec = decompose(pos, count + 10, count + 10, 8, n, {});
      const long ceil = (count + n - 1) / n;
      for (int q = 0; q < n; ++q)
        EXPECT_LE(static_cast<long>(dec.positions_of[q].size()), ceil) << count << " positions on " << n << " ranks";
    }
  }
}

TEST(Decompose, TilesFollowPositionDensityNotArea) {
  // 90 positions in the left fifth, 10 spread over the rest: with 1 x 2 ranks the cut lies near the dense region.
  std::vector<Position> pos;
  for (int i = 0; i < 90; ++i) pos.push_back({10.0 + i * 0.9, 2.0 + (i % 18)});
  for (int i = 0; i < 10; ++i) pos.push_back({10.0 + i * 9, 30.0 + i * 6.5});
  DecompositionOptions opt;
  opt.grid = RankGrid{1, 2};
  const Decomposition dec = decompose(pos, 100, 100, 8, 2, opt);
  EXPECT_EQ(dec.positions_of[0].size(), 50u);
  EXPECT_EQ(dec.positions_of[1].size(), 50u);
  EXPECT_LT(dec.owned[0].cols, 20);
  EXPECT_EQ(violations(dec, pos, 100, 100, 8, opt.refine_margin, 2), "");
}

TEST(Decompose, EmptyRegionsAreSharedByArea) {
  // No positions: tiles are as equal in area as integer lines allow.
  const Decomposition dec = decompose({}, 100, 90, 16, 6, {});
  ASSERT_EQ(dec.grid, (RankGrid{3, 2}));
  for (int q = 0; q < 6; ++q) {
    EXPECT_NEAR(dec.owned[q].rows, 100.0 / 3, 1.0);
    EXPECT_EQ(dec.owned[q].cols, 45);
  }
}

TEST(Decompose, MoreRanksThanPositionsLeavesEmptyRanksWithTiles) {
  const std::vector<Position> pos{{20.5, 30.5}, {21.5, 31.5}, {70.2, 10.1}};
  for (int n = 4; n <= 16; ++n) {
    const Decomposition dec = decompose(pos, 90, 80, 16, n, {});
    EXPECT_EQ(violations(dec, pos, 90, 80, 16, 4, n), "") << n << " ranks";
    int with = 0;
    for (int q = 0; q < n; ++q) {
      with += !dec.positions_of[q].empty();
      EXPECT_FALSE(dec.owned[q].empty()) << "rank " << q << " of " << n;
      EXPECT_FALSE(dec.extent[q].empty());
    }
    EXPECT_EQ(with, 3);
  }
}

TEST(Decompose, GridsSmallerThanTheRankGridNeverGoNegative) {
  const std::vector<Position> pos{{0.5, 0.5}, {0.2, 1.9}, {1.5, 0.1}};
  for (long h : {1L, 2L, 3L})
    for (long w : {1L, 2L, 5L})
      for (int n = 1; n <= 7; ++n) {
        const Decomposition dec = decompose(pos, h, w, 8, n, {});
        EXPECT_EQ(violations(dec, pos, h, w, 8, 4, n), "") << h << " x " << w << " on " << n;
        for (const Rect& e : dec.extent) EXPECT_TRUE(e.rows >= 0 && e.cols >= 0);
      }
  DecompositionOptions opt;
  opt.grid = RankGrid{1, 4};
  const Decomposition dec = decompose(pos, 50, 2, 8, 4, opt);
  EXPECT_EQ(violations(dec, pos, 50, 2, 8, 4, 4), "");
  EXPECT_TRUE(dec.owned[2].empty() && dec.owned[3].empty() && dec.extent[3].empty());
}

TEST(Decompose, OwnerOfClampsCentresOutsideTheGrid) {
  const Decomposition dec = decompose({}, 40, 40, 8, 4, {});
  EXPECT_EQ(owner_of(dec, -5, -5), 0);
  EXPECT_EQ(owner_of(dec, -5, 1e9), 1);
  EXPECT_EQ(owner_of(dec, 1e9, -1e9), 2);
  EXPECT_EQ(owner_of(dec, 39.999, 39.999), 3);
  EXPECT_EQ(owner_of(dec, 40.0, 40.0), 3);
  EXPECT_THROW(owner_of(dec, std::nan(""), 1), Error);
}

TEST(Decompose, RejectsBadInput) {
  DecompositionOptions opt;
  opt.grid = RankGrid{3, 2};
  EXPECT_THROW(decompose({}, 50, 50, 8, 4, opt), InputError);
  EXPECT_THROW(decompose({{1, std::nan("")}}, 50, 50, 8, 1, {}), InputError);
  EXPECT_THROW(decompose({{INFINITY, 1}}, 50, 50, 8, 1, {}), InputError);
  EXPECT_THROW(decompose({}, 0, 50, 8, 1, {}), Error);
  EXPECT_THROW(decompose({}, 50, 50, 0, 1, {}), Error);
  EXPECT_THROW(decompose({}, 50, 50, 8, 0, {}), Error);
  opt = {};
  opt.refine_margin = -1;
  EXPECT_THROW(decompose({}, 50, 50, 8, 1, opt), Error);
}

TEST(Decompose, CheckerCatchesBrokenDecompositions) {
  // The checker used above must be able to fail.
  std::vector<Position> pos;
  for (int i = 0; i < 60; ++i) pos.push_back({5.0 + i, 5.0 + (i * 7) % 50});
  const Decomposition good = decompose(pos, 70, 60, 16, 4, {});
  ASSERT_EQ(violations(good, pos, 70, 60, 16, 4, 4), "");

  Decomposition d = good;
  d.owned[1].cols += 1;  // overlaps its neighbour or leaves the grid
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
  d = good;
  d.extent[2] = d.owned[2];  // no halo
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
  d = good;
  d.owner[0] = (d.owner[0] + 1) % 4;  // wrong owner
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
  d = good;
  std::reverse(d.positions_of[0].begin(), d.positions_of[0].end());
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
  // A halo too narrow for the frame is caught.
  d = decompose(pos, 70, 60, 16, 4, {});
  for (int q = 0; q < 4; ++q) d.extent[q] = grow(d.owned[q], 16 / 2, d.bounds);
  d.halo = 16 / 2 + 1 + 4;
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
  // Piling all positions on rank 0 breaks ownership and the balance bound.
  d = good;
  for (int q = 1; q < 4; ++q) d.positions_of[q].clear();
  d.positions_of[0].clear();
  for (std::size_t j = 0; j < pos.size(); ++j) d.positions_of[0].push_back(static_cast<long>(j)), d.owner[j] = 0;
  EXPECT_NE(violations(d, pos, 70, 60, 16, 4, 4), "");
}

TEST(Decompose, EachSplitMinimisesTheLargestPiece) {
  // One row band (1 x p ranks, one pixel row): compare with the best of all cuts at integer lines,
  // every piece non-empty, found by brute force over random multiplicities per column.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const long w = 3 + trial % 9;
    const int p = 1 + trial % std::min<long>(4, w);
    std::vector<long> count(w);
    std::vector<Position> pos;
    for (long c = 0; c < w; ++c) {
      count[c] = std::uniform_int_distribution<long>(0, 5)(rng);
      for (long k = 0; k < count[c]; ++k) pos.push_back({0.5, c + 0.1 * k});
    }
    long best = -1;
    std::vector<long> cuts(p + 1);
    std::function<void(int, long)> search = [&](int i, long from) {
      if (i == p) {
        long most = 0;
        for (int k = 0; k < p; ++k) {
          long s = 0;
          for (long c = cuts[k]; c < cuts[k + 1]; ++c) s += count[c];
          most = std::max(most, s);
        }
        if (best < 0 || most < best) best = most;
        return;
      }
      if (i == p - 1) {
        cuts[p] = w;
        search(p, w);
        return;
      }
      for (long c = from + 1; c <= w - (p - 1 - i); ++c) {
        cuts[i + 1] = c;
        search(i + 1, c);
      }
    };
    cuts[0] = 0;
    search(0, 0);
    DecompositionOptions opt;
    opt.grid = RankGrid{1, p};
    const Decomposition dec = decompose(pos, 1, w, 8, p, opt);
    long most = 0;
    for (const auto& list : dec.positions_of) most = std::max<long>(most, static_cast<long>(list.size()));
    ASSERT_EQ(most, best) << "trial " << trial << ": " << w << " columns into " << p;
    ASSERT_EQ(violations(dec, pos, 1, w, 8, 4, p), "");
  }
}
