#pragma once
/// Simulation of ptychographic scans: probes, objects, scan patterns, noise
/// and the model mismatches of the blind benchmark tier, defined as
/// shared/bench/ptybench.py defines them.
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/types.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ptycho::sim {

/// A defocused zone-plate-like probe (M, M), unit total power: a circular pupil
/// of radius `pupil_radius` [cycles/px] with a defocus phase that spreads the
/// focus to about `spot_radius` px (default M/5), plus a small astigmatism.
HostCView2 zone_plate_probe(int m, double pupil_radius = 0.2, double spot_radius = -1, std::uint64_t seed = 0);

/// A Gaussian probe of standard deviation `sigma` px, unit total power.
HostCView2 gaussian_probe(int m, double sigma);

/// Fresnel-propagates a probe by a defocus written as the quadratic phase
/// exp(i pi dz q^2 M), q in cycles/px (ptybench's `propagate`).
HostCView2 propagate(const HostCView2& probe, double dz);

/// Relative L2 change ||P' - P|| / ||P|| of propagating `probe` by `dz`.
double propagation_change(const HostCView2& probe, double dz);

/// The signed defocus whose propagation changes the probe by `rel_err` in
/// relative L2 norm (bisection, as ptybench's `defocus_for_error`).
double defocus_for_error(const HostCView2& probe, double rel_err);

/// Partial coherence as an incoherent sum over probe offsets: a 5x5 grid over
/// +-2 sigma px, Gaussian weights; returns (25, M, M) modes, each scaled by the
/// square root of its weight. sigma <= 0 gives the probe itself as one mode.
HostCView3 partial_coherence_modes(const HostCView2& probe, double sigma_px);

/// A complex object from amplitude and phase images in [0, 1]:
/// amplitude in [amp_lo, amp_hi], phase in [phase_lo, phase_hi] rad.
HostCView2 object_from_images(const HostRView2& amplitude, const HostRView2& phase, double amp_lo = 0.5,
                              double amp_hi = 1.0, double phase_lo = -M_PI / 3, double phase_hi = 0.0);

/// A Siemens star test pattern (n x n) in [0, 1] with `spokes` spokes.
HostRView2 siemens_star(int n, int spokes = 36);

/// A smooth pattern of overlapping discs and rings in [0, 1], for the phase
/// of the built-in object.
HostRView2 rings_pattern(int n, std::uint64_t seed = 7);

enum class ScanKind { fermat, raster, concentric };
ScanKind parse_scan_kind(const std::string& s);

/// Scan offsets (row, col) around (0, 0), with mean neighbour spacing about
/// `step` px, within a disc of `radius` px. Raster gets a uniform jitter of
/// +-`jitter` x step in each axis.
std::vector<Position> scan_pattern(ScanKind kind, double step, double radius, double jitter = 0.1,
                                   std::uint64_t seed = 0);

/// The detector background of `opt` (M, M): opt.background everywhere, or a
/// smooth radial profile of that mean (see SimulationOptions).
HostRView2 background_profile(int m, double mean, bool radial);

/// Poisson noise of the given seed on expected counts (in place).
void add_poisson_noise(HostRView3& counts, std::uint64_t seed);

/// Options of a simulated scan, with ptybench's defaults.
struct SimulationOptions {
  int object_size = 256;         ///< object is object_size^2 px
  int probe_size = 64;           ///< M
  double step = 9.0;             ///< mean scan step [px]
  double photons = 1e6;          ///< expected photons per frame (unit object); 0 = noiseless
  double probe_error_pct = 0;    ///< signed relative L2 probe change, by defocus [%]
  double position_error_nm = 0;  ///< RMS position error per axis [nm]
  double partial_coherence_nm = 0;  ///< Gaussian blur of the illumination [nm]
  ScanKind scan = ScanKind::fermat;
  std::uint64_t seed = 1;
  double energy_kev = 10.0;
  double detector_pixel_m = 75e-6;
  double object_pixel_m = 10e-9;   ///< sets the distance
  bool beamstop_mask = false;      ///< a beam stop plus dead pixels with garbage counts
  /// Detector background added to the expected counts of every frame before
  /// the noise [photons per pixel and frame, mean over the frame]; 0: none.
  double background = 0;
  /// Its shape: false, the same on every pixel; true, a smooth radial
  /// profile 1 + 2 exp(-2 q^2) (q: distance from the centre over M/2; about
  /// 3x brighter at the centre than in the corners), scaled to that mean.
  bool background_radial = false;
  HostRView2 amplitude_image;      ///< [0,1]; empty: a Siemens star
  HostRView2 phase_image;          ///< [0,1]; empty: the rings pattern
};

/// Checks every number of `opt` against its allowed range; throws InputError
/// naming the option (`--object-size`, ...) and the range.
void check_options(const SimulationOptions& opt);

/// The peak bytes simulate(opt) allocates (an upper bound on the number of
/// frames times their size, plus the object and probe modes), for a check
/// before anything is allocated.
double estimate_bytes(const SimulationOptions& opt);

/// A simulated scan and its ground truth.
struct Simulation {
  DetectorGeometry geometry;
  HostRView3 frames;                    ///< (N, M, M) counts
  View2<std::uint8_t, HostSpace> mask;  ///< (M, M), 1 = invalid; all zero without a mask
  bool has_mask = false;
  HostCView2 nominal_probe;             ///< the probe written to the file, scaled to counts
  HostCView2 object;                    ///< truth object
  HostCView3 probe_modes;               ///< truth modes, scaled to counts
  std::vector<Position> positions;      ///< true probe centres [object px]
  std::vector<Position> nominal_positions;
  double photons_noise = 0;             ///< photons per frame used for noise (0: noiseless)
  HostRView2 background;                ///< (M, M) detector background in the expected counts (zeros: none)
};

/// Noiseless data is scaled as if the beam had this many photons per frame.
constexpr double kNoiselessPhotons = 1e6;

Simulation simulate(const SimulationOptions& opt);

}  // namespace ptycho::sim
