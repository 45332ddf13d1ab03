#pragma once
// Refinement of the probe positions, by one of two methods
// (EngineOptions::position_method).
//
// gradient (after Odstrcil et al. 2018 and Dwivedi et al. 2018): a
// Gauss-Newton step on the measured amplitudes: for each frame, the shift d
// minimising
//   sum_q ( sqrt(y) - |F(P O)| - d . J )^2,  J = d|F(P O)|/dd,
// whose model derivative is F(-(grad P) O) (a 2x2 system per frame; two
// extra transforms per frame and mode on the iterations that move positions).
//
// annealing (Maiden, Humphry, Sarahan, Kraus, Rodenburg 2012, "An annealing
// algorithm to correct positioning errors in ptychography"): each frame's
// amplitude misfit
//   E(p) = sum_q valid(q) ( sqrt(y) - sqrt(sum_k |F(P_k(p) O)|^2) )^2
// is evaluated at its current position and at kAnnealTrials trial positions
// p + r (cos t, sin t), t = t0 + k 2 pi / kAnnealTrials, and the frame moves
// to the lowest (strictly: on a tie it stays). t0 is drawn per frame and step
// from (seed, global frame index, step), so the trials are the same on any
// rank count and after a resume. The choices are too, up to rounding: the
// object on N ranks equals the one-rank object only to float rounding, as do
// runs whose FFTW plans were measured in different processes, and a choice
// between two nearly equal misfits (about one in 10^3) can turn on it; a
// changed choice then changes later ones nearby, so long runs agree in
// quality, not frame by frame.
// The radius r starts at max_position_step and shrinks by kAnnealShrink per
// step down to kAnnealFloor px: large trial steps while the object is still
// rough, sub-pixel ones once it is sharp (0.5 px: 22 steps to the floor).
// A trial's probe is exact, as the workspace's: the spectrum of each mode
// once per step, times the trial's sub-pixel ramp, one inverse transform per
// trial and mode, then one forward transform of its exit wave (9 transforms
// per frame and mode in all with the current position, against 2 of a
// projection iteration; measured, a step costs about 4 RAAR iterations).
// Trials are clamped to max_position_shift from the start, and a trial whose
// patch leaves the tile is skipped. Momentum does not apply. Each engine of a
// chain starts its own annealing at full radius.
//
// For both methods, shifts are limited per iteration, the global mean shift
// (an ambiguity of the object's origin; with fix_affine the whole affine part)
// is removed over all ranks, and no position moves further from where it
// started than max_position_shift (per axis). No patch leaves the object
// grid: a position is clamped so that its patch stays on it (the same on any
// rank count). The distributed driver makes the halo at least
// max_position_shift wide beyond the frames' reach, so a position that
// started in this rank's tile cannot leave the tile's extent; should it
// reach the extent's edge all the same (a resume mid-engine on another rank
// count: the start may lie up to max_position_shift outside the tile), it is
// held there rather than read outside the local arrays.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/frame_pass.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/state_archive.hpp"

#include <memory>
#include <vector>

namespace ptycho {

class PositionRefiner {
 public:
  /// Trial positions per frame and annealing step (besides the current one).
  static constexpr int kAnnealTrials = 4;
  /// Factor of the annealing radius per step, and its smallest value [px].
  static constexpr double kAnnealShrink = 0.9;
  static constexpr double kAnnealFloor = 0.05;

  PositionRefiner(Workspace& ws, const Collective& coll, const EngineOptions& opt, const ReconState& state);
  /// Clears the per-frame sums (gradient) or choices (annealing).
  void reset();
  /// Gradient: adds the Gauss-Newton terms of frames first..first+count.
  /// Annealing: chooses those frames' moves among the trials. `state` is what
  /// the workspace's patches and shifted probes were made from (annealing
  /// makes its trial probes from state.probe, around state.positions).
  void accumulate(const ReconState& state, long first, long count);
  /// Moves the positions in `state` and the workspace's patch geometry.
  /// The caller refreshes the shifted probes (Workspace::set_probe) after.
  void apply(ReconState& state);
  /// Saves or restores the starting positions, the momenta and the annealing step.
  void checkpoint(StateArchive& ar);
  /// The model amplitude becomes sqrt(|F(P O)|^2 + b) (empty: no background).
  void use_background(const RView2& background) { m_background = background; }

  /// The annealing trial radius of the next step [px].
  double anneal_radius() const;

  /// Annealing steps on the frozen object and probe of `state` (accumulate
  /// then apply, `steps` times, the shifted probes refreshed after each):
  /// the positions move. Returns the relative drop of the misfit summed over
  /// all frames of all ranks, 1 - after / before (collective). Annealing only.
  double search(ReconState& state, int steps);

 private:
  void accumulate_gradient(const CView2& object, long first, long count);
  void accumulate_annealing(const ReconState& state, long first, long count);
  /// The Gauss-Newton shift of every frame with texture (informed).
  void gradient_steps(std::vector<double>& dr, std::vector<double>& dc, std::vector<char>& informed) const;

  Workspace& m_ws;
  const Collective& m_coll;
  PositionMethod m_method;
  double m_max_step;   ///< largest shift per iteration [px]; annealing: the first radius
  double m_max_total;  ///< largest distance from the starting position [px]
  double m_momentum;   ///< weight of the previous step in this one (gradient only)
  bool m_affine_free;  ///< keep the affine part of the shifts (else it is removed: fix_affine)
  unsigned m_seed;     ///< annealing: trial directions
  std::shared_ptr<const Propagator> m_propagator;  ///< the model far fields (the engines' propagator)
  std::vector<Position> m_start;
  std::vector<Position> m_velocity;  ///< per frame, the momentum of its corrections [px]
  View2<double> m_sums;              ///< gradient: (n, 5): Jr.Jr, Jr.Jc, Jc.Jc, Jr.res, Jc.res
  /// gradient: (3 * batch * K, M, M): model, d/drow, d/dcol far fields;
  /// annealing: ((kAnnealTrials + 1) * batch * K, M, M): trial exit waves, then the current ones.
  CView3 m_work;

  // Annealing.
  long m_anneal_step = 0;  ///< steps taken (the radius and the directions follow from it)
  CView3 m_spectrum;       ///< (K, M, M): raw DFT of the probe modes, made once per step
  bool m_spectrum_ready = false;
  View1<int> m_trial_row, m_trial_col;               ///< (batch * trials): patch origins (local)
  View2<double> m_trial_frac;                        ///< (batch * trials, 2): sub-pixel fractions (row, col)
  View2<cfloat> m_trial_ramp_row, m_trial_ramp_col;  ///< (batch * trials, M): sub-pixel shift ramps
  View1<double> m_trial_cost;  ///< (batch * (trials + 1)): misfit of each trial, then of each current position
  std::vector<double> m_move_row, m_move_col;  ///< per frame, the chosen move [px]
  std::vector<char> m_moved;                   ///< per frame: trials were evaluated (informed)
  double m_misfit = 0;  ///< annealing: the misfits at the current positions since reset(), this rank's frames
  RView2 m_background;  ///< (M, M) detector background, or empty
};

/// Annealing steps of the position gate's test.
inline constexpr int kGateSteps = 8;

/// The position gate (EngineOptions::position_gate), called by an engine
/// where it would first move the positions. If state.position_verdict is
/// already set (an earlier engine of the chain, or a checkpoint), returns
/// whether it says refine. Otherwise tests the positions with
/// refiner.search(state, kGateSteps): if the misfit drops by more than
/// opt.position_gate, the verdict is +1 and the moved positions stay;
/// otherwise it is -1 and the positions, and the workspace's patches and
/// shifted probes, go back to where they were. Collective; the verdict is
/// the same on every rank. Returns whether the engine refines positions.
bool gate_positions(PositionRefiner& refiner, Workspace& ws, ReconState& state, const EngineOptions& opt);

}  // namespace ptycho
