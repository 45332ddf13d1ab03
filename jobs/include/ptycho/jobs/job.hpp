#pragma once
/// A reconstruction job: what `ptycho reconstruct` (and so every SLURM batch
/// script) runs, around a ptycho::Reconstruction (reconstruction.hpp):
///   - every path it reads and writes is checked first (PathPlan);
///   - a job whose checkpoint exists resumes from it (a requeued job goes on);
///   - temporary files left by a killed run are removed;
///   - a stop request (SIGTERM, SIGUSR1 in the program) writes a checkpoint
///     and ends the job with kExitStopped;
///   - the blind preset's position trial runs the chain twice and keeps the
///     result with the lower final cost, from memory;
///   - progress lines, previews and the JSON-lines log.
/// The Python module's run_job calls the same function.
#include "ptycho/jobs/settings.hpp"

#include <mpi.h>

#include <functional>
#include <string>

namespace ptycho::jobs {

/// The exit status of a run stopped on request after writing its checkpoint:
/// EX_TEMPFAIL, "try again" (slurm/reconstruct.sbatch requeues on it).
inline constexpr int kExitStopped = 75;

/// What the caller adds to a job.
struct JobHooks {
  std::string command_line;            ///< recorded in the result as provenance
  std::function<bool()> stop_requested;  ///< polled after every iteration (e.g. a signal flag)
  std::function<std::string()> stop_reason;  ///< what asked to stop, for the message ("SIGTERM")
  double iteration_delay = 0;          ///< testing aid: seconds to sleep after every iteration
};

/// Completes a job as `ptycho reconstruct` does once every setting is read:
/// applies the preset, checks every setting (check_settings), and fills in
/// the default output (INPUT-stem_ptycho.h5 in the working folder) and
/// checkpoint (OUTPUT-stem.checkpoint.h5 beside the output).
void complete_job(ReconstructJob& job);

/// Runs `job` on `world` (collective): returns 0, or kExitStopped if it was
/// stopped. Throws InputError (bad settings or input, the same on every
/// rank) or NumericalError.
int run_job(MPI_Comm world, const ReconstructJob& job, const JobHooks& hooks = {});

}  // namespace ptycho::jobs
