#include "ptycho/parallel/gather.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/parallel/comm.hpp"

#include <algorithm>
#include <cstring>

namespace ptycho {

namespace {
constexpr int kTagRect = 7101;
constexpr int kTagRows = 7102;
constexpr long kMessageBytes = 64L << 20;

/// Rows of a `cols`-wide tile per message.
long rows_per_message(long cols) { return std::max(1L, kMessageBytes / std::max(1L, cols * long(sizeof(cfloat)))); }
}  // namespace

HostCView2 gather_tiles(MPI_Comm comm, const HostCView2& tile, const Rect& where, long rows, long cols, int root) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  PTYCHO_THROW_IF(long(tile.extent(0)) != where.rows || long(tile.extent(1)) != where.cols,
                  "gather_tiles: the tile is " << tile.extent(0) << "x" << tile.extent(1) << ", its rect "
                                               << where.rows << "x" << where.cols);
  if (rank != root) {
    long rect[4] = {where.row0, where.col0, where.rows, where.cols};
    check_mpi(MPI_Send(rect, 4, MPI_LONG, root, kTagRect, comm), "gather_tiles: MPI_Send");
    const long step = rows_per_message(where.cols);
    for (long r0 = 0; r0 < where.rows && where.cols > 0; r0 += step) {
      const long n = std::min(step, where.rows - r0);
      check_mpi(MPI_Send(tile.data() + r0 * where.cols, int(n * where.cols * 2), MPI_FLOAT, root, kTagRows, comm),
                "gather_tiles: MPI_Send");
    }
    return HostCView2();
  }
  HostCView2 whole("ptycho::gathered_object", rows, cols);  // zeros where no tile lies
  const auto place = [&](const Rect& r) {
    PTYCHO_THROW_IF(r.row0 < 0 || r.col0 < 0 || r.rows < 0 || r.cols < 0 || r.row0 + r.rows > rows ||
                        r.col0 + r.cols > cols,
                    "gather_tiles: a tile at (" << r.row0 << ", " << r.col0 << ") of " << r.rows << "x" << r.cols
                                                << " lies outside the " << rows << "x" << cols << " object");
  };
  place(where);
  for (long r = 0; r < where.rows; ++r)
    std::memcpy(static_cast<void*>(&whole(where.row0 + r, where.col0)), tile.data() + r * where.cols,
                where.cols * sizeof(cfloat));
  std::vector<cfloat> buffer;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == root) continue;
    long rect[4];
    check_mpi(MPI_Recv(rect, 4, MPI_LONG, peer, kTagRect, comm, MPI_STATUS_IGNORE), "gather_tiles: MPI_Recv");
    const Rect r{rect[0], rect[1], rect[2], rect[3]};
    place(r);
    const long step = rows_per_message(r.cols);
    for (long r0 = 0; r0 < r.rows && r.cols > 0; r0 += step) {
      const long n = std::min(step, r.rows - r0);
      buffer.resize(size_t(n * r.cols));
      check_mpi(MPI_Recv(buffer.data(), int(n * r.cols * 2), MPI_FLOAT, peer, kTagRows, comm, MPI_STATUS_IGNORE),
                "gather_tiles: MPI_Recv");
      for (long i = 0; i < n; ++i)
        std::memcpy(static_cast<void*>(&whole(r.row0 + r0 + i, r.col0)), buffer.data() + i * r.cols,
                    r.cols * sizeof(cfloat));
    }
  }
  return whole;
}

}  // namespace ptycho
