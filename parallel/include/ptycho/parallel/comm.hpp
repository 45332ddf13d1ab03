#pragma once
/// An owned MPI communicator. Library code receives a communicator and
/// duplicates it; MPI_COMM_WORLD appears only in main().
#include <mpi.h>

#include <memory>

namespace ptycho {

class Comm {
 public:
  /// Duplicates `parent` (MPI_Comm_dup); the duplicate is freed with the last copy.
  explicit Comm(MPI_Comm parent);
  MPI_Comm get() const { return *m_comm; }
  int rank() const { return m_rank; }
  int size() const { return m_size; }

 private:
  std::shared_ptr<MPI_Comm> m_comm;
  int m_rank = 0;
  int m_size = 1;
};

/// Throws ptycho::Error naming `what` unless `code` is MPI_SUCCESS.
void check_mpi(int code, const char* what);

}  // namespace ptycho
