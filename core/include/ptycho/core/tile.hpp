#pragma once
/// Rectangles of the object grid, and the local tile an engine works on.
///
/// Ownership contract: the object grid (H x W) is partitioned into owned
/// rectangles, one per rank. Each rank stores a local array over its
/// `extent`: its owned rectangle grown by a halo wide enough for every patch
/// of its positions. Pixels of the extent outside the owned rectangle are
/// halo pixels: another rank owns them. Engines accumulate into the whole
/// extent; the parallel layer folds halo contributions into their owners
/// (scatter_sum) and refreshes halos from the owners (gather).
#include <algorithm>

namespace ptycho {

/// A half-open rectangle [row0, row0 + rows) x [col0, col0 + cols) in object pixels.
struct Rect {
  long row0 = 0;
  long col0 = 0;
  long rows = 0;
  long cols = 0;

  long row1() const { return row0 + rows; }
  long col1() const { return col0 + cols; }
  bool empty() const { return rows <= 0 || cols <= 0; }
  long area() const { return empty() ? 0 : rows * cols; }
  bool contains(long r, long c) const { return r >= row0 && r < row1() && c >= col0 && c < col1(); }
  bool contains(const Rect& o) const {
    return o.empty() || (o.row0 >= row0 && o.col0 >= col0 && o.row1() <= row1() && o.col1() <= col1());
  }
  friend bool operator==(const Rect& a, const Rect& b) {
    return a.row0 == b.row0 && a.col0 == b.col0 && a.rows == b.rows && a.cols == b.cols;
  }
};

/// The intersection of two rectangles (empty, with zero size, if they do not meet).
inline Rect intersect(const Rect& a, const Rect& b) {
  Rect r;
  r.row0 = std::max(a.row0, b.row0);
  r.col0 = std::max(a.col0, b.col0);
  r.rows = std::max(0L, std::min(a.row1(), b.row1()) - r.row0);
  r.cols = std::max(0L, std::min(a.col1(), b.col1()) - r.col0);
  if (r.rows == 0 || r.cols == 0) r.rows = r.cols = 0;
  return r;
}

/// `a` grown by `by` pixels on every side, then clipped to `bounds`.
inline Rect grow(const Rect& a, long by, const Rect& bounds) {
  return intersect(Rect{a.row0 - by, a.col0 - by, a.rows + 2 * by, a.cols + 2 * by}, bounds);
}

}  // namespace ptycho
