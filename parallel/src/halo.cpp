#include "ptycho/parallel/halo.hpp"

#include "ptycho/core/error.hpp"

#include <climits>
#include <cstdint>
#include <sstream>
#include <string>

namespace ptycho {

namespace {

constexpr bool kHostAccessible = Kokkos::SpaceAccessibility<HostSpace, MemSpace>::accessible;

/// A 62-bit FNV-1a digest of everything in `dec` the exchange pattern depends on.
std::int64_t digest(const Decomposition& dec) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](long v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (static_cast<std::uint64_t>(v) >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  auto mix_rect = [&mix](const Rect& r) { mix(r.row0), mix(r.col0), mix(r.rows), mix(r.cols); };
  mix(dec.grid.rows), mix(dec.grid.cols), mix(dec.halo);
  mix_rect(dec.bounds);
  mix(static_cast<long>(dec.owned.size()));
  for (const Rect& r : dec.owned) mix_rect(r);
  mix(static_cast<long>(dec.extent.size()));
  for (const Rect& r : dec.extent) mix_rect(r);
  return static_cast<std::int64_t>(h >> 2);
}

/// Why `dec` cannot drive an exchange on `nranks` ranks, or "" if it can.
std::string invalid_reason(const Decomposition& dec, int nranks) {
  std::ostringstream os;
  if (dec.nranks() != nranks || static_cast<int>(dec.owned.size()) != nranks ||
      static_cast<int>(dec.extent.size()) != nranks) {
    os << "decomposition is for " << dec.nranks() << " ranks (" << dec.owned.size() << " owned, " << dec.extent.size()
       << " extents) but the communicator has " << nranks;
    return os.str();
  }
  long area = 0;
  for (int q = 0; q < nranks; ++q) {
    const Rect& o = dec.owned[q];
    const Rect& e = dec.extent[q];
    if (o.rows < 0 || o.cols < 0 || e.rows < 0 || e.cols < 0 || !dec.bounds.contains(o) || !dec.bounds.contains(e) ||
        !e.contains(o) || (o.empty() && !e.empty())) {
      os << "rank " << q << ": owned [" << o.row0 << "+" << o.rows << ", " << o.col0 << "+" << o.cols
         << ") and extent [" << e.row0 << "+" << e.rows << ", " << e.col0 << "+" << e.cols
         << ") are not nested inside the grid " << dec.bounds.rows << " x " << dec.bounds.cols;
      return os.str();
    }
    area += o.area();
    for (int p = 0; p < q; ++p)
      if (!intersect(o, dec.owned[p]).empty()) {
        os << "owned rects of ranks " << p << " and " << q << " overlap";
        return os.str();
      }
  }
  if (area != dec.bounds.area()) {
    os << "owned rects cover " << area << " pixels of a grid of " << dec.bounds.area();
    return os.str();
  }
  return {};
}

Rect to_local(const Rect& r, const Rect& extent) {
  return Rect{r.row0 - extent.row0, r.col0 - extent.col0, r.rows, r.cols};
}

/// Copies the rect `r` of `local` into `dst` (row-major, r.cols wide).
template <class T>
void pack(const ExecSpace& exec, const View2<T>& local, const Rect& r, T* dst) {
  const long r0 = r.row0, c0 = r.col0, w = r.cols;
  Kokkos::parallel_for(
      "ptycho::halo_pack",
      Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<long>>(exec, {r0, c0}, {r.row1(), r.col1()}),
      KOKKOS_LAMBDA(const long i, const long j) { dst[(i - r0) * w + (j - c0)] = local(i, j); });
}

/// Adds (scatter_sum) or writes (gather) `src` into the rect `r` of `local`.
template <class T>
void unpack(const ExecSpace& exec, const View2<T>& local, const Rect& r, const T* src, bool add) {
  const long r0 = r.row0, c0 = r.col0, w = r.cols;
  const Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<2>, Kokkos::IndexType<long>> policy(exec, {r0, c0},
                                                                                          {r.row1(), r.col1()});
  if (add)
    Kokkos::parallel_for(
        "ptycho::halo_unpack_add", policy,
        KOKKOS_LAMBDA(const long i, const long j) { local(i, j) += src[(i - r0) * w + (j - c0)]; });
  else
    Kokkos::parallel_for(
        "ptycho::halo_unpack", policy,
        KOKKOS_LAMBDA(const long i, const long j) { local(i, j) = src[(i - r0) * w + (j - c0)]; });
}

/// The leading slots of `buf` that hold `count` values of T.
template <class View>
auto leading_slots(const View& buf, std::size_t count, std::size_t value_bytes) {
  const std::size_t slots = (count * value_bytes + sizeof(cdouble) - 1) / sizeof(cdouble);
  return Kokkos::subview(buf, Kokkos::make_pair(std::size_t(0), slots));
}

}  // namespace

HaloPlan::HaloPlan(MPI_Comm comm, const Decomposition& dec) : m_comm(comm) {
  const int me = m_comm.rank();
  const int nranks = m_comm.size();

  // Validate collectively, so that all ranks throw together or none does.
  const std::string reason = invalid_reason(dec, nranks);
  const std::int64_t h = digest(dec);
  std::int64_t local[3] = {h, -h, reason.empty() ? 0 : 1};
  std::int64_t global[3] = {0, 0, 0};
  check_mpi(MPI_Allreduce(local, global, 3, MPI_INT64_T, MPI_MAX, m_comm.get()), "MPI_Allreduce (HaloPlan check)");
  PTYCHO_THROW_IF(!reason.empty(), "HaloPlan: rank " << me << ": " << reason);
  PTYCHO_THROW_IF(global[2] != 0, "HaloPlan: the decomposition is invalid on another rank");
  PTYCHO_THROW_IF(global[0] != -global[1], "HaloPlan: ranks were given different decompositions");

  m_owned = dec.owned[me];
  m_extent = dec.extent[me];
  std::size_t halo_total = 0, shared_total = 0;
  for (int q = 0; q < nranks; ++q) {
    if (q == me) continue;
    Peer p;
    p.rank = q;
    p.halo = to_local(intersect(m_extent, dec.owned[q]), m_extent);
    p.shared = to_local(intersect(m_owned, dec.extent[q]), m_extent);
    if (p.halo.empty() && p.shared.empty()) continue;
    for (const Rect* r : {&p.halo, &p.shared})
      PTYCHO_THROW_IF(static_cast<double>(r->area()) * sizeof(Slot) > INT_MAX,
                      "HaloPlan: a halo message of " << r->rows << " x " << r->cols << " pixels exceeds 2 GiB");
    p.halo_offset = halo_total;
    p.shared_offset = shared_total;
    halo_total += static_cast<std::size_t>(p.halo.area());
    shared_total += static_cast<std::size_t>(p.shared.area());
    m_peers.push_back(p);
  }
  m_halo_buf = SlotView(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::halo_buffer"), halo_total);
  m_shared_buf = SlotView(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::halo_shared_buffer"), shared_total);
  m_halo_host = Kokkos::create_mirror_view(m_halo_buf);
  m_shared_host = Kokkos::create_mirror_view(m_shared_buf);
  m_requests.assign(2 * m_peers.size(), MPI_REQUEST_NULL);
}

template <class T>
void HaloPlan::exchange(const ExecSpace& exec, const View2<T>& local, Mode mode) {
  static_assert(is_halo_value_v<T>, "HaloPlan exchanges float, double, cfloat or cdouble");
  static_assert(sizeof(T) <= sizeof(Slot), "pack buffers hold at most 16 bytes per pixel");
  PTYCHO_THROW_IF(
      static_cast<long>(local.extent(0)) != m_extent.rows || static_cast<long>(local.extent(1)) != m_extent.cols,
      "HaloPlan (rank " << rank() << "): local array is " << local.extent(0) << " x " << local.extent(1)
                        << " but the extent is " << m_extent.rows << " x " << m_extent.cols);
  if (m_peers.empty()) return;
  const bool scatter = mode == Mode::scatter_sum;
  // scatter_sum sends halo rects and receives shared rects; gather the reverse.
  const SlotView& send_dev = scatter ? m_halo_buf : m_shared_buf;
  const SlotView& recv_dev = scatter ? m_shared_buf : m_halo_buf;
  const HostSlotView& send_host = scatter ? m_halo_host : m_shared_host;
  const HostSlotView& recv_host = scatter ? m_shared_host : m_halo_host;
  auto send_rect = [scatter](const Peer& p) -> const Rect& { return scatter ? p.halo : p.shared; };
  auto recv_rect = [scatter](const Peer& p) -> const Rect& { return scatter ? p.shared : p.halo; };
  auto send_offset = [scatter](const Peer& p) { return scatter ? p.halo_offset : p.shared_offset; };
  auto recv_offset = [scatter](const Peer& p) { return scatter ? p.shared_offset : p.halo_offset; };
  std::size_t send_count = 0, recv_count = 0;
  for (const Peer& p : m_peers) {
    send_count += static_cast<std::size_t>(send_rect(p).area());
    recv_count += static_cast<std::size_t>(recv_rect(p).area());
  }
  T* const send_dev_ptr = reinterpret_cast<T*>(send_dev.data());
  T* const recv_dev_ptr = reinterpret_cast<T*>(recv_dev.data());
  T* const send_host_ptr = reinterpret_cast<T*>(send_host.data());
  T* const recv_host_ptr = reinterpret_cast<T*>(recv_host.data());

  std::size_t n_req = 0;
  for (const Peer& p : m_peers) {
    const Rect& r = recv_rect(p);
    if (r.empty()) continue;
    check_mpi(MPI_Irecv(recv_host_ptr + recv_offset(p), static_cast<int>(r.area() * sizeof(T)), MPI_BYTE, p.rank, m_tag,
                        m_comm.get(), &m_requests[n_req++]),
              "MPI_Irecv (halo)");
  }

  for (const Peer& p : m_peers)
    if (!send_rect(p).empty()) pack(exec, local, send_rect(p), send_dev_ptr + send_offset(p));
  if constexpr (!kHostAccessible) {
    Kokkos::deep_copy(exec, leading_slots(send_host, send_count, sizeof(T)),
                      leading_slots(send_dev, send_count, sizeof(T)));
  }
  exec.fence();

  for (const Peer& p : m_peers) {
    const Rect& r = send_rect(p);
    if (r.empty()) continue;
    check_mpi(MPI_Isend(send_host_ptr + send_offset(p), static_cast<int>(r.area() * sizeof(T)), MPI_BYTE, p.rank, m_tag,
                        m_comm.get(), &m_requests[n_req++]),
              "MPI_Isend (halo)");
  }
  check_mpi(MPI_Waitall(static_cast<int>(n_req), m_requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall (halo)");

  if constexpr (!kHostAccessible) {
    Kokkos::deep_copy(exec, leading_slots(recv_dev, recv_count, sizeof(T)),
                      leading_slots(recv_host, recv_count, sizeof(T)));
  }
  // Peers in ascending rank order: the sum order is fixed, so results are reproducible.
  for (const Peer& p : m_peers)
    if (!recv_rect(p).empty()) unpack(exec, local, recv_rect(p), recv_dev_ptr + recv_offset(p), scatter);
  exec.fence();
}

template <class T>
void HaloPlan::scatter_sum(const ExecSpace& exec, const View2<T>& local) {
  exchange(exec, local, Mode::scatter_sum);
}

template <class T>
void HaloPlan::gather(const ExecSpace& exec, const View2<T>& local) {
  exchange(exec, local, Mode::gather);
}

template void HaloPlan::scatter_sum<float>(const ExecSpace&, const View2<float>&);
template void HaloPlan::scatter_sum<double>(const ExecSpace&, const View2<double>&);
template void HaloPlan::scatter_sum<cfloat>(const ExecSpace&, const View2<cfloat>&);
template void HaloPlan::scatter_sum<cdouble>(const ExecSpace&, const View2<cdouble>&);
template void HaloPlan::gather<float>(const ExecSpace&, const View2<float>&);
template void HaloPlan::gather<double>(const ExecSpace&, const View2<double>&);
template void HaloPlan::gather<cfloat>(const ExecSpace&, const View2<cfloat>&);
template void HaloPlan::gather<cdouble>(const ExecSpace&, const View2<cdouble>&);

}  // namespace ptycho
