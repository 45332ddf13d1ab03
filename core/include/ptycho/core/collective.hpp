#pragma once
/// The collective operations an engine needs, as an interface, so that core/
/// stays free of MPI. parallel/ implements it with MPI and a HaloPlan (on one
/// rank too); OneRankCollective (below) is the identity, for one rank alone.
///
/// Object-sized numerators and denominators are summed in double: the
/// order of the sums then changes nothing at float precision, which keeps a
/// run on N ranks equal to a run on one.
///
/// Contract (see tile.hpp): engines accumulate into the whole local extent;
/// scatter_sum leaves in every OWNED pixel the sum of all ranks' values for
/// it; gather copies owners' values into every halo pixel.
#include "ptycho/core/types.hpp"

#include <cstddef>

namespace ptycho {

class Collective {
 public:
  virtual ~Collective() = default;
  /// Sums `n` doubles over all ranks, in place (host memory).
  virtual void sum(double* values, std::size_t n) const = 0;
  /// Maximum of `n` doubles over all ranks, in place.
  virtual void max(double* values, std::size_t n) const = 0;
  virtual void scatter_sum(const View2<cfloat>& local) const = 0;
  virtual void scatter_sum(const View2<float>& local) const = 0;
  virtual void scatter_sum(const View2<cdouble>& local) const = 0;
  virtual void scatter_sum(const View2<double>& local) const = 0;
  virtual void gather(const View2<cfloat>& local) const = 0;
  virtual void gather(const View2<float>& local) const = 0;
  /// Number of ranks and this rank (for messages and deterministic choices).
  virtual int size() const = 0;
  virtual int rank() const = 0;
};

/// The Collective of one rank that holds the whole object: every operation
/// is the identity (tests of core/ without MPI, the learned engine's
/// training scans).
class OneRankCollective final : public Collective {
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

}  // namespace ptycho
