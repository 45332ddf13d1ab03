// Reductions at 1-4 ranks against references every rank computes: in-place
// sums and maxima of arrays.
#include "ptycho/core/error.hpp"
#include "ptycho/parallel/reduce.hpp"
#include "mpi_world.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <vector>

using namespace ptycho;
using test::world_rank;
using test::world_size;

TEST(Reduce, ArraySumsInPlace) {
  const int me = world_rank(), n = world_size();
  std::vector<double> v(7);
  for (int i = 0; i < 7; ++i) v[i] = me * 10.0 + i + 0.5;
  allreduce_sum(MPI_COMM_WORLD, v.data(), v.size());
  for (int i = 0; i < 7; ++i) EXPECT_EQ(v[i], 10.0 * n * (n - 1) / 2 + n * (i + 0.5)) << i;

  std::array<double, 3> terms{1.0 * me, 2.0, -0.25 * me * me};  // e.g. CG line-search terms
  allreduce_sum(MPI_COMM_WORLD, terms.data(), terms.size());
  double squares = 0;
  for (int q = 0; q < n; ++q) squares += q * q;
  EXPECT_EQ(terms[0], n * (n - 1) / 2.0);
  EXPECT_EQ(terms[1], 2.0 * n);
  EXPECT_EQ(terms[2], -0.25 * squares);

  std::vector<double> empty;
  allreduce_sum(MPI_COMM_WORLD, empty.data(), empty.size());  // a no-op, and no hang
}

TEST(Reduce, MaximaInPlace) {
  const int me = world_rank(), n = world_size();
  double m[2] = {double(me), double(n - me)};
  allreduce_max(MPI_COMM_WORLD, m, 2);
  EXPECT_EQ(m[0], n - 1);
  EXPECT_EQ(m[1], n);
  allreduce_max(MPI_COMM_WORLD, nullptr, 0);  // a no-op, and no hang
}
