// ptycho simulate: a simulated scan (CXI) and its ground truth, with the
// model mismatches of the blind benchmark tier (ptycho/jobs/simulate.hpp).
#include "commands.hpp"
#include "ptycho/jobs/simulate.hpp"

#include <cstdio>
#include <memory>

namespace ptycho::jobs {

Command add_simulate_command(CLI::App& app) {
  auto a = std::make_shared<SimulateJob>();
  auto& o = a->opt;
  Command c;
  c.app = app.add_subcommand("simulate", "Simulate a far-field ptychographic scan and its ground truth");
  c.app->add_option("-o,--output", a->output, "scan to write (CXI)")->required();
  c.app->add_option("--truth", a->truth, "ground truth to write (HDF5, the layout of ptybench's *_truth.h5)");
  c.app->add_option("--object-size", o.object_size, "object side N [px]")->capture_default_str();
  c.app->add_option("--probe-size", o.probe_size, "frame and probe side M [px]")->capture_default_str();
  c.app->add_option("--step", o.step, "mean scan step [px]")->capture_default_str();
  c.app->add_option("--photons", o.photons, "photons per frame; 0 = noiseless (intensities scaled as for 1e6)")
      ->capture_default_str();
  c.app->add_option("--seed", o.seed, "random seed")->capture_default_str();
  c.app->add_option("--probe-error", o.probe_error_pct, "probe error: defocus giving this relative L2 change [%]")
      ->capture_default_str();
  c.app->add_option("--position-error", o.position_error_nm, "RMS position error per axis [nm]")
      ->capture_default_str();
  c.app->add_option("--partial-coherence", o.partial_coherence_nm, "Gaussian blur of the illumination [nm]")
      ->capture_default_str();
  c.app->add_option("--scan", a->scan, "scan pattern: fermat, raster or concentric")->capture_default_str();
  c.app->add_option("--energy", o.energy_kev, "photon energy [keV]")->capture_default_str();
  c.app->add_option("--pixel-size", o.object_pixel_m, "object pixel size [m] (sets the distance)")
      ->capture_default_str();
  c.app->add_option("--amplitude-image", a->amplitude_png, "PNG for the object amplitude (default: Siemens star)");
  c.app->add_option("--phase-image", a->phase_png, "PNG for the object phase (default: rings pattern)");
  c.app->add_option("--mask", a->mask, "detector mask: 'beamstop' (a beam stop and dead pixels)");
  c.app
      ->add_option("--background", o.background,
                   "detector background added to every frame before the noise [photons per pixel, mean]")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c.app
      ->add_option("--background-profile", a->background_profile,
                   "shape of the background: flat, or radial (smooth, about 3x brighter at the centre than in the "
                   "corners)")
      ->capture_default_str();
  c.run = [a](MPI_Comm world) {
    int rank = 0;
    MPI_Comm_rank(world, &rank);
    if (rank == 0) std::fputs(simulate_job(*a).c_str(), stdout);  // a serial job: rank 0 writes both files
    return 0;
  };
  return c;
}

}  // namespace ptycho::jobs
