#include "ptycho/jobs/simulate.hpp"
#include "ptycho/jobs/memory_check.hpp"
#include "ptycho/jobs/output_paths.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/io/cxi_writer.hpp"
#include "ptycho/io/png.hpp"

#include <cstdio>
#include <memory>
#include <sstream>

namespace ptycho::jobs {

namespace {

HostRView2 load_image(const std::string& path, int size, const char* what) {
  auto img = io::read_png(path);
  PTYCHO_INPUT_ERROR_IF(int(img.extent(0)) != size || int(img.extent(1)) != size,
                        path << ": the " << what << " image is " << img.extent(0) << "x" << img.extent(1)
                             << " px; --object-size asks for " << size << "x" << size);
  return img;
}

}  // namespace

std::string simulate_job(SimulateJob a) {
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
  char line[512];
  std::snprintf(line, sizeof line, "ptycho simulate: %zu frames of %dx%d, object %dx%d px, %s scan, %s",
                s.positions.size(), a.opt.probe_size, a.opt.probe_size, a.opt.object_size, a.opt.object_size,
                a.scan.c_str(), a.opt.photons > 0 ? "Poisson noise" : "noiseless");
  std::ostringstream out;
  out << line;
  if (a.opt.background > 0)
    out << ", " << a.background_profile << " background of " << a.opt.background << " photons/pixel";
  out << "\n  data:  " << a.output << "\n";
  if (!a.truth.empty()) out << "  truth: " << a.truth << "\n";
  return out.str();
}

}  // namespace ptycho::jobs
