#pragma once
/// Redistribution between the tiled object and FFTW-MPI's slab layout.
///
/// The reconstruction keeps the object as tiles: rank r owns a rectangle of
/// the (rows x cols) object grid (Decomposition::owned). FFTW-MPI transforms
/// a 2-D array distributed in row slabs: rank r holds the rows
/// [local_0_start, local_0_start + local_n0) in full, as
/// fftwf_mpi_local_size_2d assigns them (the same rows for complex DFTs and
/// for real-to-real transforms of the same size). A SlabPlan moves a field
/// from one layout to the other and back.
///
/// The plan is built once (collectively): it learns every rank's owned
/// rectangle, intersects it with every rank's slab, and describes each
/// intersection as an MPI subarray datatype of the tile array and of the slab
/// array, one pair per peer and element size. Executing packs nothing and
/// allocates nothing: the intersections travel straight between the two
/// arrays (non-blocking, one tag, self-messages included). Fields of float
/// (4 bytes: real images, phases) and cfloat (8 bytes: the object) are
/// supported. A rank whose tile or slab is empty simply exchanges less.
/// Every rank of the communicator must call each operation, in the same order.
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/comm.hpp"

#include <mpi.h>

#include <memory>
#include <vector>

namespace ptycho {

/// This rank's row slab under FFTW-MPI for a (rows x cols) grid on `comm`:
/// [row0, row0 + rows) x [0, cols), as fftwf_mpi_local_size_2d gives it, and
/// alloc, the number of complex elements FFTW needs for it (at least its area).
struct Slab {
  Rect rect;
  long alloc = 0;
};
/// Calls fftwf_mpi_local_size_2d (initialising FFTW-MPI once per process). Collective.
Slab fftw_slab(MPI_Comm comm, long rows, long cols);

class SlabPlan {
 public:
  /// Collective over `comm`: `owned` is this rank's rectangle of the
  /// (rows x cols) grid; the owned rectangles of all ranks must partition the
  /// grid exactly (checked on every rank; throws ptycho::Error on all of them
  /// otherwise). The slabs are FFTW-MPI's for this grid and communicator.
  SlabPlan(MPI_Comm comm, const Rect& owned, long rows, long cols);
  ~SlabPlan();
  SlabPlan(const SlabPlan&) = delete;
  SlabPlan& operator=(const SlabPlan&) = delete;

  /// Tile -> slabs. `tile` points at this rank's owned pixel (0, 0), rows
  /// `tile_stride` elements apart (>= owned().cols; owned().cols for a dense
  /// tile); `slab` holds slab().rows rows of cols() elements. T is float or cfloat.
  template <class T>
  void to_slabs(const T* tile, long tile_stride, T* slab);
  /// Slabs -> tile: the inverse of to_slabs. Pixels of the tile array outside
  /// the owned rectangle (a halo) are not touched.
  template <class T>
  void to_tiles(const T* slab, T* tile, long tile_stride);

  const Rect& owned() const { return m_owned; }
  /// This rank's slab: whole rows of the grid.
  const Rect& slab() const { return m_slab.rect; }
  /// Complex elements FFTW-MPI needs for this rank's slab buffer.
  long slab_alloc() const { return m_slab.alloc; }
  long rows() const { return m_rows; }
  long cols() const { return m_cols; }
  MPI_Comm comm() const { return m_comm.get(); }
  int rank() const { return m_comm.rank(); }
  int size() const { return m_comm.size(); }

 private:
  struct Peer {
    int rank = 0;
    Rect tile_part;  ///< my owned ∩ peer's slab, global coordinates: sent by to_slabs
    Rect slab_part;  ///< my slab ∩ peer's owned, global coordinates: received by to_slabs
  };
  /// The datatypes of one element size and tile stride, built on first use.
  struct Types {
    int element_bytes = 0;
    long tile_stride = 0;
    std::vector<MPI_Datatype> tile;  ///< per peer: its tile_part in the tile array
    std::vector<MPI_Datatype> slab;  ///< per peer: its slab_part in the slab array
  };
  Types& types(int element_bytes, long tile_stride);
  void exchange(const void* from, void* to, int element_bytes, long tile_stride, bool forward);
  void free_types(Types& t);

  Comm m_comm;
  int m_tag = 7401;
  long m_rows = 0;
  long m_cols = 0;
  Rect m_owned;
  Slab m_slab;
  std::vector<Peer> m_peers;
  std::vector<Types> m_types;
  std::vector<MPI_Request> m_requests;
};

extern template void SlabPlan::to_slabs<float>(const float*, long, float*);
extern template void SlabPlan::to_slabs<cfloat>(const cfloat*, long, cfloat*);
extern template void SlabPlan::to_tiles<float>(const float*, float*, long);
extern template void SlabPlan::to_tiles<cfloat>(const cfloat*, cfloat*, long);

}  // namespace ptycho
