// The whole-object layer at 1-4 ranks: SlabPlan between tiles and FFTW-MPI
// slabs (row bands, column bands, decompose() grids, empty tiles, strided
// tiles with halos, grids with fewer rows than ranks), and the operations of
// object_analysis.hpp. Every distributed result is checked against the same
// operation run by this rank alone on MPI_COMM_SELF (the one-rank
// reference), and the transforms against plain serial FFTW.
#include "ptycho/core/error.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/object_analysis.hpp"
#include "ptycho/parallel/slab_plan.hpp"
#include "mpi_world.hpp"

#include <fftw3.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

using namespace ptycho;
using test::world_rank;
using test::world_size;

namespace {

constexpr double kPi = 3.14159265358979323846;

/// A partition of a rows x cols grid over the world's ranks; owned[r] is rank r's.
using Partition = std::vector<Rect>;

Partition row_bands(long rows, long cols, int n) {
  Partition p;
  for (int r = 0; r < n; ++r) {
    const long a = rows * r / n, b = rows * (r + 1) / n;
    p.push_back(b > a ? Rect{a, 0, b - a, cols} : Rect{});
  }
  return p;
}

Partition col_bands(long rows, long cols, int n) {
  Partition p;
  for (int r = 0; r < n; ++r) {
    const long a = cols * r / n, b = cols * (r + 1) / n;
    p.push_back(b > a ? Rect{0, a, rows, b - a} : Rect{});
  }
  return p;
}

/// Everything on rank 0's half and the rest split by columns; the last rank (if any besides 0) gets nothing.
Partition with_empty_rank(long rows, long cols, int n) {
  if (n == 1) return {Rect{0, 0, rows, cols}};
  Partition p = col_bands(rows, cols, n - 1);
  p.push_back(Rect{});
  return p;
}

Partition from_decompose(long rows, long cols, int n, RankGrid grid) {
  std::vector<Position> positions;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 60; ++i) positions.push_back({8 + u(rng) * double(rows - 16), 8 + u(rng) * double(cols - 16)});
  DecompositionOptions opt;
  opt.grid = grid;
  return decompose(positions, rows, cols, 16, n, opt).owned;
}

cfloat field_value(long r, long c) { return cfloat(float(r * 1000 + c), float(-r - 7 * c)); }

/// Tile -> slabs -> tile for one partition, float and cfloat, dense and strided (with a halo of 3).
void check_round_trip(const Partition& part, long rows, long cols) {
  const int me = world_rank();
  SlabPlan plan(MPI_COMM_WORLD, part[me], rows, cols);
  const Rect owned = plan.owned(), slab = plan.slab();
  EXPECT_EQ(plan.slab().cols, slab.rows > 0 ? cols : 0);
  for (const long halo : {0L, 3L}) {
    const long stride = owned.cols + 2 * halo, trows = owned.rows + 2 * halo;
    std::vector<cfloat> tile(size_t(std::max(1L, stride * trows)), cfloat(-1, -1));
    std::vector<float> rtile(tile.size(), -1.0f);
    const long base = halo * stride + halo;
    for (long i = 0; i < owned.rows; ++i)
      for (long j = 0; j < owned.cols; ++j) {
        tile[base + i * stride + j] = field_value(owned.row0 + i, owned.col0 + j);
        rtile[base + i * stride + j] = field_value(owned.row0 + i, owned.col0 + j).real();
      }
    std::vector<cfloat> slab_data(size_t(std::max(1L, plan.slab_alloc())), cfloat(0, 0));
    std::vector<float> rslab(slab_data.size(), 0.0f);
    plan.to_slabs(tile.data() + base, stride, slab_data.data());
    plan.to_slabs(rtile.data() + base, stride, rslab.data());
    long bad = 0;
    for (long i = 0; i < slab.rows; ++i)
      for (long j = 0; j < cols; ++j) {
        const cfloat want = field_value(slab.row0 + i, j);
        bad += slab_data[i * cols + j] != want;
        bad += rslab[i * cols + j] != want.real();
      }
    EXPECT_EQ(bad, 0) << "to_slabs, halo " << halo;
    // Back into a cleared tile: the owned pixels return, the halo stays untouched.
    std::vector<cfloat> back(tile.size(), cfloat(-1, -1));
    std::vector<float> rback(tile.size(), -1.0f);
    plan.to_tiles(slab_data.data(), back.data() + base, stride);
    plan.to_tiles(rslab.data(), rback.data() + base, stride);
    EXPECT_EQ(back, tile) << "to_tiles, halo " << halo;
    EXPECT_EQ(rback, rtile) << "to_tiles, halo " << halo;
  }
}

}  // namespace

TEST(SlabPlan, RoundTripsEveryPartition) {
  const int n = world_size();
  for (const auto& [rows, cols] : std::vector<std::pair<long, long>>{{37, 53}, {64, 48}, {3, 40}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    check_round_trip(row_bands(rows, cols, n), rows, cols);
    check_round_trip(col_bands(rows, cols, n), rows, cols);
    check_round_trip(with_empty_rank(rows, cols, n), rows, cols);
    if (rows >= 32) {
      check_round_trip(from_decompose(rows, cols, n, rank_grid(n)), rows, cols);
      check_round_trip(from_decompose(rows, cols, n, RankGrid{1, n}), rows, cols);
      check_round_trip(from_decompose(rows, cols, n, RankGrid{n, 1}), rows, cols);
    }
  }
}

TEST(SlabPlan, RefusesAPartitionWithAGapOrAnOverlap) {
  const int n = world_size();
  Partition p = row_bands(20, 20, n);
  p[0].rows -= 1;  // a gap
  EXPECT_THROW(SlabPlan(MPI_COMM_WORLD, p[world_rank()], 20, 20), Error);
  p = row_bands(20, 20, n);
  p[n - 1].row0 -= 1;  // an overlap (or, on one rank, a tile outside the grid)
  p[n - 1].rows += 1;
  EXPECT_THROW(SlabPlan(MPI_COMM_WORLD, p[world_rank()], 20, 20), Error);
}

namespace {

/// A deterministic complex test field over the whole grid.
cfloat test_field(long r, long c) {
  return cfloat(float(std::sin(0.37 * r + 0.11 * c * c * 0.01) + 0.1 * ((r * 31 + c * 17) % 13)),
                float(std::cos(0.05 * r * c * 0.1 + 0.7) - 0.05 * ((r * 7 + c * 3) % 11)));
}

/// Fills this rank's slab of `t` from a global function.
template <class T, class F>
std::vector<T> slab_of(const ObjectTransforms& t, F&& f) {
  std::vector<T> v(size_t(std::max(1L, t.slab_size())));
  for (long i = 0; i < t.slab().rows; ++i)
    for (long j = 0; j < t.cols(); ++j) v[i * t.cols() + j] = f(t.slab().row0 + i, j);
  return v;
}

/// The same function's whole grid, as the MPI_COMM_SELF reference sees its slab.
double max_abs(const std::vector<cfloat>& v) {
  double m = 0;
  for (const auto& x : v) m = std::max(m, double(Kokkos::abs(x)));
  return m;
}

}  // namespace

TEST(ObjectTransforms, DistributedFftEqualsSerialFftw) {
  for (const auto& [rows, cols] : std::vector<std::pair<long, long>>{{48, 64}, {45, 31}, {3, 16}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    ObjectTransforms t(MPI_COMM_WORLD, rows, cols);
    // The serial reference: the whole grid through plain FFTW on this rank.
    std::vector<cfloat> whole(size_t(rows * cols));
    for (long r = 0; r < rows; ++r)
      for (long c = 0; c < cols; ++c) whole[r * cols + c] = test_field(r, c);
    std::vector<cfloat> ref = whole;
    fftwf_plan p = fftwf_plan_dft_2d(int(rows), int(cols), reinterpret_cast<fftwf_complex*>(ref.data()),
                                     reinterpret_cast<fftwf_complex*>(ref.data()), FFTW_FORWARD, FFTW_ESTIMATE);
    fftwf_execute(p);
    fftwf_destroy_plan(p);
    const auto mine = slab_of<cfloat>(t, test_field);
    std::copy(mine.begin(), mine.begin() + t.slab_size(), t.complex_data());
    t.forward();
    const double scale = max_abs(ref);
    double err = 0;
    for (long k = 0; k < t.slab_size(); ++k)
      err = std::max(err, double(Kokkos::abs(t.complex_data()[k] - ref[t.slab().row0 * cols + k])));
    EXPECT_LT(err, 2e-6 * scale);
    t.inverse();
    double back = 0;
    for (long k = 0; k < t.slab_size(); ++k) back = std::max(back, double(Kokkos::abs(t.complex_data()[k] - mine[k])));
    EXPECT_LT(back, 1e-5);
    // The DCT pair round-trips too.
    const auto real = slab_of<float>(t, [](long r, long c) { return test_field(r, c).real(); });
    std::copy(real.begin(), real.begin() + t.slab_size(), t.real_data());
    t.dct();
    t.idct();
    double dct_err = 0;
    for (long k = 0; k < t.slab_size(); ++k) dct_err = std::max(dct_err, double(std::abs(t.real_data()[k] - real[k])));
    EXPECT_LT(dct_err, 1e-5);
  }
}

TEST(ObjectAnalysis, UnwrappingRecoversAWrappedPhaseUpToAConstant) {
  const long rows = 96, cols = 80;
  // A smooth phase spanning about 60 rad, with differences well below pi.
  const auto truth = [&](long r, long c) {
    const double x = double(c) - cols / 2.0, y = double(r) - rows / 2.0;
    return 0.004 * (x * x + 1.5 * y * y) + 3.0 * std::sin(0.07 * x) * std::cos(0.05 * y) + 0.2 * x;
  };
  for (MPI_Comm comm : {MPI_COMM_WORLD, MPI_COMM_SELF}) {
    ObjectTransforms t(comm, rows, cols);
    const auto wrapped = slab_of<float>(t, [&](long r, long c) {
      const double p = truth(r, c);
      return float(p - 2 * kPi * std::floor((p + kPi) / (2 * kPi)));
    });
    std::vector<float> out(wrapped.size());
    unwrap_phase(t, wrapped.data(), out.data());
    // The constant: the difference at pixel (0, 0), from whoever holds it.
    double offset = t.slab().row0 == 0 && t.slab().rows > 0 ? out[0] - truth(0, 0) : 0.0;
    MPI_Allreduce(MPI_IN_PLACE, &offset, 1, MPI_DOUBLE, MPI_SUM, comm);
    double err = 0;
    for (long i = 0; i < t.slab().rows; ++i)
      for (long j = 0; j < cols; ++j)
        err = std::max(err, std::abs(out[i * cols + j] - offset - truth(t.slab().row0 + i, j)));
    EXPECT_LT(err, 1e-4) << "the unwrapped phase differs from the truth by more than a constant";
  }
}

TEST(ObjectAnalysis, RampRemovalFindsSlopesAndOffset) {
  const long rows = 64, cols = 72;
  const PhaseRamp want{0.21, -0.33, 1.1};
  ObjectTransforms t(MPI_COMM_WORLD, rows, cols);
  auto object = slab_of<cfloat>(t, [&](long r, long c) {
    const double amp = 1.0 + 0.2 * std::sin(0.3 * r + 0.2 * c);
    const double phase = want.offset + want.slope_row * r + want.slope_col * c + 0.05 * std::sin(0.4 * r * c);
    return cfloat(float(amp * std::cos(phase)), float(amp * std::sin(phase)));
  });
  // Only a region counts; outside it the object is garbage.
  const Rect region{10, 12, 40, 50};
  std::vector<float> weight(object.size());
  tukey_window(t, region, 0.0, weight.data());
  for (long k = 0; k < t.slab_size(); ++k)
    if (weight[k] == 0) object[k] = cfloat(5.0f * float((k * 37) % 11) - 20, float((k * 13) % 7));
  const PhaseRamp got = fit_phase_ramp(t, object.data(), weight.data());
  EXPECT_NEAR(got.slope_row, want.slope_row, 2e-3);
  EXPECT_NEAR(got.slope_col, want.slope_col, 2e-3);
  remove_phase_ramp(t, object.data(), got);
  double worst = 0;
  for (long k = 0; k < t.slab_size(); ++k)
    if (weight[k] > 0) worst = std::max(worst, std::abs(double(std::arg(std::complex<float>(object[k].real(), object[k].imag())))));
  double all = 0;
  MPI_Allreduce(&worst, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  EXPECT_LT(all, 0.1) << "the phase left in the region after removing the ramp";
}

namespace {

/// A complex field band-limited at `cutoff` [cycles per pixel]: random
/// Fourier coefficients inside that radius, computed on `t` (so it is the
/// same field at every rank count: the coefficients depend only on the
/// frequency index).
std::vector<cfloat> band_limited(ObjectTransforms& t, double cutoff, unsigned seed) {
  cfloat* d = t.complex_data();
  for (long i = 0; i < t.slab().rows; ++i)
    for (long j = 0; j < t.cols(); ++j) {
      const long gi = t.slab().row0 + i;
      const double fr = t.row_frequency(gi), fc = t.col_frequency(j);
      std::mt19937 rng(seed * 1000003u + unsigned(gi * t.cols() + j));
      std::normal_distribution<float> g(0.0f, 1.0f);
      const float a = g(rng), b = g(rng);
      d[i * t.cols() + j] = std::sqrt(fr * fr + fc * fc) < cutoff ? cfloat(a, b) : cfloat(0, 0);
    }
  t.inverse();
  return std::vector<cfloat>(d, d + std::max(1L, t.slab_size()));
}

/// White noise of standard deviation `sigma`, keyed by global pixel.
void add_noise(const ObjectTransforms& t, std::vector<cfloat>& v, double sigma, unsigned seed) {
  for (long i = 0; i < t.slab().rows; ++i)
    for (long j = 0; j < t.cols(); ++j) {
      std::mt19937 rng(seed * 7919u + unsigned((t.slab().row0 + i) * t.cols() + j));
      std::normal_distribution<float> g(0.0f, float(sigma));
      const float a = g(rng), b = g(rng);
      v[i * t.cols() + j] += cfloat(a, b);
    }
}

struct FrcRun {
  FrcCurve curve;
  Shift shift;
  std::vector<double> filtered;  // a lowpass-filtered sample of the object, for rank comparisons
};

FrcRun run_frc(MPI_Comm comm, long rows, long cols, double cutoff, Shift true_shift) {
  ObjectTransforms t(comm, rows, cols);
  auto object = band_limited(t, cutoff, 3);
  // The band-limited object's power per pixel: (pi cutoff^2) / (rows cols) of the unit coefficients.
  double power = 0;
  for (long k = 0; k < t.slab_size(); ++k) power += std::norm(std::complex<float>(object[k].real(), object[k].imag()));
  MPI_Allreduce(MPI_IN_PLACE, &power, 1, MPI_DOUBLE, MPI_SUM, comm);
  power /= double(rows * cols);
  auto a = object, b = object;
  shift_field(t, b.data(), Shift{-true_shift.row, -true_shift.col});  // b(r) = a(r + s)
  add_noise(t, a, std::sqrt(power / 2) * 0.7, 11);
  add_noise(t, b, std::sqrt(power / 2) * 0.7, 12);
  std::vector<float> window(a.size());
  tukey_window(t, Rect{8, 8, rows - 16, cols - 16}, 0.5 * double(cols - 16), window.data());  // as analysis.cpp
  FrcRun run;
  run.shift = register_shift(t, a.data(), b.data(), window.data());
  shift_field(t, b.data(), run.shift);
  run.curve = fourier_ring_correlation(t, a.data(), b.data(), window.data());
  // A filtered copy, sampled on a few global pixels.
  std::copy(a.begin(), a.begin() + t.slab_size(), t.complex_data());
  apply_fourier_filter(t, parse_fourier_filter("lowpass:0.1:0.02", "--filter"));
  for (long r : {0L, 7L, rows / 2, rows - 1}) {
    double v = 0;
    if (r >= t.slab().row0 && r < t.slab().row1()) v = t.complex_data()[(r - t.slab().row0) * cols + 5].real();
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, comm);
    run.filtered.push_back(v);
  }
  return run;
}

}  // namespace

TEST(ObjectAnalysis, FrcFindsTheBandLimitAndRanksAgree) {
  const long rows = 192, cols = 160;
  const double cutoff = 0.2;
  const Shift true_shift{3.3, -5.6};
  const FrcRun dist = run_frc(MPI_COMM_WORLD, rows, cols, cutoff, true_shift);
  const FrcRun self = run_frc(MPI_COMM_SELF, rows, cols, cutoff, true_shift);
  EXPECT_NEAR(dist.shift.row, true_shift.row, 0.15);
  EXPECT_NEAR(dist.shift.col, true_shift.col, 0.15);
  ASSERT_TRUE(dist.curve.reached_half_bit);
  EXPECT_NEAR(dist.curve.cutoff_half_bit, cutoff, 0.1 * cutoff) << "the FRC's 1/2-bit cutoff";
  EXPECT_NEAR(dist.curve.cutoff_one_seventh, cutoff, 0.1 * cutoff) << "the FRC's 1/7 cutoff";
  std::printf("FRC of a field band-limited at %.3f: 1/2 bit %.4f, 1/7 %.4f per px\n", cutoff,
              dist.curve.cutoff_half_bit, dist.curve.cutoff_one_seventh);
  // Every output the same at this rank count and on one rank, to 1e-4.
  EXPECT_NEAR(dist.shift.row, self.shift.row, 1e-4);
  EXPECT_NEAR(dist.shift.col, self.shift.col, 1e-4);
  EXPECT_NEAR(dist.curve.cutoff_half_bit, self.curve.cutoff_half_bit, 1e-4);
  EXPECT_NEAR(dist.curve.cutoff_one_seventh, self.curve.cutoff_one_seventh, 1e-4);
  ASSERT_EQ(dist.curve.frc.size(), self.curve.frc.size());
  for (size_t k = 0; k < dist.curve.frc.size(); ++k) {
    EXPECT_NEAR(dist.curve.frc[k], self.curve.frc[k], 1e-4) << "ring " << k;
    EXPECT_EQ(dist.curve.pixels[k], self.curve.pixels[k]);
  }
  for (size_t k = 0; k < dist.filtered.size(); ++k) EXPECT_NEAR(dist.filtered[k], self.filtered[k], 1e-4);
}

TEST(ObjectAnalysis, FiltersPassAndStopTheRightBands) {
  FourierFilter low = parse_fourier_filter("lowpass:0.2", "--filter");
  EXPECT_DOUBLE_EQ(filter_gain(low, 0.05), 1.0);
  EXPECT_DOUBLE_EQ(filter_gain(low, 0.3), 0.0);
  EXPECT_NEAR(filter_gain(low, 0.2), 0.5, 1e-12);
  FourierFilter band = parse_fourier_filter("bandpass:0.1:0.3:0.04", "--filter");
  EXPECT_DOUBLE_EQ(band.width, 0.04);
  EXPECT_DOUBLE_EQ(filter_gain(band, 0.2), 1.0);
  EXPECT_DOUBLE_EQ(filter_gain(band, 0.05), 0.0);
  EXPECT_DOUBLE_EQ(filter_gain(band, 0.4), 0.0);
  FourierFilter high = parse_fourier_filter("highpass:0.25:0", "--filter");
  EXPECT_DOUBLE_EQ(filter_gain(high, 0.2), 0.0);
  EXPECT_DOUBLE_EQ(filter_gain(high, 0.3), 1.0);
  for (const char* bad : {"", "lowpass", "lowpass:x", "lowpass:0.7", "bandpass:0.3:0.1", "notch:0.1", "lowpass:0.1:0.1:0.1",
                          "lowpass:nan", "highpass:-0.1"})
    EXPECT_THROW(parse_fourier_filter(bad, "--filter"), InputError) << bad;
  // On a field: a lowpass below the band limit removes everything above its edge.
  ObjectTransforms t(MPI_COMM_WORLD, 64, 64);
  const auto field = band_limited(t, 0.45, 9);
  std::copy(field.begin(), field.begin() + t.slab_size(), t.complex_data());
  apply_fourier_filter(t, parse_fourier_filter("lowpass:0.15:0.02", "--filter"));
  t.forward();
  double above = 0, below = 0;
  for (long i = 0; i < t.slab().rows; ++i)
    for (long j = 0; j < t.cols(); ++j) {
      const double fr = t.row_frequency(t.slab().row0 + i), fc = t.col_frequency(j);
      const double f = std::sqrt(fr * fr + fc * fc), p = std::norm(std::complex<float>(t.complex_data()[i * 64 + j].real(), t.complex_data()[i * 64 + j].imag()));
      (f > 0.17 ? above : below) += p;
    }
  MPI_Allreduce(MPI_IN_PLACE, &above, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &below, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_GT(below, 0);
  EXPECT_LT(above, 1e-8 * below);
}
