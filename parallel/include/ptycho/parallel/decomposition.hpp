#pragma once
/// Pure geometry of the distributed object: the rank grid, the tiling of the
/// object grid into owned rectangles balanced by scan positions, the halo
/// extents and the assignment of positions to tiles. Nothing here makes an
/// MPI call: every rank computes the same Decomposition from the same input,
/// and the communication plans (HaloPlan) are built from it.
///
/// Tiling: the object grid [0, H) x [0, W) is cut into `grid.rows` row bands,
/// and each band into `grid.cols` pieces, at integer pixel lines. Rank
/// `b * grid.cols + p` owns piece p of band b. Cuts are placed so that ranks
/// get about equal numbers of positions, not equal areas (areas break ties,
/// so regions without positions are shared out evenly).
///
/// Ownership of a position: the tile whose owned rectangle holds the pixel
/// (floor(row), floor(col)) of its probe centre, clamped to the grid. A centre
/// outside the grid therefore belongs to the nearest edge tile.
///
/// Balance guarantee. Let N be the number of positions, R = rows x cols,
/// m_r the largest number of positions sharing one integer row floor(row) and
/// m_c the largest number sharing one integer column. Then every rank owns at
/// most  ceil((ceil(N / rows) + m_r - 1) / cols) + m_c - 1  positions, which
/// is ceil(N / R) when no two positions share a pixel row or column. (Each
/// 1-D split minimises the largest piece over all cuts at integer lines; the
/// optimum is at most ceil(n / p) + m - 1.)
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"

#include <optional>
#include <vector>

namespace ptycho {

/// A 2-D grid of ranks: `rows` bands of `cols` tiles; rank = band * cols + piece.
struct RankGrid {
  int rows = 1;
  int cols = 1;

  int size() const { return rows * cols; }
  friend bool operator==(const RankGrid& a, const RankGrid& b) { return a.rows == b.rows && a.cols == b.cols; }
};

/// The most balanced factorisation rows x cols == nranks with rows >= cols
/// (as MPI_Dims_create would choose for two dimensions): cols is the largest
/// divisor of nranks not above sqrt(nranks). A prime gives nranks x 1.
RankGrid rank_grid(int nranks);

/// Knobs of decompose().
struct DecompositionOptions {
  /// The rank grid to use; by default rank_grid(nranks). Its size must equal nranks.
  std::optional<RankGrid> grid;
  /// Extra halo width [object pixels] beyond the frame's reach, so positions
  /// may move by this much under refinement and still read inside the extent.
  /// DistributedReconstruction raises it to position_margin(chain) (driver.hpp).
  int refine_margin = 4;
};

/// The tiling of the object grid over ranks and the assignment of positions
/// to tiles. A plain value: identical on every rank that computed it.
struct Decomposition {
  RankGrid grid;               ///< the rank grid
  Rect bounds;                 ///< the whole object grid [0, H) x [0, W) [pixels]
  int frame_size = 0;          ///< M, the frame (patch) size [pixels]
  long halo = 0;               ///< halo width: M / 2 + 1 + refine_margin [pixels]
  std::vector<long> row_cuts;  ///< grid.rows + 1 ascending lines: band b is rows [row_cuts[b], row_cuts[b + 1])
  std::vector<std::vector<long>> col_cuts;  ///< per band, grid.cols + 1 ascending lines
  std::vector<Rect> owned;                  ///< per rank: the pixels it owns; together an exact partition of `bounds`
  std::vector<Rect> extent;  ///< per rank: owned grown by `halo`, clipped to `bounds` (empty if owned is)
  std::vector<int> owner;    ///< per position: the rank that owns it
  std::vector<std::vector<long>> positions_of;  ///< per rank: its positions' global indices, ascending

  int nranks() const { return grid.size(); }
  /// `owned[rank]` in the local coordinates of `extent[rank]` (local (0, 0) is extent's corner).
  Rect owned_in_local(int rank) const;
};

/// Tiles the object grid (object_rows x object_cols pixels) over `nranks`
/// ranks, balancing the scan `positions` (probe centres in object pixels,
/// (row, col)) per rank. Every patch [floor(r - M/2), +M) x [floor(c - M/2), +M)
/// of a rank's positions, clipped to the grid, lies inside its extent, even
/// after the position moves by up to `refine_margin` pixels.
/// Throws ptycho::InputError for non-finite positions or a grid whose size is not nranks.
Decomposition decompose(const std::vector<Position>& positions, long object_rows, long object_cols, int frame_size,
                        int nranks, const DecompositionOptions& opt = {});

/// The rank that owns a probe centre at (row, col) [object pixels] under `dec`:
/// the tile holding pixel (floor(row), floor(col)), clamped to the grid.
/// For migrating positions after refinement. Throws on a non-finite centre.
int owner_of(const Decomposition& dec, double row, double col);

}  // namespace ptycho
