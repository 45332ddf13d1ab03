#pragma once
/// Incoherent probe modes: orthogonalisation and occupancy, and the model
/// mismatch a reconstruction estimates (probe change, position shifts,
/// partial coherence), as the blind benchmark defines them.
#include "ptycho/core/types.hpp"

#include <vector>

namespace ptycho {

/// Replaces the modes (K, M, M) by the eigenmodes of their mutual coherence
/// (the eigenvectors of the Gram matrix G_kl = <P_k, P_l>), in order of
/// decreasing power; the total power and the incoherent sum of intensities
/// are unchanged. Returns the occupancy of each mode (its share of the power).
std::vector<double> orthogonalize_modes(const HostCView3& modes);

/// Occupancy of each mode (its share of the total power), modes as they are.
std::vector<double> mode_occupancy(const HostCView3& modes);

/// A defocus fitted between two probes (M, M): the dz for which a complex
/// multiple of propagate(nominal, dz) (simulate.hpp: the phase pi dz q^2 M, q
/// in cycles/px) is closest to `probe` in L2.
struct DefocusFit {
  double defocus = 0;   ///< dz
  double change = 0;    ///< ||propagate(nominal, dz) - nominal|| / ||nominal||: the benchmark's probe error
  double residual = 0;  ///< ||probe - c propagate(nominal, dz)|| / ||probe||, c the best complex scale
};

/// Fits the defocus (grid search over +-50 rad of phase at the nominal
/// spectrum's mean q^2, in quarter-radian steps, then golden section).
/// A probe error given as a defocus (the benchmark's blind tier, a
/// focusing optic moved along the beam) is recovered by it without the
/// noise and the coherence blur of the refined probe, which a plain
/// difference counts as change. Throws on probes of different sizes.
DefocusFit fit_defocus(const HostCView2& nominal_probe, const HostCView2& probe);

/// The model mismatch between a reconstruction and the nominal model.
struct Mismatch {
  double probe_error_pct = 0;       ///< the probe change a defocus explains (fit_defocus: its change) [%]
  double probe_residual_pct = 0;    ///< what of the first mode no defocus of the nominal probe explains (fit_defocus) [%]
  double probe_defocus = 0;         ///< that defocus, dz of propagate() (simulate.hpp): phase pi dz q^2 M, q in cycles/px
  double position_error_nm = 0;     ///< RMS per axis of refined - nominal, mean offset removed [nm]
  double partial_coherence_nm = 0;  ///< Gaussian blur width equivalent to the power outside the first mode [nm]
  std::vector<double> occupancy;    ///< share of the power in each mode
};

/// Estimates the mismatch. `modes` (K, M, M) should be orthogonalised;
/// positions in object pixels; `pixel_size_m` the object pixel size.
///
/// Partial coherence: an incoherent sum of copies of the probe shifted by a
/// Gaussian of width sigma (per axis) puts, to first order, the fraction
/// sigma^2 ||grad P||^2 / ||P||^2 of the power outside the first mode; sigma
/// is that relation inverted.
Mismatch estimate_mismatch(const HostCView2& nominal_probe, const HostCView3& modes,
                           const std::vector<Position>& nominal_positions, const std::vector<Position>& positions,
                           double pixel_size_m);

}  // namespace ptycho
