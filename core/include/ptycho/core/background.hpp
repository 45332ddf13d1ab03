#pragma once
/// The detector background: an optional additive term of the forward model,
///
///     I_j(q) = sum_k |F{P_k O}|^2 + b(q),    b >= 0, the same for every frame,
///
/// either one constant or one value per detector pixel, refined from the data
/// (dark counts, stray and diffuse scattering, a detector offset).
///
/// How the engines use it: b is an (M, M) view in ReconState, so it travels
/// along a chain and into checkpoints. An engine whose option says
/// BackgroundMode::none ignores it: its kernels are the ones without a
/// background, compiled apart (a `bool Bg` template parameter), and the calls
/// below do nothing. Otherwise every engine takes I + b for the model
/// intensity I in its data term: the Poisson and amplitude likelihoods of ML
/// (cost, gradient, line search) and LSQ-ML, and the modulus constraint of
/// DM, RAAR, sDR and the PIE family, whose factor sqrt(y / I) becomes
/// sqrt(y / (I + b)). That constraint gives the sample's far field the
/// intensity y I / (I + b): the counts split between sample and background
/// in proportion to the model (the expectation step of EM for a sum of
/// Poisson sources). The hard projection onto sqrt(max(y - b, 0)) was tried
/// too: with DM it lets b run away (DM's overlap-projected far field lacks
/// power at high q on noisy data, b takes it, the target drops, and so on),
/// and RAAR and the PIE family do as well or better with the split. The
/// reported cost is always that of the model with the background.
///
/// How b is refined: the engine's row kernels write the model intensities
/// I_j (without b) of a batch of frames into model(); accumulate() folds the
/// batch into per-pixel sums over frames (valid pixels only); update() sums
/// them over ranks (in double, through the Collective) and takes one Fisher
/// scoring step of the Poisson likelihood in b, then clamps at 0:
///
///     b <- max(0, b - G / H),   G = sum_j (1 - y_j / t_j),   H = sum_j 1 / t_j,
///
/// t_j = max(I_j + b, kIntensityFloor): G is the slope of the Poisson cost
/// sum_j (t_j - y_j log t_j) in b, H its expected curvature. The constant
/// sums G and H over the valid pixels. H weights each pixel by the inverse
/// of its variance, so the bright pixels near the centre, whose model errors
/// are large in counts, barely move a constant background (a plain mean of
/// y - I would be ruled by them); and from b = 0 over pixels the model
/// leaves dark, one step lands near the mean count there. All engines use
/// this Poisson step: the amplitude likelihood's own step is biased low at a
/// few counts ((E sqrt y)^2 < E y: -11% at 3 photons).
///
/// Per pixel, b is hardly determined where the sample's far field is bright
/// (its noise there is that of I), so a weak prior pulls each pixel towards
/// the information-weighted mean of b: its weight is 2% of the mean pixel's
/// information H. Dark pixels keep their own value; bright ones take the
/// mean.
///
/// The step is taken once per iteration, with the model intensities of that
/// iteration's object and probe: alternating refinement, from the first
/// iteration on.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/local_scan.hpp"

#include <string>

namespace ptycho {

enum class BackgroundMode { none, constant, per_pixel };

/// "none", "constant" or "pixel" (as on the command line); throws InputError otherwise.
BackgroundMode parse_background_mode(const std::string& text);
/// The command-line spelling of `mode`.
const char* background_mode_name(BackgroundMode mode);

/// The mean of `background` over the valid pixels of `valid` (both (M, M)); 0 if empty.
double background_mean(const RView2& background, const RView2& valid);

/// One engine's refinement of the background in `state.background` (see the top of the file).
class Background {
 public:
  /// Makes `state.background` (zeros) if it is empty and the mode is not none.
  /// `batch`: the most frames accumulate() takes at a time.
  Background(BackgroundMode mode, const LocalScan& scan, int batch, ReconState& state);

  BackgroundMode mode() const { return m_mode; }
  bool enabled() const { return m_mode != BackgroundMode::none; }
  /// b (M, M), to be added to the model intensity (empty when not enabled).
  const RView2& values() const { return m_b; }
  /// (batch, M, M): an engine's kernel writes frame first + i's model intensity,
  /// without b, into model()(i) before accumulate(first, count).
  const RView3& model() const { return m_model; }

  /// Clears the sums (start of an iteration). Does nothing without a background.
  void reset();
  /// Adds frames first..first+count (local indices), whose model intensities
  /// are in model(). Does nothing without a background.
  void accumulate(long first, long count);
  /// Sums over ranks and moves b by one scoring step (collective). Does
  /// nothing without a background.
  void update(const Collective& coll);
  /// The mean of b over valid pixels after the last update.
  double mean() const { return m_mean; }

 private:
  BackgroundMode m_mode;
  const LocalScan& m_scan;
  RView2 m_b;
  RView3 m_model;
  View2<double> m_slope, m_curvature;  ///< G and H per pixel, this rank's frames
  double m_mean = 0;
};

}  // namespace ptycho
