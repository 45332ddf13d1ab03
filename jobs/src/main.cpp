// ptycho: the command-line program. MPI_COMM_WORLD appears here only.
#include "commands.hpp"
#include "ptycho/core/error.hpp"

#include <Kokkos_Core.hpp>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace ptycho::jobs {

namespace {
std::string g_command_line;
}
const std::string& command_line() { return g_command_line; }

namespace {

/// How a command failed on this rank: exit code (0: it did not) and the line to print.
struct CommandFailure {
  int code = 0;
  std::string line;
};

/// How long a rank that failed waits for the others to finish or fail too
/// before it takes them for stuck and aborts the job.
constexpr double kAgreementSeconds = 10.0;

/// After a command, on every rank (collective over `comm`, a communicator of
/// its own): the ranks find out together whether any failed. If every rank
/// gets here, the lowest rank that failed prints its line alone (every rank
/// usually knows the same input error) and all return the largest exit
/// code, to leave through MPI_Finalize. A rank that failed and does not hear
/// from all others within kAgreementSeconds (they are stuck in a collective
/// it left) prints its line with its rank and calls MPI_Abort.
int agree_on_failure(MPI_Comm comm, const CommandFailure& failure, int code) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) {
    if (failure.code == 0) return code;
    std::cerr << failure.line << std::endl;
    return failure.code;
  }
  // [size - lowest failed rank (0: none), largest exit code], both by MPI_MAX.
  int mine[2] = {failure.code ? size - rank : 0, failure.code ? failure.code : code};
  int all[2] = {0, 0};
  MPI_Request request;
  MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, comm, &request);
  int done = 0;
  if (failure.code == 0) {
    MPI_Wait(&request, MPI_STATUS_IGNORE);
    done = 1;
  } else {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(kAgreementSeconds);
    while (!done && std::chrono::steady_clock::now() < until) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (!done) {
    std::cerr << failure.line << " [rank " << rank << "; the other ranks did not stop: aborting]" << std::endl;
    MPI_Abort(MPI_COMM_WORLD, failure.code);
  }
  if (all[0] > 0 && size - all[0] == rank) std::cerr << failure.line << std::endl;
  return all[1];
}

}  // namespace

}  // namespace ptycho::jobs

int main(int argc, char** argv) {
  using namespace ptycho::jobs;
  for (int i = 0; i < argc; ++i) g_command_line += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "reconstruct") install_stop_handlers();
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  setenv("KOKKOS_DISABLE_WARNINGS", "1", 0);
  // Used only by agree_on_failure, so that its collective can never match one of a command's.
  MPI_Comm agreement;
  MPI_Comm_dup(MPI_COMM_WORLD, &agreement);
  int code = 0;
  {
    // Kokkos sees only its prefixed options (it would also answer --help);
    // the program sees the rest.
    std::vector<char*> kokkos_args{argv[0]}, program_args{argv[0]};
    for (int i = 1; i < argc; ++i)
      (std::string(argv[i]).rfind("--kokkos-", 0) == 0 ? kokkos_args : program_args).push_back(argv[i]);
    int kokkos_argc = static_cast<int>(kokkos_args.size());
    Kokkos::ScopeGuard kokkos(kokkos_argc, kokkos_args.data());
    CLI::App app{"ptycho: distributed ptychographic reconstruction"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("ptycho ") + PTYCHO_VERSION);
    std::vector<Command> commands{add_simulate_command(app), add_info_command(app), add_evaluate_command(app),
                                  add_reconstruct_command(app), add_submit_command(app), add_train_command(app),
                                  add_analyze_command(app), add_convert_command(app)};
    // A command line that cannot be parsed: one line, exit 2, like any bad input.
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
      return std::string("ptycho: error: ") + e.what() + " (see --help)\n";
    });
    try {
      app.parse(static_cast<int>(program_args.size()), program_args.data());
    } catch (const CLI::ParseError& e) {
      code = rank == 0 ? app.exit(e) : e.get_exit_code();
      if (code != 0) code = 2;  // --help and --version exit 0
      commands.clear();
    }
    for (auto& c : commands) {
      if (!c.app->parsed()) continue;
      CommandFailure failure;
      try {
        code = c.run(MPI_COMM_WORLD);
      } catch (const ptycho::InputError& e) {
        failure = {2, std::string("ptycho: error: ") + e.what()};
      } catch (const ptycho::NumericalError& e) {
        failure = {4, std::string("ptycho: error: ") + e.what()};
      } catch (const std::exception& e) {
        failure = {3, std::string("ptycho: internal error: ") + e.what()};
      }
      code = agree_on_failure(agreement, failure, code);
    }
  }
  MPI_Comm_free(&agreement);
  MPI_Finalize();
  return code;
}
