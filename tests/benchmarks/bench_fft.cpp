// bench_fft: ptycho's FramePlan batched FFT next to FFTW's own batched plan
// (fftwf_plan_many_dft, FFTW_MEASURE, in place) on the same frames, measured
// in the same run. A benchmark prints numbers; it is not a test.
//
//   bench_fft [FRAMES [SIZE [REPETITIONS]]]        (default: 1000 256 5)
//
// Each variant transforms the same stack forward, in place, starting from the
// same random data (restored before every run, untimed). A first run of each
// variant is a warm-up; the time printed is the best of the repetitions after
// it. The ratio is against FFTW at the same thread count: one thread with a
// Serial Kokkos, FFTW's OpenMP library at Kokkos' concurrency with an OpenMP
// Kokkos (when libfftw3f_omp is found).
#include "ptycho/core/fft.hpp"
#include "ptycho/core/types.hpp"

#include <Kokkos_Core.hpp>
#include <fftw3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// One way of transforming the stack, timed over the repetitions.
struct Variant {
  std::string name;
  std::function<void()> run;
  double best = 1e300;
};

}  // namespace

int main(int argc, char** argv) {
  setenv("KOKKOS_DISABLE_WARNINGS", "1", 0);
  Kokkos::ScopeGuard kokkos(argc, argv);
  const long frames = argc > 1 ? std::atol(argv[1]) : 1000;
  const int m = argc > 2 ? std::atoi(argv[2]) : 256;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  if (frames < 1 || m < 2 || m % 2 != 0 || reps < 1) {
    std::fprintf(stderr, "usage: bench_fft [FRAMES [SIZE (even) [REPETITIONS]]]\n");
    return 2;
  }
  if (!Kokkos::SpaceAccessibility<Kokkos::HostSpace, ptycho::MemSpace>::accessible) {
    std::fprintf(stderr, "bench_fft: compares against FFTW on the host; this Kokkos runs on %s\n",
                 ptycho::ExecSpace::name());
    return 2;
  }
  const int threads = ptycho::HostExec().concurrency();
  const long frame_len = static_cast<long>(m) * m;
  const double mib = frames * frame_len * sizeof(ptycho::cfloat) / (1024.0 * 1024.0);

  // The stack the variants transform, and the data each run starts from.
  using Kokkos::view_alloc;
  using Kokkos::WithoutInitializing;
  ptycho::CView3 stack(view_alloc(WithoutInitializing, "ptycho::bench_fft::stack"), frames, m, m);
  ptycho::HostCView3 pristine(view_alloc(WithoutInitializing, "ptycho::bench_fft::pristine"), frames, m, m);
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (long i = 0; i < frames * frame_len; ++i) {
    auto next = [&state] {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      return static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
    };
    const float re = next();
    pristine.data()[i] = ptycho::cfloat(re, next());
  }

  // FFTW's own batched plan first, so its FFTW_MEASURE search starts with no
  // wisdom from FramePlan: howmany = FRAMES transforms of M x M, in place.
  int fftw_threads = 1;
#if defined(PTYCHO_BENCH_FFTW_OMP)
  fftwf_init_threads();
  fftw_threads = threads;
  fftwf_plan_with_nthreads(fftw_threads);
#endif
  auto* data = reinterpret_cast<fftwf_complex*>(stack.data());
  const int n[2] = {m, m};
  auto t0 = Clock::now();
  fftwf_plan many = fftwf_plan_many_dft(2, n, static_cast<int>(frames), data, nullptr, 1, static_cast<int>(frame_len),
                                        data, nullptr, 1, static_cast<int>(frame_len), FFTW_FORWARD, FFTW_MEASURE);
  const double plan_many_s = seconds_since(t0);
  if (!many) {
    std::fprintf(stderr, "bench_fft: fftwf_plan_many_dft failed\n");
    return 1;
  }
  // FramePlan plans single-threaded 2-D transforms and runs frames on Kokkos' threads.
#if defined(PTYCHO_BENCH_FFTW_OMP)
  fftwf_plan_with_nthreads(1);
#endif
  t0 = Clock::now();
  ptycho::FramePlan plan(m);
  const double plan_frame_s = seconds_since(t0);

  std::vector<Variant> variants;
  variants.push_back({"FFTW fftwf_plan_many_dft", [&] { fftwf_execute(many); }});
  variants.push_back({"FramePlan Centring::centred_unitary",
                      [&] { plan.execute(stack, ptycho::FftDirection::forward, ptycho::Centring::centred_unitary); }});
  variants.push_back({"FramePlan Centring::none",
                      [&] { plan.execute(stack, ptycho::FftDirection::forward, ptycho::Centring::none); }});

  // Frame 0 after FFTW and after Centring::none: the same plain DFT.
  std::vector<ptycho::cfloat> fftw_frame0(frame_len), none_frame0(frame_len);
  for (int rep = 0; rep <= reps; ++rep) {
    for (size_t v = 0; v < variants.size(); ++v) {
      Kokkos::deep_copy(stack, pristine);
      t0 = Clock::now();
      variants[v].run();
      const double s = seconds_since(t0);
      if (rep > 0) variants[v].best = std::min(variants[v].best, s);
      if (rep == 0 && v != 1) std::copy_n(stack.data(), frame_len, (v == 0 ? fftw_frame0 : none_frame0).begin());
    }
  }
  double diff = 0, peak = 0;
  for (long i = 0; i < frame_len; ++i) {
    diff = std::max(diff, static_cast<double>(Kokkos::abs(fftw_frame0[i] - none_frame0[i])));
    peak = std::max(peak, static_cast<double>(Kokkos::abs(fftw_frame0[i])));
  }

  const double flop = 5.0 * frame_len * std::log2(static_cast<double>(frame_len)) * frames;  // FFTW's convention
  std::printf("bench_fft: %ld frames of %dx%d complex64 (%.0f MiB), forward, in place, best of %d after a warm-up\n",
              frames, m, m, mib, reps);
  std::printf("Kokkos %d.%d.%d, execution space %s, concurrency %d; %s; FFTW threads %d\n", KOKKOS_VERSION / 10000,
              KOKKOS_VERSION / 100 % 100, KOKKOS_VERSION % 100, ptycho::HostExec::name(), threads, fftwf_version,
              fftw_threads);
  std::printf("planning: fftwf_plan_many_dft %.2f s, FramePlan %.2f s (both FFTW_MEASURE)\n", plan_many_s,
              plan_frame_s);
  const double base = variants[0].best;
  for (const auto& v : variants)
    std::printf("  %-36s %9.1f ms  %7.3f ms/frame  %6.2f GFlop/s  ratio %.3f\n", v.name.c_str(), v.best * 1e3,
                v.best * 1e3 / frames, flop / v.best * 1e-9, v.best / base);
  std::printf("check: max |FramePlan none - FFTW| / max |FFTW| on frame 0 = %.2e\n", peak > 0 ? diff / peak : diff);
  const double worst = std::max(variants[1].best, variants[2].best) / base;
  std::printf("acceptance (FramePlan within 1.2x of FFTW): %s (worst ratio %.3f)\n", worst <= 1.2 ? "met" : "MISSED",
              worst);

  fftwf_destroy_plan(many);
  return 0;
}
