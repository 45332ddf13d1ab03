#pragma once
/// The memory a run will need, checked against the machine before anything
/// large is allocated (see ptycho/core/memory.hpp for the model).
#include <mpi.h>

#include <string>

namespace ptycho::jobs {

/// What a run needs, per rank.
struct MemoryNeed {
  double bytes = 0;         ///< this rank's estimate
  double max_memory = 0;    ///< the user's per-rank limit (--max-memory); 0: none
  std::string what;         ///< what is run, for the message ("1000 frames of 256x256, object 900x900 px, ml:200")
};

/// Collective over `comm`: throws the same InputError on every rank if any
/// rank's estimate exceeds `need.max_memory`, or if the ranks of a node need
/// more together than the node has available. The message says how much is
/// needed and how many ranks (or nodes) would fit.
void check_memory(MPI_Comm comm, const MemoryNeed& need);

/// Collective over `comm`: the message check_memory would throw, the same on
/// every rank, or "" if the run fits.
std::string memory_shortfall(MPI_Comm comm, const MemoryNeed& need);

/// Collective over `comm`: the bytes this rank could add to `need.bytes` and
/// still fit: under `need.max_memory`, and its even share of what its node
/// has available beyond its ranks' needs together. 0 if it has none, or if
/// neither a limit nor the node's memory is known.
double memory_headroom(MPI_Comm comm, const MemoryNeed& need);

}  // namespace ptycho::jobs
