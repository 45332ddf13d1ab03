#pragma once
/// The subcommands of the ptycho program. Each add_*_command registers its
/// options on `app` and returns the function that runs it once parsed.
#include <CLI/CLI.hpp>
#include <mpi.h>

#include <functional>
#include <string>

namespace ptycho::jobs {

/// Runs a parsed subcommand on `world`; returns the process exit code.
using CommandRun = std::function<int(MPI_Comm world)>;

struct Command {
  CLI::App* app = nullptr;
  CommandRun run;
};

Command add_simulate_command(CLI::App& app);
Command add_info_command(CLI::App& app);
Command add_evaluate_command(CLI::App& app);
Command add_reconstruct_command(CLI::App& app);
Command add_submit_command(CLI::App& app);
Command add_train_command(CLI::App& app);
Command add_analyze_command(CLI::App& app);
Command add_convert_command(CLI::App& app);

/// SIGTERM and SIGUSR1 ask `ptycho reconstruct` to finish its iteration,
/// write a checkpoint and exit with code 75. main() installs the handlers
/// before MPI starts when the subcommand is reconstruct, so a signal that
/// arrives while the data are read is not lost.
void install_stop_handlers();

/// The whole command line, for provenance in result files.
const std::string& command_line();

}  // namespace ptycho::jobs
