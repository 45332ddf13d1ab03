#include "scan_features.hpp"

#include <algorithm>
#include <cmath>

namespace ptycho::learned {

namespace {

torch::Tensor wrap(const CView3& v, long count) {
  return torch::from_blob(reinterpret_cast<void*>(v.data()), {long(v.extent(0)), long(v.extent(1)), long(v.extent(2))},
                          torch::kComplexFloat)
      .narrow(0, 0, count);
}

}  // namespace

void multi_frame_estimate(Workspace& ws, const Collective& coll, ReconState& state, int iterations) {
  if (iterations <= 0) return;
  EngineOptions opt;
  opt.name = "ml";
  opt.iterations = iterations;
  const std::unique_ptr<Engine> ml = make_engine(opt, ws, coll, state);
  // The engine's iterations are this stage's: the state's history records
  // one nn iteration, not these.
  const std::vector<double> costs = state.cost_history;
  const std::vector<std::string> names = state.engine_history;
  const long iteration = state.iteration;
  for (int i = 0; i < iterations; ++i) ml->iterate(state);
  state.cost_history = costs;
  state.engine_history = names;
  state.iteration = iteration;
}

WindowFeatures::WindowFeatures(const Workspace& ws, const Collective& coll) : m_ws(ws) {
  const LocalScan& scan = ws.scan();
  const Rect& ext = scan.extent;
  const Rect& own = scan.owned;
  const int m = ws.frame_size(), k = ws.num_modes();
  const long n = scan.num_local(), batch = ws.batch();
  View2<double> den("ptycho::nn::illumination", ext.rows, ext.cols);
  for (long first = 0; first < n; first += batch) ws.accumulate_illumination(den, first, std::min(batch, n - first));
  coll.scatter_sum(den);
  double peak = 0;
  auto hden = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), den);
  for (long r = own.row0 - ext.row0; r < own.row0 - ext.row0 + own.rows; ++r)
    for (long c = own.col0 - ext.col0; c < own.col0 - ext.col0 + own.cols; ++c) peak = std::max(peak, hden(r, c));
  coll.max(&peak, 1);
  // Owned pixels hold the sums over ranks; gather() brings the halo's.
  View2<float> level("ptycho::nn::illumination_level", ext.rows, ext.cols);
  auto hlevel = Kokkos::create_mirror_view(level);
  for (long r = 0; r < ext.rows; ++r)
    for (long c = 0; c < ext.cols; ++c) hlevel(r, c) = float(std::sqrt(hden(r, c) / std::max(peak, 1e-30)));
  Kokkos::deep_copy(level, hlevel);
  coll.gather(level);
  Kokkos::deep_copy(hlevel, level);
  m_illum = CView2("ptycho::nn::illumination_image", ext.rows, ext.cols);
  auto hillum = Kokkos::create_mirror_view(m_illum);
  for (long r = 0; r < ext.rows; ++r)
    for (long c = 0; c < ext.cols; ++c) hillum(r, c) = cfloat(hlevel(r, c), 0.0f);
  Kokkos::deep_copy(m_illum, hillum);
  m_ones = CView3("ptycho::nn::ones", batch * k, m, m);
  Kokkos::deep_copy(m_ones, cfloat(1, 0));
  m_waves = CView3("ptycho::nn::windows", batch * k, m, m);
}

Features WindowFeatures::operator()(const CView2& object, long first, long count) const {
  torch::NoGradGuard no_grad;
  const int m = m_ws.frame_size(), k = m_ws.num_modes();
  auto window = [&](const CView2& image) {
    m_ws.product_waves(image, m_ones, first, count, m_waves);
    return wrap(m_waves, count * k).view({count, k, m, m}).select(1, 0).clone();
  };
  const torch::Tensor estimate = window(object);
  const torch::Tensor illum = torch::real(window(m_illum));
  const torch::Tensor probes = wrap(m_ws.probes(), long(m_ws.probes().extent(0)))
                                   .narrow(0, first * k, count * k)
                                   .view({count, k, m, m});
  const torch::Tensor own = (torch::real(probes).square() + torch::imag(probes).square()).sum(1);
  const torch::Tensor peak = std::get<0>(own.view({count, -1}).max(1)).clamp_min(1e-30).view({count, 1, 1});
  Features f;
  f.weight = own / peak;
  const torch::Tensor mean = (f.weight * estimate).sum({1, 2});
  const torch::Tensor mag = torch::abs(mean);
  f.turn = torch::where(mag > 0, mean / mag.clamp_min(1e-30), torch::ones_like(mean)).view({count, 1, 1});
  f.baseline = estimate * torch::conj(f.turn);
  f.input = torch::stack({torch::real(f.baseline), torch::imag(f.baseline), illum}, 1).contiguous();
  return f;
}

}  // namespace ptycho::learned
