#pragma once
/// The frame pass: the one loop over the local frames that every engine runs,
///
///     for each batch of frames j:
///       psi_j  = exit waves P~_j O[patch_j]             (the pass's source)
///       Psi_j  = Propagator::forward(psi_j)             (to the detector)
///       cost  += the engine's Fourier-space kernel       (Psi_j -> Psi'_j)
///       the kernel's model intensities -> Background    (if one is refined)
///       psi'_j = Propagator::backward(Psi'_j)           (back to the sample)
///       the engine's update step                        (object, probe sums)
///
/// with the Fourier-space kernel and the update step as parameters. The
/// engines keep their Kokkos kernels (the pass calls them once per batch, as
/// plain template parameters: nothing per pixel goes through the pass), and
/// the pass keeps the order of operations: a pass gives the same floats as
/// the loop written out by hand.
///
/// Two seams follow from it:
///  - a propagator other than the far field (near field, multislice)
///    implements Propagator and is returned by make_propagator(): every
///    engine's passes, and the model far fields of position refinement, then
///    use it;
///  - an engine is the Fourier-space kernel and the update of a pass, plus
///    what it does with the sums between passes (core/README.md).
///
/// Variants of the loop, each chosen by the type of an argument:
///  - the source: ExitWaves{object} (Workspace::exit_waves, then forward
///    propagation), any callable (first, count, waves) that writes the
///    batch's exit waves (then forward propagation), or KeptFarFields{} (the
///    engine keeps its far fields and its kernel reads them: no exit waves,
///    no forward propagation; ML's gradient pass);
///  - the update: a callable (first, count, waves), after backward
///    propagation, or MeasureOnly{} (no backward propagation: a pass that only
///    sums, such as ML's line search);
///  - the frames: a FrameRange in batches of Workspace::batch() frames,
///    visited by their place in the object (Workspace::batch_order: the
///    batches of such a pass are independent, and their sums do not depend
///    on the order beyond rounding), or an order of single frames (the PIE
///    family's sequential updates).
#include "ptycho/core/background.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/fft.hpp"
#include "ptycho/core/local_scan.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace ptycho {

/// Carries stacks of waves (B, M, M) between the sample's exit plane and the
/// detector, in place, one frame at a time (frames are independent).
///
/// Contract, which the engines' Fourier-space kernels rely on: waves in the
/// exit plane are kept in the workspace's signed convention (local_scan.hpp),
/// and forward() gives M times the unitary detector-plane wave, at the array
/// index the measured frames use (zero frequency at the centre for the far
/// field), up to a sign per pixel that no intensity sees; backward() is the
/// adjoint of forward(), so backward(forward(x)) = M^2 x. A kernel therefore
/// takes |Psi|^2 / M^2 as the model intensity and folds 1/M^2 into what it
/// hands back. A propagator allocates nothing when it runs and is shared,
/// read-only, by the passes of an engine.
class Propagator {
 public:
  virtual ~Propagator() = default;
  /// Exit waves to detector-plane waves, in place.
  virtual void forward(const CView3& waves) const = 0;
  /// Detector-plane waves back to the exit plane, in place (the adjoint of forward()).
  virtual void backward(const CView3& waves) const = 0;
};

/// The far field (Fraunhofer): the raw DFT of the signed exit wave, which is
/// M times the centred unitary far field (fft.hpp), and the raw inverse DFT.
/// Executes the workspace's FramePlan with Centring::none; `plan` outlives it.
class FarFieldPropagator final : public Propagator {
 public:
  explicit FarFieldPropagator(const FramePlan& plan) : m_plan(plan) {}
  void forward(const CView3& waves) const override;
  void backward(const CView3& waves) const override;

 private:
  const FramePlan& m_plan;
};

/// The propagator of the engines built on `ws` (which outlives it): the one
/// place where a propagator is chosen. Today always the far field.
std::shared_ptr<const Propagator> make_propagator(const Workspace& ws);

/// Where a frame pass keeps the waves of its batches, in a buffer of
/// (slots, M, M) with mode k of frame j at slot s(j) * K + k.
class WaveStore {
 public:
  /// Every batch at the start of `buffer`, s(j) = j - (the batch's first
  /// frame): a work buffer of at least batch * K frames, reused.
  static WaveStore per_batch(const CView3& buffer) { return WaveStore(buffer, 0); }
  /// Every frame of a pass in its own slots, s(j) = j - (the pass's first
  /// frame): the waves stay after the pass (ML's direction far fields,
  /// LSQ-ML's corrections of a mini-batch for the probe step).
  static WaveStore per_frame(const CView3& buffer) { return WaveStore(buffer, kAll); }
  /// The first `kept` frames of a pass in their own slots, and every later
  /// batch in the slots after them, s(j) = kept + j - (the batch's first
  /// frame): ML's direction far fields when memory keeps only some
  /// (EngineOptions::far_field_budget). A batch must not straddle `kept`.
  static WaveStore per_frame_then_batch(const CView3& buffer, long kept) {
    return WaveStore(buffer, std::max(0L, kept));
  }

  /// No buffer: holds no waves.
  WaveStore() = default;
  /// The whole buffer (slots, M, M).
  const CView3& buffer() const { return m_buffer; }
  /// Whether frames of a pass have slots of their own (per_frame, or the
  /// first ones of per_frame_then_batch).
  bool keeps_frames() const { return m_kept > 0; }
  /// The waves of frames first..first+count of a pass that starts at frame
  /// `origin`: count * K slots of the buffer. Throws if they do not fit.
  CView3 slots(long origin, long first, long count, int kmodes) const;

 private:
  static constexpr long kAll = std::numeric_limits<long>::max();
  WaveStore(const CView3& buffer, long kept) : m_buffer(buffer), m_kept(kept) {}
  CView3 m_buffer;
  long m_kept = 0;  ///< the frames of a pass with slots of their own (kAll: every frame)
};

/// A pass's source: the exit waves of `object` (an object-sized view in the
/// tile's local coordinates: the object, or a direction in object space),
/// made by Workspace::exit_waves with the cached shifted probes.
struct ExitWaves {
  CView2 object;
};

/// A pass's source when the engine keeps the batch's far fields itself: its
/// Fourier-space kernel reads them and writes what goes back into the pass's
/// waves. The pass neither makes exit waves nor propagates forward.
struct KeptFarFields {};

/// A pass's update when the pass only sums what its Fourier-space kernel
/// returns: no backward propagation, nothing accumulated.
struct MeasureOnly {};

/// Local frames first..last-1 (last exclusive).
struct FrameRange {
  long first = 0;
  long last = 0;
};

/// One engine's frame pass (see the top of the file), built once with its
/// wave store, propagator and background, run every iteration. It owns
/// nothing but a share of the propagator; the workspace, the buffer's
/// memory and the background belong to the engine and outlive the pass.
///
/// The stage callables take (long first, long count, const CView3& waves),
/// `waves` being the batch's count * K slots (WaveStore):
///  - source (see ExitWaves, KeptFarFields): writes the exit waves;
///  - fourier: the engine's Fourier-space kernel on the propagated waves,
///    returning the batch's contribution T (its cost: double, or any type
///    with T{} and +=, such as Sums<N>). With a background, it writes the
///    model intensities into Background::model(), which the pass then
///    accumulates (Background::accumulate), before the update;
///  - update (see MeasureOnly): the engine's sums of the back-propagated waves.
/// run() returns the sum of what fourier returned, added in frame order from T{}.
class FramePass {
 public:
  /// `background` may be null: the pass accumulates no model intensities
  /// (a measuring pass whose kernel writes none, or an engine without one;
  /// a disabled Background does nothing either).
  FramePass(const Workspace& ws, std::shared_ptr<const Propagator> propagator, WaveStore waves, Background* background);
  /// An empty pass, to be assigned a built one before it runs.
  FramePass() = default;

  /// The propagator the pass runs (for an engine's other transforms between
  /// the exit plane and the detector, such as its first far fields).
  const Propagator& propagator() const { return *m_propagator; }
  /// Where the pass keeps its waves.
  const WaveStore& waves() const { return m_waves; }

  /// The pass over `frames`, in batches of the workspace's batch size,
  /// visited in Workspace::batch_order (by place in the object, so that the
  /// object's pixels and sums stay in cache from one batch to the next).
  /// The batches of such a pass must be independent: the update only adds
  /// to sums that are applied after the pass.
  template <class Source, class Fourier, class Update>
  auto run(FrameRange frames, Source&& source, Fourier&& fourier, Update&& update) const {
    using T = std::decay_t<decltype(fourier(0L, 0L, std::declval<const CView3&>()))>;
    PTYCHO_THROW_IF(!m_ws, "FramePass: run before it was built");
    T total{};
    const long batch = m_ws->batch();
    for (long first : m_ws->batch_order(frames.first, frames.last)) {
      const long count = std::min<long>(batch, frames.last - first);
      total += step<T>(frames.first, first, count, source, fourier, update);
    }
    return total;
  }

  /// The pass over single frames, one at a time in the given order (each
  /// frame is a batch of one, at the start of a per-batch store).
  template <class Source, class Fourier, class Update>
  auto run(const std::vector<long>& order, Source&& source, Fourier&& fourier, Update&& update) const {
    using T = std::decay_t<decltype(fourier(0L, 0L, std::declval<const CView3&>()))>;
    PTYCHO_THROW_IF(!m_ws, "FramePass: run before it was built");
    PTYCHO_THROW_IF(m_waves.keeps_frames(), "FramePass: a pass in a given order needs a per-batch wave store");
    T total{};
    for (long j : order) total += step<T>(j, j, 1, source, fourier, update);
    return total;
  }

 private:
  /// One batch through the loop; returns what the Fourier-space kernel returned.
  template <class T, class Source, class Fourier, class Update>
  T step(long origin, long first, long count, Source& source, Fourier& fourier, Update& update) const {
    const CView3 w = m_waves.slots(origin, first, count, m_ws->num_modes());
    using S = std::decay_t<Source>;
    if constexpr (!std::is_same_v<S, KeptFarFields>) {
      if constexpr (std::is_same_v<S, ExitWaves>)
        m_ws->exit_waves(source.object, first, count, w);
      else
        source(first, count, w);
      m_propagator->forward(w);
    }
    T part = fourier(first, count, w);
    if (m_background) m_background->accumulate(first, count);
    if constexpr (!std::is_same_v<std::decay_t<Update>, MeasureOnly>) {
      m_propagator->backward(w);
      update(first, count, w);
    }
    return part;
  }

  const Workspace* m_ws = nullptr;
  std::shared_ptr<const Propagator> m_propagator;
  WaveStore m_waves;
  Background* m_background = nullptr;
};

}  // namespace ptycho
