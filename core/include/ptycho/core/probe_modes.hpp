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

/// The model mismatch between a reconstruction and the nominal model.
struct Mismatch {
  double probe_error_pct = 0;       ///< ||P - c P_nominal|| / ||c P_nominal||, first mode; c matches power and mean phase [%]
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
