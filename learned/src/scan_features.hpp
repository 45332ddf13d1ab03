#pragma once
/// Scan features ("scan" models): the network corrects the windows of a
/// multi-frame estimate, instead of single-frame guesses.
///
/// A few iterations of ML over the whole scan (all frames, so the overlap
/// settles what one frame cannot: the twin image, the phase offsets) give
/// an estimate that is noisy, and wrong where the scan is sparse: between
/// probe spots little light fell, and ML amplifies the noise there. Each
/// frame's window of that estimate, with the scan's illumination in it, is
/// what the network sees; it returns the corrected window, which the nn
/// engine stitches like every other patch (nn_engine.cpp). This is
/// PtychoNet's idea, an encoding of the whole scan, with the encoder being
/// physics rather than learned.
///
/// Everything here is rank-local or goes through the Collective, so the
/// features of a frame do not depend on the rank count.
#include "features.hpp"
#include "ptycho/core/collective.hpp"
#include "ptycho/core/engine.hpp"
#include "ptycho/core/local_scan.hpp"

#include <torch/torch.h>

namespace ptycho::learned {

/// `iterations` of ML (default options; probe, positions and background
/// held) on `state`, over all ranks: the estimate the network corrects.
void multi_frame_estimate(Workspace& ws, const Collective& coll, ReconState& state, int iterations);

/// Each frame's window of an object, as the network's features.
class WindowFeatures {
 public:
  /// Computes the scan's illumination over the object (collective).
  WindowFeatures(const Workspace& ws, const Collective& coll);
  /// The features of local frames first..first+count (count <= ws.batch()):
  /// input (count, 3, M, M) = Re, Im of the window times conj(turn), and the
  /// square root of the scan's illumination in the window (max 1 over the
  /// object); baseline = that window times conj(turn); weight = the frame's
  /// own illumination (max 1); turn = the window's mean phase factor, which
  /// patch_from_output puts back.
  Features operator()(const CView2& object, long first, long count) const;

 private:
  const Workspace& m_ws;
  CView2 m_illum;   ///< (extent) sqrt(scan illumination / its maximum), as a complex image
  CView3 m_ones;    ///< (batch * K, M, M) ones: product_waves with them gives the object's windows
  CView3 m_waves;   ///< (batch * K, M, M) scratch
};

}  // namespace ptycho::learned
