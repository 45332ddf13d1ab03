// ptycho reconstruct: parses the settings (a scan or a TOML job file, and
// the options, which override the file) and runs the job through the library
// (ptycho/jobs/job.hpp). Nothing else happens here.
#include "commands.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/jobs/job.hpp"
#include "ptycho/jobs/settings.hpp"

#include <csignal>
#include <memory>
#include <string>

namespace ptycho::jobs {

namespace {

/// The command line as parsed: the positional argument (a scan or a job
/// file) and every option, bound into a job of its own.
struct ReconstructArgs {
  std::string scan_or_job;
  ReconstructJob cli;
  double iteration_delay = 0;  ///< testing aid: seconds to sleep after every iteration
};

/// The signal that asked the run to stop (0: none). Set by the handler,
/// polled after every iteration.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

namespace {

/// The job to run: the job file's settings (if the positional argument is
/// one) with every option given on the command line on top, completed and
/// checked (complete_job).
ReconstructJob assemble_job(const ReconstructArgs& a, const CLI::App& app) {
  ReconstructJob job;
  if (is_job_file(a.scan_or_job)) {
    job = read_job_file(a.scan_or_job);
    PTYCHO_INPUT_ERROR_IF(!job.origin.count("input"),
                          a.scan_or_job << ": no 'input' key: the job file must name the scan (input = \"scan.cxi\")");
  } else {
    job.input = a.scan_or_job;
    const CLI::Option* input = app.get_option_no_throw("--input");
    PTYCHO_INPUT_ERROR_IF(input && input->count() > 0,
                          "--input: the scan is already given (" << a.scan_or_job
                                                                 << "); --input overrides a job file's input");
  }
  for (const auto& key : job_file_keys()) {
    const CLI::Option* option = app.get_option_no_throw(option_name(key));
    if (option && option->count() > 0) copy_setting(key, a.cli, job);
  }
  complete_job(job);
  return job;
}

}  // namespace

Command add_reconstruct_command(CLI::App& app) {
  auto a = std::make_shared<ReconstructArgs>();
  Command c;
  c.app = app.add_subcommand("reconstruct",
                             "Reconstruct object and probe from a scan (CXI, PtyPy .ptyd, fold_slice, ptychodus) or a TOML "
                             "job file (run under mpirun -n R)");
  c.app
      ->add_option("input", a->scan_or_job,
                   "the scan (CXI, .ptyd, fold_slice _dp/_para, ptychodus diffraction.h5), or a job file (TOML) "
                   "whose keys are these options' long names with _ for -; options given here override the file")
      ->required()
      ->check(CLI::ExistingFile);
  add_settings_options(*c.app, a->cli);  // one option per setting, from the settings table
  c.app
      ->add_option("--iteration-delay", a->iteration_delay,
                   "testing aid: sleep this many seconds after every iteration, so that tests can preempt a "
                   "short run in mid-flight")
      ->check(CLI::NonNegativeNumber);
  c.run = [a, app = c.app](MPI_Comm world) {
    const ReconstructJob job = assemble_job(*a, *app);
    JobHooks hooks;
    hooks.command_line = command_line();
    hooks.iteration_delay = a->iteration_delay;
    hooks.stop_requested = [] { return g_stop_signal != 0; };
    hooks.stop_reason = [] {
      switch (int(g_stop_signal)) {
        case SIGTERM: return std::string("SIGTERM");
        case SIGUSR1: return std::string("SIGUSR1");
        default: return std::string("a signal");
      }
    };
    return run_job(world, job, hooks);
  };
  return c;
}

}  // namespace ptycho::jobs
