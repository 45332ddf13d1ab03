#pragma once
/// The halo exchange plan of the tiled object.
///
/// Each rank stores a local array over its extent (owned rectangle + halo,
/// see ptycho/core/tile.hpp): a LayoutRight View2<T> whose dims equal the
/// extent, local(i, j) being global pixel (extent.row0 + i, extent.col0 + j).
/// Two operations keep the tiles consistent:
///
/// - scatter_sum: every OWNED pixel becomes the sum, over all ranks whose
///   extent holds it (itself included), of their local values. Halo pixels
///   are left unchanged (they still hold this rank's own contribution; call
///   gather to refresh them). Use it to fold overlapping numerator and
///   denominator accumulations into their owners, then divide once.
/// - gather: every HALO pixel becomes its owner's value. Owned pixels are
///   unchanged.
///
/// The plan is built once (collectively) from a Decomposition and executed
/// many times: it duplicates the communicator, computes, for every peer
/// (diagonal neighbours included: it is plain rectangle intersection), the
/// rectangle of its halo that the peer owns and the rectangle of its owned
/// pixels that lie in the peer's halo, and allocates pack buffers for the
/// largest supported value type (16 bytes per pixel). Executing allocates
/// nothing. Messages are MPI_BYTE, non-blocking, on one tag; a rank with no
/// positions takes part like any other, and a rank with an empty extent
/// simply exchanges nothing. All ranks of the communicator must call each
/// operation with the same value type, in the same order.
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/comm.hpp"
#include "ptycho/parallel/decomposition.hpp"

#include <cstddef>
#include <type_traits>
#include <vector>

namespace ptycho {

/// The value types a HaloPlan exchanges: float, double, cfloat, cdouble.
template <class T>
inline constexpr bool is_halo_value_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, cfloat> || std::is_same_v<T, cdouble>;

/// Halo exchange plan for one rank's tile of a Decomposition. Not copyable (it
/// owns its buffers and requests); movable.
class HaloPlan {
 public:
  /// Builds the plan; collective over `comm`, whose size must be
  /// dec.nranks() and whose rank r takes tile r. Validates (on every rank,
  /// consistently) that owned rects partition the grid, that each extent lies
  /// in the grid and holds its owned rect, and that all ranks passed the same
  /// decomposition; throws ptycho::Error on every rank otherwise.
  HaloPlan(MPI_Comm comm, const Decomposition& dec);

  HaloPlan(const HaloPlan&) = delete;
  HaloPlan& operator=(const HaloPlan&) = delete;
  HaloPlan(HaloPlan&&) = default;
  HaloPlan& operator=(HaloPlan&&) = default;

  /// Owned pixels := sum over all ranks whose extent holds them; halo pixels unchanged.
  /// `local` must have dims == extent(). Collective; returns when `local` is final.
  template <class T>
  void scatter_sum(const ExecSpace& exec, const View2<T>& local);
  template <class T>
  void scatter_sum(const View2<T>& local) {
    scatter_sum(ExecSpace(), local);
  }

  /// Halo pixels := the owner's value; owned pixels unchanged.
  /// `local` must have dims == extent(). Collective; returns when `local` is final.
  template <class T>
  void gather(const ExecSpace& exec, const View2<T>& local);
  template <class T>
  void gather(const View2<T>& local) {
    gather(ExecSpace(), local);
  }

  /// This rank's owned rectangle [global object pixels].
  const Rect& owned() const { return m_owned; }
  /// This rank's extent: the dims and origin of its local array [global object pixels].
  const Rect& extent() const { return m_extent; }
  /// The owned rectangle in local coordinates of the extent.
  Rect owned_in_local() const {
    return Rect{m_owned.row0 - m_extent.row0, m_owned.col0 - m_extent.col0, m_owned.rows, m_owned.cols};
  }
  /// The plan's own (duplicated) communicator.
  MPI_Comm comm() const { return m_comm.get(); }
  int rank() const { return m_comm.rank(); }
  int size() const { return m_comm.size(); }
  /// The number of peers this rank exchanges with (either direction).
  int num_peers() const { return static_cast<int>(m_peers.size()); }

 private:
  /// What this rank exchanges with one peer; rects in LOCAL coordinates, offsets in pixels.
  struct Peer {
    int rank = 0;
    Rect halo;    ///< my extent ∩ peer's owned: received in gather, sent in scatter_sum
    Rect shared;  ///< my owned ∩ peer's extent: sent in gather, received (and added) in scatter_sum
    std::size_t halo_offset = 0;
    std::size_t shared_offset = 0;
  };
  enum class Mode { scatter_sum, gather };
  using Slot = cdouble;  ///< one pixel slot of the pack buffers: the largest value type
  using SlotView = View1<Slot>;
  using HostSlotView = typename SlotView::HostMirror;

  template <class T>
  void exchange(const ExecSpace& exec, const View2<T>& local, Mode mode);

  Comm m_comm;
  int m_tag = 7301;
  Rect m_owned;
  Rect m_extent;
  std::vector<Peer> m_peers;
  SlotView m_halo_buf;       ///< halo rects of all peers, packed
  SlotView m_shared_buf;     ///< shared rects of all peers, packed
  HostSlotView m_halo_host;  ///< host staging (the same view if MemSpace is host-accessible)
  HostSlotView m_shared_host;
  std::vector<MPI_Request> m_requests;
};

extern template void HaloPlan::scatter_sum<float>(const ExecSpace&, const View2<float>&);
extern template void HaloPlan::scatter_sum<double>(const ExecSpace&, const View2<double>&);
extern template void HaloPlan::scatter_sum<cfloat>(const ExecSpace&, const View2<cfloat>&);
extern template void HaloPlan::scatter_sum<cdouble>(const ExecSpace&, const View2<cdouble>&);
extern template void HaloPlan::gather<float>(const ExecSpace&, const View2<float>&);
extern template void HaloPlan::gather<double>(const ExecSpace&, const View2<double>&);
extern template void HaloPlan::gather<cfloat>(const ExecSpace&, const View2<cfloat>&);
extern template void HaloPlan::gather<cdouble>(const ExecSpace&, const View2<cdouble>&);

}  // namespace ptycho
