#pragma once
/// Reductions over ranks: in-place sums and maxima of arrays of doubles, what
/// MpiCollective's sum and max are made of (costs, line-search terms,
/// counts, the probe's numerator and denominator).
///
/// Every function here is collective over `comm`: all its ranks must call it,
/// in the same order, with the same sizes.
#include "ptycho/parallel/comm.hpp"

#include <cstddef>

namespace ptycho {

/// In place: data[i] := sum over ranks of data[i], for i < n (MPI_Allreduce, MPI_DOUBLE).
void allreduce_sum(MPI_Comm comm, double* data, std::size_t n);
/// In place: data[i] := max over ranks of data[i], for i < n.
void allreduce_max(MPI_Comm comm, double* data, std::size_t n);

}  // namespace ptycho
