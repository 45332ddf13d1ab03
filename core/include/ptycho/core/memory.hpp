#pragma once
/// What a rank's reconstruction will allocate, worked out before anything is
/// allocated, from the scan's header, the chain, the mode count and the
/// rank's share of the frames and of the object.
///
/// The model counts the large arrays and nothing else (a few MB of plans,
/// libraries and small buffers come on top, see kProcessOverheadBytes):
///   frames       the counts, n M^2 x 4 bytes (the reconstruction shares the
///                frames as read on a host memory space; a device copy adds
///                another n M^2 x 4)
///   probes       the shifted probe modes of each frame, n K M^2 x 8, or of
///                each of min(n, q^2) slots with a shift quantum q
///   engine       per-frame waves the engine keeps: DM, RAAR and sDR one set
///                (n K M^2 x 8), ML two (waves and their search direction);
///                in the low-memory mode (EngineOptions::low_memory) DM and
///                RAAR half a set (complex halves), ML those of the frames its
///                far_field_budget keeps (none by default),
///                LSQ-ML one batch's corrections when it refines the probe,
///                the PIE family none; plus a few batches of work frames
///   object       the tile with its halo and the engine's sums over it
///                (numerator, denominator, steps): 80 bytes per pixel at most
/// It was checked against peak resident memory (README, "Memory").
#include "ptycho/core/engine.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace ptycho {

/// A rank's share of a reconstruction.
struct RankShare {
  long frames = 0;      ///< n: frames this rank holds
  int frame_size = 0;   ///< M
  int modes = 1;        ///< K
  int batch = 16;       ///< frames per batched FFT
  long tile_rows = 0;   ///< the rank's tile with its halo
  long tile_cols = 0;
  int shift_quantum = 0;  ///< the workspace's (low-memory mode): min(n, q^2) cached probes per mode
};

/// The bytes of waves per thread that the default batch keeps to: half of a
/// 1 MiB level-2 cache, so that a frame's wave stays in its core's cache from
/// the exit wave through both transforms to the accumulation (frames of 256^2
/// one or two at a time against 16: ML 3-10 % faster per iteration, DM up to
/// 10 % at 500 frames and within the noise at 1000; README, "Batches that
/// stay in cache").
inline constexpr double kBatchBytesPerThread = 512.0 * 1024;
/// The most frames per thread the default batch takes (small frames).
inline constexpr int kMaxDefaultBatchPerThread = 16;

/// The default frames per batched FFT for frames of M px with K modes on
/// `threads` threads: per thread, as many frames as fit in
/// kBatchBytesPerThread (at least 1, at most kMaxDefaultBatchPerThread).
int default_batch(int frame_size, int modes, int threads);

/// The batch a run uses: `batch` when it is positive (a job's, an option's),
/// otherwise default_batch for this process's threads (ExecSpace's concurrency).
int batch_or_default(int batch, int frame_size, int modes);

/// Bytes of libraries, plans and small buffers every rank holds besides the model's arrays.
inline constexpr double kProcessOverheadBytes = 96.0 * (1 << 20);
/// What libtorch and a network add to a rank that runs the nn engine (measured: about 164 MB for libtorch).
inline constexpr double kLearnedOverheadBytes = 256.0 * (1 << 20);

/// ML's far fields kept per frame (Psi and its direction dPsi): 2 K M^2 complex64.
double ml_far_field_bytes_per_frame(int frame_size, int modes);

/// The local frames whose far fields ML keeps in the low-memory mode with
/// `budget` bytes for them (EngineOptions::far_field_budget): whole batches
/// of the first frames, min(n, floor(budget / per frame / batch) * batch);
/// all n when the budget holds them all, 0 when it holds no batch.
long ml_kept_far_fields(long frames, int frame_size, int modes, int batch, double budget);

/// The estimated peak bytes of one rank running `chain` on `share` (the
/// largest over the chain's engines: one engine's buffers live at a time).
double estimate_rank_bytes(const RankShare& share, const std::vector<EngineOptions>& chain);

/// Bytes this machine can still give its processes: MemAvailable from
/// /proc/meminfo, capped by the cgroup's limit (memory.max less
/// memory.current) where there is one. 0 if neither can be read.
double available_memory_bytes();

/// "1.5 GiB", "320 MiB", "12 KiB": a size for messages.
std::string format_bytes(double bytes);

/// Parses a memory size: a number with an optional unit K, M, G, T (powers of
/// 1024; KiB, MB, GB... and lower case are read the same) or B. Throws
/// InputError naming `what` on anything else, or a size that is not > 0.
double parse_bytes(const std::string& text, const std::string& what);

}  // namespace ptycho
