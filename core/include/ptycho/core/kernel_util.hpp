#pragma once
/// Small helpers shared by the engines' kernels: multi-value double
/// reductions and policies. Internal to core/.
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ptycho {

/// Model intensities [counts] below this are taken as this in the data
/// terms of every engine (likelihood and modulus constraint). A pixel whose
/// model is nearly dark but which holds counts otherwise gets a correction
/// (1 - y/I, or sqrt(y/I)) so stiff that float rounding, e.g. halo sums taken
/// in another order, grows about 5x per iteration, and runs on different rank
/// counts part. A tenth of a photon is far below what the data resolve.
constexpr float kIntensityFloor = 0.1f;

/// Several doubles reduced together in one pass (sums in double).
template <int N>
struct Sums {
  double v[N];
  KOKKOS_INLINE_FUNCTION Sums() {
    for (int i = 0; i < N; ++i) v[i] = 0;
  }
  KOKKOS_INLINE_FUNCTION Sums& operator+=(const Sums& o) {
    for (int i = 0; i < N; ++i) v[i] += o.v[i];
    return *this;
  }
  KOKKOS_INLINE_FUNCTION void operator+=(const volatile Sums& o) volatile {
    for (int i = 0; i < N; ++i) v[i] += o.v[i];
  }
};

using Policy2 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>>;

/// One team per frame; a team's threads share the frame's rows. On host
/// spaces a team is one thread and the row loop inside is a plain loop the
/// compiler vectorises (`PTYCHO_SIMD`).
using FramePolicy = Kokkos::TeamPolicy<ExecSpace>;
using FrameMember = FramePolicy::member_type;
inline FramePolicy frame_policy(long frames) {
#if defined(KOKKOS_ENABLE_CUDA)
  return FramePolicy(frames, Kokkos::AUTO);
#else
  return FramePolicy(frames, 1);
#endif
}

#if defined(__CUDA_ARCH__)
#define PTYCHO_SIMD_REDUCE(...)
#define PTYCHO_SIMD
#else
/// `#pragma omp simd` for a host loop (needs -fopenmp-simd).
#define PTYCHO_SIMD _Pragma("omp simd")
#define PTYCHO_PRAGMA(x) _Pragma(#x)
/// `#pragma omp simd reduction(+: vars)` for a host loop (needs -fopenmp-simd).
#define PTYCHO_SIMD_REDUCE(...) PTYCHO_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#endif
/// No-alias qualifier for the raw row pointers of pixel loops.
#define PTYCHO_RESTRICT __restrict__

/// A row function: the pixel loop of a kernel, called once per row. On the
/// host it is kept out of line: inlined into a Kokkos lambda, GCC 12 often
/// leaves its pixel loop scalar ("no vectype for stmt" on the row's loads),
/// and one call per row costs nothing. On a GPU: an inline device function.
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL)
#define PTYCHO_ROW_FUNCTION KOKKOS_INLINE_FUNCTION
#else
#define PTYCHO_ROW_FUNCTION __attribute__((noinline))
#endif

/// How many rows ahead the host row kernels prefetch (prefetch_row).
inline constexpr int kPrefetchRows = 2;

/// Asks the cache for `bytes` from `p` on: the row kPrefetchRows ahead of
/// the one a host row kernel works on; Write: the row will be written. The
/// rows of a patch of the object or of its sums lie a tile's width apart,
/// and a row is short (M values): the hardware prefetchers do not follow
/// that stride from one row to the next, so each row started with a wait on
/// memory (bench_engines at 1000 x 256²: Workspace::exit_waves and
/// accumulate_object 20-35 % faster with it). The kernels over a frame's
/// counts and stored far fields gain 10-35 %. A hint only: it changes
/// no value, and on a GPU it is nothing.
template <bool Write = false>
KOKKOS_INLINE_FUNCTION void prefetch_row(const void* p, long bytes) {
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__) && !defined(__SYCL_DEVICE_ONLY__) && \
    (defined(__GNUC__) || defined(__clang__))
  const char* c = static_cast<const char*>(p);
  for (long k = 0; k < bytes; k += 64) __builtin_prefetch(c + k, Write ? 1 : 0, 3);
#else
  (void)p;
  (void)bytes;
#endif
}

using Policy3 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>;

/// A mode count known at compile time (0: only at run time).
template <int K>
using ModeCount = std::integral_constant<int, K>;

/// Calls f(ModeCount<K>{}) with K = kmodes for 1 to 4 modes, else with
/// ModeCount<0>. Kernels that loop over modes inside a pixel loop take the
/// count as a template parameter: the mode loops then unroll and the pixel
/// loop vectorises (a run-time inner loop keeps it scalar). Kernels read the
/// count with `modes<K>(runtime)`.
template <class F>
decltype(auto) dispatch_modes(int kmodes, F&& f) {
  switch (kmodes) {
    case 1: return f(ModeCount<1>{});
    case 2: return f(ModeCount<2>{});
    case 3: return f(ModeCount<3>{});
    case 4: return f(ModeCount<4>{});
    default: return f(ModeCount<0>{});
  }
}

/// The mode count of a kernel instantiated for K modes (K = 0: `runtime`).
template <int K>
KOKKOS_FORCEINLINE_FUNCTION constexpr int modes(int runtime) {
  return K > 0 ? K : runtime;
}

/// Sum over frames b < count and rows r < m of row(b, r), a T (double or
/// Sums<N>), one team per frame. Row functions are where the pixel loops
/// live: on the host they are plain loops over (re, im) float pairs through
/// PTYCHO_RESTRICT pointers, without `omp simd` (GCC 12 vectorises those;
/// complex temporaries or the simd privatisation of `omp simd` keep a loop
/// with a mode loop inside scalar).
template <class T, class Row>
T sum_frame_rows(const char* label, long count, int m, const Row& row) {
  T total{};
  if (count <= 0) return total;
  Kokkos::parallel_reduce(
      label, frame_policy(count),
      KOKKOS_LAMBDA(const FrameMember& team, T& acc) {
        const long b = team.league_rank();
        T frame{};
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, m), [&](int r, T& racc) { racc += row(b, r); }, Kokkos::Sum<T>(frame));
        Kokkos::single(Kokkos::PerTeam(team), [&] { acc += frame; });
      },
      Kokkos::Sum<T>(total));
  return total;
}

/// Natural log of a positive, finite float to about 2 ulp, branch-free so a
/// pixel loop that takes it vectorises (libm's logf keeps it scalar).
KOKKOS_INLINE_FUNCTION float log_positive(float x) {
  std::int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float e = float(((bits >> 23) & 0xff) - 127);
  bits = (bits & 0x7fffff) | 0x3f800000;  // mantissa in [1, 2)
  float mant;
  std::memcpy(&mant, &bits, sizeof mant);
  const bool high = mant > 1.41421356f;  // fold into [0.707, 1.414)
  mant = high ? 0.5f * mant : mant;
  e = high ? e + 1.0f : e;
  // log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172: odd series to s^9.
  const float s = (mant - 1.0f) / (mant + 1.0f), z = s * s;
  const float series = s * (2.0f + z * (0.666666667f + z * (0.4f + z * (0.285714286f + z * 0.222222222f))));
  return series + e * 0.693147181f;
}

/// The owned rectangle in the local coordinates of `extent`.
inline Rect local_rect(const Rect& owned, const Rect& extent) {
  return Rect{owned.row0 - extent.row0, owned.col0 - extent.col0, owned.rows, owned.cols};
}

inline Policy2 rect_policy(const Rect& r) { return Policy2({r.row0, r.col0}, {r.row1(), r.col1()}); }

}  // namespace ptycho

namespace Kokkos {
template <int N>
struct reduction_identity<ptycho::Sums<N>> {
  KOKKOS_FORCEINLINE_FUNCTION static ptycho::Sums<N> sum() { return ptycho::Sums<N>(); }
};
}  // namespace Kokkos
