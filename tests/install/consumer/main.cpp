// Uses an installed ptycho: a flat frame transforms to a single centred peak.
#include <ptycho/core/fft.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  const int m = 16;
  ptycho::CView3 frames("frames", 2, m, m);
  Kokkos::deep_copy(frames, ptycho::cfloat(1.0f, 0.0f));
  ptycho::FramePlan plan(m, /*effort_measure=*/false);
  plan.forward(frames);
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), frames);
  // Unitary and centred: sum / M = M at (M/2, M/2), zero elsewhere.
  const bool ok = std::abs(host(1, m / 2, m / 2).real() - m) < 1e-4f && Kokkos::abs(host(1, 0, 0)) < 1e-4f;
  std::printf("execution space: %s\nFramePlan: %s\n", Kokkos::DefaultExecutionSpace::name(), ok ? "ok" : "WRONG");
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
