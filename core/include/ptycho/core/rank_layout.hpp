#pragma once
/// One rank's share of a reconstruction, as the files that hold the whole
/// reconstruction see it: results (io/result.hpp) and checkpoints
/// (io/checkpoint.hpp) both place each rank's data in the global datasets
/// through this one type.
///
/// The object is the global grid (object_rows x object_cols); each rank
/// writes its owned rectangle (the ranks' owned rectangles tile the grid)
/// and may read back its whole extent (owned plus halo). The frames are the
/// global indices of the rank's frames among total_frames, each of
/// frame_size x frame_size pixels.
#include "ptycho/core/tile.hpp"

#include <vector>

namespace ptycho {

struct RankLayout {
  long object_rows = 0;      ///< H of the global object [px]
  long object_cols = 0;      ///< W [px]
  Rect owned;                ///< pixels this rank owns and writes [global px]
  Rect extent;               ///< pixels of its local arrays (owned plus halo) [global px]
  std::vector<long> frames;  ///< global indices of the local frames, ascending
  long total_frames = 0;     ///< N
  int frame_size = 0;        ///< M

  /// The layout of one process holding everything: the whole object owned,
  /// all `total_frames` frames local.
  static RankLayout whole(long object_rows, long object_cols, long total_frames, int frame_size) {
    RankLayout l;
    l.object_rows = object_rows;
    l.object_cols = object_cols;
    l.owned = l.extent = Rect{0, 0, object_rows, object_cols};
    l.total_frames = total_frames;
    l.frame_size = frame_size;
    l.frames.resize(total_frames > 0 ? size_t(total_frames) : 0);
    for (long j = 0; j < total_frames; ++j) l.frames[size_t(j)] = j;
    return l;
  }
};

}  // namespace ptycho
