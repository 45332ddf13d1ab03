#pragma once
/// Complex waves stored in 32 bits: the real and imaginary parts as IEEE 754
/// binary16 (half precision: 11 significant bits, a relative rounding error
/// of at most 2^-11 = 4.9e-4, normal from 6.1e-5 to 65504), packed into one
/// uint32 (real part in the low 16 bits). The low-memory mode of DM and RAAR
/// keeps its far fields this way, and sDR its exit waves: half the bytes of
/// complex64.
///
/// The conversions are plain integer and float arithmetic, so they give the
/// same bits on every processor and need no F16C or AVX-512 FP16. Rounding
/// is to nearest, ties to even; a value beyond the largest half saturates to
/// +-65504 instead of becoming infinite (a wave that outgrew its scale stays
/// finite), and NaN stays NaN.
#include "ptycho/core/types.hpp"

#include <cstdint>
#include <cstring>

namespace ptycho {

/// A stack of packed complex halves, (frames, M, M), as CView3 for complex64.
using HalfCView3 = View3<std::uint32_t>;

/// The bits of `f` as binary16 (round to nearest even, saturating).
KOKKOS_INLINE_FUNCTION std::uint32_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  std::uint32_t h;
  if (x > 0x7f800000u) {
    h = 0x7e00u;  // NaN
  } else if (x >= 0x477ff000u) {
    h = 0x7bffu;  // rounds to 65536 or more (or infinite): the largest half
  } else if (x < 0x38800000u) {
    // Below 2^-14: a subnormal half. Adding 0.5 puts the half's mantissa in
    // the float's low bits, rounded to nearest even by the float addition.
    float t;
    std::memcpy(&t, &x, sizeof t);
    t += 0.5f;
    std::uint32_t ti;
    std::memcpy(&ti, &t, sizeof ti);
    h = ti - 0x3f000000u;
  } else {
    const std::uint32_t odd = (x >> 13) & 1u;  // ties go to the even mantissa
    x += 0xc8000fffu + odd;                    // rebias the exponent (15 - 127, mod 2^32) and round
    h = x >> 13;
  }
  return h | sign;
}

/// The float whose binary16 bits are the low 16 bits of `h` (exact).
KOKKOS_INLINE_FUNCTION float half_to_float(std::uint32_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t x = (h & 0x7fffu) << 13;  // exponent and mantissa in place
  const std::uint32_t exponent = x & 0x0f800000u;
  x += (127u - 15u) << 23;  // rebias
  float f;
  if (exponent == 0x0f800000u) {
    x += (128u - 16u) << 23;  // infinity or NaN: the float's largest exponent
    std::memcpy(&f, &x, sizeof f);
  } else if (exponent == 0) {
    x += 1u << 23;  // zero or subnormal: 2^-14 (1 + m), less 2^-14
    std::memcpy(&f, &x, sizeof f);
    f -= 6.103515625e-05f;
  } else {
    std::memcpy(&f, &x, sizeof f);
  }
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits |= sign;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// (re, im) as two halves in one word.
KOKKOS_INLINE_FUNCTION std::uint32_t pack_half(float re, float im) {
  return float_to_half(re) | (float_to_half(im) << 16);
}

/// The real and imaginary parts of a packed word.
KOKKOS_INLINE_FUNCTION void unpack_half(std::uint32_t w, float& re, float& im) {
  re = half_to_float(w & 0xffffu);
  im = half_to_float(w >> 16);
}

/// Per-frame waves kept either as complex64 (CView3) or as packed halves of
/// the waves over a scale (HalfCView3), read and written through the same
/// calls, so one kernel serves both: row r of slot s as a pointer, and the
/// complex value at index i of such a pointer (`scale` multiplies a packed
/// value when loaded, `inv_scale` divides it when stored; complex64 ignores
/// both).
KOKKOS_INLINE_FUNCTION float* wave_row(const CView3& waves, long s, long r) {
  return reinterpret_cast<float*>(&waves(s, r, 0));
}
KOKKOS_INLINE_FUNCTION std::uint32_t* wave_row(const HalfCView3& waves, long s, long r) { return &waves(s, r, 0); }

KOKKOS_INLINE_FUNCTION void load_wave(const float* row, long i, float, float& re, float& im) {
  re = row[2 * i];
  im = row[2 * i + 1];
}
KOKKOS_INLINE_FUNCTION void load_wave(const std::uint32_t* row, long i, float scale, float& re, float& im) {
  unpack_half(row[i], re, im);
  re *= scale;
  im *= scale;
}
KOKKOS_INLINE_FUNCTION void store_wave(float* row, long i, float, float re, float im) {
  row[2 * i] = re;
  row[2 * i + 1] = im;
}
KOKKOS_INLINE_FUNCTION void store_wave(std::uint32_t* row, long i, float inv_scale, float re, float im) {
  row[i] = pack_half(re * inv_scale, im * inv_scale);
}

}  // namespace ptycho
