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

/// The probe modes (K, M, M) a reconstruction starts from: mode 0 is
/// `guess` (M, M), and each further mode k is a weak, smooth variation of
/// it, the guess times a tenth of a phase ramp of k cycles across the frame
/// (columns) and one cycle (rows, alternating in sign), so 1 % of its power.
/// Refinement makes them orthogonal. `num_modes` >= 1.
HostCView3 probe_modes_from_guess(const HostCView2& guess, int num_modes);

}  // namespace ptycho
