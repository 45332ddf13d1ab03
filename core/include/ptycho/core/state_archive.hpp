#pragma once
/// Checkpoints of a reconstruction, as seen from core/: engines save and
/// restore their private state through a StateArchive, with one `checkpoint`
/// function that serves both directions (the archive says which). io/
/// implements it with parallel HDF5 (io/checkpoint.hpp); core/ knows nothing
/// of files or MPI.
///
/// Every call is collective: all ranks make the same calls with the same
/// names in the same order. Names are relative to a group that the caller
/// may set (e.g. "engine"); `/` separates levels.
///
/// What is stored is independent of the rank count: object fields as the
/// global object (each rank saves its owned pixels, and reads back its whole
/// extent, halo included), frame fields and per-frame values by global frame
/// index. A checkpoint written on R ranks can be read on any other number.
#include "ptycho/core/half.hpp"
#include "ptycho/core/types.hpp"

#include <string>
#include <vector>

namespace ptycho {

class StateArchive {
 public:
  virtual ~StateArchive() = default;
  /// True when restoring (values are read into the arguments), false when saving.
  virtual bool loading() const = 0;

  /// Values identical on every rank (counters, flags, small arrays). On load
  /// `values` gets the stored length.
  virtual void values(const std::string& name, std::vector<double>& values) = 0;
  /// A string identical on every rank.
  virtual void text(const std::string& name, std::string& value) = 0;
  /// An object-sized field over this rank's extent (extent.rows x extent.cols).
  virtual void object_field(const std::string& name, const CView2& field) = 0;
  /// A field of the local frames: (num_local * per_frame, M, M), frame j's
  /// block at j * per_frame (exit waves, far fields).
  virtual void frame_field(const std::string& name, const CView3& field) = 0;
  /// The same for complex halves packed in 32 bits (half.hpp), stored as
  /// they are: the low-memory far fields of DM and RAAR.
  virtual void frame_field(const std::string& name, const HalfCView3& field) = 0;
  /// `per_frame` doubles for each local frame, frame j's at j * per_frame
  /// (positions, momenta). On load the vector is resized.
  virtual void frame_values(const std::string& name, std::vector<double>& values, int per_frame) = 0;
  /// A complex array identical on every rank (the probe modes). On load its
  /// extents must match the stored ones.
  virtual void shared_field(const std::string& name, const CView3& field) = 0;
  /// Declares which frames this rank holds now (global indices, strictly
  /// ascending): the frame fields and values that follow are theirs. Frames
  /// change ranks when refined positions cross tile boundaries
  /// (parallel/migrate.hpp), so the frames of a rank are not fixed for a run.
  virtual void set_local_frames(const std::vector<long>& global_index) = 0;

  /// Whether the archive holds `name` (always true when saving: what is
  /// being written). For state that a checkpoint may lack, e.g. one written
  /// by another method of the same engine.
  virtual bool contains(const std::string& name) = 0;

  /// A scalar through values(): saved as it is, restored into `value`.
  template <class T>
  void scalar(const std::string& name, T& value) {
    std::vector<double> v{static_cast<double>(value)};
    values(name, v);
    if (loading()) value = static_cast<T>(v.at(0));
  }
};

}  // namespace ptycho
