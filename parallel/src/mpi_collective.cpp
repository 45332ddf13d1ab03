#include "ptycho/parallel/mpi_collective.hpp"

#include "ptycho/parallel/reduce.hpp"

namespace ptycho {

MpiCollective::MpiCollective(MPI_Comm comm, const Decomposition& dec) : m_halo(std::make_unique<HaloPlan>(comm, dec)) {}

void MpiCollective::sum(double* values, std::size_t n) const { allreduce_sum(m_halo->comm(), values, n); }

void MpiCollective::max(double* values, std::size_t n) const { allreduce_max(m_halo->comm(), values, n); }

}  // namespace ptycho
