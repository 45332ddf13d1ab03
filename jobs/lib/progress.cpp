#include "ptycho/jobs/progress.hpp"

#include "ptycho/core/error.hpp"

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ptycho::jobs {

double resident_megabytes() {
  // /proc/self/statm: size resident shared text lib data dt, in pages.
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long size = 0, resident = 0;
  const int read = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (read != 2) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  return double(resident) * double(page > 0 ? page : 4096) / 1e6;
}

std::string format_seconds(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else
    std::snprintf(buf, sizeof buf, "%.2f h", s / 3600);
  return buf;
}

ProgressReporter::ProgressReporter(MPI_Comm comm, const ProgressOptions& options) : m_comm(comm), m_options(options) {
  PTYCHO_THROW_IF(m_options.every < 1, "ProgressReporter: every must be >= 1, got " << m_options.every);
  if (m_comm.rank() == 0 && !m_options.log_json.empty()) {
    m_log.open(m_options.log_json, std::ios::out | std::ios::trunc);
    PTYCHO_INPUT_ERROR_IF(!m_log, m_options.log_json << ": cannot open the log file for writing");
  }
}

double ProgressReporter::max_memory_mb() {
  const double mine = resident_megabytes();
  double most = 0;
  check_mpi(MPI_Allreduce(&mine, &most, 1, MPI_DOUBLE, MPI_MAX, m_comm.get()), "MPI_Allreduce (memory)");
  m_peak_mb = std::max(m_peak_mb, most);
  return most;
}

void ProgressReporter::log(const std::string& json_line) {
  if (!m_log.is_open()) return;
  m_log << json_line << '\n';
  m_log.flush();
  PTYCHO_INPUT_ERROR_IF(!m_log, m_options.log_json << ": cannot write to the log file");
}

void ProgressReporter::update(const Progress& p) {
  // A stage starts with an engine's first iteration, or with the first one
  // this process runs (a resumed run starts mid-engine).
  if (p.iteration == 1 || m_stages.empty() || m_stages.back().engine != p.engine)
    m_stages.push_back({p.engine, 0, 0, 0});
  StageSummary& stage = m_stages.back();
  ++stage.iterations;  // run by this process
  stage.seconds = p.seconds_per_iteration * stage.iterations;
  stage.final_cost = p.cost;

  const bool report = p.iteration == 1 || p.iteration == p.iterations || p.iteration % m_options.every == 0;
  if (!report) return;
  const double memory = max_memory_mb();  // collective: every rank reports the same steps
  if (m_comm.rank() != 0) return;
  std::printf("  [%-5s] iter %4d/%-4d  cost %-11.6g %9.3g s/it  ETA %-9s  mem %.0f MB/rank\n", p.engine.c_str(),
              p.iteration, p.iterations, p.cost, p.seconds_per_iteration, format_seconds(p.eta_seconds).c_str(),
              memory);
  std::fflush(stdout);
  const nlohmann::ordered_json line = {{"event", "progress"},
                                       {"engine", p.engine},
                                       {"iteration", p.iteration},
                                       {"iterations", p.iterations},
                                       {"total_done", p.total_done},
                                       {"total", p.total},
                                       {"cost", p.cost},
                                       {"seconds_per_iteration", p.seconds_per_iteration},
                                       {"eta_seconds", p.eta_seconds},
                                       {"memory_mb_max", memory}};
  log(line.dump());
}

void ProgressReporter::finish(const RunSummary& run) {
  max_memory_mb();
  if (m_comm.rank() != 0) return;
  long iterations = 0;
  for (const auto& s : m_stages) iterations += s.iterations;
  const double per_iteration = iterations > 0 ? run.seconds / double(iterations) : 0.0;
  const double final_cost =
      !std::isnan(run.final_cost) ? run.final_cost : (m_stages.empty() ? 0.0 : m_stages.back().final_cost);

  std::printf("ptycho reconstruct: %ld iterations in %s (%.3g s/it); final cost %.6g; ", iterations,
              format_seconds(run.seconds).c_str(), per_iteration, final_cost);
  if (!std::isnan(run.background_mean)) std::printf("background %.4g counts/pixel (mean); ", run.background_mean);
  std::printf("memory %.0f MB/rank (max)\n", m_peak_mb);
  for (const auto& s : m_stages)
    std::printf("  %-5s %5d iterations  %9s  %9.3g s/it  final cost %.6g\n", s.engine.c_str(), s.iterations,
                format_seconds(s.seconds).c_str(), s.iterations > 0 ? s.seconds / s.iterations : 0.0, s.final_cost);
  std::printf("  result: %s\n", run.result.c_str());
  if (!run.previews.empty()) std::printf("  previews: %s/{amplitude,phase,probe,cost}.png\n", run.previews.c_str());
  if (!m_options.log_json.empty()) std::printf("  log: %s\n", m_options.log_json.c_str());
  std::fflush(stdout);

  nlohmann::ordered_json engines = nlohmann::ordered_json::array();
  for (const auto& s : m_stages)
    engines.push_back({{"engine", s.engine},
                       {"iterations", s.iterations},
                       {"seconds", s.seconds},
                       {"seconds_per_iteration", s.iterations > 0 ? s.seconds / s.iterations : 0.0},
                       {"final_cost", s.final_cost}});
  nlohmann::ordered_json line = {
      {"event", "summary"},
      {"engines", engines},
      {"iterations", iterations},
      {"seconds_total", run.seconds},
      {"seconds_per_iteration", per_iteration},
      {"final_cost", final_cost},
      {"memory_mb_max", m_peak_mb},
      {"ranks", m_comm.size()},
      {"threads_per_rank", Kokkos::DefaultExecutionSpace().concurrency()},
      {"result", run.result},
      {"previews", run.previews.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(run.previews)}};
  if (!std::isnan(run.background_mean)) line["background_mean"] = run.background_mean;
  log(line.dump());
}

}  // namespace ptycho::jobs
