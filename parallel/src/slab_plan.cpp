#include "ptycho/parallel/slab_plan.hpp"

#include "ptycho/core/error.hpp"

#include <fftw3-mpi.h>

#include <climits>

namespace ptycho {

namespace {

void init_fftw_mpi() {
  static const bool done = [] {
    fftwf_mpi_init();
    return true;
  }();
  (void)done;
}

}  // namespace

Slab fftw_slab(MPI_Comm comm, long rows, long cols) {
  init_fftw_mpi();
  ptrdiff_t n0 = 0, start = 0;
  const ptrdiff_t alloc = fftwf_mpi_local_size_2d(rows, cols, comm, &n0, &start);
  Slab s;
  s.rect = n0 > 0 ? Rect{long(start), 0, long(n0), cols} : Rect{long(start), 0, 0, 0};
  s.alloc = std::max<long>(alloc, 1);
  return s;
}

SlabPlan::SlabPlan(MPI_Comm comm, const Rect& owned, long rows, long cols)
    : m_comm(comm), m_rows(rows), m_cols(cols), m_owned(owned.empty() ? Rect{} : owned) {
  const int nranks = m_comm.size();
  long mine[4] = {m_owned.row0, m_owned.col0, m_owned.rows, m_owned.cols};
  std::vector<long> all(4 * size_t(nranks));
  check_mpi(MPI_Allgather(mine, 4, MPI_LONG, all.data(), 4, MPI_LONG, m_comm.get()), "SlabPlan: MPI_Allgather");
  std::vector<Rect> owned_of(nranks);
  long area = 0;
  bool inside = true, disjoint = true;
  const Rect grid{0, 0, rows, cols};
  for (int q = 0; q < nranks; ++q) {
    owned_of[q] = Rect{all[4 * q], all[4 * q + 1], all[4 * q + 2], all[4 * q + 3]};
    area += owned_of[q].area();
    inside = inside && grid.contains(owned_of[q]);
    for (int p = 0; p < q; ++p) disjoint = disjoint && intersect(owned_of[p], owned_of[q]).empty();
  }
  PTYCHO_THROW_IF(!inside || !disjoint || area != rows * cols,
                  "SlabPlan: the ranks' owned rectangles do not partition the " << rows << "x" << cols << " grid");
  m_slab = fftw_slab(m_comm.get(), rows, cols);
  std::vector<long> slab_rows(2 * size_t(nranks));
  long my_slab[2] = {m_slab.rect.row0, m_slab.rect.rows};
  check_mpi(MPI_Allgather(my_slab, 2, MPI_LONG, slab_rows.data(), 2, MPI_LONG, m_comm.get()),
            "SlabPlan: MPI_Allgather");
  for (int q = 0; q < nranks; ++q) {
    const Rect slab_q{slab_rows[2 * q], 0, slab_rows[2 * q + 1], slab_rows[2 * q + 1] > 0 ? cols : 0};
    Peer peer;
    peer.rank = q;
    peer.tile_part = intersect(m_owned, slab_q);
    peer.slab_part = intersect(m_slab.rect, owned_of[q]);
    PTYCHO_THROW_IF(peer.tile_part.rows > INT_MAX || peer.tile_part.cols > INT_MAX ||
                        peer.slab_part.cols > INT_MAX || m_slab.rect.rows > INT_MAX || m_owned.rows > INT_MAX,
                    "SlabPlan: a " << rows << "x" << cols << " grid is too large for MPI subarray types");
    if (!peer.tile_part.empty() || !peer.slab_part.empty()) m_peers.push_back(peer);
  }
  m_requests.reserve(2 * m_peers.size());
}

SlabPlan::~SlabPlan() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (auto& t : m_types) free_types(t);
}

void SlabPlan::free_types(Types& t) {
  for (auto* v : {&t.tile, &t.slab})
    for (auto& d : *v)
      if (d != MPI_DATATYPE_NULL) MPI_Type_free(&d);
}

SlabPlan::Types& SlabPlan::types(int element_bytes, long tile_stride) {
  for (auto& t : m_types)
    if (t.element_bytes == element_bytes && t.tile_stride == tile_stride) return t;
  PTYCHO_THROW_IF(tile_stride < m_owned.cols || tile_stride > INT_MAX,
                  "SlabPlan: a tile row stride of " << tile_stride << " for a tile " << m_owned.cols << " wide");
  if (m_types.size() >= 8) {  // a bounded cache: strides rarely change
    free_types(m_types.front());
    m_types.erase(m_types.begin());
  }
  Types t;
  t.element_bytes = element_bytes;
  t.tile_stride = tile_stride;
  MPI_Datatype element;
  check_mpi(MPI_Type_contiguous(element_bytes, MPI_BYTE, &element), "SlabPlan: MPI_Type_contiguous");
  const auto subarray = [&](const Rect& array, long array_cols, const Rect& part) {
    if (part.empty()) return MPI_DATATYPE_NULL;
    const int sizes[2] = {int(array.rows), int(array_cols)};
    const int sub[2] = {int(part.rows), int(part.cols)};
    const int starts[2] = {int(part.row0 - array.row0), int(part.col0 - array.col0)};
    MPI_Datatype d;
    check_mpi(MPI_Type_create_subarray(2, sizes, sub, starts, MPI_ORDER_C, element, &d),
              "SlabPlan: MPI_Type_create_subarray");
    check_mpi(MPI_Type_commit(&d), "SlabPlan: MPI_Type_commit");
    return d;
  };
  for (const auto& p : m_peers) {
    t.tile.push_back(subarray(m_owned, tile_stride, p.tile_part));
    t.slab.push_back(subarray(m_slab.rect, m_cols, p.slab_part));
  }
  MPI_Type_free(&element);
  m_types.push_back(std::move(t));
  return m_types.back();
}

void SlabPlan::exchange(const void* from, void* to, int element_bytes, long tile_stride, bool forward) {
  Types& t = types(element_bytes, tile_stride);
  m_requests.clear();
  for (size_t i = 0; i < m_peers.size(); ++i) {
    const MPI_Datatype recv_type = forward ? t.slab[i] : t.tile[i];
    if (recv_type == MPI_DATATYPE_NULL) continue;
    m_requests.emplace_back();
    check_mpi(MPI_Irecv(to, 1, recv_type, m_peers[i].rank, m_tag, m_comm.get(), &m_requests.back()),
              "SlabPlan: MPI_Irecv");
  }
  for (size_t i = 0; i < m_peers.size(); ++i) {
    const MPI_Datatype send_type = forward ? t.tile[i] : t.slab[i];
    if (send_type == MPI_DATATYPE_NULL) continue;
    m_requests.emplace_back();
    check_mpi(MPI_Isend(from, 1, send_type, m_peers[i].rank, m_tag, m_comm.get(), &m_requests.back()),
              "SlabPlan: MPI_Isend");
  }
  check_mpi(MPI_Waitall(int(m_requests.size()), m_requests.data(), MPI_STATUSES_IGNORE), "SlabPlan: MPI_Waitall");
}

template <class T>
void SlabPlan::to_slabs(const T* tile, long tile_stride, T* slab) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  exchange(tile, slab, int(sizeof(T)), tile_stride, true);
}

template <class T>
void SlabPlan::to_tiles(const T* slab, T* tile, long tile_stride) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  exchange(slab, tile, int(sizeof(T)), tile_stride, false);
}

template void SlabPlan::to_slabs<float>(const float*, long, float*);
template void SlabPlan::to_slabs<cfloat>(const cfloat*, long, cfloat*);
template void SlabPlan::to_tiles<float>(const float*, float*, long);
template void SlabPlan::to_tiles<cfloat>(const cfloat*, cfloat*, long);

}  // namespace ptycho
