// ptycho: the command-line program. MPI_COMM_WORLD appears here only.
#include "commands.hpp"
#include "ptycho/core/error.hpp"

#include <Kokkos_Core.hpp>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

namespace ptycho::jobs {

namespace {
std::string g_command_line;
}
const std::string& command_line() { return g_command_line; }

}  // namespace ptycho::jobs

int main(int argc, char** argv) {
  using namespace ptycho::jobs;
  for (int i = 0; i < argc; ++i) g_command_line += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "reconstruct") install_stop_handlers();
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  setenv("KOKKOS_DISABLE_WARNINGS", "1", 0);
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
                                  add_reconstruct_command(app), add_submit_command(app)};
    try {
      app.parse(static_cast<int>(program_args.size()), program_args.data());
    } catch (const CLI::ParseError& e) {
      code = rank == 0 ? app.exit(e) : e.get_exit_code();
      commands.clear();
    }
    for (auto& c : commands) {
      if (!c.app->parsed()) continue;
      try {
        code = c.run(MPI_COMM_WORLD);
      } catch (const ptycho::InputError& e) {
        std::cerr << "ptycho: error: " << (size > 1 ? "[rank " + std::to_string(rank) + "] " : "") << e.what()
                  << std::endl;
        if (size > 1) MPI_Abort(MPI_COMM_WORLD, 2);
        code = 2;
      } catch (const std::exception& e) {
        std::cerr << "ptycho: internal error: " << (size > 1 ? "[rank " + std::to_string(rank) + "] " : "")
                  << e.what() << std::endl;
        if (size > 1) MPI_Abort(MPI_COMM_WORLD, 3);
        code = 3;
      }
    }
  }
  MPI_Finalize();
  return code;
}
