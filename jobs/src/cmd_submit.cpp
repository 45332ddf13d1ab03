// ptycho submit JOB.toml: fills slurm/reconstruct.sbatch from the job file's
// [slurm] table (nodes, tasks, time, partition, account) and submits it with
// sbatch, or prints the command (--dry-run). The job file is checked first,
// as `ptycho reconstruct` would, so a typo fails here and not in the queue.
#include "commands.hpp"
#include "ptycho/jobs/settings.hpp"
#include "ptycho/core/error.hpp"

#include <mpi.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

extern char** environ;

namespace ptycho::jobs {

namespace {

namespace fs = std::filesystem;

struct SubmitArgs {
  std::string job;
  bool dry_run = false;
  std::string script;  ///< the batch template; empty: found next to the program
  SlurmSettings cli;   ///< values given as options (origin says which)
};

/// The folder of this program (from /proc/self/exe), or "" if unknown.
fs::path program_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

fs::path program_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path("ptycho") : exe;
}

/// slurm/reconstruct.sbatch: --script, $PTYCHO_SLURM_DIR, the installed
/// share/ptycho/slurm, or the source tree this program was built from.
fs::path find_script(const std::string& given) {
  if (!given.empty()) {
    PTYCHO_INPUT_ERROR_IF(!fs::is_regular_file(given), "--script: no such file: " << given);
    return fs::absolute(given);
  }
  std::vector<fs::path> candidates;
  if (const char* dir = std::getenv("PTYCHO_SLURM_DIR")) candidates.push_back(fs::path(dir) / "reconstruct.sbatch");
  const fs::path here = program_dir();
  if (!here.empty()) {
    candidates.push_back(here / "../share/ptycho/slurm/reconstruct.sbatch");
  }
#ifdef PTYCHO_SOURCE_SLURM_DIR
  candidates.push_back(fs::path(PTYCHO_SOURCE_SLURM_DIR) / "reconstruct.sbatch");
#endif
  std::string tried;
  for (const fs::path& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return fs::weakly_canonical(c, ec);
    tried += (tried.empty() ? "" : ", ") + c.lexically_normal().string();
  }
  PTYCHO_INPUT_ERROR_IF(true, "cannot find slurm/reconstruct.sbatch (tried " << tried
                                                                             << "); give it with --script PATH");
}

/// `word` quoted for a POSIX shell if it needs to be.
std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%") ==
                           std::string::npos)
    return word;
  std::string q = "'";
  for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs argv (searching PATH) and waits; returns its exit status.
int run_program(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  PTYCHO_INPUT_ERROR_IF(err != 0, argv[0] << ": cannot run it: " << std::strerror(err)
                                          << (err == ENOENT ? " (is SLURM installed? --dry-run prints the command)" : ""));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int run_submit(const SubmitArgs& a, MPI_Comm world) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;
  const std::string job_path = fs::absolute(a.job).lexically_normal().string();
  // The job must be runnable: the same checks as `ptycho reconstruct JOB.toml`.
  ReconstructJob job = read_job_file(job_path);
  PTYCHO_INPUT_ERROR_IF(!job.origin.count("input"),
                        job_path << ": no 'input' key: the job file must name the scan (input = \"scan.cxi\")");
  check_settings(job);
  SlurmSettings s = read_slurm_settings(job_path);
  for (const auto& [key, where] : a.cli.origin) {
    s.origin[key] = where;
    if (key == "nodes") s.nodes = a.cli.nodes;
    if (key == "tasks") s.tasks = a.cli.tasks;
    if (key == "time") s.time = a.cli.time;
    if (key == "partition") s.partition = a.cli.partition;
    if (key == "account") s.account = a.cli.account;
  }
  PTYCHO_INPUT_ERROR_IF(s.tasks < s.nodes,
                        "submit: " << s.tasks << " tasks on " << s.nodes << " nodes: every node needs at least one task");
  const fs::path script = find_script(a.script);
  const std::string stem = fs::path(job_path).stem().string();
  const fs::path log = fs::path(job_path).parent_path() / (stem + "-%j.out");

  std::vector<std::string> cmd = {"sbatch",
                                  "--job-name=ptycho-" + stem,
                                  "--nodes=" + std::to_string(s.nodes),
                                  "--ntasks=" + std::to_string(s.tasks),
                                  "--signal=B:USR1@" + std::to_string(s.signal_seconds),
                                  "--output=" + log.string(),
                                  "--export=ALL,PTYCHO=" + program_path().string()};
  if (!s.time.empty()) cmd.push_back("--time=" + s.time);
  if (!s.partition.empty()) cmd.push_back("--partition=" + s.partition);
  if (!s.account.empty()) cmd.push_back("--account=" + s.account);
  for (const auto& o : s.sbatch_options) cmd.push_back(o);
  cmd.push_back(script.string());
  cmd.push_back(job_path);

  std::string line;
  for (const auto& w : cmd) line += (line.empty() ? "" : " ") + shell_quote(w);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  if (a.dry_run) return 0;
  const int status = run_program(cmd);
  PTYCHO_INPUT_ERROR_IF(status != 0, "sbatch failed (exit " << status << ")");
  return 0;
}

}  // namespace

Command add_submit_command(CLI::App& app) {
  auto a = std::make_shared<SubmitArgs>();
  Command c;
  c.app = app.add_subcommand("submit",
                             "Submit a job file to SLURM: fills slurm/reconstruct.sbatch from its [slurm] table "
                             "(nodes, tasks, time, partition, account) and runs sbatch");
  c.app->add_option("job", a->job, "the job file (TOML)")->required()->check(CLI::ExistingFile);
  c.app->add_flag("--dry-run", a->dry_run, "print the sbatch command, do not run it");
  c.app->add_option("--script", a->script, "the batch template (default: slurm/reconstruct.sbatch)");
  auto origin = [a](const std::string& key) { return [a, key](const auto&) { a->cli.origin[key] = "--" + key; }; };
  c.app->add_option("--nodes", a->cli.nodes, "nodes (overrides slurm.nodes)")
      ->check(CLI::PositiveNumber)
      ->each(origin("nodes"));
  c.app->add_option("--tasks", a->cli.tasks, "MPI ranks in all (overrides slurm.tasks)")
      ->check(CLI::PositiveNumber)
      ->each(origin("tasks"));
  c.app->add_option("--time", a->cli.time, "time limit, e.g. 04:00:00 (overrides slurm.time)")->each(origin("time"));
  c.app->add_option("--partition", a->cli.partition, "partition (overrides slurm.partition)")
      ->each(origin("partition"));
  c.app->add_option("--account", a->cli.account, "account (overrides slurm.account)")->each(origin("account"));
  c.run = [a](MPI_Comm world) { return run_submit(*a, world); };
  return c;
}

}  // namespace ptycho::jobs
