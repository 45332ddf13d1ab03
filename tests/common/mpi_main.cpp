// GoogleTest main for every ptycho test binary: initialises MPI and Kokkos,
// and prefixes each failure with the rank that saw it. Only rank 0 prints the
// progress of passing tests; the exit code is the OR over all ranks.
#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <iostream>

namespace {

class RankPrefixListener : public testing::EmptyTestEventListener {
 public:
  explicit RankPrefixListener(int rank) : m_rank(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::cerr << "[rank " << m_rank << "] " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number()
              << ": failure\n"
              << r.summary() << std::endl;
  }

 private:
  int m_rank;
};

}  // namespace

int main(int argc, char** argv) {
  setenv("KOKKOS_DISABLE_WARNINGS", "1", 1);
  setenv("OMP_PROC_BIND", "spread", 0);
  setenv("OMP_PLACES", "threads", 0);
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int result = 0;
  {
    Kokkos::ScopeGuard kokkos(argc, argv);
    testing::InitGoogleTest(&argc, argv);
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    if (rank != 0) delete listeners.Release(listeners.default_result_printer());
    if (size > 1) listeners.Append(new RankPrefixListener(rank));
    result = RUN_ALL_TESTS();
  }
  int any = 0;
  MPI_Allreduce(&result, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
  MPI_Finalize();
  return any ? 1 : 0;
}
