#pragma once
// Factories of the individual engines (internal to core/).
#include "ptycho/core/engine.hpp"
#include "ptycho/core/kernel_util.hpp"

namespace ptycho {

/// The largest value of `a` over the owned rectangle `owned` (local
/// coordinates) on all ranks: the scale of the relative damping of divisions.
inline double owned_max(const View2<double>& a, const Rect& owned, const Collective& coll) {
  double mx = 0;
  Kokkos::parallel_reduce(
      "ptycho::owned_max", rect_policy(owned),
      KOKKOS_LAMBDA(long r, long c, double& m) { m = a(r, c) > m ? a(r, c) : m; }, Kokkos::Max<double>(mx));
  coll.max(&mx, 1);
  return mx;
}

/// The peak over pixels of sum_k |P_k|^2 of a probe (modes, M, M): the
/// same on every rank, as the probe is.
inline double probe_intensity_peak(const CView3& probe) {
  const int kmodes = static_cast<int>(probe.extent(0));
  double mx = 0;
  Kokkos::parallel_reduce(
      "ptycho::probe_intensity_peak", Policy2({0, 0}, {long(probe.extent(1)), long(probe.extent(2))}),
      KOKKOS_LAMBDA(long r, long c, double& acc) {
        double s = 0;
        for (int k = 0; k < kmodes; ++k) s += Kokkos::abs(probe(k, r, c)) * Kokkos::abs(probe(k, r, c));
        acc = s > acc ? s : acc;
      },
      Kokkos::Max<double>(mx));
  return mx;
}

std::unique_ptr<Engine> make_ml_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_dm_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_pie_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_lsqml_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
}  // namespace ptycho
