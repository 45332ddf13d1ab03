#pragma once
/// Small helpers shared by the engines' kernels: multi-value double
/// reductions and policies. Internal to core/.
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"

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
using Policy3 = Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>;

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
