#include "ptycho/parallel/comm.hpp"

#include "ptycho/core/error.hpp"

namespace ptycho {

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  PTYCHO_THROW_IF(true, what << " failed: " << std::string(text, len));
}

Comm::Comm(MPI_Comm parent) {
  auto* c = new MPI_Comm(MPI_COMM_NULL);
  check_mpi(MPI_Comm_dup(parent, c), "MPI_Comm_dup");
  m_comm = std::shared_ptr<MPI_Comm>(c, [](MPI_Comm* p) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && *p != MPI_COMM_NULL) MPI_Comm_free(p);
    delete p;
  });
  MPI_Comm_rank(*m_comm, &m_rank);
  MPI_Comm_size(*m_comm, &m_size);
}

}  // namespace ptycho
