#pragma once
/// The `nn` engine: the network's guess of the object, one step in a chain.
///
/// Each rank runs the network on its own frames (features.hpp), which gives
/// every frame's object patch up to a phase offset. The patches are
/// stitched into the tiles through the same numerator and denominator sums
/// over halos and ranks as every other engine's object update, weighted by
/// the illumination. Each patch's phase offset is aligned to the stitched
/// object in a few rounds (every round is such a sum), so the result does
/// not depend on the rank count. Unlit pixels get the mean of the lit
/// object. The chain goes on from the stitched object.
#include "ptycho/core/engine.hpp"

#include <memory>

namespace ptycho::learned {

std::unique_ptr<Engine> make_nn_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                       ReconState& state);

}  // namespace ptycho::learned
