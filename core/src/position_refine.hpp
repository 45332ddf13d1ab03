#pragma once
// Gradient-based refinement of the probe positions (after Odstrcil et al.
// 2018 and Dwivedi et al. 2018), as a Gauss-Newton step on the measured
// amplitudes: for each frame, the shift d minimising
//   sum_q ( sqrt(y) - |F(P O)| - d . J )^2,  J = d|F(P O)|/dd,
// whose model derivative is F(-(grad P) O) (a 2x2 system per frame; two
// extra transforms per frame and mode on the iterations that move positions). Shifts are limited per iteration, the global mean shift
// (an ambiguity of the object's origin) is removed over all ranks, and no
// position moves further from where it started than the halo allows.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/state_archive.hpp"

namespace ptycho {

class PositionRefiner {
 public:
  PositionRefiner(Workspace& ws, const Collective& coll, const EngineOptions& opt, const ReconState& state);
  /// Clears the per-frame sums.
  void reset();
  /// Adds the Gauss-Newton terms of frames first..first+count for `object`.
  void accumulate(const CView2& object, long first, long count);
  /// Moves the positions in `state` and the workspace's patch geometry.
  /// The caller refreshes the shifted probes (Workspace::set_probe) after.
  void apply(ReconState& state);
  /// Saves or restores the starting positions and the momenta.
  void checkpoint(StateArchive& ar);
  /// The model amplitude becomes sqrt(|F(P O)|^2 + b) (empty: no background).
  void use_background(const RView2& background) { m_background = background; }

 private:
  Workspace& m_ws;
  const Collective& m_coll;
  double m_max_step;     ///< largest shift per iteration [px]
  double m_max_total;    ///< largest distance from the starting position [px]
  double m_momentum;     ///< weight of the previous step in this one
  bool m_affine_free;    ///< keep the affine part of the shifts (else it is removed: fix_affine)
  std::vector<Position> m_start;
  std::vector<Position> m_velocity;  ///< per frame, the momentum of its corrections [px]
  View2<double> m_sums;  ///< (n, 5): Jr.Jr, Jr.Jc, Jc.Jc, Jr.res, Jc.res
  CView3 m_work;         ///< (3 * batch * K, M, M): model, d/drow, d/dcol far fields
  RView2 m_background;   ///< (M, M) detector background, or empty
};

}  // namespace ptycho
