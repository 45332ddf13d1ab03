#pragma once
/// Checkpoints: the whole state of a running reconstruction in one HDF5 file,
/// written collectively with parallel HDF5 and independent of the rank count.
///
/// Layout (everything under /ptycho_checkpoint, attribute format_version = 1):
///   values and texts    float64 (n) and fixed-length strings, written by rank 0
///   object fields       complex64 (H, W): the global object grid, each rank
///                       writing its owned pixels
///   frame fields        complex64 (N * per_frame, M, M), by global frame index
///   frame values        float64 (N, per_frame), by global frame index
///   shared fields       complex64 (A, B, C), written by rank 0
/// Names given to the archive become paths below the root ("engine/psi").
///
/// Writing is atomic: everything goes to `PATH.tmp.<pid>.<n>` beside PATH,
/// which is closed and then renamed onto PATH by rank 0. A run killed at any
/// moment leaves the previous checkpoint whole, and at worst a stray
/// temporary file (removed on any error that the program survives).
#include "ptycho/core/rank_layout.hpp"
#include "ptycho/core/state_archive.hpp"

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ptycho::io {

/// Writes a checkpoint to `path` (collective over `comm`, atomic): `save` is
/// called on every rank with an archive that writes, and `layout` (the
/// type results use too) maps this rank's share to the global datasets. Errors are raised on
/// every rank with the same message (InputError for file problems).
void write_checkpoint(MPI_Comm comm, const std::string& path, const RankLayout& layout,
                      const std::function<void(StateArchive&)>& save);

/// Opens the checkpoint `path` for restoring (collective): the archive reads
/// what a StateArchive user asks for into its arguments, checking every
/// extent against the layout (an InputError names the file and dataset).
std::unique_ptr<StateArchive> open_checkpoint(MPI_Comm comm, const std::string& path, const RankLayout& layout);

/// True if `path` is an HDF5 file with a /ptycho_checkpoint group (serial;
/// false for a missing or unreadable file).
bool is_checkpoint(const std::string& path);

/// The text `name` of the checkpoint at `path` (serial; "run/low_memory"
/// for /ptycho_checkpoint/run/low_memory), or "" if the file is not a
/// readable checkpoint or has no such text: a look before a run is set up,
/// whose resume then reports any problem with the file.
std::string peek_checkpoint_text(const std::string& path, const std::string& name);

/// A serial look into a checkpoint for `ptycho info`: every dataset is
/// opened and read through, so a truncated file fails here. Throws
/// InputError naming the file and what is wrong.
struct CheckpointSummary {
  std::string input;   ///< the scan the run reconstructs
  std::string chain;   ///< its engine chain
  std::string low_memory;  ///< "true" or "false": the run's low-memory mode ("" from before session 16)
  long iteration = 0;  ///< iterations done over the chain
  long frames = 0;
  int frame_size = 0;
  long object_rows = 0, object_cols = 0;
  long datasets = 0;   ///< datasets read
  double megabytes = 0;
};
CheckpointSummary inspect_checkpoint(const std::string& path);

/// The whole object (run/object) and the probe modes (run/probe) of a
/// checkpoint (serial), for previews.
void read_checkpoint_images(const std::string& path, HostCView2& object, HostCView3& probe);

}  // namespace ptycho::io
