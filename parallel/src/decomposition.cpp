#include "ptycho/parallel/decomposition.hpp"

#include "ptycho/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ptycho {

namespace {

/// The pixel line of a coordinate [pixels]: floor(x), clamped to [0, n).
long clamped_line(double x, long n) {
  const double f = std::floor(x);
  if (!(f >= 0)) return 0;  // also catches -inf (NaN is rejected by callers)
  if (f > static_cast<double>(n - 1)) return n - 1;
  return static_cast<long>(f);
}

/// Greedy grouping of lines [0, L) with at most `cap` keys per group: for each
/// start line l, next[l] is the furthest end e with weight(l, e) <= cap, and
/// groups[l] is the least number of groups covering [l, L). Needs every
/// weight <= cap. groups is non-increasing in l.
struct Greedy {
  std::vector<long> next;
  std::vector<long> groups;
};

Greedy greedy(const std::vector<long>& prefix, long cap) {
  const long n_lines = static_cast<long>(prefix.size()) - 1;
  Greedy g;
  g.next.assign(n_lines + 1, n_lines);
  g.groups.assign(n_lines + 1, 0);
  long e = n_lines;
  for (long l = n_lines - 1; l >= 0; --l) {
    while (prefix[e] - prefix[l] > cap) --e;  // next(l) is non-decreasing in l
    g.next[l] = e;
    g.groups[l] = 1 + g.groups[e];
  }
  return g;
}

/// Cuts the lines [0, L) (L = weight.size(), weight[l] = number of keys on
/// line l) into `pieces` contiguous pieces; returns pieces + 1 ascending cuts
/// from 0 to L. With L >= pieces, every piece has at least one line, and the
/// largest piece weight is the least possible (at most ceil(n / pieces) +
/// max weight - 1). Among cuts achieving it, each piece in turn takes the
/// weight closest to an equal share of what remains, then the length closest
/// to an equal share of the remaining lines. With L < pieces, each line is a
/// piece and the last pieces are empty.
std::vector<long> split_lines(const std::vector<long>& weight, int pieces) {
  const long n_lines = static_cast<long>(weight.size());
  std::vector<long> cuts(pieces + 1, n_lines);
  cuts[0] = 0;
  if (n_lines < pieces) {
    for (int i = 0; i <= pieces; ++i) cuts[i] = std::min<long>(i, n_lines);
    return cuts;
  }
  std::vector<long> prefix(n_lines + 1, 0);
  for (long l = 0; l < n_lines; ++l) prefix[l + 1] = prefix[l] + weight[l];
  const long total = prefix[n_lines];
  const long heaviest = n_lines ? *std::max_element(weight.begin(), weight.end()) : 0;
  const long share = (total + pieces - 1) / pieces;

  // The least feasible cap: in [max(heaviest, share), share + heaviest - 1].
  long lo = std::max(heaviest, share);
  long hi = std::max(lo, share + heaviest - 1);
  while (lo < hi) {
    const long mid = lo + (hi - lo) / 2;
    if (greedy(prefix, mid).groups[0] <= pieces)
      hi = mid;
    else
      lo = mid + 1;
  }
  const Greedy g = greedy(prefix, lo);

  // Invariant at piece i starting at line s: groups[s] <= remaining pieces <= n_lines - s.
  long s = 0;
  for (int i = 0; i < pieces; ++i) {
    const int remaining = pieces - i;
    long end = n_lines;
    if (remaining > 1) {
      const long e_hi = std::min(g.next[s], n_lines - (remaining - 1));
      long e_lo = s + 1;
      while (g.groups[e_lo] > remaining - 1) ++e_lo;
      PTYCHO_THROW_IF(e_lo > e_hi, "split_lines: no feasible cut for piece " << i << " of " << pieces);
      const double target = static_cast<double>(prefix[n_lines] - prefix[s]) / remaining;
      const double target_len = static_cast<double>(n_lines - s) / remaining;
      double best_w = std::numeric_limits<double>::infinity();
      double best_len = best_w;
      for (long e = e_lo; e <= e_hi; ++e) {
        const double dw = std::abs(static_cast<double>(prefix[e] - prefix[s]) - target);
        const double dl = std::abs(static_cast<double>(e - s) - target_len);
        if (dw < best_w || (dw == best_w && dl < best_len)) {
          best_w = dw;
          best_len = dl;
          end = e;
        }
      }
    }
    cuts[i + 1] = end;
    s = end;
  }
  return cuts;
}

/// Index of the piece [cuts[k], cuts[k+1]) holding line x (cuts ascending, cuts[0] <= x < cuts.back()).
int piece_of(const std::vector<long>& cuts, long x) {
  return static_cast<int>(std::upper_bound(cuts.begin(), cuts.end(), x) - cuts.begin()) - 1;
}

}  // namespace

RankGrid rank_grid(int nranks) {
  PTYCHO_THROW_IF(nranks < 1, "rank_grid: nranks must be positive, got " << nranks);
  int cols = 1;
  for (int d = 1; static_cast<long>(d) * d <= nranks; ++d)
    if (nranks % d == 0) cols = d;
  return RankGrid{nranks / cols, cols};
}

Rect Decomposition::owned_in_local(int rank) const {
  const Rect& o = owned.at(rank);
  const Rect& e = extent.at(rank);
  return Rect{o.row0 - e.row0, o.col0 - e.col0, o.rows, o.cols};
}

Decomposition decompose(const std::vector<Position>& positions, long object_rows, long object_cols, int frame_size,
                        int nranks, const DecompositionOptions& opt) {
  PTYCHO_THROW_IF(object_rows < 1 || object_cols < 1,
                  "decompose: object grid must be non-empty, got " << object_rows << " x " << object_cols);
  PTYCHO_THROW_IF(frame_size < 1, "decompose: frame size must be positive, got " << frame_size);
  PTYCHO_THROW_IF(nranks < 1, "decompose: nranks must be positive, got " << nranks);
  PTYCHO_THROW_IF(opt.refine_margin < 0, "decompose: refine_margin must be >= 0, got " << opt.refine_margin);
  const RankGrid grid = opt.grid ? *opt.grid : rank_grid(nranks);
  PTYCHO_INPUT_ERROR_IF(grid.rows < 1 || grid.cols < 1 || grid.size() != nranks,
                        "rank grid " << grid.rows << " x " << grid.cols << " does not match " << nranks << " ranks");
  for (std::size_t j = 0; j < positions.size(); ++j)
    PTYCHO_INPUT_ERROR_IF(
        !std::isfinite(positions[j].row) || !std::isfinite(positions[j].col),
        "position " << j << " is not finite (row " << positions[j].row << ", col " << positions[j].col << ")");

  Decomposition dec;
  dec.grid = grid;
  dec.bounds = Rect{0, 0, object_rows, object_cols};
  dec.frame_size = frame_size;
  dec.halo = frame_size / 2 + 1 + opt.refine_margin;

  const std::size_t n = positions.size();
  std::vector<long> row_line(n), col_line(n);
  for (std::size_t j = 0; j < n; ++j) {
    row_line[j] = clamped_line(positions[j].row, object_rows);
    col_line[j] = clamped_line(positions[j].col, object_cols);
  }

  // Row bands at quantiles of all rows, then each band's columns at quantiles of its own positions.
  std::vector<long> weight(object_rows, 0);
  for (std::size_t j = 0; j < n; ++j) ++weight[row_line[j]];
  dec.row_cuts = split_lines(weight, grid.rows);
  std::vector<int> band(n);
  for (std::size_t j = 0; j < n; ++j) band[j] = piece_of(dec.row_cuts, row_line[j]);

  dec.col_cuts.resize(grid.rows);
  for (int b = 0; b < grid.rows; ++b) {
    weight.assign(object_cols, 0);
    for (std::size_t j = 0; j < n; ++j)
      if (band[j] == b) ++weight[col_line[j]];
    dec.col_cuts[b] = split_lines(weight, grid.cols);
  }

  dec.owned.resize(nranks);
  dec.extent.resize(nranks);
  for (int b = 0; b < grid.rows; ++b)
    for (int p = 0; p < grid.cols; ++p) {
      const int rank = b * grid.cols + p;
      Rect o{dec.row_cuts[b], dec.col_cuts[b][p], dec.row_cuts[b + 1] - dec.row_cuts[b],
             dec.col_cuts[b][p + 1] - dec.col_cuts[b][p]};
      if (o.empty()) o.rows = o.cols = 0;
      dec.owned[rank] = o;
      dec.extent[rank] = o.empty() ? o : grow(o, dec.halo, dec.bounds);
    }

  dec.owner.resize(n);
  dec.positions_of.assign(nranks, {});
  for (std::size_t j = 0; j < n; ++j) {
    const int rank = band[j] * grid.cols + piece_of(dec.col_cuts[band[j]], col_line[j]);
    dec.owner[j] = rank;
    dec.positions_of[rank].push_back(static_cast<long>(j));
  }
  return dec;
}

int owner_of(const Decomposition& dec, double row, double col) {
  PTYCHO_THROW_IF(!std::isfinite(row) || !std::isfinite(col),
                  "owner_of: position is not finite (row " << row << ", col " << col << ")");
  PTYCHO_THROW_IF(static_cast<int>(dec.row_cuts.size()) != dec.grid.rows + 1,
                  "owner_of: decomposition has no cuts (not made by decompose?)");
  const int b = piece_of(dec.row_cuts, clamped_line(row, dec.bounds.rows));
  const int p = piece_of(dec.col_cuts[b], clamped_line(col, dec.bounds.cols));
  return b * dec.grid.cols + p;
}

}  // namespace ptycho
