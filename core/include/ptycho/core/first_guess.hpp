#pragma once
/// The first guess of a reconstruction: the probe guessed from the data when
/// a file has none, its scaling to the counts, and the probe modes a
/// reconstruction starts from. Host arrays; one rank's arithmetic (the sums
/// over ranks that make a mean pattern happen in io/, before these).
#include "ptycho/core/types.hpp"

#include <vector>

namespace ptycho {

/// The power of a probe, sum |P|^2 over its pixels [counts], summed in double.
double probe_power(const HostCView2& probe);

/// Scales `probe` (M, M) in place so that sum |P|^2 = `power` [counts]: every
/// pixel is multiplied by float(sqrt(power / probe_power(probe))). Throws
/// ptycho::Error if the probe has no power.
void scale_probe_to_power(const HostCView2& probe, double power);

/// A probe guess from the mean diffraction pattern `mean_frame` (M * M
/// values, row-major, counts per pixel, zero frequency at the centre): the
/// inverse centred unitary DFT of sqrt(max(mean_frame, 0)) with zero phase,
/// scaled so that sum |P|^2 = `power` [counts]. Deterministic: it plans its
/// transform with FFTW_ESTIMATE, the same algorithm on every rank and run.
/// Throws ptycho::Error if `mean_frame` does not hold M * M values or has
/// no positive one.
HostCView2 probe_from_mean_pattern(const std::vector<double>& mean_frame, int frame_size, double power);

/// Mean distance from each position to its nearest neighbour [object pixels]
/// (0 for fewer than two positions).
double mean_nearest_step(const std::vector<Position>& positions);

/// Diameter of the disc about the probe's intensity centroid that holds
/// `fraction` of its power [pixels]; 0 for a probe without power.
double probe_diameter(const HostCView2& probe, double fraction);

/// How wide an estimated probe is made: this many mean nearest steps, the
/// diameter holding 90 % of its power (an overlap of 1 - 1/3, about what
/// scans are designed for).
inline constexpr double kEstimatedProbeSteps = 3.0;

/// The estimate of probe_from_mean_pattern spread to a wider probe: the
/// zero-phase estimate is as compact as its pattern allows (about one scan
/// step across: no overlap, and a reconstruction from it diverges), so a
/// defocus is added, a phase c (q / q_max)^2 on its far field, with c the
/// smallest that makes the 90 % diameter `diameter_px` (bisection; at most
/// 0.75 M). The far-field amplitude, hence the mean pattern, is unchanged.
/// Returns a copy; unchanged if the probe is already that wide. `c_out`,
/// if given, receives c.
HostCView2 spread_probe(const HostCView2& probe, double diameter_px, double* c_out = nullptr);

/// The share of the guess's power each further probe mode starts with.
inline constexpr double kExtraModePower = 0.05;

/// The probe modes (K, M, M) a reconstruction starts from: mode 0 is
/// `guess` (M, M); modes 1 and 2 are its gradient along the columns and the
/// rows (central differences), the first-order change of a probe shifted
/// sideways, which is what a source of finite size (partial coherence)
/// adds; modes 3 and up are the guess times a phase ramp of k cycles across
/// the frame. Each further mode carries kExtraModePower of the guess's
/// power: enough that the engines can grow it to the share partial
/// coherence takes (the gradient of a mode's power is proportional to the
/// mode). Refinement makes them orthogonal. `num_modes` >= 1.
HostCView3 probe_modes_from_guess(const HostCView2& guess, int num_modes);

}  // namespace ptycho
