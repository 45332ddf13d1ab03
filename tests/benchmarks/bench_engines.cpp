// bench_engines: seconds per iteration of every reconstruction engine, run by
// the distributed driver on MPI_COMM_WORLD, next to the FFT floor measured in
// the same run. A benchmark prints numbers; it is not a test.
//
//   mpirun -n R bench_engines [--frames N] [--size M] [--iterations K]
//                             [--warmup W] [--engines dm,raar,ml,epie,rpie,mpie]
//                             [--refine-probe] [--photons P] [--kernels]
//                             [--background none|constant|pixel]
//                             [--shift-quantum Q] [--low-memory] [--object-size S]
//                             [--keep-far-fields F]
//
// Defaults: 1000 frames of 256 x 256, 10 timed iterations after 10 warm-up
// ones: the steady state of a long run (ML checks its line search against
// the exact slope in each of its first 10 iterations, then every 10th).
// --background makes every engine refine a detector background (the
// simulated scan has none): what the refinement costs. --shift-quantum
// Q > 0 runs the low-memory mode's bounded probe cache (sub-pixel shifts
// rounded to 1/Q px, at most Q^2 cached probes per mode; `reconstruct
// --low-memory` uses Q = 8). --low-memory runs `reconstruct --low-memory`:
// Q = 8 unless --shift-quantum says otherwise, and engines that can remake
// their per-frame waves (ML) keep none (EngineOptions::low_memory).
// --keep-far-fields F (0..1, implies --low-memory) gives ML a far-field
// budget for that share of each rank's frames (EngineOptions::
// far_field_budget: whole batches kept, the rest made again), what
// `reconstruct` does when it switches the low-memory mode on by itself. --object-size S sets the object to S x S px
// and spreads the N positions over it (a large-scan benchmark: the step
// then follows from S and N, whatever the overlap).
//
// The scan is simulated in memory (ptycho::sim::simulate, Fermat spiral, one
// probe mode). The object is sized so that the scan step is about 0.11 M
// (28 px for M = 256, a spot of about M/5 px radius: usual overlap), and the
// step is then set so that the spiral holds exactly N positions. Every rank
// simulates the same scan (deterministic), keeps only the frames the driver
// assigns to it, and drops the rest before reconstructing.
//
// For each engine the driver runs W + K iterations of a one-engine chain.
// The progress callback, which every rank gets after every iteration, stamps
// the time: a timed iteration runs from the end of the previous callback to
// its own (the time up to the first callback includes the engine's setup, so
// W >= 1).
//
// The FFT floor is what an ideal engine must spend per iteration: one forward
// and one inverse transform of every local frame, 2 x N_local frame FFTs, by
// ptycho::FramePlan with Centring::none, a batch (the driver's batch:
// ptycho::default_batch unless --batch says otherwise) at a time on a buffer
// of one batch, as the engines transform. One floor pass
// runs in the callback after iteration W and after each timed iteration but
// the last (outside the engine's time), so floor and engine share the machine
// in the same way even when other jobs come and go. The buffer is refilled
// from the same data before each batch, outside the timed transforms, so the
// values stay finite; this also leaves the batch in cache, as the engines'
// exit-wave kernel does just before their forward transform.
//
// Each timed iteration and each floor pass is taken on the slowest rank. The
// table gives the means over the K of them and their ratio, and the fastest
// iteration and floor pass with their ratio (less sensitive to other load).
//
// The roofline. Besides its transforms, an engine must move some bytes
// through memory every iteration; the table counts those it cannot avoid
// (per rank, the largest share):
//   data      the measured counts, n M^2 x 4 bytes, once per pass over the
//             frames (passes = the engine's transforms per frame and mode / 2,
//             rounded up: ML's line search makes a second pass)
//   waves     the per-frame waves the engine keeps (core/memory.hpp: DM, RAAR
//             and sDR one set, ML two; with --low-memory DM, RAAR and sDR
//             half a set (complex halves) and ML none; the PIE family
//             none), n K M^2 x 8 bytes
//             per set, read and written
//   probes    the cached shifted probes, n K M^2 x 8 bytes (min(n, Q^2) K M^2
//             x 8 with --shift-quantum Q), read
//   object    the tile with its halo, read and written, and the sums over it
//             (numerator and denominator) written and read: 40 bytes per
//             pixel for DM, RAAR, sDR, ML and LSQ-ML, 16 for ePIE and rPIE
//             (in place), 32 for mPIE (its momentum)
// The stream bandwidth is a triad a = b + s c over 64 MB arrays, run by all
// ranks at once before the engines (so they share the memory bus as the
// engines do), best of 5, the slowest rank's. The engine's own transforms
// are counted (FramePlan::frames_transformed, the floor passes' excluded),
// and the roofline time is transforms x (floor per transform) + bytes /
// bandwidth; the ratio is the engine's time over it.
//
// --kernels additionally times every Kokkos kernel (parallel_for, _reduce and
// deep_copy, by label) during the timed iterations through Kokkos' tool
// callbacks and prints, per engine, where rank 0's time goes. The FFTs run
// inside the kernel "ptycho::FramePlan::execute"; time outside any kernel
// (MPI reductions and halo exchanges, host loops) shows as "outside kernels".
#include "ptycho/core/engine.hpp"
#include "ptycho/core/fft.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/driver.hpp"

#include <Kokkos_Core.hpp>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// Command-line options of the benchmark.
struct BenchOptions {
  long frames = 1000;    ///< N, positions of the simulated scan
  int size = 256;        ///< M, frame and probe side [px]
  int iterations = 10;   ///< K, timed iterations per engine
  int warmup = 10;       ///< W, untimed iterations before them
  int batch = 0;         ///< frames per batched FFT; 0: the driver's default (ptycho::default_batch)
  double photons = 1e6;  ///< photons per frame of the simulation (0: noiseless)
  bool refine_probe = false;
  std::string background = "none";  ///< the engines' detector background (the simulation has none)
  bool kernels = false;  ///< time every Kokkos kernel
  int shift_quantum = 0;  ///< the workspace's shift quantum (0: exact, a cached probe per frame)
  bool low_memory = false;  ///< EngineOptions::low_memory (and Q = 8 unless given)
  double keep_far_fields = 0;  ///< ML's far-field budget as a share of the rank's frames (low memory)
  long object_size = 0;   ///< S x S object px; 0: from a step of 0.11 M
  std::vector<std::string> engines{"dm", "raar", "ml", "epie", "rpie", "mpie"};
};

const char* kUsage =
    "usage: bench_engines [--frames N] [--size M (even)] [--iterations K] [--warmup W (>= 1)]\n"
    "                     [--engines dm,raar,ml,epie,rpie,mpie] [--batch B] [--photons P]\n"
    "                     [--refine-probe] [--kernels] [--background none|constant|pixel]\n"
    "                     [--shift-quantum Q (0..64)] [--low-memory] [--object-size S]\n";

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

/// Parses argv; on a bad option returns false with `error` set.
bool parse_options(int argc, char** argv, BenchOptions& o, std::string& error) {
  bool quantum_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        error = a + " needs " + what;
        return nullptr;
      }
      return argv[++i];
    };
    auto whole = [&](long& out, const char* what) {
      const char* v = value(what);
      if (!v) return false;
      char* end = nullptr;
      out = std::strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0') {
        error = a + ": '" + v + "' is not a whole number";
        return false;
      }
      return true;
    };
    auto real = [&](double& out, const char* what) {
      const char* v = value(what);
      if (!v) return false;
      char* end = nullptr;
      out = std::strtod(v, &end);
      if (*v == '\0' || *end != '\0') {
        error = a + ": '" + v + "' is not a number";
        return false;
      }
      return true;
    };
    long n = 0;
    if (a == "--frames") {
      if (!whole(n, "a frame count")) return false;
      o.frames = n;
    } else if (a == "--size") {
      if (!whole(n, "a frame size")) return false;
      o.size = static_cast<int>(n);
    } else if (a == "--iterations") {
      if (!whole(n, "an iteration count")) return false;
      o.iterations = static_cast<int>(n);
    } else if (a == "--warmup") {
      if (!whole(n, "an iteration count")) return false;
      o.warmup = static_cast<int>(n);
    } else if (a == "--batch") {
      if (!whole(n, "a batch size")) return false;
      o.batch = static_cast<int>(n);
    } else if (a == "--photons") {
      if (!real(o.photons, "a photon count")) return false;
    } else if (a == "--engines") {
      const char* v = value("a list of engines");
      if (!v) return false;
      o.engines = split_commas(v);
    } else if (a == "--refine-probe") {
      o.refine_probe = true;
    } else if (a == "--background") {
      const char* v = value("none, constant or pixel");
      if (!v) return false;
      o.background = v;
      if (o.background != "none" && o.background != "constant" && o.background != "pixel") {
        error = "--background: must be none, constant or pixel, got '" + o.background + "'";
        return false;
      }
    } else if (a == "--object-size") {
      if (!whole(n, "an object size")) return false;
      o.object_size = n;
    } else if (a == "--shift-quantum") {
      if (!whole(n, "a shift quantum")) return false;
      o.shift_quantum = static_cast<int>(n);
      quantum_given = true;
    } else if (a == "--low-memory") {
      o.low_memory = true;
    } else if (a == "--keep-far-fields") {
      if (!real(o.keep_far_fields, "a share of the frames")) return false;
      o.low_memory = true;
    } else if (a == "--kernels") {
      o.kernels = true;
    } else if (a == "-h" || a == "--help") {
      error = "help";
      return false;
    } else {
      error = "unknown option '" + a + "'";
      return false;
    }
  }
  if (o.frames < 2)
    error = "--frames must be at least 2";
  else if (o.size < 8 || o.size % 2)
    error = "--size must be even and at least 8";
  else if (o.iterations < 1)
    error = "--iterations must be at least 1";
  else if (o.warmup < 1)
    error = "--warmup must be at least 1 (the first iteration's time includes the engine's setup)";
  else if (o.batch < 0)
    error = "--batch must be 0 (the default: ptycho::default_batch) or more";
  else if (o.object_size != 0 && (o.object_size < o.size + 8 || o.object_size > 65536))
    error = "--object-size must be 0 (automatic) or from M + 8 to 65536";
  else if (o.shift_quantum < 0 || o.shift_quantum > 64)
    error = "--shift-quantum must be in 0..64";
  else if (o.photons < 0)
    error = "--photons must be >= 0";
  else if (!(o.keep_far_fields >= 0 && o.keep_far_fields <= 1))
    error = "--keep-far-fields must be a share of the frames from 0 to 1";
  else if (o.engines.empty())
    error = "--engines: empty list";
  for (const auto& e : o.engines) {
    const auto& known = ptycho::engine_names();
    if (std::find(known.begin(), known.end(), e) == known.end()) error = "--engines: unknown engine '" + e + "'";
  }
  if (error.empty() && o.low_memory && !quantum_given) o.shift_quantum = 8;  // reconstruct --low-memory's
  return error.empty();
}

/// Object size and scan step of a Fermat spiral with exactly `frames`
/// positions at a step of about 0.11 M. sim::simulate scans a disc of radius
/// R = object/2 - (M/2 + 3) px, and its spiral holds floor(pi R^2 / step^2) + 1
/// points, so step = R sqrt(pi / (N - 1/2)) gives N.
struct ScanLayout {
  int object_size = 0;
  double step = 0;
};

ScanLayout scan_layout(long frames, int m, long object_size) {
  const double target_step = 0.11 * m;
  const double target_radius = target_step * std::sqrt((frames - 0.5) / M_PI);
  ScanLayout s;
  s.object_size = object_size > 0 ? int(object_size) : 2 * static_cast<int>(std::ceil(target_radius + m / 2.0 + 3));
  const double radius = s.object_size / 2.0 - (m / 2.0 + 3);
  s.step = radius * std::sqrt(M_PI / (frames - 0.5));
  return s;
}

/// This rank's share of the simulated scan: only its frames are copied.
ptycho::Dataset local_dataset(const ptycho::sim::Simulation& sim, const ptycho::ScanInfo& info,
                              const std::vector<long>& frames) {
  const int m = info.geometry.frame_size;
  ptycho::Dataset d;
  d.info = info;
  d.frame_index = frames;
  d.frames =
      ptycho::HostRView3(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::bench::frames"), frames.size(), m, m);
  const long frame_len = static_cast<long>(m) * m;
  for (size_t i = 0; i < frames.size(); ++i)
    std::memcpy(d.frames.data() + i * frame_len, sim.frames.data() + frames[i] * frame_len, frame_len * sizeof(float));
  d.mask = ptycho::View2<std::uint8_t, ptycho::HostSpace>("ptycho::bench::mask", m, m);
  d.probe = sim.nominal_probe;
  return d;
}

/// The FFT floor on this rank: one pass is one forward and one inverse
/// transform of each of `frames` frames, `batch` at a time, on a buffer of
/// one batch (Centring::none), exactly the transforms of an ideal engine
/// iteration. Owns its buffers; a pass allocates nothing.
class FftFloor {
 public:
  FftFloor(const ptycho::FramePlan& plan, long frames, int batch)
      : m_plan(plan),
        m_frames(frames),
        m_batch(batch),
        m_buffer(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::bench::fft_buffer"), batch, plan.frame_size(),
                 plan.frame_size()),
        m_pristine(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::bench::fft_pristine"), batch,
                   plan.frame_size(), plan.frame_size()) {
    using namespace ptycho;
    const int m = plan.frame_size();
    const auto pristine = m_pristine;
    Kokkos::parallel_for(
        "ptycho::bench::fft_fill", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {batch, m, m}),
        KOKKOS_LAMBDA(int b, int r, int c) {
          // A finite, nonzero pattern: the data does not change FFTW's time.
          pristine(b, r, c) = cfloat(1.0f + 0.01f * ((b + r * 7 + c * 13) % 101), 0.01f * ((r + 3 * c) % 37));
        });
    ExecSpace().fence();
  }

  /// One pass; returns the seconds spent in the transforms only. The batch is
  /// refilled before each transform pair, untimed, so the values stay finite
  /// (a forward-inverse pair scales by M^2).
  double pass() const {
    using namespace ptycho;
    double spent = 0;
    for (long first = 0; first < m_frames; first += m_batch) {
      const long count = std::min<long>(m_batch, m_frames - first);
      const auto range = Kokkos::make_pair(0L, count);
      auto b = Kokkos::subview(m_buffer, range, Kokkos::ALL, Kokkos::ALL);
      Kokkos::deep_copy(b, Kokkos::subview(m_pristine, range, Kokkos::ALL, Kokkos::ALL));
      const auto t0 = Clock::now();
      m_plan.execute(b, FftDirection::forward, Centring::none);
      m_plan.execute(b, FftDirection::backward, Centring::none);
      spent += seconds_between(t0, Clock::now());
    }
    return spent;
  }

 private:
  const ptycho::FramePlan& m_plan;
  long m_frames;
  int m_batch;
  ptycho::CView3 m_buffer, m_pristine;
};

/// Times of Kokkos kernels by label, taken through Kokkos' tool callbacks
/// while `active`. Nested kernels (a deep_copy that launches a fill) count
/// for the outermost only, so the times add up to the time inside kernels.
struct KernelTimer {
  bool active = false;
  std::map<std::string, double> seconds;
  std::map<std::string, long> calls;
  std::vector<std::pair<std::string, Clock::time_point>> stack;

  void begin(const std::string& label) { stack.emplace_back(label, Clock::now()); }
  void end() {
    if (stack.empty()) return;
    const auto [label, t0] = stack.back();
    stack.pop_back();
    if (active && stack.empty()) {
      seconds[label] += seconds_between(t0, Clock::now());
      ++calls[label];
    }
  }
  void reset() {
    seconds.clear();
    calls.clear();
  }
};

KernelTimer g_kernels;

void on_begin_kernel(const char* name, const uint32_t, uint64_t* id) {
  *id = 0;
  g_kernels.begin(name);
}
void on_end_kernel(uint64_t) { g_kernels.end(); }
void on_begin_deep_copy(Kokkos::Tools::SpaceHandle, const char* dst, const void*, Kokkos::Tools::SpaceHandle,
                        const char* src, const void*, uint64_t) {
  g_kernels.begin(std::string("deep_copy ") + src + " -> " + dst);
}
void on_end_deep_copy() { g_kernels.end(); }

void install_kernel_timer() {
  namespace T = Kokkos::Tools::Experimental;
  T::set_begin_parallel_for_callback(on_begin_kernel);
  T::set_end_parallel_for_callback(on_end_kernel);
  T::set_begin_parallel_reduce_callback(on_begin_kernel);
  T::set_end_parallel_reduce_callback(on_end_kernel);
  T::set_begin_parallel_scan_callback(on_begin_kernel);
  T::set_end_parallel_scan_callback(on_end_kernel);
  T::set_begin_deep_copy_callback(on_begin_deep_copy);
  T::set_end_deep_copy_callback(on_end_deep_copy);
}

/// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"), or -1.
double proc_status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) return 1024.0 * std::strtod(line.c_str() + key.size(), nullptr);
  return -1;
}

/// Resets the peak resident size (VmHWM) to the current one (Linux 4.0+:
/// writing 5 to /proc/self/clear_refs). Returns false where it cannot.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out);
}

/// Bytes this rank sends through MPI while `active`, counted by the MPI
/// profiling interface (the library calls MPI_Isend and friends; these
/// definitions count the bytes and call the PMPI_ entry points). Point to
/// point is the halo exchange (and frame migration, which the benchmark's
/// fixed positions never trigger); collectives are the reductions.
struct MpiBytes {
  bool active = false;
  double p2p = 0, collective = 0;
  long p2p_messages = 0, collective_calls = 0;
  std::set<int> destinations;  ///< ranks of the communicator the messages went to
  void reset() { *this = MpiBytes{}; }
};
MpiBytes g_mpi;

double type_bytes(MPI_Datatype t, long count) {
  int size = 0;
  PMPI_Type_size(t, &size);
  return double(size) * double(count);
}

void count_p2p(MPI_Datatype t, long count, int dest) {
  if (!g_mpi.active) return;
  g_mpi.destinations.insert(dest);
  g_mpi.p2p += type_bytes(t, count);
  ++g_mpi.p2p_messages;
}

void count_collective(double bytes) {
  if (!g_mpi.active) return;
  g_mpi.collective += bytes;
  ++g_mpi.collective_calls;
}

/// Live Kokkos allocations, by the tools interface: the peak of all of them
/// and the peak of the tile-sized ones since reset(): the object, the sums
/// and steps over it, and stacks of tile-sized planes (LSQ-ML's illumination
/// per mini-batch), whose size is a whole multiple (up to 256) of tile pixels
/// x 4 bytes.
struct AllocationTracker {
  std::map<const void*, uint64_t> live;
  double now = 0, peak = 0, tile_now = 0, tile_peak = 0;
  double tile_pixels = -1;
  bool tile_sized(uint64_t size) const {
    if (tile_pixels <= 0) return false;
    const double planes = double(size) / (4.0 * tile_pixels);
    return planes >= 1 && planes <= 256 && planes == std::floor(planes);
  }
  void reset(double pixels) {
    tile_pixels = pixels;
    peak = now;
    tile_now = 0;
    for (const auto& [p, size] : live)
      if (tile_sized(size)) tile_now += double(size);
    tile_peak = tile_now;
  }
};
AllocationTracker g_alloc;

void on_allocate(Kokkos::Tools::SpaceHandle, const char*, const void* ptr, uint64_t size) {
  g_alloc.live[ptr] = size;
  g_alloc.now += double(size);
  g_alloc.peak = std::max(g_alloc.peak, g_alloc.now);
  if (g_alloc.tile_sized(size)) {
    g_alloc.tile_now += double(size);
    g_alloc.tile_peak = std::max(g_alloc.tile_peak, g_alloc.tile_now);
  }
}

void on_deallocate(Kokkos::Tools::SpaceHandle, const char*, const void* ptr, uint64_t) {
  const auto it = g_alloc.live.find(ptr);
  if (it == g_alloc.live.end()) return;  // made before the tracker was installed
  g_alloc.now -= double(it->second);
  if (g_alloc.tile_sized(it->second)) g_alloc.tile_now -= double(it->second);
  g_alloc.live.erase(it);
}

}  // namespace

extern "C" {
int MPI_Isend(const void* buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm, MPI_Request* req) {
  count_p2p(t, count, dest);
  return PMPI_Isend(buf, count, t, dest, tag, comm, req);
}
int MPI_Send(const void* buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm) {
  count_p2p(t, count, dest);
  return PMPI_Send(buf, count, t, dest, tag, comm);
}
int MPI_Allreduce(const void* in, void* out, int count, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
  count_collective(type_bytes(t, count));
  return PMPI_Allreduce(in, out, count, t, op, comm);
}
int MPI_Allgather(const void* in, int count, MPI_Datatype t, void* out, int rcount, MPI_Datatype rt, MPI_Comm comm) {
  count_collective(type_bytes(t, count));
  return PMPI_Allgather(in, count, t, out, rcount, rt, comm);
}
int MPI_Alltoallv(const void* in, const int* counts, const int* displs, MPI_Datatype t, void* out, const int* rcounts,
                  const int* rdispls, MPI_Datatype rt, MPI_Comm comm) {
  int ranks = 1;
  PMPI_Comm_size(comm, &ranks);
  long total = 0;
  for (int i = 0; i < ranks; ++i) total += counts[i];
  count_collective(type_bytes(t, total));
  return PMPI_Alltoallv(in, counts, displs, t, out, rcounts, rdispls, rt, comm);
}
}

namespace {

/// One row of the table.
struct EngineResult {
  std::string engine;
  double seconds_per_iteration = 0;           ///< max over ranks
  double fft_floor = 0;                       ///< max over ranks
  double best_iteration = 0, best_floor = 0;  ///< the fastest timed iteration and floor pass
  double cost_first = 0, cost_last = 0;       ///< of the timed iterations
  double transforms_per_frame = 0;            ///< the engine's own frame transforms per local frame and iteration
  double bytes = 0;                           ///< per iteration, the unavoidable traffic (see the file comment)
  double roofline = 0;                        ///< [s] transforms x floor per transform + bytes / bandwidth
  double peak_rss = 0;                        ///< [bytes] the largest rank's peak resident size during the engine
  double raw_frames = 0;                      ///< [bytes] that rank's frames x M^2 x 4
  double tile = 0;                            ///< [bytes] that rank's tile with its halo, complex64
  double kokkos_peak = 0;                     ///< [bytes] the largest rank's peak of live Kokkos allocations
  double tile_arrays = 0;                     ///< [bytes] that rank's peak of live tile-sized allocations
  double halo_bytes = 0, reduce_bytes = 0;    ///< [bytes] sent per timed iteration, the largest rank's
  double halo_messages = 0, reduce_calls = 0; ///< per timed iteration, the largest rank's
  double neighbours = 0;                      ///< the most ranks one rank sends halo messages to
};

/// The stream bandwidth [bytes/s] of this rank while every rank runs the
/// triad at once: best of 5, then the slowest rank's.
double stream_bandwidth() {
  using namespace ptycho;
  const long n = 16L << 20;  // 64 MB per array
  View1<float> a("ptycho::bench::stream_a", n), b("ptycho::bench::stream_b", n), c("ptycho::bench::stream_c", n);
  Kokkos::deep_copy(b, 1.0f);
  Kokkos::deep_copy(c, 2.0f);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    Kokkos::parallel_for(
        "ptycho::bench::triad", Kokkos::RangePolicy<ExecSpace>(0, n), KOKKOS_LAMBDA(long i) { a(i) = b(i) + 0.5f * c(i); });
    ExecSpace().fence();
    best = std::min(best, seconds_between(t0, Clock::now()));
  }
  double bandwidth = 3.0 * sizeof(float) * double(n) / best;
  MPI_Allreduce(MPI_IN_PLACE, &bandwidth, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
  return bandwidth;
}

/// The bytes an engine must move per iteration (see the file comment).
/// `ml_kept`: the frames whose far fields ML keeps in the low-memory mode.
double unavoidable_bytes(const std::string& engine, double transforms_per_frame, long frames, int m, int modes,
                         double tile_pixels, long probe_slots, bool low_memory, long ml_kept) {
  const double frame = double(m) * m;
  const double passes = std::max(1.0, std::ceil(transforms_per_frame / (2.0 * modes) - 1e-9));
  // Low memory: DM and RAAR keep their far fields, sDR its exit waves, as
  // complex halves (half a set of complex64); ML those of its kept frames.
  const double ml_sets = !low_memory ? 2 : frames > 0 ? 2.0 * double(ml_kept) / double(frames) : 0;
  const double sets = (engine == "dm" || engine == "raar" || engine == "sdr") ? (low_memory ? 0.5 : 1)
                      : engine == "ml"                                        ? ml_sets
                                                                              : 0;
  const double object_bytes = (engine == "epie" || engine == "rpie") ? 16 : engine == "mpie" ? 32 : 40;
  return passes * frames * frame * 4 + sets * frames * modes * frame * 8 * 2 + double(probe_slots) * modes * frame * 8 +
         tile_pixels * object_bytes;
}

double max_over_ranks(double v) {
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return v;
}

/// Prints rank 0's kernel times of the timed iterations, largest first.
void print_kernel_breakdown(const EngineResult& r, int iterations, double my_seconds) {
  std::vector<std::pair<double, std::string>> rows;
  double inside = 0;
  for (const auto& [label, s] : g_kernels.seconds) {
    rows.emplace_back(s, label);
    inside += s;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("  %s, rank 0: %.4f s/iteration\n", r.engine.c_str(), my_seconds / iterations);
  for (const auto& [s, label] : rows) {
    if (s / my_seconds < 0.005) continue;
    std::printf("    %-48s %8.4f s/it  %5.1f %%  %7ld calls/it\n", label.c_str(), s / iterations, 100 * s / my_seconds,
                g_kernels.calls[label] / iterations);
  }
  const double outside = std::max(0.0, my_seconds - inside);
  std::printf("    %-48s %8.4f s/it  %5.1f %%\n", "outside kernels (MPI, host code)", outside / iterations,
              100 * outside / my_seconds);
}

/// The network the weak-scaling model assumes (one rank per node): 100 Gb/s
/// (EDR or HDR100 InfiniBand) at 12.5 GB/s per node and direction, and 5 us
/// per message, MPI software included.
constexpr double kNetworkBytesPerSecond = 12.5e9;
constexpr double kNetworkLatency = 5e-6;

/// Weak scaling to P nodes, each with this run's per-rank share (frames and
/// owned pixels), from what this run measured per rank and iteration: the
/// iteration time t, the halo bytes and messages, and the reduction bytes
/// and calls. Not overlapped with computing (a conservative model):
///   halo(P)       an interior tile has 8 neighbours: this run's halo scaled
///                 by 8 / (its neighbours), messages x latency + bytes / BW
///   reduce(P)     each call an all-reduce, 2 log2(P) latencies + 2 x bytes / BW
///   efficiency    t / (t + halo + reduce(P))
/// against an object-replicating design, which all-reduces the whole object
/// every iteration as well (P x owned pixels x 12 bytes: complex64 numerator
/// and float32 denominator, what PtyPy sums), 2 log2(P) latencies + 2 x bytes / BW.
void print_weak_scaling(const std::vector<EngineResult>& results, double owned_pixels) {
  const int nodes[] = {1, 16, 64, 256, 1000, 4096};
  std::printf("\nweak scaling model (this run's per-rank share per node; %.1f GB/s and %.0f us per message "
              "assumed; halo x 8/neighbours; see the source):\n",
              kNetworkBytesPerSecond / 1e9, kNetworkLatency * 1e6);
  std::printf("%-7s %-10s", "engine", "design");
  for (int p : nodes) std::printf(" %9d", p);
  std::printf("   nodes: efficiency\n");
  for (const auto& r : results) {
    const double t = r.seconds_per_iteration;
    const double scale = 8.0 / std::max(1.0, r.neighbours);
    const double halo = scale * (r.halo_messages * kNetworkLatency + r.halo_bytes / kNetworkBytesPerSecond);
    auto reduce = [&](int p, double calls, double bytes) {
      const double hops = p > 1 ? 2.0 * std::ceil(std::log2(double(p))) : 0.0;
      return p > 1 ? calls * hops * kNetworkLatency + 2.0 * bytes / kNetworkBytesPerSecond : 0.0;
    };
    std::printf("%-7s %-10s", r.engine.c_str(), "tiled");
    for (int p : nodes) std::printf(" %9.3f", p > 1 ? t / (t + halo + reduce(p, r.reduce_calls, r.reduce_bytes)) : 1.0);
    std::printf("\n%-7s %-10s", "", "replicated");
    for (int p : nodes)
      std::printf(" %9.3f", t / (t + reduce(p, r.reduce_calls + 1, r.reduce_bytes + p * owned_pixels * 12.0)));
    std::printf("\n");
  }
}

int run(int argc, char** argv) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  BenchOptions o;
  std::string error;
  if (!parse_options(argc, argv, o, error)) {
    if (rank == 0) {
      if (error != "help") std::fprintf(stderr, "bench_engines: %s\n", error.c_str());
      std::fprintf(stderr, "%s", kUsage);
    }
    return error == "help" ? 0 : 2;
  }
  if (o.kernels) install_kernel_timer();
  Kokkos::Tools::Experimental::set_allocate_data_callback(on_allocate);
  Kokkos::Tools::Experimental::set_deallocate_data_callback(on_deallocate);

  // The scan, simulated identically on every rank.
  const ScanLayout layout = scan_layout(o.frames, o.size, o.object_size);
  ptycho::sim::SimulationOptions so;
  so.object_size = layout.object_size;
  so.probe_size = o.size;
  so.step = layout.step;
  so.photons = o.photons;
  auto t0 = Clock::now();
  ptycho::sim::Simulation sim = ptycho::sim::simulate(so);
  const double simulate_s = max_over_ranks(seconds_between(t0, Clock::now()));
  ptycho::ScanInfo info;
  info.source = "simulated";
  info.geometry = sim.geometry;
  info.num_frames = static_cast<long>(sim.positions.size());
  info.positions = sim.positions;
  info.object_rows = info.object_cols = so.object_size;
  info.probe_source = "simulated nominal probe";

  o.batch = ptycho::batch_or_default(o.batch, o.size, 1);
  ptycho::ReconstructOptions ro;
  ro.batch = o.batch;
  ro.shift_quantum = o.shift_quantum;
  ptycho::EngineOptions base;
  base.refine_probe = o.refine_probe;
  base.probe_hold = 0;  // with --refine-probe, every timed iteration refines the probe
  base.background = ptycho::parse_background_mode(o.background);
  base.low_memory = o.low_memory;

  // Which frames this rank holds (the decomposition does not depend on the
  // engine), then only those frames; the full stack is dropped.
  ro.chain = ptycho::parse_chain(o.engines.front() + ":1", base);
  ptycho::Dataset data;
  long local = 0;
  {
    ptycho::DistributedReconstruction assignment(MPI_COMM_WORLD, info, ro);
    data = local_dataset(sim, info, assignment.my_frames());
    local = static_cast<long>(assignment.my_frames().size());
  }
  sim.frames = ptycho::HostRView3();
  sim.object = ptycho::HostCView2();  // the truth, not needed here (0.5 GB for an 8192^2 object)
  long most = local, fewest = local;
  MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &fewest, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);

  if (rank == 0) {
    std::printf(
        "bench_engines: %ld frames of %dx%d (Fermat scan, step %.2f px, object %dx%d px, %g photons/frame), "
        "simulated in %.1f s\n",
        info.num_frames, o.size, o.size, layout.step, so.object_size, so.object_size, o.photons, simulate_s);
    std::printf(
        "%d rank%s, frames per rank %ld..%ld; Kokkos %s, concurrency %d per rank; batch %d; 1 probe mode, "
        "probe %s; background %s; shift quantum %d\n",
        ranks, ranks > 1 ? "s" : "", fewest, most, ptycho::ExecSpace::name(), ptycho::ExecSpace().concurrency(),
        o.batch, o.refine_probe ? "refined every iteration" : "fixed", o.background.c_str(), o.shift_quantum);
    std::printf(
        "per engine: %d warm-up + %d timed iterations, each followed by one FFT floor pass = 2 x (frames "
        "per rank) FramePlan transforms (Centring::none); per iteration the slowest rank\n",
        o.warmup, o.iterations);
    std::fflush(stdout);
  }

  const double bandwidth = stream_bandwidth();
  if (rank == 0) {
    std::printf("stream bandwidth (triad, every rank at once): %.2f GB/s per rank\n", bandwidth / 1e9);
    std::fflush(stdout);
  }
  const ptycho::FramePlan plan(o.size);
  const FftFloor floor(plan, local, o.batch);
  // ML's far-field budget: that share of this rank's frames, and half a frame.
  if (o.keep_far_fields > 0)
    base.far_field_budget = (o.keep_far_fields * double(local) + 0.5) * ptycho::ml_far_field_bytes_per_frame(o.size, 1);
  const long ml_kept = ptycho::ml_kept_far_fields(local, o.size, 1, o.batch, base.far_field_budget);
  if (o.low_memory && rank == 0) {
    std::printf("low-memory mode: ML keeps the far fields of %ld of rank 0's %ld frames\n", ml_kept, local);
    std::fflush(stdout);
  }
  const double owned_pixels = max_over_ranks(double(ptycho::decompose_for(info, ro, ranks).owned[rank].area()));
  std::vector<EngineResult> results;
  for (const auto& engine : o.engines) {
    EngineResult r;
    r.engine = engine;
    ro.chain = ptycho::parse_chain(engine + ":" + std::to_string(o.warmup + o.iterations), base);
    // The peak resident size from here to the end of the run: the engine's
    // setup, its buffers and its iterations (the frames are shared with
    // `data`, not copied, on a host memory space).
    const bool peak_reset = reset_peak_rss();
    const double tile_pixels = double(ptycho::decompose_for(info, ro, ranks).extent[rank].area());
    g_alloc.reset(tile_pixels);
    g_mpi.reset();
    ptycho::DistributedReconstruction recon(MPI_COMM_WORLD, info, ro);
    recon.set_data(data);
    floor.pass();  // warm-up
    long transforms = 0, mark = 0;  // the engine's own frame transforms in the timed iterations
    g_kernels.reset();
    // Timed iteration i is the time from the end of the floor pass after
    // iteration W + i - 1 to the end of iteration W + i; floor pass i follows it.
    std::vector<double> iteration_s(o.iterations), floor_s(o.iterations);
    Clock::time_point last;
    double my_engine_s = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    recon.run([&](const ptycho::Progress& p) {
      const auto now = Clock::now();
      const int i = p.iteration - o.warmup;  // timed iterations are 1..K
      if (i >= 1) {
        transforms += ptycho::FramePlan::frames_transformed() - mark;
        iteration_s[i - 1] = seconds_between(last, now);
        my_engine_s += iteration_s[i - 1];
        r.cost_last = p.cost;
        if (i == 1) r.cost_first = p.cost;
      }
      if (i >= 0 && i < o.iterations) {
        g_kernels.active = false;
        floor_s[i] = floor.pass();
        g_kernels.active = o.kernels;
        g_mpi.active = true;
      } else {
        g_kernels.active = false;
        g_mpi.active = false;
      }
      mark = ptycho::FramePlan::frames_transformed();
      last = Clock::now();
    });
    {
      // The rank with the largest peak, with its frames and tile.
      struct {
        double value;
        int rank;
      } mine{peak_reset ? proc_status_bytes("VmHWM") : -1.0, rank}, top{};
      MPI_Allreduce(&mine, &top, 1, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD);
      double share[3] = {double(local) * o.size * o.size * 4.0, tile_pixels * 8.0, g_alloc.tile_peak};
      MPI_Bcast(share, 3, MPI_DOUBLE, top.rank, MPI_COMM_WORLD);
      r.peak_rss = top.value;
      r.raw_frames = share[0];
      r.tile = share[1];
      r.kokkos_peak = max_over_ranks(g_alloc.peak);
      r.tile_arrays = share[2];
      r.halo_bytes = max_over_ranks(g_mpi.p2p / o.iterations);
      r.halo_messages = max_over_ranks(double(g_mpi.p2p_messages) / o.iterations);
      r.reduce_bytes = max_over_ranks(g_mpi.collective / o.iterations);
      r.reduce_calls = max_over_ranks(double(g_mpi.collective_calls) / o.iterations);
      r.neighbours = max_over_ranks(double(g_mpi.destinations.size()));
    }
    // Per timed iteration, the slowest rank; then the mean and the best.
    MPI_Allreduce(MPI_IN_PLACE, iteration_s.data(), o.iterations, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, floor_s.data(), o.iterations, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    for (int i = 0; i < o.iterations; ++i) {
      r.seconds_per_iteration += iteration_s[i] / o.iterations;
      r.fft_floor += floor_s[i] / o.iterations;
    }
    r.best_iteration = *std::min_element(iteration_s.begin(), iteration_s.end());
    r.best_floor = *std::min_element(floor_s.begin(), floor_s.end());
    // The rank with the most frames sets the pace: its transforms, bytes and floor.
    r.transforms_per_frame = local > 0 ? double(transforms) / (double(local) * o.iterations) : 0.0;
    MPI_Allreduce(MPI_IN_PLACE, &r.transforms_per_frame, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    r.bytes = max_over_ranks(unavoidable_bytes(engine, r.transforms_per_frame, local, o.size, 1, tile_pixels,
                                               ptycho::Workspace::probe_slots_for(local, o.shift_quantum), o.low_memory,
                                               ml_kept));
    const double floor_per_transform = most > 0 ? r.fft_floor / (2.0 * double(most)) : 0.0;
    r.roofline = r.transforms_per_frame * double(most) * floor_per_transform + r.bytes / bandwidth;
    if (rank == 0) {
      std::printf("  %-5s done: %.4f s/iteration, FFT floor %.4f s, ratio %.2f (best %.4f / %.4f s)\n", engine.c_str(),
                  r.seconds_per_iteration, r.fft_floor, r.seconds_per_iteration / r.fft_floor, r.best_iteration,
                  r.best_floor);
      if (o.kernels) print_kernel_breakdown(r, o.iterations, my_engine_s);
      std::fflush(stdout);
    }
    results.push_back(r);
  }

  if (rank == 0) {
    std::printf("\n%-7s %12s %14s %7s   %10s %10s %7s   %s\n", "engine", "s/iteration", "FFT floor [s]", "ratio",
                "best s/it", "best floor", "ratio", "cost (first -> last timed)");
    for (const auto& r : results)
      std::printf("%-7s %12.4f %14.4f %7.2f   %10.4f %10.4f %7.2f   %.4g -> %.4g\n", r.engine.c_str(),
                  r.seconds_per_iteration, r.fft_floor, r.seconds_per_iteration / r.fft_floor, r.best_iteration,
                  r.best_floor, r.best_iteration / r.best_floor, r.cost_first, r.cost_last);
    std::printf("\nroofline (per rank, the largest share; bandwidth %.2f GB/s):\n", bandwidth / 1e9);
    std::printf("%-7s %12s %12s %12s %12s %12s %12s %7s\n", "engine", "s/iteration", "transforms", "FFT time [s]",
                "bytes [MB]", "memory [s]", "roofline [s]", "ratio");
    for (const auto& r : results) {
      const double fft_s = r.transforms_per_frame * r.fft_floor / 2.0;
      std::printf("%-7s %12.4f %12.2f %12.4f %12.1f %12.4f %12.4f %7.2f\n", r.engine.c_str(), r.seconds_per_iteration,
                  r.transforms_per_frame, fft_s, r.bytes / 1e6, r.bytes / bandwidth, r.roofline,
                  r.seconds_per_iteration / r.roofline);
    }
    std::printf("(transforms: the engine's frame transforms per frame and iteration; FFT time: that many at the "
                "floor's rate)\n");
    std::printf("\nmemory (the rank with the largest peak resident size during the engine's setup and run):\n");
    std::printf("%-7s %14s %16s %10s %18s\n", "engine", "peak RSS [MB]", "raw frames [MB]", "tile [MB]",
                "(peak - tile)/raw");
    // The tile's memory: the largest of the object (complex64) and the
    // tile-sized arrays measured (the object with the engine's state over it).
    for (const auto& r : results) {
      if (r.peak_rss < 0) {
        std::printf("%-7s %14s (VmHWM could not be reset or read here)\n", r.engine.c_str(), "-");
        continue;
      }
      std::printf("%-7s %14.1f %16.1f %10.1f %18.2f\n", r.engine.c_str(), r.peak_rss / 1e6, r.raw_frames / 1e6,
                  std::max(r.tile, r.tile_arrays) / 1e6,
                  r.raw_frames > 0 ? (r.peak_rss - std::max(r.tile, r.tile_arrays)) / r.raw_frames : 0.0);
    }
    std::printf("(raw frames: the rank's frames x M^2 x 4 bytes, float32 counts; tile: the tile-sized arrays, the "
                "object over the tile with its halo and the engine's sums and steps over it; peak RSS includes the process, MPI, Kokkos and FFTW, and the benchmark's scan)\n");
    std::printf("\nKokkos arrays and MPI traffic per rank (the largest rank's; traffic per timed iteration):\n");
    std::printf("%-7s %16s %18s %12s %10s %14s %10s\n", "engine", "arrays peak [MB]", "tile arrays [MB]",
                "halo [MB]", "messages", "reduce [MB]", "calls");
    for (const auto& r : results)
      std::printf("%-7s %16.1f %18.1f %12.3f %10.0f %14.3f %10.0f\n", r.engine.c_str(), r.kokkos_peak / 1e6,
                  r.tile_arrays / 1e6, r.halo_bytes / 1e6, r.halo_messages, r.reduce_bytes / 1e6, r.reduce_calls);
    std::printf("(arrays: all live Kokkos allocations; tile arrays: those of the tile's size, the object and the "
                "engine's sums and steps over it; halo: point-to-point bytes sent; reduce: bytes sent into "
                "collectives)\n");
    print_weak_scaling(results, owned_pixels);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  setenv("KOKKOS_DISABLE_WARNINGS", "1", 0);
  int code = 0;
  {
    Kokkos::ScopeGuard kokkos(argc, argv);
    try {
      code = run(argc, argv);
    } catch (const std::exception& e) {
      int rank = 0, size = 1;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      std::fprintf(stderr, "bench_engines: [rank %d] %s\n", rank, e.what());
      if (size > 1) MPI_Abort(MPI_COMM_WORLD, 3);
      code = 3;
    }
  }
  MPI_Finalize();
  return code;
}
