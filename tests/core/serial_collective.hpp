#pragma once
// The Collective of one rank holding the whole object, for testing core/
// without MPI: every operation is the identity.
#include "ptycho/core/collective.hpp"

namespace ptycho::test {

class SerialCollective final : public Collective {
 public:
  void sum(double*, std::size_t) const override {}
  void max(double*, std::size_t) const override {}
  void scatter_sum(const View2<cfloat>&) const override {}
  void scatter_sum(const View2<float>&) const override {}
  void scatter_sum(const View2<cdouble>&) const override {}
  void scatter_sum(const View2<double>&) const override {}
  void gather(const View2<cfloat>&) const override {}
  void gather(const View2<float>&) const override {}
  int size() const override { return 1; }
  int rank() const override { return 0; }
};

}  // namespace ptycho::test
