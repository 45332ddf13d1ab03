#include "ptycho/parallel/migrate.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/parallel/comm.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace ptycho {

namespace {

/// An MPI datatype of `count` contiguous `base` elements, freed with the object.
class ContiguousType {
 public:
  ContiguousType(int count, MPI_Datatype base) {
    check_mpi(MPI_Type_contiguous(count, base, &m_type), "MPI_Type_contiguous");
    check_mpi(MPI_Type_commit(&m_type), "MPI_Type_commit");
  }
  ~ContiguousType() { MPI_Type_free(&m_type); }
  ContiguousType(const ContiguousType&) = delete;
  ContiguousType& operator=(const ContiguousType&) = delete;
  MPI_Datatype get() const { return m_type; }

 private:
  MPI_Datatype m_type = MPI_DATATYPE_NULL;
};

/// Exclusive prefix sums of `counts`.
std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> d(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) d[r] = d[r - 1] + counts[r - 1];
  return d;
}

}  // namespace

std::vector<int> frame_owners(const Decomposition& dec, const std::vector<Position>& positions) {
  std::vector<int> out(positions.size());
  for (size_t j = 0; j < positions.size(); ++j) out[j] = owner_of(dec, positions[j].row, positions[j].col);
  return out;
}

FrameSet migrate_frames(MPI_Comm comm, const Decomposition& dec, const FrameSet& mine, long& moved) {
  int me = 0, size = 1;
  check_mpi(MPI_Comm_rank(comm, &me), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  PTYCHO_THROW_IF(size != dec.nranks(), "migrate_frames: " << size << " ranks for a decomposition of "
                                                           << dec.nranks());
  const long n = long(mine.index.size());
  const int m = dec.frame_size;
  PTYCHO_THROW_IF(long(mine.positions.size()) != n || long(mine.counts.extent(0)) != n ||
                      (n > 0 && (int(mine.counts.extent(1)) != m || int(mine.counts.extent(2)) != m)),
                  "migrate_frames: " << n << " frames with " << mine.positions.size() << " positions and "
                                     << mine.counts.extent(0) << " count frames of " << mine.counts.extent(1) << "x"
                                     << mine.counts.extent(2) << " (expected " << m << "x" << m << ")");
  const std::vector<int> owner = frame_owners(dec, mine.positions);

  // Who sends how many frames to whom, ordered by destination.
  std::vector<int> send_count(size, 0);
  for (long j = 0; j < n; ++j)
    if (owner[j] != me) ++send_count[owner[j]];
  std::vector<int> recv_count(size, 0);
  check_mpi(MPI_Alltoall(send_count.data(), 1, MPI_INT, recv_count.data(), 1, MPI_INT, comm), "MPI_Alltoall");
  long sent = std::accumulate(send_count.begin(), send_count.end(), 0L);
  moved = sent;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &moved, 1, MPI_LONG, MPI_SUM, comm), "MPI_Allreduce");
  if (moved == 0) return mine;  // the usual case: nothing crossed, nothing is copied

  const std::vector<int> send_at = displacements(send_count), recv_at = displacements(recv_count);
  const long received = std::accumulate(recv_count.begin(), recv_count.end(), 0L);
  const long plane = long(m) * m;
  // Per frame: (global index, row, col) as doubles (indices are far below 2^53), and its counts.
  std::vector<double> send_meta(3 * sent), recv_meta(3 * received);
  std::vector<float> send_frames(sent * plane), recv_frames(received * plane);
  std::vector<int> fill = send_at;
  for (long j = 0; j < n; ++j) {
    if (owner[j] == me) continue;
    const int slot = fill[owner[j]]++;
    send_meta[3 * slot] = double(mine.index[j]);
    send_meta[3 * slot + 1] = mine.positions[j].row;
    send_meta[3 * slot + 2] = mine.positions[j].col;
    std::memcpy(send_frames.data() + slot * plane, mine.counts.data() + j * plane, plane * sizeof(float));
  }
  {
    const ContiguousType meta_type(3, MPI_DOUBLE), frame_type(int(plane), MPI_FLOAT);
    check_mpi(MPI_Alltoallv(send_meta.data(), send_count.data(), send_at.data(), meta_type.get(), recv_meta.data(),
                            recv_count.data(), recv_at.data(), meta_type.get(), comm),
              "MPI_Alltoallv");
    check_mpi(MPI_Alltoallv(send_frames.data(), send_count.data(), send_at.data(), frame_type.get(),
                            recv_frames.data(), recv_count.data(), recv_at.data(), frame_type.get(), comm),
              "MPI_Alltoallv");
  }

  // What stays and what came, in ascending global index.
  struct Source {
    long index;
    bool kept;
    long at;  ///< local frame (kept) or received slot
  };
  std::vector<Source> all;
  all.reserve(n - sent + received);
  for (long j = 0; j < n; ++j)
    if (owner[j] == me) all.push_back({mine.index[j], true, j});
  for (long s = 0; s < received; ++s) all.push_back({long(recv_meta[3 * s]), false, s});
  std::sort(all.begin(), all.end(), [](const Source& a, const Source& b) { return a.index < b.index; });
  FrameSet out;
  out.counts = HostRView3(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::migrate::counts"), all.size(), m, m);
  for (size_t i = 0; i < all.size(); ++i) {
    const Source& s = all[i];
    PTYCHO_THROW_IF(i > 0 && all[i - 1].index == s.index, "migrate_frames: frame " << s.index << " arrived twice");
    out.index.push_back(s.index);
    out.positions.push_back(s.kept ? mine.positions[s.at]
                                   : Position{recv_meta[3 * s.at + 1], recv_meta[3 * s.at + 2]});
    const float* src = s.kept ? mine.counts.data() + s.at * plane : recv_frames.data() + s.at * plane;
    std::memcpy(out.counts.data() + i * plane, src, plane * sizeof(float));
  }
  return out;
}

}  // namespace ptycho
