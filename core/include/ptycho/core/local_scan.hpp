#pragma once
/// What one rank reconstructs: its tile of the object (with halo), its
/// positions and frames, and the probe modes every rank shares.
#include "ptycho/core/collective.hpp"
#include "ptycho/core/fft.hpp"
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ptycho {

/// This rank's measured data and its place in the object. Read-only for engines.
struct LocalScan {
  int frame_size = 0;          ///< M
  long object_rows = 0;        ///< H of the global object grid
  long object_cols = 0;        ///< W
  Rect owned;                  ///< pixels this rank owns (global object px)
  Rect extent;                 ///< pixels of its local arrays: owned plus halo
  std::vector<long> index;     ///< global frame indices of the local frames
  RView3 frames;               ///< (n, M, M) measured counts, zero frequency at the centre
  RView2 valid;                ///< (M, M): 1 where the detector pixel is valid, 0 where masked
  long total_frames = 0;       ///< N over all ranks
  long num_local() const { return static_cast<long>(index.size()); }
};

/// The reconstruction: what engines refine and hand on along a chain.
struct ReconState {
  CView2 object;                    ///< (extent.rows, extent.cols), halo kept in sync
  CView3 probe;                     ///< (K, M, M), identical on every rank, scaled to counts
  RView2 background;                ///< (M, M) detector background b >= 0 [counts], identical on every
                                    ///< rank (see background.hpp); may be empty: none
  std::vector<Position> positions;  ///< current centres of the local frames [global object px]
  std::vector<double> cost_history; ///< one entry per iteration, over all engines
  std::vector<std::string> engine_history;  ///< engine name of each iteration
  long iteration = 0;               ///< iterations done over the whole chain
  /// The position test's verdict (EngineOptions::position_gate), the same on
  /// every rank: 0 not tested yet, +1 the positions are refined, -1 they stay
  /// as given and no engine refines them.
  int position_verdict = 0;
  double position_gain = 0;  ///< the test's relative drop of the misfit (0: not tested)
};

/// The sums of a probe update over frames (Workspace::accumulate_probe):
/// the numerator sum_j unshift_j(u_j), u_j = s conj(O_j) psi_j (psi_j the
/// signed exit waves, s the checkerboard sign), and the denominator
/// sum_j |O_j|^2. A batch without sub-pixel shifts adds its u_j to `real`;
/// a batch with any adds conj(R_j) DFT(u_j) / M^2 (R_j the frame's shift
/// ramp) to `spectrum`, one transform per frame instead of two, and reduce()
/// brings that sum back to real space once, after the sums over ranks. All
/// in double.
struct ProbeSums {
  View3<cdouble> real;      ///< (K, M, M)
  View3<cdouble> spectrum;  ///< (K, M, M)
  View2<double> den;        ///< (M, M)
  std::shared_ptr<const HostInverseDft> idft;  ///< planned once, for reduce()
  ProbeSums() = default;
  ProbeSums(const std::string& label, int modes, int frame_size);
  /// Zeroes the sums.
  void reset() const;
  /// The sums over ranks, on the host: the numerator (real space) and the
  /// denominator. Consumes the sums (in host memory they are summed and
  /// transformed in place): reset() before the next accumulation.
  void reduce(const Collective& coll, View3<cdouble, HostSpace>& num, View2<double, HostSpace>& den_out) const;
};

/// Shared per-rank machinery of the engines: patch geometry, the shifted and
/// centring-signed probe of every local frame, and the batched kernels.
///
/// Convention: real-space waves are kept multiplied by the checkerboard sign
/// s = (-1)^(r+c), folded into the cached probes, so the raw FFTW transform
/// DFT(s psi) gives, at the same array index, the centred far field up to the
/// factor 1/M (see fft.hpp). Engines transform with Centring::none and fold
/// 1/M^2 into their Fourier-space kernels.
class Workspace {
 public:
  /// The largest shift quantum (probe_slots_for: 4096 slots).
  static constexpr int kMaxShiftQuantum = 64;

  /// `shift_quantum` q > 0 bounds the shifted-probe cache (low-memory mode):
  /// sub-pixel shifts are rounded to 1/q px, and the frames with the same
  /// rounded shift share one cached probe, min(n, q^2) slots instead of n.
  /// q = 0 keeps one exact copy per frame.
  Workspace(const LocalScan& scan, int num_modes, int batch, int shift_quantum = 0);

  const LocalScan& scan() const { return m_scan; }
  int frame_size() const { return m_scan.frame_size; }
  int num_modes() const { return m_modes; }
  /// Valid detector pixels over all frames of all ranks: the normalisation of the costs.
  double valid_pixels() const { return m_valid_pixels; }
  int batch() const { return m_batch; }
  const FramePlan& plan() const { return m_plan; }

  /// Recomputes patch origins (local coordinates) and sub-pixel fractions
  /// from `positions`, and marks the probe cache stale if they changed.
  void set_positions(const std::vector<Position>& positions);
  /// Recomputes the shifted, signed probe of every local frame from `probe`.
  void set_probe(const CView3& probe);

  /// Changes whenever the shifted probes may have changed (set_probe,
  /// set_positions): engines cache what depends on them only (the
  /// illumination of the object) against it.
  long probe_version() const { return m_probe_version; }

  /// Shifted signed probes, (slots * K, M, M): frame j, mode k at
  /// probe_slot()(j) * K + k (the slot is j itself without a shift quantum).
  const CView3& probes() const { return m_probes; }
  /// The probe slot of each local frame.
  View1<int> probe_slot() const { return m_slot; }
  /// The shift quantum (0: exact shifts, a slot per frame).
  int shift_quantum() const { return m_quantum; }
  /// The probe slots a workspace of `frames` frames holds with `shift_quantum`.
  static long probe_slots_for(long frames, int shift_quantum);
  View1<int> patch_row() const { return m_row; }
  View1<int> patch_col() const { return m_col; }
  const std::vector<double>& frac_row() const { return m_frac_row_h; }
  const std::vector<double>& frac_col() const { return m_frac_col_h; }

  /// The batches of `frames` (runs of batch() frames from frames.first, the
  /// last one shorter), as their first frames, in the order a pass whose
  /// batches are independent visits them: by patch position, in serpentine
  /// bands M/2 rows high (along the columns, one band left to right, the
  /// next right to left). Consecutive batches then share most of their
  /// object pixels, which stay in cache from one to the next, whatever the
  /// scan's own order (a Fermat spiral jumps across the object from one
  /// frame to the next). Batches of several frames are placed by their
  /// first frame's patch origin. Made once per range after each set_positions, then kept:
  /// the reference stays valid until the next set_positions.
  const std::vector<long>& batch_order(long first, long last) const;

  /// waves(b*K + k) = P~_{j,k} * O[patch_j] for j = first + b, b < count.
  void exit_waves(const CView2& object, long first, long count, const CView3& waves) const;
  /// out(b*K + k) = the shifted, signed copy for frame first + b (with its
  /// shift as set_positions made it: rounded, with a quantum) of mode k of
  /// any modes, given by their raw DFT `spectrum` (K, M, M): what set_probe
  /// caches for the probe, here for a probe change (one IDFT per frame and mode).
  void shifted_modes(const CView3& spectrum, long first, long count, const CView3& out) const;
  /// waves(b*K + k) = modes(b*K + k) * O[patch_j] for j = first + b: exit
  /// waves of per-frame modes other than the cached probes.
  void product_waves(const CView2& object, const CView3& modes, long first, long count, const CView3& waves) const;
  /// den[patch_j] += sum_k |P~_{j,k}|^2 for j = first + b, b < count: the
  /// object's illumination, without a numerator (in double).
  void accumulate_illumination(const View2<double>& den, long first, long count) const;
  /// num[patch_j] += sum_k conj(P~_{j,k}) waves(b*K+k); den[patch_j] += sum_k |P~_{j,k}|^2,
  /// accumulated in double (atomically: patches overlap).
  void accumulate_object(const View2<cdouble>& num, const View2<double>& den, const CView3& waves, long first,
                         long count, bool with_den = true) const;
  /// Adds frames first..first+count, with signed real-space waves `waves`,
  /// to the probe sums (see ProbeSums). Uses `scratch` (batch*K, M, M).
  void accumulate_probe(const ProbeSums& sums, const CView2& object, const CView3& waves, long first, long count,
                        const CView3& scratch) const;

 private:
  /// out(b*K + k) = the shifted copy of mode k for frame frame_of(b), b < count.
  template <class FrameOf>
  void shifted_copies(const CView3& spectrum, long count, const FrameOf& frame_of, const CView3& out) const;

  const LocalScan& m_scan;
  int m_modes, m_batch, m_quantum;
  FramePlan m_plan;
  CView3 m_probes;
  CView3 m_probe_spectrum;  ///< (K, M, M): set_probe's transform of the probe
  View1<int> m_row, m_col;
  View1<int> m_slot;                 ///< the probe slot of each local frame
  View1<long> m_slot_frame;          ///< with a shift quantum: a frame of each slot (whose shift it has)
  View1<double> m_frac_row, m_frac_col;
  /// The shift ramp is separable: exp(-2 pi i f_r d_r) per row and per column of
  /// every frame, (n, M) each, made when the positions change.
  View2<cfloat> m_ramp_row, m_ramp_col;
  std::vector<double> m_frac_row_h, m_frac_col_h;
  std::vector<int> m_row_h, m_col_h;  ///< host copies of the patch origins (batch_order)
  /// batch_order's orders by (first, last), cleared by set_positions (a map: its references stay valid).
  mutable std::map<std::pair<long, long>, std::vector<long>> m_batch_orders;
  View1<double> m_freq;  ///< fftfreq(M)
  double m_valid_pixels = 0;
  long m_probe_version = 0;
};

}  // namespace ptycho
