/// Fuzz target: the CXI header reader (io/src/cxi.cpp). The input is the
/// bytes of a CXI (HDF5) file; read_cxi_header reads its metadata, positions,
/// mask and probe guess. A ptycho::Error (InputError: not HDF5, a missing or
/// misshapen dataset, a bad value) is the expected rejection; anything else
/// is a bug. Every HDF5 object the reader opened must be closed again.
#include "fuzz_target.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/cxi.hpp"

#include <Kokkos_Core.hpp>
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

using ptycho::fuzz::Outcome;

namespace {

void fail(const char* what) {
  std::fprintf(stderr, "fuzz_cxi_header: %s\n", what);
  std::abort();
}

/// What read_cxi_header promises about a header it returns.
void check_header(const ptycho::io::CxiHeader& h) {
  const ptycho::ScanInfo& s = h.info;
  const int m = s.geometry.frame_size;
  if (m < 2 || m % 2 != 0) fail("accepted an odd or tiny frame size");
  if (s.num_frames < 1 || long(s.positions.size()) != s.num_frames) fail("positions do not match the frames");
  if (!(s.geometry.energy_j > 0) || !(s.geometry.distance_m > 0) || !(s.geometry.pixel_x_m > 0) ||
      !(s.geometry.pixel_y_m > 0))
    fail("accepted a geometry that is not positive");
  if (s.object_rows < m || s.object_cols < m) fail("an object grid smaller than a frame");
  for (const auto& p : s.positions)
    if (!std::isfinite(p.row) || !std::isfinite(p.col) || p.row < 0 || p.col < 0 || p.row > double(s.object_rows) ||
        p.col > double(s.object_cols))
      fail("a position outside the object grid");
  if (h.mask.extent(0) != size_t(m) || h.mask.extent(1) != size_t(m)) fail("a mask that is not M x M");
  if (h.probe.size() != 0 && (h.probe.extent(0) != size_t(m) || h.probe.extent(1) != size_t(m)))
    fail("a probe that is not M x M");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // The reader's masks and probes are Kokkos host views (Serial is enough).
  if (!Kokkos::is_initialized()) {
    Kokkos::InitArguments args;
    args.num_threads = 1;
    args.disable_warnings = true;
    Kokkos::initialize(args);
    std::atexit([] { Kokkos::finalize(); });
  }
  (void)argc;
  (void)argv;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // HDF5's error stacks would flood the log
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = ptycho::fuzz::scratch_path("scan.cxi");
  ptycho::fuzz::write_file(path, data, size);
  bool rejected = false;
  try {
    check_header(ptycho::io::read_cxi_header(path));
  } catch (const ptycho::Error&) {
    rejected = true;
  }
  // Whatever happened, the reader must have closed every HDF5 object it
  // opened (a leaked file would also be read again, stale, by the next input).
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open != 0) {
    std::fprintf(stderr, "fuzz_cxi_header: %zd HDF5 objects left open after read_cxi_header (%s)\n", open,
                 rejected ? "rejected" : "accepted");
    std::abort();
  }
  ptycho::fuzz::last_outcome = rejected ? Outcome::rejected : Outcome::accepted;
  return 0;
}
