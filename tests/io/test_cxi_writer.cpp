// The simulated-scan writers: a CXI file the reader reads back exactly, in
// ptybench's layout, and the truth file.
#include "io_fixtures.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/cxi_writer.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace ptycho {
namespace {

std::string scratch(const std::string& name) { return test::scratch_path("test_io_cxi_writer", name); }

io::CxiScan make_scan(bool with_probe, bool with_mask) {
  io::CxiScan s;
  const int m = 16;
  const long n = 7;
  s.geometry.frame_size = m;
  s.geometry.energy_j = 8e3 * kJoulePerEv;
  s.geometry.pixel_x_m = s.geometry.pixel_y_m = 55e-6;
  s.geometry.distance_m = 2.0;
  s.frames = HostRView3("frames", n, m, m);
  for (long j = 0; j < n; ++j)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) s.frames(j, r, c) = float(j * 100 + r) + 0.25f * float(c);
  for (long j = 0; j < n; ++j) s.positions_px.push_back(Position{30.0 + 2.5 * j, 40.0 - 1.75 * j + 0.1 * (j % 2)});
  if (with_probe) {
    s.probe = HostCView2("probe", m, m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) s.probe(r, c) = cfloat(float(r - c), 0.5f * float(r + c));
  }
  if (with_mask) {
    s.mask = View2<std::uint8_t, HostSpace>("mask", m, m);
    s.mask(1, 2) = 1;
    s.mask(15, 0) = 1;
  }
  return s;
}

TEST(CxiWriter, ReadBackGivesTheScan) {
  for (bool extras : {false, true}) {
    SCOPED_TRACE(extras ? "with probe and mask" : "frames only");
    const io::CxiScan scan = make_scan(extras, extras);
    const std::string path = scratch(extras ? "full.cxi" : "bare.cxi");
    io::write_cxi(path, scan);
    io::ReadOptions as_is;
    as_is.probe_scaling = io::ProbeScaling::as_in_file;
    const Dataset ds = io::read_cxi(MPI_COMM_SELF, path, {0, 1, 2, 3, 4, 5, 6}, as_is);
    const DetectorGeometry& g = ds.info.geometry;
    EXPECT_EQ(ds.info.num_frames, 7);
    EXPECT_EQ(g.frame_size, 16);
    EXPECT_DOUBLE_EQ(g.energy_j, scan.geometry.energy_j);
    EXPECT_DOUBLE_EQ(g.distance_m, 2.0);
    EXPECT_DOUBLE_EQ(g.pixel_x_m, 55e-6);
    EXPECT_DOUBLE_EQ(g.pixel_y_m, 55e-6);
    EXPECT_EQ(std::memcmp(ds.frames.data(), scan.frames.data(), scan.frames.size() * sizeof(float)), 0);
    // Positions come back on the reader's grid: the same up to a whole-pixel shift.
    const double shift_r = ds.info.positions[0].row - scan.positions_px[0].row;
    const double shift_c = ds.info.positions[0].col - scan.positions_px[0].col;
    EXPECT_EQ(shift_r, std::round(shift_r));
    EXPECT_EQ(shift_c, std::round(shift_c));
    for (long j = 0; j < 7; ++j) {
      EXPECT_NEAR(ds.info.positions[j].row - scan.positions_px[j].row, shift_r, 1e-9);
      EXPECT_NEAR(ds.info.positions[j].col - scan.positions_px[j].col, shift_c, 1e-9);
    }
    long masked = 0;
    for (size_t k = 0; k < ds.mask.size(); ++k) masked += ds.mask.data()[k];
    if (extras) {
      EXPECT_EQ(masked, 2);
      EXPECT_EQ(ds.mask(1, 2), 1);
      EXPECT_EQ(ds.info.probe_source, "/entry_1/instrument_1/source_1/probe");
      EXPECT_EQ(std::memcmp(ds.probe.data(), scan.probe.data(), scan.probe.size() * sizeof(cfloat)), 0);
    } else {
      EXPECT_EQ(masked, 0);
      EXPECT_EQ(ds.info.probe_source, io::kEstimatedProbeSource);
    }
  }
}

TEST(CxiWriter, LayoutIsPtybenchs) {
  const std::string path = scratch("layout.cxi");
  io::write_cxi(path, make_scan(true, true));
  io::H5File f = io::H5File::open_read(path);
  EXPECT_EQ(f.read_scalar("/cxi_version"), 150.0);
  EXPECT_EQ(f.read_string("/entry_1/program_name"), "ptycho");
  EXPECT_EQ(f.string_attribute("/entry_1", "NX_class").value_or(""), "NXentry");
  EXPECT_EQ(f.string_attribute("/entry_1/instrument_1/source_1/energy", "units").value_or(""), "J");
  EXPECT_EQ(f.read_string("/entry_1/instrument_1/name"), "ptycho simulate");
  for (const char* link : {"/entry_1/data_1/data", "/entry_1/instrument_1/source_1/illumination"}) {
    H5L_info_t info;
    ASSERT_GE(H5Lget_info(f.id(), link, &info, H5P_DEFAULT), 0) << link;
    EXPECT_EQ(info.type, H5L_TYPE_SOFT) << link;
  }
  // Frames: float32 in chunks of one frame, gzip-compressed.
  io::H5Id dset = f.open_dataset("/entry_1/instrument_1/detector_1/data");
  io::H5Id type(H5Dget_type(dset.get()));
  EXPECT_EQ(io::type_name(type.get()), "float32");
  io::H5Id dcpl(H5Dget_create_plist(dset.get()));
  hsize_t chunk[3] = {0, 0, 0};
  ASSERT_EQ(H5Pget_chunk(dcpl.get(), 3, chunk), 3);
  EXPECT_EQ(chunk[0], 1u);
  EXPECT_EQ(chunk[1], 16u);
  EXPECT_EQ(H5Pget_nfilters(dcpl.get()), 1);
  // Mask uint32; the translation in metres with x along columns, (3, N) rows
  // x, y, z where PyNX reads it and (N, 3) where ptychodus and cdtools do.
  io::H5Id mask = f.open_dataset("/entry_1/instrument_1/detector_1/mask");
  io::H5Id mask_type(H5Dget_type(mask.get()));
  EXPECT_EQ(io::type_name(mask_type.get()), "uint32");
  DetectorGeometry g = make_scan(false, false).geometry;
  std::vector<hsize_t> dims;
  const std::vector<double> rows = f.read_doubles("/entry_1/sample_1/geometry_1/translation", &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{3, 7}));
  EXPECT_NEAR(rows[0 * 7 + 2], (40.0 - 3.5) * g.object_pixel_x_m(), 1e-20);
  EXPECT_NEAR(rows[1 * 7 + 2], 35.0 * g.object_pixel_y_m(), 1e-20);
  EXPECT_EQ(rows[2 * 7 + 2], 0.0);
  const std::vector<double> t = f.read_doubles("/entry_1/data_1/translation", &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{7, 3}));
  EXPECT_NEAR(t[3 * 2 + 0], (40.0 - 3.5) * g.object_pixel_x_m(), 1e-20);
  EXPECT_NEAR(t[3 * 2 + 1], 35.0 * g.object_pixel_y_m(), 1e-20);
  EXPECT_EQ(t[3 * 2 + 2], 0.0);
  // The CXI default basis, written out: rows along -y, columns along -x.
  const std::vector<double> basis = f.read_doubles("/entry_1/instrument_1/detector_1/basis_vectors", &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{2, 3}));
  EXPECT_EQ(basis, (std::vector<double>{0, -g.pixel_y_m, 0, -g.pixel_x_m, 0, 0}));
}

TEST(CxiWriter, TruthFile) {
  io::TruthData truth;
  truth.object = HostCView2("object", 20, 30);
  truth.object(3, 4) = cfloat(0.5f, -0.25f);
  truth.probe_modes = HostCView3("modes", 3, 8, 8);
  truth.probe_modes(2, 7, 1) = cfloat(2.0f, 1.0f);
  truth.positions_px = {{1.5, 2.5}, {3.0, 4.25}};
  truth.nominal_positions_px = {{1.0, 2.0}, {3.0, 4.0}};
  truth.probe_error_pct = 9.15;
  truth.position_error_nm = 0.78;
  truth.partial_coherence_nm = 6.77;
  truth.photons_per_frame = 1e6;
  truth.scenes = "camera:chelsea";
  truth.pixel_size_m = 1e-8;
  const std::string path = scratch("truth.h5");
  io::write_truth(path, truth);
  io::H5File f = io::H5File::open_read(path);
  std::vector<hsize_t> dims;
  const std::vector<cfloat> obj = f.read_complex("/object", dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{20, 30}));
  EXPECT_EQ(obj[3 * 30 + 4], cfloat(0.5f, -0.25f));
  const std::vector<cfloat> modes = f.read_complex("/probe_modes", dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{3, 8, 8}));
  EXPECT_EQ(modes[(2 * 8 + 7) * 8 + 1], cfloat(2.0f, 1.0f));
  EXPECT_EQ(f.read_doubles("/positions_px", &dims), (std::vector<double>{1.5, 2.5, 3.0, 4.25}));
  EXPECT_EQ(f.read_doubles("/nominal_positions_px", &dims), (std::vector<double>{1.0, 2.0, 3.0, 4.0}));
  EXPECT_EQ(f.numeric_attribute("/", "probe_error_pct").value_or(0), 9.15);
  EXPECT_EQ(f.numeric_attribute("/", "position_error_nm").value_or(0), 0.78);
  EXPECT_EQ(f.numeric_attribute("/", "partial_coherence_nm").value_or(0), 6.77);
  EXPECT_EQ(f.numeric_attribute("/", "photons_per_frame").value_or(0), 1e6);
  EXPECT_EQ(f.numeric_attribute("/", "pixel_size_m").value_or(0), 1e-8);
  EXPECT_EQ(f.string_attribute("/", "scenes").value_or(""), "camera:chelsea");
}

TEST(CxiWriter, FailureLeavesTheTargetAlone) {
  const std::string path = scratch("keep.cxi");
  io::write_cxi(path, make_scan(false, false));
  const auto size_before = std::filesystem::file_size(path);
  io::CxiScan bad = make_scan(false, false);
  bad.positions_px.pop_back();  // 7 frames, 6 positions: refused before writing
  EXPECT_THROW(io::write_cxi(path, bad), Error);
  EXPECT_EQ(std::filesystem::file_size(path), size_before);
  EXPECT_THROW(io::write_cxi(scratch("missing_folder/x.cxi"), make_scan(false, false)), InputError);
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace ptycho
