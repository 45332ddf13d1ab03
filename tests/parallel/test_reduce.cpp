// Reductions at 1-4 ranks against references every rank computes: in-place
// array sums, scalar sums and maxima, a complex<float> global sum that must
// accumulate in double, and ProbeReducer (numerator and denominator summed in
// one allreduce, reused across calls).
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

namespace {

/// Values rank q holds: small multiples of 1/4, so every sum is exact in double whatever the order.
double numerator_re(int q, int k, int i, int j, int call) { return q + 2 * k + 0.25 * i - 0.5 * j + 10 * call; }
double numerator_im(int q, int k, int i, int j, int call) { return -q * 0.75 + k - i + 0.25 * j - call; }
double denominator(int q, int k, int i, int j, int call) { return 1 + q + 0.5 * k + i * j + 3 * call; }

}  // namespace

TEST(Reduce, ArraySumsInPlace) {
  const int me = world_rank(), n = world_size();
  std::vector<double> v(7);
  for (int i = 0; i < 7; ++i) v[i] = me * 10.0 + i + 0.5;
  allreduce_sum(MPI_COMM_WORLD, v);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(v[i], 10.0 * n * (n - 1) / 2 + n * (i + 0.5)) << i;

  std::array<double, 3> terms{1.0 * me, 2.0, -0.25 * me * me};  // e.g. CG line-search terms
  allreduce_sum(MPI_COMM_WORLD, terms);
  double squares = 0;
  for (int q = 0; q < n; ++q) squares += q * q;
  EXPECT_EQ(terms[0], n * (n - 1) / 2.0);
  EXPECT_EQ(terms[1], 2.0 * n);
  EXPECT_EQ(terms[2], -0.25 * squares);

  std::vector<double> empty;
  allreduce_sum(MPI_COMM_WORLD, empty);  // a no-op, and no hang
}

TEST(Reduce, ScalarsAndMaxima) {
  const int me = world_rank(), n = world_size();
  EXPECT_EQ(global_sum(MPI_COMM_WORLD, 1.5 * me), 1.5 * n * (n - 1) / 2);
  EXPECT_EQ(global_sum(MPI_COMM_WORLD, 3000000000L + me), 3000000000L * n + n * (n - 1) / 2);
  EXPECT_EQ(global_max(MPI_COMM_WORLD, -1.0 * me), 0.0);
  EXPECT_EQ(global_max(MPI_COMM_WORLD, 5000000000L * (me + 1)), 5000000000L * n);
  double m[2] = {double(me), double(n - me)};
  allreduce_max(MPI_COMM_WORLD, m, 2);
  EXPECT_EQ(m[0], n - 1);
  EXPECT_EQ(m[1], n);
}

TEST(Reduce, ComplexFloatSumAccumulatesInDouble) {
  // Rank 0 holds 2^24 and every other element is 1: in float, 2^24 + 1 rounds back to 2^24.
  const int me = world_rank(), n = world_size();
  const long rows = 10, cols = 100;
  View2<cfloat> v("ptycho::test_v", rows, cols);
  auto h = Kokkos::create_mirror_view(v);
  for (long i = 0; i < rows; ++i)
    for (long j = 0; j < cols; ++j) h(i, j) = cfloat(1.0f, -2.0f);
  if (me == 0) h(0, 0) = cfloat(16777216.0f, -16777216.0f);
  Kokkos::deep_copy(v, h);
  const cdouble s = global_sum(MPI_COMM_WORLD, v);
  const double ones = double(rows * cols) * n - 1;
  EXPECT_EQ(s.real(), 16777216.0 + ones);
  EXPECT_EQ(s.imag(), -16777216.0 - 2 * ones);

  View3<cfloat> v3("ptycho::test_v3", 2, 3, 4);
  Kokkos::deep_copy(v3, cfloat(0.5f, 0.25f));
  const cdouble s3 = global_sum(MPI_COMM_WORLD, v3);
  EXPECT_EQ(s3.real(), 12.0 * n);
  EXPECT_EQ(s3.imag(), 6.0 * n);
}

TEST(ProbeReducer, SumsNumeratorAndDenominatorOverRanks) {
  const int me = world_rank(), n = world_size();
  const int modes = 3, m = 8;
  ProbeReducer reducer(MPI_COMM_WORLD, modes, m);
  View3<cdouble> num("ptycho::test_num", modes, m, m);
  View2<double> den2("ptycho::test_den2", m, m);
  View3<double> den3("ptycho::test_den3", modes, m, m);
  auto hn = Kokkos::create_mirror_view(num);
  auto hd2 = Kokkos::create_mirror_view(den2);
  auto hd3 = Kokkos::create_mirror_view(den3);
  for (int call = 0; call < 3; ++call) {  // the same plan, reused
    for (int k = 0; k < modes; ++k)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          hn(k, i, j) = cdouble(numerator_re(me, k, i, j, call), numerator_im(me, k, i, j, call));
          hd3(k, i, j) = denominator(me, k, i, j, call);
          if (k == 0) hd2(i, j) = denominator(me, 0, i, j, call);
        }
    Kokkos::deep_copy(num, hn);
    Kokkos::deep_copy(den2, hd2);
    Kokkos::deep_copy(den3, hd3);
    if (call % 2 == 0)
      reducer.sum(num, den2);
    else
      reducer.sum(num, den3);
    Kokkos::deep_copy(hn, num);
    Kokkos::deep_copy(hd2, den2);
    Kokkos::deep_copy(hd3, den3);
    long bad = 0;
    for (int k = 0; k < modes; ++k)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          double re = 0, im = 0, d = 0;
          for (int q = 0; q < n; ++q) {
            re += numerator_re(q, k, i, j, call);
            im += numerator_im(q, k, i, j, call);
            d += denominator(q, call % 2 == 0 ? 0 : k, i, j, call);
          }
          bad += hn(k, i, j).real() != re || hn(k, i, j).imag() != im;
          if (call % 2 == 0)
            bad += k == 0 && hd2(i, j) != d;
          else
            bad += hd3(k, i, j) != d;
        }
    EXPECT_EQ(bad, 0) << "call " << call;
  }
}

TEST(ProbeReducer, WidensComplexFloatBeforeSumming) {
  const int me = world_rank(), n = world_size();
  ProbeReducer reducer(MPI_COMM_WORLD, 1, 4);
  View3<cfloat> local("ptycho::test_local", 1, 4, 4);
  View3<cdouble> global("ptycho::test_global", 1, 4, 4);
  Kokkos::deep_copy(local, me == 0 ? cfloat(16777216.0f, 1.0f) : cfloat(1.0f, 16777216.0f));
  reducer.sum(local, global);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), global);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(h(0, i, j).real(), 16777216.0 + (n - 1));
      EXPECT_EQ(h(0, i, j).imag(), 1.0 + 16777216.0 * (n - 1));
    }
}

TEST(ProbeReducer, RejectsArraysOfTheWrongShape) {
  ProbeReducer reducer(MPI_COMM_WORLD, 2, 8);
  View3<cdouble> num("num", 2, 8, 8), bad_num("bad", 3, 8, 8);
  View2<double> den("den", 8, 8), bad_den("bad", 8, 7);
  View3<double> bad_den3("bad", 4, 8, 8);
  EXPECT_THROW(reducer.sum(bad_num, den), Error);
  EXPECT_THROW(reducer.sum(num, bad_den), Error);
  EXPECT_THROW(reducer.sum(num, bad_den3), Error);
  EXPECT_THROW(ProbeReducer(MPI_COMM_WORLD, 0, 8), Error);
}
