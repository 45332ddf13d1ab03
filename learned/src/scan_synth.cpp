#include "scan_synth.hpp"

#include "ptycho/core/collective.hpp"
#include "ptycho/core/simulate.hpp"
#include "scan_features.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ptycho::learned {

namespace {

constexpr int kObjectSize = 160;  ///< px: room for 10 to 150 frames of 64 px at the steps drawn

HostRView2 to_image(const torch::Tensor& t) {
  const long n = t.size(0);
  HostRView2 out("ptycho::learned::image", n, n);
  const torch::Tensor c = t.contiguous();
  std::copy(c.data_ptr<float>(), c.data_ptr<float>() + n * n, out.data());
  return out;
}

}  // namespace

ScanSampler::ScanSampler(int frame_size, int iterations, std::uint64_t seed)
    : m_frame_size(frame_size),
      m_iterations(iterations),
      m_images([&] {
        SynthOptions o;
        o.frame_size = frame_size;
        return o;
      }(), seed),
      m_rng(seed * 2654435761ULL + 17) {}

void ScanSampler::simulate_scan() {
  const int m = m_frame_size;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  sim::SimulationOptions so;
  so.object_size = kObjectSize * m / 64;
  so.probe_size = m;
  // Steps from dense (7 px, 85 % linear overlap of a 64 px frame) to
  // sparse (30 px), log-uniform; photons 2e5 to 5e6 per frame.
  so.step = m / 64.0 * 7.0 * std::exp(unit(m_rng) * std::log(30.0 / 7.0));
  so.photons = 2e5 * std::exp(unit(m_rng) * std::log(25.0));
  so.scan = unit(m_rng) < 0.8 ? sim::ScanKind::fermat : sim::ScanKind::raster;
  so.beamstop_mask = unit(m_rng) < 0.3;
  so.seed = m_rng() % 1000000007ULL + 1;
  so.amplitude_image = to_image(m_images.images(1, so.object_size)[0]);
  so.phase_image = to_image(m_images.images(1, so.object_size)[0]);
  const sim::Simulation s = sim::simulate(so);
  ++m_scans;

  LocalScan scan;
  scan.frame_size = m;
  scan.object_rows = scan.object_cols = so.object_size;
  scan.owned = scan.extent = Rect{0, 0, so.object_size, so.object_size};
  const long n = long(s.positions.size());
  for (long j = 0; j < n; ++j) scan.index.push_back(j);
  scan.total_frames = n;
  scan.frames = RView3("ptycho::learned::frames", n, m, m);
  Kokkos::deep_copy(scan.frames, s.frames);
  scan.valid = RView2("ptycho::learned::valid", m, m);
  auto hvalid = Kokkos::create_mirror_view(scan.valid);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hvalid(r, c) = s.mask(r, c) ? 0.0f : 1.0f;
  Kokkos::deep_copy(scan.valid, hvalid);

  ReconState state;
  state.object = CView2("ptycho::learned::object", so.object_size, so.object_size);
  Kokkos::deep_copy(state.object, cfloat(1, 0));
  state.probe = CView3("ptycho::learned::probe", 1, m, m);
  auto hprobe = Kokkos::create_mirror_view(state.probe);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) hprobe(0, r, c) = s.nominal_probe(r, c);
  Kokkos::deep_copy(state.probe, hprobe);
  state.positions = s.nominal_positions;

  const int batch = 16;
  Workspace ws(scan, 1, batch);
  ws.set_positions(state.positions);
  ws.set_probe(state.probe);
  const OneRankCollective one;
  multi_frame_estimate(ws, one, state, m_iterations);
  const WindowFeatures windows(ws, one);

  // At most kWindowsPerScan frames, drawn at random.
  std::vector<long> frames(static_cast<size_t>(n));
  std::iota(frames.begin(), frames.end(), 0L);
  std::shuffle(frames.begin(), frames.end(), m_rng);
  frames.resize(static_cast<size_t>(std::min(n, kWindowsPerScan)));
  const auto rows = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ws.patch_row());
  const auto cols = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ws.patch_col());
  const torch::Tensor truth =
      torch::from_blob(reinterpret_cast<void*>(s.object.data()), {so.object_size, so.object_size}, torch::kComplexFloat);
  for (long j : frames) {
    const Features f = windows(state.object, j, 1);
    m_input.push_back(f.input);
    m_baseline.push_back(f.baseline);
    m_weight.push_back(f.weight);
    m_turn.push_back(f.turn);
    m_truth.push_back(truth.narrow(0, rows(j), m).narrow(1, cols(j), m).clone().unsqueeze(0));
  }
}

ScanSamples ScanSampler::batch(long count) {
  while (long(m_input.size()) < count) simulate_scan();
  // The oldest `count` samples; a scan's windows may be split over batches.
  auto take = [&](std::vector<torch::Tensor>& v) {
    torch::Tensor t = torch::cat(std::vector<torch::Tensor>(v.begin(), v.begin() + count), 0);
    v.erase(v.begin(), v.begin() + count);
    return t;
  };
  ScanSamples b;
  b.features.input = take(m_input);
  b.features.baseline = take(m_baseline);
  b.features.weight = take(m_weight);
  b.features.turn = take(m_turn);
  b.truth = take(m_truth);
  return b;
}

}  // namespace ptycho::learned
