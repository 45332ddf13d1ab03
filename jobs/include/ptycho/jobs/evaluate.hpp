#pragma once
/// The benchmark score of a result file against a ground truth: the numbers
/// of `shared/bench/ptybench.py score`, computed by core/metrics. What
/// `ptycho evaluate` prints and the Python module's evaluate() returns.
#include "ptycho/core/metrics.hpp"

#include <ostream>
#include <string>
#include <vector>

namespace ptycho::jobs {

struct EvaluateOptions {
  std::string result;  ///< RESULT.h5 (the result contract)
  std::string truth;   ///< NAME_truth.h5; derived from `data` if empty
  std::string data;    ///< NAME.cxi for the consistency term; derived from `truth` if empty
};

struct Evaluation {
  BenchmarkScore score;
  /// What the score leaves out and why (no data file, no probe modes), one line each.
  std::vector<std::string> notes;
};

/// Scores a result (serial). Checks first that the truth belongs to the
/// result's scan (positions, object extent, pixel size) and that the data
/// fit in memory; throws InputError naming the file and what is wrong.
Evaluation evaluate(const EvaluateOptions& options);

/// Prints `score` as ptybench does: one "name value" line per number, or
/// (json) one JSON object, floats written as Python writes them.
void print_score(std::ostream& os, const BenchmarkScore& score, bool json);

}  // namespace ptycho::jobs
