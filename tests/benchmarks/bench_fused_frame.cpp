// bench_fused_frame: is a frame's work faster fused into the passes of its
// transform? (P10, "fuse the per-frame work, so a frame's data stays in cache
// from its transform to its accumulation"). One frame's modulus projection,
//
//   psi = P O[patch];  Psi = F psi;  Psi *= sqrt(y) / |Psi|;  psi' = F^-1 Psi;
//   num[patch] += conj(P) psi'   (num in double, as the engines' sums),
//
// the pattern of every engine's frame pass, timed three ways on the same data:
//  - separate: FFTW's 2-D plan in place, each kernel a pass over the frame
//    (what core/ does: Workspace::exit_waves, FramePlan, the engine's kernel,
//    FramePlan, Workspace::accumulate_object);
//  - rows fused: the 2-D transform as row FFTs (blocks of R rows) and column
//    FFTs (one plan over all columns); the exit wave is made block by block
//    just before its row FFTs, and the accumulation follows each block's
//    inverse row FFTs, while the block is in cache;
//  - rows and columns fused: as above, and the columns are transformed in
//    blocks of B, each block's modulus step and inverse column FFTs done while
//    it is in cache.
// Also timed: the 2-D plan alone (the FFT floor) and the row/column FFTs alone.
// The fused results are checked against the separate one. A benchmark, not a
// test: it prints numbers.
#include <fftw3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;

// Products written out (std::complex's operator* checks for NaNs without
// -ffast-math; core/'s kernels multiply component by component too).
inline cf mul(cf a, cf b) { return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()}; }
inline cf conj_mul(cf a, cf b) { return {a.real() * b.real() + a.imag() * b.imag(), a.real() * b.imag() - a.imag() * b.real()}; }

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

long option(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) {
      char* end = nullptr;
      const long v = std::strtol(argv[i + 1], &end, 10);
      if (!end || *end || v <= 0) {
        std::fprintf(stderr, "bench_fused_frame: %s must be a positive integer, got '%s'\n", name, argv[i + 1]);
        std::exit(2);
      }
      return v;
    }
  return fallback;
}

template <class T>
struct FftwArray {
  explicit FftwArray(std::size_t n) : p(static_cast<T*>(fftwf_malloc(sizeof(T) * n))) {
    if (!p) {
      std::fprintf(stderr, "bench_fused_frame: cannot allocate %zu bytes\n", sizeof(T) * n);
      std::exit(1);
    }
  }
  ~FftwArray() { fftwf_free(p); }
  FftwArray(const FftwArray&) = delete;
  FftwArray& operator=(const FftwArray&) = delete;
  T* p;
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: bench_fused_frame [--size M] [--frames N] [--row-block R] [--col-block B] [--repeats K]\n"
                  "defaults: M 256, N 300, R 16, B 16, K 5; R and B must divide M\n");
      return 0;
    }
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if ((a != "--size" && a != "--frames" && a != "--row-block" && a != "--col-block" && a != "--repeats") ||
        i + 1 >= argc) {
      std::fprintf(stderr, "bench_fused_frame: unknown option or missing value '%s' (see --help)\n", argv[i]);
      return 2;
    }
  }
  const long m = option(argc, argv, "--size", 256), n = option(argc, argv, "--frames", 300);
  const long rb = option(argc, argv, "--row-block", 16), cb = option(argc, argv, "--col-block", 16);
  const long repeats = option(argc, argv, "--repeats", 5);
  if (m % rb || m % cb || m > 4096) {
    std::fprintf(stderr, "bench_fused_frame: --row-block (%ld) and --col-block (%ld) must divide --size (%ld <= 4096)\n",
                 rb, cb, m);
    return 2;
  }
  const long w = 5 * m;  // the object: about 5 frames wide, so patches overlap as in a scan
  const double bytes = 8.0 * (m * m * 2 + w * w) + 16.0 * w * w + 4.0 * n * m * m;
  if (bytes > 8e9) {
    std::fprintf(stderr, "bench_fused_frame: %.1f GB asked for (--frames %ld of %ld^2); at most 8 GB\n", bytes / 1e9, n, m);
    return 2;
  }
  FftwArray<cf> probe(m * m), obj(w * w), buf(m * m);
  FftwArray<cd> num(w * w);
  FftwArray<float> y(n * m * m);
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(0, 1);
  for (long i = 0; i < m * m; ++i) probe.p[i] = cf(u(gen), u(gen));
  for (long i = 0; i < w * w; ++i) obj.p[i] = cf(u(gen), u(gen)), num.p[i] = 0;
  for (long i = 0; i < n * m * m; ++i) y.p[i] = 100 * u(gen);
  std::vector<long> row(n), col(n);
  for (long j = 0; j < n; ++j) row[j] = long(u(gen) * float(w - m)), col[j] = long(u(gen) * float(w - m));

  fftwf_complex* b = reinterpret_cast<fftwf_complex*>(buf.p);
  const int len[1] = {int(m)};
  auto many = [&](int howmany, int stride, int dist, int sign) {
    return fftwf_plan_many_dft(1, len, howmany, b, nullptr, stride, dist, b, nullptr, stride, dist, sign, FFTW_MEASURE);
  };
  const fftwf_plan f2 = fftwf_plan_dft_2d(int(m), int(m), b, b, FFTW_FORWARD, FFTW_MEASURE);
  const fftwf_plan i2 = fftwf_plan_dft_2d(int(m), int(m), b, b, FFTW_BACKWARD, FFTW_MEASURE);
  const fftwf_plan f_rows = many(int(rb), 1, int(m), FFTW_FORWARD), i_rows = many(int(rb), 1, int(m), FFTW_BACKWARD);
  const fftwf_plan f_cols = many(int(m), int(m), 1, FFTW_FORWARD), i_cols = many(int(m), int(m), 1, FFTW_BACKWARD);
  const fftwf_plan f_blk = many(int(cb), int(m), 1, FFTW_FORWARD), i_blk = many(int(cb), int(m), 1, FFTW_BACKWARD);
  const float inv_m2 = 1.0f / float(m * m);

  auto exit_row = [&](long j, long r) {
    const cf* o = obj.p + (row[j] + r) * w + col[j];
    const cf* p = probe.p + r * m;
    cf* x = buf.p + r * m;
    for (long c = 0; c < m; ++c) x[c] = mul(p[c], o[c]);
  };
  auto accumulate_row = [&](long j, long r) {
    cd* o = num.p + (row[j] + r) * w + col[j];
    const cf* p = probe.p + r * m;
    const cf* x = buf.p + r * m;
    for (long c = 0; c < m; ++c) {
      const cf s = conj_mul(p[c], x[c]);
      o[c] += cd(s.real(), s.imag());
    }
  };
  auto modulus = [&](long j, long r, long c0, long cn) {
    const float* yy = y.p + (j * m + r) * m;
    cf* x = buf.p + r * m;
    for (long c = c0; c < c0 + cn; ++c) {
      const float a2 = x[c].real() * x[c].real() + x[c].imag() * x[c].imag();
      const float g = std::sqrt(yy[c] / std::max(a2, 1e-20f)) * inv_m2;
      x[c] = cf(x[c].real() * g, x[c].imag() * g);
    }
  };
  auto rows_forward = [&](long j) {
    for (long r0 = 0; r0 < m; r0 += rb) {
      if (j >= 0)
        for (long r = r0; r < r0 + rb; ++r) exit_row(j, r);
      fftwf_execute_dft(f_rows, b + r0 * m, b + r0 * m);
    }
  };
  auto rows_backward = [&](long j) {
    for (long r0 = 0; r0 < m; r0 += rb) {
      fftwf_execute_dft(i_rows, b + r0 * m, b + r0 * m);
      if (j >= 0)
        for (long r = r0; r < r0 + rb; ++r) accumulate_row(j, r);
    }
  };
  auto separate = [&](long j) {
    for (long r = 0; r < m; ++r) exit_row(j, r);
    fftwf_execute(f2);
    for (long r = 0; r < m; ++r) modulus(j, r, 0, m);
    fftwf_execute(i2);
    for (long r = 0; r < m; ++r) accumulate_row(j, r);
  };
  auto rows_fused = [&](long j) {
    rows_forward(j);
    fftwf_execute(f_cols);
    for (long r = 0; r < m; ++r) modulus(j, r, 0, m);
    fftwf_execute(i_cols);
    rows_backward(j);
  };
  auto all_fused = [&](long j) {
    rows_forward(j);
    for (long c0 = 0; c0 < m; c0 += cb) {
      fftwf_execute_dft(f_blk, b + c0, b + c0);
      for (long r = 0; r < m; ++r) modulus(j, r, c0, cb);
      fftwf_execute_dft(i_blk, b + c0, b + c0);
    }
    rows_backward(j);
  };
  auto floor_2d = [&](long) {
    fftwf_execute(f2);
    fftwf_execute(i2);
  };
  auto floor_rc = [&](long) {
    rows_forward(-1);
    fftwf_execute(f_cols);
    fftwf_execute(i_cols);
    rows_backward(-1);
  };

  // The fused variants against the separate one, on frame 0's patch.
  auto patch_sum = [&](auto&& variant) {
    for (long r = 0; r < m; ++r) std::fill_n(num.p + (row[0] + r) * w + col[0], m, cd(0));
    variant(0);
    std::vector<cd> out(m * m);
    for (long r = 0; r < m; ++r) std::copy_n(num.p + (row[0] + r) * w + col[0], m, out.data() + r * m);
    return out;
  };
  const std::vector<cd> ref = patch_sum(separate);
  auto difference = [&](const std::vector<cd>& x) {
    double e = 0, s = 0;
    for (long i = 0; i < m * m; ++i) e += std::norm(x[i] - ref[i]), s += std::norm(ref[i]);
    return std::sqrt(e / s);
  };
  const double d_rows = difference(patch_sum(rows_fused)), d_all = difference(patch_sum(all_fused));

  struct Variant {
    const char* name;
    std::function<void(long)> run;
    double best = 1e30;
  };
  std::vector<Variant> variants = {{"separate (2-D plan, kernels as passes)", separate},
                                   {"rows fused", rows_fused},
                                   {"rows and column blocks fused", all_fused},
                                   {"FFT floor: 2-D plan alone", floor_2d},
                                   {"row/column FFTs alone", floor_rc}};
  for (long k = 0; k < repeats; ++k)  // interleaved, best of `repeats`
    for (auto& v : variants) {
      const double t0 = now();
      for (long j = 0; j < n; ++j) v.run(j);
      v.best = std::min(v.best, now() - t0);
    }
  std::printf("bench_fused_frame: %ld frames of %ld^2 over a %ld^2 object, row blocks of %ld, column blocks of %ld, best of %ld\n",
              n, m, w, rb, cb, repeats);
  for (const auto& v : variants) std::printf("  %-40s %8.3f ms/frame\n", v.name, 1e3 * v.best / double(n));
  std::printf("  relative difference to separate: rows fused %.1e, rows and columns fused %.1e\n", d_rows, d_all);
  for (fftwf_plan p : {f2, i2, f_rows, i_rows, f_cols, i_cols, f_blk, i_blk}) fftwf_destroy_plan(p);
  return 0;
}
