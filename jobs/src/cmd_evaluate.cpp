// ptycho evaluate: the benchmark score of a result against a ground truth
// (ptycho/jobs/evaluate.hpp).
//
//   ptycho evaluate RESULT.h5 --truth TRUTH_truth.h5 [--data DATA.cxi] [--json]
//
// Serial: rank 0 reads and scores, the other ranks wait for its exit code.
#include "commands.hpp"
#include "ptycho/jobs/evaluate.hpp"

#include <iostream>
#include <memory>

namespace ptycho::jobs {

Command add_evaluate_command(CLI::App& app) {
  auto opt = std::make_shared<EvaluateOptions>();
  auto json = std::make_shared<bool>(false);
  Command c;
  c.app = app.add_subcommand("evaluate",
                             "Score a result against a benchmark ground truth (as shared/bench/ptybench.py score)");
  c.app->add_option("result", opt->result, "result file (HDF5, the result contract)")->required();
  c.app->add_option("--truth", opt->truth, "ground truth (NAME_truth.h5); default: from --data");
  c.app->add_option("--data", opt->data,
                    "measured data (NAME.cxi) for the consistency term; default: beside the truth file");
  c.app->add_flag("--json", *json, "print one JSON object");
  c.run = [opt, json](MPI_Comm world) -> int {
    // Rank 0 scores; main() gives every rank its exit code (or its error).
    int rank = 0;
    MPI_Comm_rank(world, &rank);
    if (rank != 0) return 0;
    const Evaluation e = evaluate(*opt);
    for (const auto& note : e.notes) std::cerr << "ptycho evaluate: " << note << "\n";
    print_score(std::cout, e.score, *json);
    return 0;
  };
  return c;
}

}  // namespace ptycho::jobs
