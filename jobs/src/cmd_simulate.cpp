// ptycho simulate: a simulated scan (CXI) and its ground truth, with the
// model mismatches of the blind benchmark tier.
#include "commands.hpp"
#include "memory_check.hpp"
#include "output_paths.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/io/cxi_writer.hpp"
#include "ptycho/io/png.hpp"

#include <cstdio>
#include <memory>

namespace ptycho::jobs {

namespace {

struct SimulateArgs {
  sim::SimulationOptions opt;
  std::string scan = "fermat";
  std::string output;
  std::string truth;
  std::string amplitude_png;
  std::string phase_png;
  std::string mask;
  std::string background_profile = "flat";
};

HostRView2 load_image(const std::string& path, int size, const char* what) {
  auto img = io::read_png(path);
  PTYCHO_INPUT_ERROR_IF(int(img.extent(0)) != size || int(img.extent(1)) != size,
                        path << ": the " << what << " image is " << img.extent(0) << "x" << img.extent(1)
                             << " px; --object-size asks for " << size << "x" << size);
  return img;
}

int run_simulate(SimulateArgs a, MPI_Comm world) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;  // a serial job: rank 0 writes both files
  sim::check_options(a.opt);
  {
    PathPlan plan;
    plan.input(a.amplitude_png, "--amplitude-image");
    plan.input(a.phase_png, "--phase-image");
    plan.output(a.output, "-o/--output");
    plan.output(a.truth, "--truth");
    plan.check();
    plan.create_folders();
  }
  const double need = sim::estimate_bytes(a.opt), have = available_memory_bytes();
  PTYCHO_INPUT_ERROR_IF(have > 0 && need > have,
                        "simulate: a scan of a " << a.opt.object_size << " px object with --step " << a.opt.step
                                                 << " and " << a.opt.probe_size << " px frames needs about "
                                                 << format_bytes(need) << ", and this machine has "
                                                 << format_bytes(have) << " available");
  a.opt.scan = sim::parse_scan_kind(a.scan);
  PTYCHO_INPUT_ERROR_IF(!a.mask.empty() && a.mask != "beamstop", "--mask must be 'beamstop', got '" << a.mask << "'");
  a.opt.beamstop_mask = a.mask == "beamstop";
  PTYCHO_INPUT_ERROR_IF(a.background_profile != "flat" && a.background_profile != "radial",
                        "--background-profile must be 'flat' or 'radial', got '" << a.background_profile << "'");
  a.opt.background_radial = a.background_profile == "radial";
  if (!a.amplitude_png.empty()) a.opt.amplitude_image = load_image(a.amplitude_png, a.opt.object_size, "amplitude");
  if (!a.phase_png.empty()) a.opt.phase_image = load_image(a.phase_png, a.opt.object_size, "phase");
  const sim::Simulation s = sim::simulate(a.opt);

  io::CxiScan cxi;
  cxi.geometry = s.geometry;
  cxi.frames = s.frames;
  cxi.positions_px = s.nominal_positions;
  cxi.probe = s.nominal_probe;
  if (s.has_mask) cxi.mask = s.mask;
  io::write_cxi(a.output, cxi);

  if (!a.truth.empty()) {
    io::TruthData t;
    t.object = s.object;
    t.probe_modes = s.probe_modes;
    t.positions_px = s.positions;
    t.nominal_positions_px = s.nominal_positions;
    t.probe_error_pct = a.opt.probe_error_pct;
    t.position_error_nm = a.opt.position_error_nm;
    t.partial_coherence_nm = a.opt.partial_coherence_nm;
    t.photons_per_frame = a.opt.photons;
    t.scenes = (a.amplitude_png.empty() ? std::string("siemens_star") : a.amplitude_png) + ":" +
               (a.phase_png.empty() ? std::string("rings") : a.phase_png);
    t.pixel_size_m = s.geometry.object_pixel_m();
    if (a.opt.background > 0) t.background = s.background;
    io::write_truth(a.truth, t);
  }
  std::printf("ptycho simulate: %zu frames of %dx%d, object %dx%d px, %s scan, %s", s.positions.size(),
              a.opt.probe_size, a.opt.probe_size, a.opt.object_size, a.opt.object_size, a.scan.c_str(),
              a.opt.photons > 0 ? "Poisson noise" : "noiseless");
  if (a.opt.background > 0)
    std::printf(", %s background of %g photons/pixel", a.background_profile.c_str(), a.opt.background);
  std::printf("\n");
  std::printf("  data:  %s\n", a.output.c_str());
  if (!a.truth.empty()) std::printf("  truth: %s\n", a.truth.c_str());
  return 0;
}

}  // namespace

Command add_simulate_command(CLI::App& app) {
  auto a = std::make_shared<SimulateArgs>();
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
  c.run = [a](MPI_Comm world) { return run_simulate(*a, world); };
  return c;
}

}  // namespace ptycho::jobs
