#pragma once
/// Reductions over ranks: scalar and small-array sums and maxima (cost,
/// line-search terms, counts), a global sum of a complex<float> view
/// accumulated in double, and ProbeReducer, the plan that sums the shared
/// probe's numerator and denominator over ranks in one allreduce.
///
/// Every function here is collective over `comm`: all its ranks must call it,
/// in the same order, with the same sizes. All sums run in double (or long).
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/comm.hpp"

#include <array>
#include <cstddef>
#include <vector>

namespace ptycho {

/// In place: data[i] := sum over ranks of data[i], for i < n (MPI_Allreduce, MPI_DOUBLE).
void allreduce_sum(MPI_Comm comm, double* data, std::size_t n);
inline void allreduce_sum(MPI_Comm comm, std::vector<double>& values) {
  allreduce_sum(comm, values.data(), values.size());
}
/// In place, a fixed set of scalars in one message (e.g. the CG line-search terms).
template <std::size_t N>
void allreduce_sum(MPI_Comm comm, std::array<double, N>& values) {
  allreduce_sum(comm, values.data(), N);
}
/// In place: data[i] := max over ranks of data[i], for i < n.
void allreduce_max(MPI_Comm comm, double* data, std::size_t n);

/// The sum over ranks of a scalar.
double global_sum(MPI_Comm comm, double local);
long global_sum(MPI_Comm comm, long local);
/// The maximum over ranks of a scalar.
double global_max(MPI_Comm comm, double local);
long global_max(MPI_Comm comm, long local);

/// The sum of all elements of every rank's `local` (contiguous), accumulated in double.
cdouble global_sum(MPI_Comm comm, const View2<cfloat>& local);
cdouble global_sum(MPI_Comm comm, const View3<cfloat>& local);

/// Sums the probe update over ranks. Numerator and denominator travel
/// separately (the caller divides once, after the sum, with its
/// regularisation): numerator is K x M x M complex, denominator M x M (shared
/// by the modes) or K x M x M, all in double. Built once for (K, M): it
/// duplicates the communicator and allocates its staging buffer (3 K M M
/// doubles, plus a host mirror when MemSpace is not host-accessible); each
/// call is one MPI_Allreduce of doubles and allocates nothing. Not copyable.
class ProbeReducer {
 public:
  ProbeReducer(MPI_Comm comm, int modes, int frame_size);
  ProbeReducer(const ProbeReducer&) = delete;
  ProbeReducer& operator=(const ProbeReducer&) = delete;
  ProbeReducer(ProbeReducer&&) = default;
  ProbeReducer& operator=(ProbeReducer&&) = default;

  /// In place: numerator and denominator := their sums over ranks.
  void sum(const ExecSpace& exec, const View3<cdouble>& numerator, const View2<double>& denominator);
  void sum(const ExecSpace& exec, const View3<cdouble>& numerator, const View3<double>& denominator);
  void sum(const View3<cdouble>& numerator, const View2<double>& denominator) {
    sum(ExecSpace(), numerator, denominator);
  }
  void sum(const View3<cdouble>& numerator, const View3<double>& denominator) {
    sum(ExecSpace(), numerator, denominator);
  }
  /// global := the sum over ranks of `local` (K x M x M complex<float>), widened to double first.
  void sum(const ExecSpace& exec, const View3<cfloat>& local, const View3<cdouble>& global);
  void sum(const View3<cfloat>& local, const View3<cdouble>& global) { sum(ExecSpace(), local, global); }

  int modes() const { return m_modes; }
  int frame_size() const { return m_frame_size; }
  MPI_Comm comm() const { return m_comm.get(); }

 private:
  void check_dims(const char* what, std::size_t k, std::size_t r, std::size_t c) const;
  void allreduce(const ExecSpace& exec, std::size_t n);
  void sum_contiguous(const ExecSpace& exec, const View3<cdouble>& numerator, double* denominator, std::size_t nd);

  Comm m_comm;
  int m_modes = 0;
  int m_frame_size = 0;
  View1<double> m_buf;
  typename View1<double>::HostMirror m_host;
};

}  // namespace ptycho
