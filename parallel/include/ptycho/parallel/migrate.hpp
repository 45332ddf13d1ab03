#pragma once
/// Migration of frames between ranks after position refinement.
///
/// A frame belongs to the rank whose owned tile holds its probe centre
/// (decomposition.hpp, owner_of). Position refinement moves centres, and a
/// centre near a tile boundary can cross it. Inside one engine that is
/// harmless: the halo leaves room for the move (DecompositionOptions::
/// refine_margin), so the frame still reads inside its rank's extent. Between
/// engines, and when a run resumes, every frame whose centre has left its
/// rank's tile is handed to the rank that owns it now, with its measured
/// counts and its current position, so that the next engine's moves again
/// start inside the owner's tile and the halo margin holds afresh.
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/decomposition.hpp"

#include <mpi.h>

#include <vector>

namespace ptycho {

/// The frames one rank holds: global indices (strictly ascending), their
/// current probe centres [object px] and their counts (n, M, M) on the host.
struct FrameSet {
  std::vector<long> index;
  std::vector<Position> positions;
  HostRView3 counts;
};

/// The owner of each frame under `dec`: owner_of(dec, p.row, p.col).
std::vector<int> frame_owners(const Decomposition& dec, const std::vector<Position>& positions);

/// Collective over `comm` (whose ranks are those of `dec`): every frame of
/// every rank goes to the owner of its current position. Returns the frames
/// this rank holds afterwards, ascending in global index, and sets `moved` to
/// the number of frames that changed rank, over all ranks (the same value on
/// every rank). Frames of M x M counts move as whole frames (no 2^31 limit on
/// the bytes of a transfer).
FrameSet migrate_frames(MPI_Comm comm, const Decomposition& dec, const FrameSet& mine, long& moved);

}  // namespace ptycho
