#pragma once
/// The MPI implementation of core's Collective: halo sums and refreshes
/// through a HaloPlan, global sums and maxima through MPI_Allreduce.
#include "ptycho/core/collective.hpp"
#include "ptycho/parallel/decomposition.hpp"
#include "ptycho/parallel/halo.hpp"

#include <memory>

namespace ptycho {

class MpiCollective final : public Collective {
 public:
  /// Collective over `comm`: builds the halo plan of this rank's tile of `dec`.
  MpiCollective(MPI_Comm comm, const Decomposition& dec);

  void sum(double* values, std::size_t n) const override;
  void max(double* values, std::size_t n) const override;
  void scatter_sum(const View2<cfloat>& local) const override { m_halo->scatter_sum(local); }
  void scatter_sum(const View2<float>& local) const override { m_halo->scatter_sum(local); }
  void scatter_sum(const View2<cdouble>& local) const override { m_halo->scatter_sum(local); }
  void scatter_sum(const View2<double>& local) const override { m_halo->scatter_sum(local); }
  void gather(const View2<cfloat>& local) const override { m_halo->gather(local); }
  void gather(const View2<float>& local) const override { m_halo->gather(local); }
  int size() const override { return m_halo->size(); }
  int rank() const override { return m_halo->rank(); }
  MPI_Comm comm() const { return m_halo->comm(); }

 private:
  std::unique_ptr<HaloPlan> m_halo;  // its methods mutate its buffers, not the tiles' contract
};

}  // namespace ptycho
