// HaloPlan at 1-4 ranks, for float, double, cfloat and cdouble: each rank
// fills its extent with rank-dependent values of a known function, runs
// scatter_sum / gather, and checks its whole local array against a world
// reference that every rank computes from the decomposition. Square and
// non-square rank grids (n x 1, 1 x n), empty tiles, halos wider than tiles,
// sub-communicators, plan reuse and the build-time checks.
#include "ptycho/core/error.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/halo.hpp"
#include "mpi_world.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <tuple>

using namespace ptycho;
using test::world_rank;
using test::world_size;

namespace {

template <class T>
T value(double re, double im) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    return static_cast<T>(re);
  else
    return T(re, im);
}

/// Rank q's contribution at global pixel (r, c) in round `iter`: small integers, so float sums are exact.
template <class T>
T contribution(int q, long r, long c, int iter) {
  return value<T>(double((r * 7 + c * 13) % 31 + 1 + 100 * (q + 1) + 1000 * iter),
                  double((r * 3 + c * 5) % 17 - 8 - 10 * q - 500 * iter));
}

/// The owner's value at global pixel (r, c) for gather.
template <class T>
T field(long r, long c, int iter) {
  return value<T>(double(r * 1000 + c + 7 * iter), double(-r - 3 * c - iter));
}

/// World reference: the sum over ranks whose extent holds (r, c) of their contributions.
template <class T>
T world_sum(const Decomposition& dec, long r, long c, int iter) {
  T s = value<T>(0, 0);
  for (int q = 0; q < dec.nranks(); ++q)
    if (dec.extent[q].contains(r, c)) s += contribution<T>(q, r, c, iter);
  return s;
}

template <class T>
std::string show(const T& v) {
  std::ostringstream os;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    os << v;
  else
    os << "(" << v.real() << ", " << v.imag() << ")";
  return os.str();
}

/// A local array over `extent` filled with fill(global r, global c).
template <class T, class F>
View2<T> make_local(const Rect& extent, F&& fill) {
  View2<T> local("ptycho::test_local", extent.rows, extent.cols);
  auto h = Kokkos::create_mirror_view(local);
  for (long i = 0; i < extent.rows; ++i)
    for (long j = 0; j < extent.cols; ++j) h(i, j) = fill(extent.row0 + i, extent.col0 + j);
  Kokkos::deep_copy(local, h);
  return local;
}

/// "" if local(i, j) == want(global r, global c) everywhere, else the first mismatch and the count.
template <class T, class F>
std::string compare(const View2<T>& local, const Rect& extent, F&& want) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), local);
  long bad = 0;
  std::ostringstream os;
  for (long i = 0; i < extent.rows; ++i)
    for (long j = 0; j < extent.cols; ++j) {
      const T w = want(extent.row0 + i, extent.col0 + j);
      if (h(i, j) != w) {
        if (bad++ == 0)
          os << "pixel (" << extent.row0 + i << ", " << extent.col0 + j << ") is " << show(h(i, j)) << ", want "
             << show(w);
      }
    }
  if (bad) os << " (" << bad << " pixels wrong)";
  return os.str();
}

struct Case {
  std::string name;
  long rows, cols;
  int frame;
  int margin;
  RankGrid grid;
  std::vector<Position> positions;
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << c.name << " " << c.rows << " x " << c.cols << " M " << c.frame << " margin " << c.margin << " on "
     << c.grid.rows << " x " << c.grid.cols << " ranks";
  return os.str();
}

/// Every configuration run at `nranks`: each grid (balanced, n x 1, 1 x n), several sizes and position sets.
std::vector<Case> cases(int nranks) {
  std::vector<RankGrid> grids{rank_grid(nranks)};
  for (RankGrid g : {RankGrid{nranks, 1}, RankGrid{1, nranks}})
    if (std::find(grids.begin(), grids.end(), g) == grids.end()) grids.push_back(g);
  std::vector<Case> out;
  std::mt19937 rng(42);
  for (const RankGrid& g : grids)
    for (auto [h, w, m, margin] : {std::tuple<long, long, int, int>{37, 64, 8, 4},
                                   {101, 37, 16, 0},
                                   {9, 11, 8, 4} /* halo wider than the tiles */,
                                   {64, 37, 9, 2}}) {
      std::vector<Position> uniform, corner;
      std::uniform_real_distribution<double> ur(0.5 * m, h - 0.5 * m), uc(0.5 * m, w - 0.5 * m), u6(0, 6);
      for (int i = 0; i < 80; ++i) uniform.push_back({ur(rng), uc(rng)});
      for (int i = 0; i < 30; ++i) corner.push_back({u6(rng), u6(rng)});
      out.push_back({"uniform", h, w, m, margin, g, uniform});
      out.push_back({"corner", h, w, m, margin, g, corner});  // empty tiles
      out.push_back({"single", h, w, m, margin, g, {{0.5 * h, 0.5 * w}}});
      out.push_back({"none", h, w, m, margin, g, {}});
    }
  return out;
}

Decomposition decomposition_of(const Case& c, int nranks) {
  DecompositionOptions opt;
  opt.grid = c.grid;
  opt.refine_margin = c.margin;
  return decompose(c.positions, c.rows, c.cols, c.frame, nranks, opt);
}

/// scatter_sum, then gather, then both again (plan reuse), on communicator `comm`, checked against the world reference.
template <class T>
void check_exchanges(MPI_Comm comm, const Case& c) {
  int me = 0, n = 1;
  MPI_Comm_rank(comm, &me);
  MPI_Comm_size(comm, &n);
  const Decomposition dec = decomposition_of(c, n);
  HaloPlan plan(comm, dec);
  ASSERT_EQ(plan.extent(), dec.extent[me]);
  ASSERT_EQ(plan.owned(), dec.owned[me]);
  ASSERT_EQ(plan.owned_in_local(), dec.owned_in_local(me));
  const Rect e = plan.extent();
  const Rect o = plan.owned();

  for (int iter = 0; iter < 2; ++iter) {
    // scatter_sum: owned pixels get the world sum, halo pixels keep this rank's contribution.
    View2<T> local = make_local<T>(e, [&](long r, long cc) { return contribution<T>(me, r, cc, iter); });
    plan.scatter_sum(local);
    EXPECT_EQ(compare(local, e,
                      [&](long r, long cc) {
                        return o.contains(r, cc) ? world_sum<T>(dec, r, cc, iter) : contribution<T>(me, r, cc, iter);
                      }),
              "")
        << "scatter_sum, round " << iter << ", rank " << me << ", " << describe(c);

    // gather after scatter_sum: the whole extent holds the world sum (the engine's pattern).
    plan.gather(local);
    EXPECT_EQ(compare(local, e, [&](long r, long cc) { return world_sum<T>(dec, r, cc, iter); }), "")
        << "scatter_sum + gather, round " << iter << ", rank " << me << ", " << describe(c);

    // gather alone: halo pixels (set to a sentinel) get the owner's field, owned pixels are untouched.
    View2<T> g = make_local<T>(
        e, [&](long r, long cc) { return o.contains(r, cc) ? field<T>(r, cc, iter) : value<T>(-12345, 678); });
    plan.gather(g);
    EXPECT_EQ(compare(g, e, [&](long r, long cc) { return field<T>(r, cc, iter); }), "")
        << "gather, round " << iter << ", rank " << me << ", " << describe(c);
  }
}

}  // namespace

template <class T>
class HaloTyped : public ::testing::Test {};
using HaloValueTypes = ::testing::Types<float, double, cfloat, cdouble>;
TYPED_TEST_SUITE(HaloTyped, HaloValueTypes);

TYPED_TEST(HaloTyped, MatchesTheWorldReferenceOnEveryGrid) {
  for (const Case& c : cases(world_size())) check_exchanges<TypeParam>(MPI_COMM_WORLD, c);
}

TYPED_TEST(HaloTyped, WorksOnSubCommunicators) {
  // Halves of the world (even and odd ranks) run their own plans at the same time.
  MPI_Comm half;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, world_rank() % 2, world_rank(), &half), MPI_SUCCESS);
  int n = 1;
  MPI_Comm_size(half, &n);
  std::vector<Position> pos;
  for (int i = 0; i < 25; ++i) pos.push_back({3.0 + 1.7 * i, 40.0 - 1.3 * i});
  check_exchanges<TypeParam>(half, Case{"split", 47, 45, 8, 4, rank_grid(n), pos});
  check_exchanges<TypeParam>(half, Case{"split-rows", 47, 45, 8, 4, RankGrid{1, n}, pos});
  MPI_Comm_free(&half);
}

TEST(HaloPlan, CornerNeighboursExchange) {
  // On 2 x 2 ranks, each rank's halo reaches into its diagonal neighbour's tile: 3 peers each.
  if (world_size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const Decomposition dec = decompose({}, 40, 40, 8, 4, {});
  HaloPlan plan(MPI_COMM_WORLD, dec);
  EXPECT_EQ(plan.num_peers(), 3);
  EXPECT_EQ(dec.grid, (RankGrid{2, 2}));
}

TEST(HaloPlan, OnOneRankNothingMoves) {
  if (world_size() != 1) GTEST_SKIP() << "needs 1 rank";
  const Decomposition dec = decompose({{10, 10}}, 30, 20, 8, 1, {});
  HaloPlan plan(MPI_COMM_WORLD, dec);
  EXPECT_EQ(plan.num_peers(), 0);
  EXPECT_EQ(plan.extent(), (Rect{0, 0, 30, 20}));
  EXPECT_EQ(plan.owned_in_local(), (Rect{0, 0, 30, 20}));
}

TEST(HaloPlan, RejectsViewsOfTheWrongShape) {
  const Decomposition dec = decompose({}, 33, 29, 8, world_size(), {});
  HaloPlan plan(MPI_COMM_WORLD, dec);
  View2<float> wrong("wrong", plan.extent().rows + 1, plan.extent().cols);
  EXPECT_THROW(plan.scatter_sum(wrong), Error);  // every rank throws before communicating
  EXPECT_THROW(plan.gather(wrong), Error);
}

TEST(HaloPlan, RejectsDecompositionsForAnotherRankCount) {
  const Decomposition dec = decompose({}, 33, 29, 8, world_size() + 1, {});
  EXPECT_THROW(HaloPlan(MPI_COMM_WORLD, dec), Error);
}

TEST(HaloPlan, RejectsBrokenDecompositions) {
  Decomposition dec = decompose({}, 33, 29, 8, world_size(), {});
  dec.extent[0] = dec.owned[0];
  dec.extent[0].rows += 40;  // leaves the grid
  EXPECT_THROW(HaloPlan(MPI_COMM_WORLD, dec), Error);
  dec = decompose({}, 33, 29, 8, world_size(), {});
  dec.owned[0].rows -= 1;  // a row of pixels has no owner
  EXPECT_THROW(HaloPlan(MPI_COMM_WORLD, dec), Error);
}

TEST(HaloPlan, RejectsDifferentDecompositionsOnDifferentRanks) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  DecompositionOptions opt;
  opt.refine_margin = world_rank() == 1 ? 5 : 4;  // rank 1 disagrees about the halo
  const Decomposition dec = decompose({}, 33, 29, 8, world_size(), opt);
  EXPECT_THROW(HaloPlan(MPI_COMM_WORLD, dec), Error);  // on every rank, none hangs
}
