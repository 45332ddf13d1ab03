#pragma once
// The shared probe update of the parallel-family engines: numerator
// sum_j unshift_j(conj(O_j) psi_j) and denominator sum_j |O_j|^2 per mode,
// summed over ranks in double, then divided once.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/state_archive.hpp"

namespace ptycho {

class ProbeUpdate {
 public:
  ProbeUpdate(Workspace& ws, const Collective& coll, const EngineOptions& opt);
  /// Clears the sums.
  void reset();
  /// Adds frames first..first+count with exit waves `waves` (signed, real space).
  void accumulate(const CView2& object, const CView3& waves, long first, long count, const CView3& scratch);
  /// Sums over ranks, P <- (num + delta P) / (den + delta), rescaled to the power the
  /// probe had at the first update, then refreshes the workspace's probes.
  void apply(ReconState& state);
  /// For sums of exit-wave corrections (waves psi' - P~ O) instead of exit
  /// waves: sums over ranks, P <- P + num / ((1 - a) den + a max(den)), with
  /// a in [0, 1] (1: ePIE's step, normalised by the largest illumination),
  /// then the support, the power and the workspace's probes as apply().
  void apply_step(ReconState& state, double a);
  /// Saves or restores the power to keep and the support (set at the first update).
  void checkpoint(StateArchive& ar);

 private:
  Workspace& m_ws;
  const Collective& m_coll;
  double m_regularisation;
  double m_power = 0;                        ///< total probe power to keep, set at the first update
  View2<std::uint8_t, HostSpace> m_support;  ///< (M, M) far-field support of the probe, set at the first update
  bool m_support_set = false;                ///< whether m_support holds one yet
  CView3 m_spectrum;                         ///< (K, M, M): the modes' far fields, for the support
  /// Zeroes the far field of every mode outside the support.
  void apply_fourier_support(const HostCView3& probe);
  /// num and den summed over ranks, as host copies; returns the largest den.
  double reduce(View3<cdouble, HostSpace>& num, View2<double, HostSpace>& den);
  /// P_k <- update(num_k, P_k, r, c) per pixel, then the support, the power
  /// and the workspace's probes.
  template <class Update>
  void finish(ReconState& state, const View3<cdouble, HostSpace>& num, const Update& update);
  ProbeSums m_sums;
};

}  // namespace ptycho
