#pragma once
/// The trace of a run (`ptycho reconstruct --trace FILE`): the probe modes,
/// the positions and the estimated model mismatch at every progress line,
/// so that how they evolve can be plotted and, where a ground truth exists,
/// compared with it (tools/trace_vs_truth.py; README, "Blind tier").
///
/// File layout (HDF5, T points, K modes, M x M frames, N positions):
///   /iteration             (T)          int64   iterations done over the chain
///   /engine                (T)          string  the engine that ran the last one
///   /cost                  (T)          float64 its cost
///   /probe_modes           (T, K, M, M) complex64, scaled to counts
///   /positions_px          (T, N, 2)    float64 (row, col) [object px], input order
///   /probe_error_pct, /position_error_nm, /partial_coherence_nm (T) float64:
///                                       the estimated mismatch (core/probe_modes.hpp)
///   /occupancy             (T, K)       float64 share of the power in each mode
#include "ptycho/core/probe_modes.hpp"
#include "ptycho/core/types.hpp"

#include <string>
#include <vector>

namespace ptycho::io {

struct TracePoint {
  long iteration = 0;
  std::string engine;
  double cost = 0;
  HostCView3 probe_modes;  ///< (K, M, M)
  std::vector<Position> positions_px;
  Mismatch mismatch;
};

/// Bytes one point of K modes of M x M and N positions holds.
inline double trace_point_bytes(long modes, long frame_size, long positions) {
  return 8.0 * double(modes) * double(frame_size) * double(frame_size) + 16.0 * double(positions) + 8.0 * modes + 64;
}

/// Writes the points (serial, atomic). Every point must have the first's
/// mode count, frame size and number of positions (throws otherwise).
void write_trace(const std::string& path, const std::vector<TracePoint>& points);

}  // namespace ptycho::io
