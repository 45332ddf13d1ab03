#include "ptycho/parallel/reduce.hpp"

#include "ptycho/core/error.hpp"

#include <climits>

namespace ptycho {

namespace {

int mpi_count(std::size_t n, const char* what) {
  PTYCHO_THROW_IF(n > static_cast<std::size_t>(INT_MAX), what << ": " << n << " values exceed one MPI message");
  return static_cast<int>(n);
}

}  // namespace

void allreduce_sum(MPI_Comm comm, double* data, std::size_t n) {
  if (n == 0) return;  // still collective-safe: every rank passes the same n
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(n, "allreduce_sum"), MPI_DOUBLE, MPI_SUM, comm),
            "MPI_Allreduce (sum)");
}

void allreduce_max(MPI_Comm comm, double* data, std::size_t n) {
  if (n == 0) return;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(n, "allreduce_max"), MPI_DOUBLE, MPI_MAX, comm),
            "MPI_Allreduce (max)");
}

}  // namespace ptycho
