#pragma once
/// Reconstruction engines. Each engine works on one rank's local state (a
/// tile with its halo, the local frames and positions, the shared probe) and
/// reaches other ranks only through a Collective: numerators and
/// denominators are summed over halos and ranks, then divided once. A run on
/// one rank and on N ranks therefore give the same object up to rounding.
#include "ptycho/core/background.hpp"
#include "ptycho/core/collective.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/state_archive.hpp"

#include <memory>
#include <string>
#include <vector>

namespace ptycho {

enum class Likelihood { poisson, gaussian };

/// How position refinement moves a frame: a Gauss-Newton step on the
/// amplitudes (`gradient`), or the best of a few trial shifts of a shrinking
/// radius (`annealing`, Maiden et al. 2012: a search that needs no derivative
/// of the misfit). See core/src/position_refine.hpp.
enum class PositionMethod { gradient, annealing };

/// Options of one engine in a chain. Defaults are what a beamline user would
/// want; every field can be set from the command line.
struct EngineOptions {
  std::string name = "ml";     ///< dm, raar, sdr, epie, rpie, mpie, ml, lsqml, nn
  int iterations = 100;        ///< nn: always 1 (the network's guess is one step)
  /// nn: the model file (learned/README.md); the chain item `nn:MODEL` sets it.
  /// Empty: the shipped default model for the frame size (jobs/ fills it in).
  std::string model;
  /// nn: steps of physics-aware fine-tuning on this scan before the guess
  /// (learned/README.md, "Fine-tuning"): Adam on the likelihood of the
  /// frames under the network's patches, no ground truth. 0: off.
  int tune_steps = 0;
  double tune_rate = 1e-4;  ///< nn: Adam's step size for the fine-tuning
  std::string tuned_model;  ///< nn: write the fine-tuned network to this model file (empty: not written)
  /// nn: the network's output averaged over this many of the square's
  /// symmetries (1, 2, 4 or 8: identity, flips, transposes; the inputs
  /// transformed, the outputs transformed back). 1: one pass.
  int flips = 1;
  bool refine_probe = false;
  int probe_hold = 5;          ///< iterations of this engine before the probe is refined
  bool refine_positions = false;  ///< DM, RAAR and ML: Gauss-Newton position refinement
  int position_hold = 10;      ///< iterations of this engine before positions are refined
  double max_position_step = 0.5;   ///< largest position change per iteration [px]
  double max_position_shift = 3.0;   ///< largest distance from the engine's starting position, per axis [px]
                                     ///< (the distributed driver sizes its halos from it)
  double position_momentum = 0.0;    ///< weight of the previous position step in the next
  bool fix_affine = false;     ///< position refinement keeps the scan's global affine geometry (scale, rotation, shear)
  PositionMethod position_method = PositionMethod::gradient;  ///< annealing: trial radius starts at max_position_step
  /// The position gate (0: off). When this engine would first move the
  /// positions and no engine before it has tested them, it first tests them
  /// (position_refine.hpp, gate_positions): kGateSteps annealing steps on the
  /// frozen object and probe. If they lower the frames' misfit by more than
  /// this fraction, the positions are wrong: they keep the moves and are
  /// refined from then on; otherwise they go back to where they were and no
  /// engine of the chain refines them (ReconState::position_verdict).
  /// Needs position_method annealing.
  double position_gate = 0.0;
  double beta = 0.75;          ///< RAAR / sDR relaxation
  double sigma = 0.5;          ///< sDR: relaxed Fourier reflection (0: alternating projections, 1: difference map;
                               ///< on noisy data the sequential update diverges above about 0.8)
  double tau = 1.0;            ///< sDR: relaxed modulus constraint (1: full projection)
  double sdr_step = 0.9;       ///< sDR: object step (blend of local |P|^2 and max |P|^2)
  double object_step = 1.0;    ///< PIE family: alpha
  double probe_step = 1.0;     ///< PIE family: beta
  double rpie_alpha = 0.1;     ///< rPIE/mPIE regularisation (Maiden 2017)
  double momentum = 0.7;       ///< mPIE eta
  Likelihood likelihood = Likelihood::poisson;  ///< ML and LSQ-ML
  BackgroundMode background = BackgroundMode::none;  ///< detector background refined with the object (background.hpp)
  double smoothness = 0.0;     ///< ML: weight of a Gaussian smoothness prior, relative to the data term
  /// ML: weight of a total-variation prior, sum over grid edges of
  /// sqrt(|O_p - O_q|^2 + eps^2), relative to the data term: it keeps edges
  /// and flattens noise (piecewise-constant objects).
  double tv = 0.0;
  double tv_epsilon = 3e-3;    ///< ML: the TV prior's smoothing eps (object units; below it, TV is quadratic)
  /// ML: weight of a pull toward the object the engine starts from (the
  /// learned guess of an `nn` stage before it), relative to the data term,
  /// per pixel 1 / (1 + illumination / its mean): it keeps the guess where the
  /// data say little (between sparse probe spots) and yields where they say much.
  double proximal = 0.0;
  int batches = 8;             ///< LSQ-ML mini-batches per iteration
  int resync_every = 20;       ///< ML: recompute far fields exactly every this many iterations
  /// Low-memory mode: keep no far fields per frame where the engine can make
  /// them again. ML then recomputes Psi = DFT(P~ O) and its direction's far
  /// fields batch by batch in every pass (about twice the transforms of the
  /// kept far fields), so it holds one batch of them instead of two sets of
  /// n K M^2 complex64.
  bool low_memory = false;
  /// Low-memory mode, ML: bytes this rank may still spend on far fields. ML
  /// keeps Psi and dPsi of as many whole batches of its first frames as fit
  /// (ml_kept_far_fields, memory.hpp) and makes the others batch by batch.
  /// 0 (the default, and what `--low-memory` asks for): none kept. The job
  /// layer sets it when it switches the low-memory mode on by itself.
  double far_field_budget = 0.0;
  double regularisation = 1e-3;  ///< relative damping of object/probe divisions
  unsigned seed = 1;           ///< PIE order, LSQ-ML batches
};

/// One engine: `iterate` performs one iteration on `state` and returns the
/// cost over all ranks (per valid pixel). Engines keep their private state
/// (exit waves, conjugate directions) between iterations.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  virtual double iterate(ReconState& state) = 0;
  /// Saves or restores (ar.loading()) the engine's private state: what,
  /// beyond the ReconState it was built from, it needs to go on exactly as
  /// if never stopped (iteration counter, exit waves, conjugate directions).
  /// Restoring happens right after construction, on the restored state.
  virtual void checkpoint(StateArchive& ar) = 0;
};

/// Makes the engine `opt.name`, bound to `ws` and `coll` (both outlive it),
/// starting from `state` (object, probe and positions already set, halos in sync).
std::unique_ptr<Engine> make_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                    ReconState& state);

/// The iterative engines make_engine accepts.
const std::vector<std::string>& engine_names();

/// The learned first guess, "nn", which make_engine also accepts: it is made
/// by the factory set with set_learned_engine_factory (the learned plugin,
/// learned/README.md); without one, make_engine says what is missing.
inline constexpr const char* kLearnedEngine = "nn";

/// Makes the nn engine; set by whoever loaded the learned plugin.
using EngineFactory = std::unique_ptr<Engine> (*)(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                                  ReconState& state);
void set_learned_engine_factory(EngineFactory factory);

/// What an engine can refine besides the object. An engine asked for
/// something it cannot do would ignore it silently: callers check first
/// (parse_chain in parallel/ does).
struct EngineSupport {
  bool positions = false;   ///< EngineOptions::refine_positions
  bool probe = false;       ///< EngineOptions::refine_probe
  bool background = false;  ///< EngineOptions::background other than none
};

/// What engine `name` (one of engine_names()) supports. nn refines nothing:
/// it replaces the object with the network's guess, and the engines after
/// it in the chain do the refining. Throws InputError for an unknown name.
EngineSupport engine_support(const std::string& name);

}  // namespace ptycho
