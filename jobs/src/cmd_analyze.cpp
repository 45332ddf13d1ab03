// ptycho analyze: whole-object analysis of a result on the distributed object
// (ptycho/jobs/analysis.hpp).
//
//   mpirun -n R ptycho analyze RESULT.h5 [--frc RESULT2.h5] [--remove-ramp] [--unwrap]
//                                        [--filter lowpass:F|highpass:F|bandpass:F1:F2[:WIDTH]]
//                                        [--previews DIR]
#include "commands.hpp"
#include "ptycho/jobs/analysis.hpp"

#include <memory>

namespace ptycho::jobs {

Command add_analyze_command(CLI::App& app) {
  auto opt = std::make_shared<AnalyzeOptions>();
  auto filter = std::make_shared<std::string>();
  Command c;
  c.app = app.add_subcommand(
      "analyze",
      "Resolution by FRC, phase-ramp removal, phase unwrapping and Fourier filters on a result's object, "
      "distributed over the ranks (FFTW-MPI); adds the outputs to the result, never changes its object");
  c.app->add_option("result", opt->result, "the result (HDF5, the result contract); analysis datasets are added to it")
      ->required()
      ->check(CLI::ExistingFile);
  c.app
      ->add_option("--frc", opt->frc_with,
                   "a second, independent result on the same grid (e.g. the other half of `reconstruct --halves`): "
                   "the Fourier ring correlation, the resolution at 1/2 bit and 1/7, frc.png")
      ->check(CLI::ExistingFile);
  c.app->add_flag("--remove-ramp", opt->remove_ramp,
                  "remove the linear phase ramp and the phase offset, fitted over the scanned region");
  c.app->add_flag("--unwrap", opt->unwrap,
                  "unwrap the phase (least squares through DCTs): /entry_1/analysis_1/phase_unwrapped");
  c.app->add_option("--filter", *filter,
                    "a radial Fourier filter: lowpass:F, highpass:F or bandpass:F1:F2, each with an optional "
                    ":WIDTH of its cosine edge; frequencies in cycles per pixel (Nyquist 0.5)");
  c.app->add_option("--previews", opt->previews,
                    "folder for the PNGs and analysis.json (default: RESULT-stem_analysis beside the result)");
  c.run = [opt, filter](MPI_Comm world) -> int {
    if (!filter->empty()) opt->filter = parse_fourier_filter(*filter, "--filter");
    return run_analyze(world, *opt);
  };
  return c;
}

}  // namespace ptycho::jobs
