#pragma once
/// A simulated scan (CXI) and its ground truth, with the model mismatches of
/// the blind benchmark tier: what `ptycho simulate` and the Python module's
/// simulate() write.
#include "ptycho/core/simulate.hpp"

#include <string>

namespace ptycho::jobs {

/// Everything `ptycho simulate` can be told (the options' names in comments).
struct SimulateJob {
  sim::SimulationOptions opt;               ///< sizes, step, photons, errors, energy, pixel size, seed, background
  std::string scan = "fermat";              ///< --scan: fermat, raster or concentric
  std::string output;                       ///< -o: the scan (CXI)
  std::string truth;                        ///< --truth: the ground truth (HDF5); empty: none
  std::string amplitude_png;                ///< --amplitude-image; empty: a Siemens star
  std::string phase_png;                    ///< --phase-image; empty: the rings pattern
  std::string mask;                         ///< --mask: empty or "beamstop"
  std::string background_profile = "flat";  ///< --background-profile: flat or radial
};

/// Simulates and writes the files (serial). Checks every option and path,
/// and the memory it needs, first; throws InputError naming the option.
/// Returns the summary `ptycho simulate` prints (lines ending in newlines).
std::string simulate_job(SimulateJob job);

}  // namespace ptycho::jobs
