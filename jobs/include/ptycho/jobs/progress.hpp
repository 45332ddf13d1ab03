#pragma once
/// Progress output of a reconstruction: a line per reporting step on rank 0's
/// stdout, the same as JSON lines in an optional log file, and a summary at
/// the end.
///
/// A reporting step is the first and the last iteration of each engine and
/// every `every`-th iteration of it. Every rank sees the same iterations, so
/// every rank takes the same steps: at each, the ranks agree on the largest
/// resident set size (MPI_Allreduce), which makes update() collective.
#include "ptycho/parallel/comm.hpp"
#include "ptycho/parallel/driver.hpp"

#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace ptycho::jobs {

/// Resident set size of this process [MB, 10^6 bytes], from /proc/self/statm;
/// 0 where that cannot be read.
double resident_megabytes();

/// "12.3 s", "4.5 min" or "1.25 h".
std::string format_seconds(double seconds);

/// Options of a ProgressReporter.
struct ProgressOptions {
  int every = 10;        ///< a progress line every this many iterations of an engine (>= 1)
  std::string log_json;  ///< JSON-lines log file (written by rank 0); empty: none
};

/// One engine of the chain, as it ran.
struct StageSummary {
  std::string engine;  ///< e.g. "ml"
  int iterations = 0;
  double seconds = 0;     ///< wall time of this engine's iterations
  double final_cost = 0;  ///< cost after its last iteration
};

/// What the summary reports besides the stages.
struct RunSummary {
  double seconds = 0;    ///< wall time of the whole chain
  std::string result;    ///< the result file
  std::string previews;  ///< the previews folder; empty: none
  /// The final cost of the result, if it is not the last stage's (the blind
  /// preset's position trial keeps either of two runs); NaN: the last stage's.
  double final_cost = std::numeric_limits<double>::quiet_NaN();
  /// The mean refined detector background over valid pixels [counts per
  /// pixel and frame]; NaN: none refined (not printed).
  double background_mean = std::numeric_limits<double>::quiet_NaN();
};

/// Prints progress lines and the summary (rank 0) and writes the JSON-lines
/// log (rank 0): one object per reporting step
///
///   {"event":"progress","engine":"ml","iteration":10,"iterations":200,"total_done":110,
///    "total":300,"cost":0.31,"seconds_per_iteration":0.05,"eta_seconds":9.5,"memory_mb_max":812.4}
///
/// and a last {"event":"summary", ...}. Each line is flushed when written, so
/// the log can be followed while the job runs.
class ProgressReporter {
 public:
  /// Duplicates `comm`. Rank 0 opens (truncates) the log file; throws
  /// InputError naming it if it cannot.
  ProgressReporter(MPI_Comm comm, const ProgressOptions& options);
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  /// Call on every rank after every iteration. Collective on reporting steps.
  void update(const Progress& p);

  /// Collective: measures memory once more; rank 0 prints the summary and
  /// logs the summary event.
  void finish(const RunSummary& run);

  /// The engines run so far, in order (the same on every rank).
  const std::vector<StageSummary>& stages() const { return m_stages; }
  /// The largest resident set size of any rank seen at a reporting step [MB].
  double peak_memory_mb() const { return m_peak_mb; }

 private:
  /// Collective: the largest resident set size over the ranks [MB].
  double max_memory_mb();
  void log(const std::string& json_line);

  Comm m_comm;
  ProgressOptions m_options;
  std::ofstream m_log;
  std::vector<StageSummary> m_stages;
  double m_peak_mb = 0;
};

}  // namespace ptycho::jobs
