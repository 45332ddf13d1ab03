// The forward model against the independent benchmark: for every file of the
// public tier, the model intensities of its ground truth (object, probe modes,
// true positions) explain the measured counts as Poisson noise, i.e. the mean
// over valid pixels of (y - I)^2 / max(I, 1) lies in [0.9, 1.1], taken over
// the pixels whose model counts are at least 1. (Over all valid pixels the
// dark ones, E[(y - I)^2] = I << 1, pull the mean to about 0.4, also for
// ptybench's own forward(): 0.3998 on standard_s00, the same as here.)
#include "ptycho/core/forward.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/hdf5_util.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

using namespace ptycho;

namespace {

std::vector<std::string> bench_files() {
  std::vector<std::string> out;
  const std::filesystem::path dir = std::filesystem::path(PTYCHO_SHARED_DIR) / "bench" / "data";
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".cxi") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(ForwardModel, ExplainsEveryBenchmarkFileAsPoissonNoise) {
  const auto files = bench_files();
  if (files.empty()) GTEST_SKIP() << "no benchmark data under " << PTYCHO_SHARED_DIR;
  for (const auto& cxi : files) {
    const std::string truth_path = cxi.substr(0, cxi.size() - 4) + "_truth.h5";
    const io::H5File t = io::H5File::open_read(truth_path);
    std::vector<hsize_t> od, pd, xd;
    const auto obj = t.read_complex("/object", od);
    const auto modes = t.read_complex("/probe_modes", pd);
    const auto pos = t.read_doubles("/positions_px", &xd);
    ASSERT_EQ(od.size(), 2u);
    ASSERT_EQ(pd.size(), 3u);
    HostCView2 object("object", od[0], od[1]);
    std::copy(obj.begin(), obj.end(), object.data());
    HostCView3 probe("modes", pd[0], pd[1], pd[2]);
    std::copy(modes.begin(), modes.end(), probe.data());
    std::vector<Position> positions(xd[0]);
    for (size_t j = 0; j < xd[0]; ++j) positions[j] = {pos[2 * j], pos[2 * j + 1]};

    io::ReadOptions ro;
    ro.transfer = io::FrameTransfer::independent;
    const ScanInfo info = io::read_scan_info(cxi, ro);
    std::vector<long> all(info.num_frames);
    std::iota(all.begin(), all.end(), 0L);
    const Dataset data = io::read_cxi(MPI_COMM_SELF, cxi, all, ro);
    ASSERT_EQ(long(positions.size()), info.num_frames) << cxi;

    const HostRView3 model = model_intensities(object, probe, positions);
    const int m = info.geometry.frame_size;
    double sum = 0;
    long count = 0;
    for (long j = 0; j < info.num_frames; ++j)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) {
          if (data.mask.size() && data.mask(r, c)) continue;
          const double y = data.frames(j, r, c), i = model(j, r, c);
          if (i < 1.0) continue;
          sum += (y - i) * (y - i) / std::max(i, 1.0);
          ++count;
        }
    const double chi2 = sum / count;
    EXPECT_GE(chi2, 0.9) << cxi;
    EXPECT_LE(chi2, 1.1) << cxi;
    std::printf("%s: mean (y - I)^2 / max(I, 1) = %.4f\n", std::filesystem::path(cxi).filename().c_str(), chi2);
  }
}
