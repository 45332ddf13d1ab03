#include "ptycho/jobs/memory_check.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

namespace ptycho::jobs {

namespace {

/// The node of this rank: its ranks' needs together, what it has available
/// (0: unknown), and its rank count. Collective over `comm`.
struct NodeMemory {
  double need = 0;
  double have = 0;
  int ranks = 1;
};

NodeMemory node_memory(MPI_Comm comm, double bytes) {
  MPI_Comm node;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int node_rank = 0;
  NodeMemory out;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &out.ranks);
  MPI_Allreduce(&bytes, &out.need, 1, MPI_DOUBLE, MPI_SUM, node);
  out.have = node_rank == 0 ? available_memory_bytes() : 0;
  MPI_Bcast(&out.have, 1, MPI_DOUBLE, 0, node);
  MPI_Comm_free(&node);
  return out;
}

}  // namespace

double memory_headroom(MPI_Comm comm, const MemoryNeed& need) {
  const NodeMemory node = node_memory(comm, need.bytes);
  double spare = need.max_memory > 0 ? need.max_memory - need.bytes : HUGE_VAL;
  if (node.have > 0) spare = std::min(spare, (node.have - node.need) / std::max(1, node.ranks));
  return std::isfinite(spare) ? std::max(0.0, spare) : 0.0;
}

void check_memory(MPI_Comm comm, const MemoryNeed& need) {
  const std::string shortfall = memory_shortfall(comm, need);
  PTYCHO_INPUT_ERROR_IF(!shortfall.empty(), shortfall);
}

std::string memory_shortfall(MPI_Comm comm, const MemoryNeed& need) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  // Per node: the sum of its ranks' needs against what it has available.
  const NodeMemory node = node_memory(comm, need.bytes);

  // Over all ranks: the largest rank, the total, and the worst node.
  double local[3] = {need.bytes, node.have > 0 ? node.need / node.have : 0.0, 0.0};
  double worst[3];
  MPI_Allreduce(local, worst, 3, MPI_DOUBLE, MPI_MAX, comm);
  double total = 0;
  MPI_Allreduce(&need.bytes, &total, 1, MPI_DOUBLE, MPI_SUM, comm);
  // The node that is worst off (its need and what it has), for the message.
  struct {
    double ratio;
    int rank;
  } mine{local[1], 0}, worst_node{};
  MPI_Comm_rank(comm, &mine.rank);
  MPI_Allreduce(&mine, &worst_node, 1, MPI_DOUBLE_INT, MPI_MAXLOC, comm);
  double node_numbers[3] = {node.need, node.have, double(node.ranks)};
  MPI_Bcast(node_numbers, 3, MPI_DOUBLE, worst_node.rank, comm);

  const double largest = worst[0];
  const std::string ranks = std::to_string(size) + " rank" + (size > 1 ? "s" : "");
  std::ostringstream out;
  if (need.max_memory > 0 && largest > need.max_memory)
    out << "--max-memory: " << need.what << " needs about " << format_bytes(largest) << " on the largest of " << ranks
        << ", more than the limit of " << format_bytes(need.max_memory) << " per rank (" << format_bytes(total)
        << " in all): about " << long(std::ceil(total / need.max_memory)) << " ranks would fit";
  else if (node_numbers[1] > 0 && node_numbers[0] > node_numbers[1])
    out << "not enough memory: " << need.what << " needs about " << format_bytes(node_numbers[0]) << " for the "
        << long(node_numbers[2]) << " rank" << (node_numbers[2] > 1 ? "s" : "") << " on one node, which has "
        << format_bytes(node_numbers[1]) << " available (" << format_bytes(total) << " in all): it needs about "
        << long(std::ceil(total / node_numbers[1])) << " nodes like this one";
  return out.str();
}

}  // namespace ptycho::jobs
