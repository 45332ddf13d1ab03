/// Fuzz target: job files (jobs/lib/settings.cpp). The input is the text of
/// a job file; it goes through read_job_file, read_slurm_settings and
/// is_job_file, as `ptycho reconstruct` and `ptycho submit` would read it.
/// A ptycho::Error (InputError: a malformed file, unknown key, bad value) is
/// the expected rejection; anything else is a bug.
#include "fuzz_target.hpp"
#include "ptycho/jobs/settings.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/parallel/driver.hpp"

#include <cstdio>
#include <cstdlib>

using ptycho::fuzz::Outcome;

extern "C" int LLVMFuzzerInitialize(int*, char***) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = ptycho::fuzz::scratch_path("job.toml");
  ptycho::fuzz::write_file(path, data, size);
  bool rejected = false;
  try {
    const ptycho::jobs::ReconstructJob job = ptycho::jobs::read_job_file(path);
    // What `ptycho reconstruct` does next with a job it read.
    ptycho::jobs::check_settings(job);
    (void)ptycho::jobs::to_json(job).dump();
    // An accepted engine chain runs each engine a whole number >= 0 of times.
    for (const auto& e : ptycho::parse_chain(job.engines, ptycho::jobs::engine_base(job)))
      if (e.iterations < 0) {
        std::fprintf(stderr, "fuzz_job_file: accepted engines = \"%s\": %s runs %d iterations\n",
                     job.engines.c_str(), e.name.c_str(), e.iterations);
        std::abort();
      }
  } catch (const ptycho::Error&) {
    rejected = true;
  }
  try {
    const ptycho::jobs::SlurmSettings slurm = ptycho::jobs::read_slurm_settings(path);
    // read_slurm_settings promises these.
    if (slurm.nodes < 1 || slurm.tasks < slurm.nodes || slurm.signal_seconds < 1) {
      std::fprintf(stderr, "fuzz_job_file: read_slurm_settings accepted nodes=%d tasks=%d signal_seconds=%d\n",
                   slurm.nodes, slurm.tasks, slurm.signal_seconds);
      std::abort();
    }
  } catch (const ptycho::Error&) {
    rejected = true;
  }
  // A .toml file is always a job file, whatever it holds.
  if (!ptycho::jobs::is_job_file(path)) {
    std::fprintf(stderr, "fuzz_job_file: is_job_file(%s) is false\n", path.c_str());
    std::abort();
  }
  ptycho::fuzz::last_outcome = rejected ? Outcome::rejected : Outcome::accepted;
  return 0;
}
