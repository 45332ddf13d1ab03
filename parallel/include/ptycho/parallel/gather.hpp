#pragma once
/// Gathers the ranks' tiles of a distributed object into one array on one
/// rank: for previews, the library API's object() and the Python module.
/// Files never need it (io/ writes the tiles collectively).
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"

#include <mpi.h>

namespace ptycho {

/// Collective over `comm`: each rank passes its tile (rows, cols of `where`,
/// LayoutRight) and where it lies in the (rows x cols) object; the tiles must
/// not overlap. Rank `root` gets the object, with pixels that no tile covers
/// set to zero; the other ranks get an empty view. Tiles travel in messages
/// of at most 64 MiB, so any object size works. Throws ptycho::Error (on the
/// root) if a tile lies outside the object.
HostCView2 gather_tiles(MPI_Comm comm, const HostCView2& tile, const Rect& where, long rows, long cols, int root = 0);

}  // namespace ptycho
