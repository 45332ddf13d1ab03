#pragma once
/// What `ptycho analyze` reads from and adds to a result file (the result
/// contract is in result.hpp):
///
///   read_result_header   the object's size, pixel size, positions and probe
///                        size, without reading the object (serial)
///   read_object_rows     whole rows of the object: one FFTW-MPI slab per rank
///                        (collective, parallel HDF5)
///   add_to_result        adds datasets to a result, atomically: the file is
///                        copied beside itself, the slab-distributed fields are
///                        written into the copy collectively, rank 0 adds the
///                        small records, and the copy is renamed onto the
///                        result. The object and everything else already in
///                        the file are left as they are; a field or record
///                        that exists already is replaced.
#include "ptycho/core/types.hpp"

#include <mpi.h>

#include <map>
#include <string>
#include <vector>

namespace ptycho::io {

struct ResultHeader {
  long rows = 0;                    ///< of the object [px]
  long cols = 0;
  double pixel_size_m = 0;          ///< 0 if the result does not say
  std::vector<Position> positions;  ///< probe centres [object px]; empty if the result has none
  long frame_size = 0;              ///< M of the probe modes; 0 if the result has none
};

/// Reads the header of the result at `path` (serial). Throws InputError
/// naming the file and dataset if it is not a result or the object is not 2-D
/// (or 3-D with at least one slice: slice 0 is used).
ResultHeader read_result_header(const std::string& path);

/// Reads object rows [row0, row0 + rows), all `cols` columns, into `out`
/// (rows x cols, row-major). Collective over `comm`; a rank may read 0 rows.
void read_object_rows(MPI_Comm comm, const std::string& path, long row0, long rows, long cols, cfloat* out);

/// A field over the object's grid, held by each rank as whole rows
/// [row0, row0 + rows) (its slab): complex64 if `complex_data`, else float32.
struct SlabField {
  std::string path;  ///< absolute dataset path, e.g. /entry_1/analysis_1/object
  const cfloat* complex_data = nullptr;
  const float* real_data = nullptr;
  long row0 = 0;
  long rows = 0;
  std::map<std::string, std::string> attributes;  ///< string attributes of the dataset
};

/// Small datasets under one group (written by rank 0).
struct AnalysisRecord {
  std::string group;  ///< absolute group path, e.g. /entry_1/process_1/frc
  std::map<std::string, double> scalars;
  std::map<std::string, std::vector<double>> arrays;
  std::map<std::string, std::string> strings;
};

/// Adds `fields` (each rank passes its slab of each, the same list on every
/// rank) and `records` (rank 0's are used) to the result at `path`, whose
/// object is rows x cols. Collective and atomic (see above). Throws
/// InputError on every rank, naming the file, if it cannot be written; the
/// result is then left untouched.
void add_to_result(MPI_Comm comm, const std::string& path, long rows, long cols, const std::vector<SlabField>& fields,
                   const std::vector<AnalysisRecord>& records);

}  // namespace ptycho::io
