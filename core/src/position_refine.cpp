#include "position_refine.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/kernel_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ptycho {

namespace {

/// The model exit wave of one row and its derivatives for a shift of the
/// position (see accumulate_gradient): f = P O, ur = (P(r+1) - P(r-1)) / 2 O,
/// uc = (P(c+1) - P(c-1)) / 2 O, with P = 0 outside the frame (`up`, `down`:
/// the probe rows r - 1 and r + 1, or null at the frame's edge). n >= 2.
PTYCHO_ROW_FUNCTION void shift_waves_row(cfloat* f_c, cfloat* ur_c, cfloat* uc_c, const cfloat* p_c, const cfloat* up_c,
                                         const cfloat* down_c, const cfloat* o_c, int n) {
  float* PTYCHO_RESTRICT f = reinterpret_cast<float*>(f_c);
  float* PTYCHO_RESTRICT ur = reinterpret_cast<float*>(ur_c);
  float* PTYCHO_RESTRICT uc = reinterpret_cast<float*>(uc_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  const float* PTYCHO_RESTRICT up = reinterpret_cast<const float*>(up_c);
  const float* PTYCHO_RESTRICT down = reinterpret_cast<const float*>(down_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  for (int c = 0; c < n; ++c) {
    const float orr = o[2 * c], oi = o[2 * c + 1];
    const float pr = p[2 * c], pi = p[2 * c + 1];
    const float dr_r = (down ? down[2 * c] : 0.0f) - (up ? up[2 * c] : 0.0f);
    const float dr_i = (down ? down[2 * c + 1] : 0.0f) - (up ? up[2 * c + 1] : 0.0f);
    const float dc_r = (c + 1 < n ? p[2 * c + 2] : 0.0f) - (c > 0 ? p[2 * c - 2] : 0.0f);
    const float dc_i = (c + 1 < n ? p[2 * c + 3] : 0.0f) - (c > 0 ? p[2 * c - 1] : 0.0f);
    f[2 * c] = pr * orr - pi * oi;
    f[2 * c + 1] = pr * oi + pi * orr;
    const float hr = 0.5f * dr_r, hi = 0.5f * dr_i, gr = 0.5f * dc_r, gi = 0.5f * dc_i;
    ur[2 * c] = hr * orr - hi * oi;
    ur[2 * c + 1] = hr * oi + hi * orr;
    uc[2 * c] = gr * orr - gi * oi;
    uc[2 * c + 1] = gr * oi + gi * orr;
  }
}

/// The probe centre x [px] moved the least so that its patch, which starts at
/// floor(x - M/2) (geometry.hpp), lies in the lines [lo, hi): x in
/// [lo + M/2, hi - M/2]. An interval shorter than M (cannot happen for a grid
/// or extent that holds a patch) leaves x as it is.
double clamp_centre(double x, long lo, long hi, int m) {
  const double half = 0.5 * m, first = double(lo) + half, last = double(hi) - half;
  if (!(first <= last)) return x;
  return std::clamp(x, first, last);
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of x.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A uniform number in [0, 1) that depends only on (seed, global frame,
/// step): the same on every rank count, and the same again after a resume.
double frame_uniform(unsigned seed, long frame, long step) {
  const std::uint64_t h = mix64(mix64(mix64(seed) ^ std::uint64_t(frame)) ^ std::uint64_t(step));
  return double(h >> 11) * 0x1.0p-53;
}

// Row functions (kernel_util.hpp): (re, im) float pairs through restrict
// pointers and plain loops, which is what GCC vectorises.

/// out = spec * (scale * ramp) over a row of n: a trial probe's spectrum row.
KOKKOS_INLINE_FUNCTION void ramp_row(cfloat* out_c, const cfloat* spec_c, const cfloat* ramp_c, cfloat scale, int n) {
  float* PTYCHO_RESTRICT out = reinterpret_cast<float*>(out_c);
  const float* PTYCHO_RESTRICT sp = reinterpret_cast<const float*>(spec_c);
  const float* PTYCHO_RESTRICT rp = reinterpret_cast<const float*>(ramp_c);
  const float ar = scale.real(), ai = scale.imag();
  for (int c = 0; c < n; ++c) {
    const float rr = ar * rp[2 * c] - ai * rp[2 * c + 1], ri = ar * rp[2 * c + 1] + ai * rp[2 * c];
    out[2 * c] = sp[2 * c] * rr - sp[2 * c + 1] * ri;
    out[2 * c + 1] = sp[2 * c] * ri + sp[2 * c + 1] * rr;
  }
}

/// w *= o * s0 (-1)^c over a row of n: an unsigned probe row times the object,
/// with the checkerboard sign of the row (s0 its sign at c = 0).
KOKKOS_INLINE_FUNCTION void multiply_signed_row(cfloat* w_c, const cfloat* o_c, float s0, int n) {
  float* PTYCHO_RESTRICT w = reinterpret_cast<float*>(w_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  for (int c = 0; c < n; ++c) {
    const float sg = (c & 1) ? -s0 : s0;
    const float wr = w[2 * c], wi = w[2 * c + 1], orr = o[2 * c] * sg, oi = o[2 * c + 1] * sg;
    w[2 * c] = wr * orr - wi * oi;
    w[2 * c + 1] = wr * oi + wi * orr;
  }
}

/// Amplitude misfit of one row of a frame: sum_c valid (sqrt(y) - a)^2,
/// a = sqrt(sum_k |w_k|^2 / M^2) (the K modes `plane` apart). Summed in float
/// along the row (at most M terms), in double over rows.
template <int K>
KOKKOS_INLINE_FUNCTION float misfit_row(const float* PTYCHO_RESTRICT y, const float* PTYCHO_RESTRICT valid,
                                        const float* bg, const cfloat* w_c, int m, int kmodes_rt, long plane,
                                        float inv_m2) {
  const int kmodes = modes<K>(kmodes_rt);
  const float* PTYCHO_RESTRICT w = reinterpret_cast<const float*>(w_c);
  const long step = 2 * plane;
  float row = 0;
  for (int c = 0; c < m; ++c) {
    float i = 0;
    for (int k = 0; k < kmodes; ++k) {
      const float re = w[k * step + 2 * c], im = w[k * step + 2 * c + 1];
      i += re * re + im * im;
    }
    const float d = std::sqrt(y[c] > 0 ? y[c] : 0.0f) - std::sqrt(i * inv_m2 + (bg ? bg[c] : 0.0f));
    row += valid[c] > 0 ? d * d : 0.0f;
  }
  return row;
}

/// cost(s) = misfit of slot s's far fields waves(s*K .. s*K+K) (plus the
/// detector background, if any) against its frame's data, for slots s < ntrial + cnt: slot s < ntrial is a trial of
/// frame f0 + s / trials, slot ntrial + b the current position of frame f0 + b.
template <int K>
void slot_misfits(const RView3& frames, const RView2& valid, const RView2& background, const CView3& waves,
                  const View1<double>& cost, long f0,
                  long ntrial, long cnt, int trials, int kmodes) {
  const int m = int(waves.extent(1));
  const long plane = long(m) * m;
  const float inv_m2 = 1.0f / (float(m) * m);
  Kokkos::parallel_for(
      "ptycho::positions::trial_cost", frame_policy(ntrial + cnt), KOKKOS_LAMBDA(const FrameMember& team) {
        const long s = team.league_rank();
        const long j = f0 + (s < ntrial ? s / trials : s - ntrial);
        double total = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, m),
            [&](int r, double& acc) {
              acc += misfit_row<K>(&frames(j, r, 0), &valid(r, 0), background.size() ? &background(r, 0) : nullptr,
                                   &waves(s * kmodes, r, 0), m, kmodes, plane, inv_m2);
            },
            total);
        Kokkos::single(Kokkos::PerTeam(team), [&] { cost(s) = total; });
      });
}

}  // namespace

PositionRefiner::PositionRefiner(Workspace& ws, const Collective& coll, const EngineOptions& opt,
                                 const ReconState& state)
    : m_ws(ws),
      m_coll(coll),
      m_method(opt.position_method),
      m_max_step(opt.max_position_step),
      m_max_total(opt.max_position_shift),
      m_momentum(opt.position_momentum),
      m_affine_free(!opt.fix_affine),
      m_seed(opt.seed),
      m_propagator(make_propagator(ws)),
      m_start(state.positions),
      m_velocity(state.positions.size()) {
  // Work space only for the method that runs, and only if positions move at all.
  if (!opt.refine_positions) return;
  const long n = ws.scan().num_local();
  const int m = ws.frame_size(), kmodes = ws.num_modes(), batch = ws.batch();
  if (m_method == PositionMethod::gradient) {
    m_sums = View2<double>("ptycho::positions::sums", n, 5);
    m_work = CView3("ptycho::positions::work", std::size_t(3) * batch * kmodes, m, m);
    return;
  }
  PTYCHO_INPUT_ERROR_IF(
      !(m_max_step > 0) || !std::isfinite(m_max_step),
      "position refinement by annealing: max_position_step (the first trial radius) must be > 0, got " << m_max_step);
  m_work = CView3("ptycho::positions::trial_waves", std::size_t(kAnnealTrials + 1) * batch * kmodes, m, m);
  m_spectrum = CView3("ptycho::positions::probe_spectrum", kmodes, m, m);
  m_trial_row = View1<int>("ptycho::positions::trial_row", std::size_t(batch) * kAnnealTrials);
  m_trial_col = View1<int>("ptycho::positions::trial_col", std::size_t(batch) * kAnnealTrials);
  m_trial_frac = View2<double>("ptycho::positions::trial_frac", std::size_t(batch) * kAnnealTrials, 2);
  m_trial_ramp_row = View2<cfloat>("ptycho::positions::trial_ramp_row", std::size_t(batch) * kAnnealTrials, m);
  m_trial_ramp_col = View2<cfloat>("ptycho::positions::trial_ramp_col", std::size_t(batch) * kAnnealTrials, m);
  m_trial_cost = View1<double>("ptycho::positions::trial_cost", std::size_t(batch) * (kAnnealTrials + 1));
  m_move_row.assign(n, 0.0);
  m_move_col.assign(n, 0.0);
  m_moved.assign(n, 0);
}

double PositionRefiner::anneal_radius() const {
  return std::max(m_max_step * std::pow(kAnnealShrink, double(m_anneal_step)), std::min(kAnnealFloor, m_max_step));
}

void PositionRefiner::checkpoint(StateArchive& ar) {
  auto positions = [&](const std::string& name, std::vector<Position>& p) {
    std::vector<double> flat;
    if (!ar.loading())
      for (const Position& q : p) flat.insert(flat.end(), {q.row, q.col});
    ar.frame_values(name, flat, 2);
    if (!ar.loading()) return;
    p.resize(flat.size() / 2);
    for (size_t j = 0; j < p.size(); ++j) p[j] = {flat[2 * j], flat[2 * j + 1]};
  };
  positions("positions/start", m_start);
  positions("positions/velocity", m_velocity);
  // The annealing radius and the trial directions follow from the step
  // count; only annealing writes it, so gradient checkpoints stay as they
  // were. Resuming a gradient run's checkpoint with annealing starts the
  // schedule over (from the checkpoint's positions).
  if (m_method == PositionMethod::annealing) {
    if (ar.loading() && !ar.contains("positions/anneal_step"))
      m_anneal_step = 0;
    else
      ar.scalar("positions/anneal_step", m_anneal_step);
  }
}

void PositionRefiner::reset() {
  if (m_method == PositionMethod::gradient) {
    if (m_sums.size() > 0) Kokkos::deep_copy(m_sums, 0.0);
    return;
  }
  std::fill(m_move_row.begin(), m_move_row.end(), 0.0);
  std::fill(m_move_col.begin(), m_move_col.end(), 0.0);
  std::fill(m_moved.begin(), m_moved.end(), 0);
  m_misfit = 0;
  m_spectrum_ready = false;  // the probe may have changed since the last step
}

void PositionRefiner::accumulate(const ReconState& state, long first, long count) {
  PTYCHO_THROW_IF(m_work.size() == 0, "PositionRefiner: built for an engine that does not refine positions");
  if (m_method == PositionMethod::gradient)
    accumulate_gradient(state.object, first, count);
  else
    accumulate_annealing(state, first, count);
}

void PositionRefiner::accumulate_annealing(const ReconState& state, long first, long count) {
  constexpr int T = kAnnealTrials;
  const auto& scan = m_ws.scan();
  const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
  PTYCHO_THROW_IF(state.probe.extent(0) != size_t(kmodes) || state.probe.extent(1) != size_t(m),
                  "PositionRefiner: probe is " << state.probe.extent(0) << "x" << state.probe.extent(1) << ", expected "
                                               << kmodes << "x" << m);
  if (count <= 0) return;
  // The probe's spectrum once per step; every trial probe is it times a ramp.
  if (!m_spectrum_ready) {
    Kokkos::deep_copy(m_spectrum, state.probe);
    m_ws.plan().execute(m_spectrum, FftDirection::forward, Centring::none);
    m_spectrum_ready = true;
  }
  const double radius = anneal_radius();
  const Rect& e = scan.extent;
  auto trow = Kokkos::create_mirror_view(m_trial_row);
  auto tcol = Kokkos::create_mirror_view(m_trial_col);
  auto tfrac = Kokkos::create_mirror_view(m_trial_frac);
  std::vector<Position> trial(std::size_t(m_ws.batch()) * T);
  std::vector<char> inside(trial.size());

  const auto object = state.object;
  const auto spectrum = m_spectrum;
  const auto frames = scan.frames;
  const auto valid = scan.valid;
  const auto wk = m_work;
  const auto trial_row = m_trial_row, trial_col = m_trial_col;
  const auto ramp_r = m_trial_ramp_row, ramp_c = m_trial_ramp_col;
  const auto frac = m_trial_frac;
  const float norm = 1.0f / (float(m) * m);
  for (long f0 = first; f0 < first + count; f0 += m_ws.batch()) {
    const long cnt = std::min<long>(m_ws.batch(), first + count - f0);
    const long ntrial = cnt * T;  // trial slots; the current positions follow in slots ntrial..ntrial+cnt
    // Trial centres on a cross of radius r, turned by a random angle per frame
    // and step, kept within max_position_shift of the start like every move.
    for (long b = 0; b < cnt; ++b) {
      const long j = f0 + b;
      const Position& p = state.positions[j];
      const double t0 = 2.0 * M_PI * frame_uniform(m_seed, scan.index[j], m_anneal_step);
      for (int t = 0; t < T; ++t) {
        const double angle = t0 + 2.0 * M_PI * t / T;
        Position q{p.row + radius * std::cos(angle), p.col + radius * std::sin(angle)};
        q.row = m_start[j].row + std::clamp(q.row - m_start[j].row, -m_max_total, m_max_total);
        q.col = m_start[j].col + std::clamp(q.col - m_start[j].col, -m_max_total, m_max_total);
        const PatchOrigin o = patch_origin(q.row, q.col, m);
        const long i = b * T + t;
        trial[i] = q;
        inside[i] = e.contains(Rect{o.row, o.col, m, m});
        // A trial outside the tile is not evaluated: it reads the tile's
        // corner, unshifted, and its cost is ignored.
        trow(i) = inside[i] ? int(o.row - e.row0) : 0;
        tcol(i) = inside[i] ? int(o.col - e.col0) : 0;
        tfrac(i, 0) = inside[i] ? o.frac_row : 0.0;
        tfrac(i, 1) = inside[i] ? o.frac_col : 0.0;
      }
    }
    Kokkos::deep_copy(m_trial_row, trow);
    Kokkos::deep_copy(m_trial_col, tcol);
    Kokkos::deep_copy(m_trial_frac, tfrac);
    // The separable shift ramps exp(-2 pi i f_q d) of each trial, in double
    // as Workspace::set_positions makes them (8 M phasors per frame: too
    // many to leave to one host thread).
    Kokkos::parallel_for(
        "ptycho::positions::trial_ramps", Policy2({0, 0}, {ntrial, m}), KOKKOS_LAMBDA(long i, int q) {
          const double f = (q < (m + 1) / 2 ? q : q - m) / double(m);
          const double pr = -2.0 * M_PI * f * frac(i, 0), pc = -2.0 * M_PI * f * frac(i, 1);
          ramp_r(i, q) = cfloat(float(std::cos(pr)), float(std::sin(pr)));
          ramp_c(i, q) = cfloat(float(std::cos(pc)), float(std::sin(pc)));
        });
    // Trial probes, exactly as Workspace::set_probe makes the frames' probes:
    // IDFT(spectrum * ramp) / M^2, signed. One team per trial and mode, a row
    // at a time (kernel_util.hpp).
    auto trials = Kokkos::subview(m_work, Kokkos::make_pair(0L, ntrial * kmodes), Kokkos::ALL, Kokkos::ALL);
    Kokkos::parallel_for(
        "ptycho::positions::trial_ramp", frame_policy(ntrial * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
          const long ik = team.league_rank(), i = ik / kmodes;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
            ramp_row(&wk(ik, r, 0), &spectrum(ik % kmodes, r, 0), &ramp_c(i, 0), ramp_r(i, r) * norm, m);
          });
        });
    m_ws.plan().execute(trials, FftDirection::backward, Centring::none);
    // Exit waves: the trial probes (signed here) on their patches, then the
    // frames' cached probes on their current patches.
    Kokkos::parallel_for(
        "ptycho::positions::trial_waves", frame_policy(ntrial * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
          const long ik = team.league_rank(), i = ik / kmodes;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
            multiply_signed_row(&wk(ik, r, 0), &object(trial_row(i) + r, trial_col(i)), centring_sign(r, 0), m);
          });
        });
    m_ws.exit_waves(
        state.object, f0, cnt,
        Kokkos::subview(m_work, Kokkos::make_pair(ntrial * kmodes, (ntrial + cnt) * kmodes), Kokkos::ALL, Kokkos::ALL));
    auto waves = Kokkos::subview(m_work, Kokkos::make_pair(0L, (ntrial + cnt) * kmodes), Kokkos::ALL, Kokkos::ALL);
    m_propagator->forward(waves);
    dispatch_modes(kmodes, [&](auto kc) {
      slot_misfits<decltype(kc)::value>(frames, valid, m_background, m_work, m_trial_cost, f0, ntrial, cnt, T, kmodes);
    });
    auto cost_h = Kokkos::create_mirror_view_and_copy(HostSpace(), m_trial_cost);
    // Each frame moves to its best trial if that is strictly better than
    // where it is (ties keep it: no move without evidence).
    for (long b = 0; b < cnt; ++b) {
      const long j = f0 + b;
      double best = cost_h(ntrial + b);
      m_misfit += best;
      int pick = -1;
      bool any = false;
      for (int t = 0; t < T; ++t) {
        const long i = b * T + t;
        if (!inside[i]) continue;
        any = true;
        if (cost_h(i) < best) {
          best = cost_h(i);
          pick = t;
        }
      }
      m_moved[j] = any;
      m_move_row[j] = pick < 0 ? 0.0 : trial[b * T + pick].row - state.positions[j].row;
      m_move_col[j] = pick < 0 ? 0.0 : trial[b * T + pick].col - state.positions[j].col;
    }
  }
}

double PositionRefiner::search(ReconState& state, int steps) {
  PTYCHO_THROW_IF(m_method != PositionMethod::annealing || m_work.size() == 0,
                  "PositionRefiner::search: needs a refiner built for annealing");
  const long n = m_ws.scan().num_local();
  double misfit[2] = {0, 0};  // before, after
  for (int s = 0;; ++s) {
    reset();
    accumulate(state, 0, n);
    if (s == 0) misfit[0] = m_misfit;
    if (s == steps) {
      misfit[1] = m_misfit;
      break;
    }
    apply(state);
    m_ws.set_probe(state.probe);
  }
  reset();
  m_coll.sum(misfit, 2);
  return misfit[0] > 0 ? 1.0 - misfit[1] / misfit[0] : 0.0;
}

bool gate_positions(PositionRefiner& refiner, Workspace& ws, ReconState& state, const EngineOptions& opt) {
  if (state.position_verdict != 0) return state.position_verdict > 0;
  const std::vector<Position> before = state.positions;
  state.position_gain = refiner.search(state, kGateSteps);
  state.position_verdict = state.position_gain > opt.position_gate ? 1 : -1;
  if (state.position_verdict < 0) {
    state.positions = before;
    ws.set_positions(before);
    ws.set_probe(state.probe);
  }
  return state.position_verdict > 0;
}

void PositionRefiner::accumulate_gradient(const CView2& object, long first, long count) {
  const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
  const auto probes = m_ws.probes();
  const auto row = m_ws.patch_row(), col = m_ws.patch_col(), slot = m_ws.probe_slot();
  const auto frames = m_ws.scan().frames;
  const auto valid = m_ws.scan().valid;
  const auto sums = m_sums;
  const auto bg = m_background;
  const bool with_bg = bg.size() > 0;
  for (long f0 = first; f0 < first + count; f0 += m_ws.batch()) {
    const long cnt = std::min<long>(m_ws.batch(), first + count - f0);
    const long nk = cnt * kmodes;
    auto work = Kokkos::subview(m_work, Kokkos::make_pair(0L, 3 * nk), Kokkos::ALL, Kokkos::ALL);
    const auto wk = m_work;
    // Model exit wave and its derivatives for a shift d of the position:
    // u = -(grad P) O; in the signed convention (local_scan.hpp), with
    // s(r +- 1) = -s(r), s u_row = (P~(r+1) - P~(r-1)) / 2 * O.
    Kokkos::parallel_for(
        "ptycho::positions::waves", Kokkos::RangePolicy<ExecSpace>(0, nk * m), KOKKOS_LAMBDA(long i) {
          const long bk = i / m;
          const int r = static_cast<int>(i % m);
          const long j = f0 + bk / kmodes, jk = slot(j) * kmodes + bk % kmodes;
          shift_waves_row(&wk(bk, r, 0), &wk(nk + bk, r, 0), &wk(2 * nk + bk, r, 0), &probes(jk, r, 0),
                          r > 0 ? &probes(jk, r - 1, 0) : nullptr, r + 1 < m ? &probes(jk, r + 1, 0) : nullptr,
                          &object(row(j) + r, col(j)), m);
        });
    m_propagator->forward(work);
    const float inv_m2 = 1.0f / (float(m) * m);
    Kokkos::parallel_for(
        "ptycho::positions::terms", frame_policy(cnt), KOKKOS_LAMBDA(const FrameMember& team) {
          const long b = team.league_rank(), j = f0 + b;
          Sums<5> frame;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, m),
              [&](int r, Sums<5>& acc) {
                for (int c = 0; c < m; ++c) {
                  if (valid(r, c) <= 0) continue;
                  float i = 0, gr = 0, gc = 0;
                  for (int k = 0; k < kmodes; ++k) {
                    const long bk = b * kmodes + k;
                    const cfloat f = wk(bk, r, c), ur = wk(nk + bk, r, c), uc = wk(2 * nk + bk, r, c);
                    i += f.real() * f.real() + f.imag() * f.imag();
                    gr += f.real() * ur.real() + f.imag() * ur.imag();
                    gc += f.real() * uc.real() + f.imag() * uc.imag();
                  }
                  const float a = std::sqrt(i * inv_m2 + (with_bg ? bg(r, c) : 0.0f));  // model amplitude
                  if (a < 1e-3f) continue;
                  const double jr = gr * inv_m2 / a, jc = gc * inv_m2 / a;  // d a / d shift
                  const double res = std::sqrt(frames(j, r, c) > 0 ? frames(j, r, c) : 0.0f) - a;
                  acc.v[0] += jr * jr;
                  acc.v[1] += jr * jc;
                  acc.v[2] += jc * jc;
                  acc.v[3] += jr * res;
                  acc.v[4] += jc * res;
                }
              },
              Kokkos::Sum<Sums<5>>(frame));
          Kokkos::single(Kokkos::PerTeam(team), [&] {
            for (int q = 0; q < 5; ++q) sums(j, q) += frame.v[q];
          });
        });
  }
}

void PositionRefiner::gradient_steps(std::vector<double>& dr, std::vector<double>& dc,
                                     std::vector<char>& informed) const {
  const long n = m_ws.scan().num_local();
  auto s = Kokkos::create_mirror_view_and_copy(HostSpace(), m_sums);
  for (long j = 0; j < n; ++j) {
    const double a = s(j, 0), b = s(j, 1), c = s(j, 2), det = a * c - b * b;
    if (!(det > 1e-12 * (a * c)) || !(a > 0)) continue;  // a frame without texture: no information
    dr[j] = std::clamp((c * s(j, 3) - b * s(j, 4)) / det, -m_max_step, m_max_step);
    dc[j] = std::clamp((a * s(j, 4) - b * s(j, 3)) / det, -m_max_step, m_max_step);
    informed[j] = 1;
  }
}

void PositionRefiner::apply(ReconState& state) {
  PTYCHO_THROW_IF(m_work.size() == 0, "PositionRefiner: built for an engine that does not refine positions");
  const auto& scan = m_ws.scan();
  const long n = scan.num_local();
  const int m = scan.frame_size;
  const bool annealing = m_method == PositionMethod::annealing;
  std::vector<double> dr(n, 0.0), dc(n, 0.0);
  std::vector<char> informed(n, 0);
  if (annealing) {
    dr = m_move_row;
    dc = m_move_col;
    informed = m_moved;
  } else {
    gradient_steps(dr, dc, informed);
  }
  // The mean shift (the object's origin) is no position error the data can
  // tell from the object, and goes; with fix_affine the whole affine part
  // (scale, rotation, shear) goes too, fitted by least squares over all
  // ranks: s = t + A (p - c).
  double ls[15] = {0};  // normal matrix (6, upper 3x3 mirrored), rhs row (3), rhs col (3), centre sums (3)
  for (long j = 0; j < n; ++j)
    if (informed[j]) {
      ls[12] += m_start[j].row;
      ls[13] += m_start[j].col;
      ls[14] += 1;
    }
  m_coll.sum(ls + 12, 3);
  const double cr = ls[14] > 0 ? ls[12] / ls[14] : 0, cc = ls[14] > 0 ? ls[13] / ls[14] : 0;
  for (long j = 0; j < n; ++j) {
    if (!informed[j]) continue;
    const double f[3] = {1.0, m_start[j].row - cr, m_start[j].col - cc};
    int q = 0;
    for (int a = 0; a < 3; ++a)
      for (int b = a; b < 3; ++b) ls[q++] += f[a] * f[b];
    for (int a = 0; a < 3; ++a) {
      ls[6 + a] += f[a] * dr[j];
      ls[9 + a] += f[a] * dc[j];
    }
  }
  m_coll.sum(ls, 12);
  const int terms = m_affine_free ? 1 : 3;  // fit the mean only, or the affine map
  double g[3][3] = {{ls[0], ls[1], ls[2]}, {ls[1], ls[3], ls[4]}, {ls[2], ls[4], ls[5]}};
  double tr[3] = {ls[6], ls[7], ls[8]}, tc[3] = {ls[9], ls[10], ls[11]};
  // Gaussian elimination on the leading terms x terms block (tiny, symmetric positive).
  for (int a = 0; a < terms; ++a) {
    if (std::abs(g[a][a]) < 1e-300) continue;
    for (int b = a + 1; b < terms; ++b) {
      const double f = g[b][a] / g[a][a];
      for (int c = a; c < terms; ++c) g[b][c] -= f * g[a][c];
      tr[b] -= f * tr[a];
      tc[b] -= f * tc[a];
    }
  }
  double xr[3] = {0, 0, 0}, xc[3] = {0, 0, 0};
  for (int a = terms - 1; a >= 0; --a) {
    if (std::abs(g[a][a]) < 1e-300) continue;
    double sr = tr[a], sc = tc[a];
    for (int c = a + 1; c < terms; ++c) {
      sr -= g[a][c] * xr[c];
      sc -= g[a][c] * xc[c];
    }
    xr[a] = sr / g[a][a];
    xc[a] = sc / g[a][a];
  }
  for (long j = 0; j < n; ++j) {
    if (!informed[j]) continue;
    const double f[3] = {1.0, m_start[j].row - cr, m_start[j].col - cc};
    for (int a = 0; a < terms; ++a) {
      dr[j] -= xr[a] * f[a];
      dc[j] -= xc[a] * f[a];
    }
  }
  for (long j = 0; j < n; ++j) {
    if (dr[j] == 0.0 && dc[j] == 0.0) continue;
    double vr = dr[j], vc = dc[j];
    if (!annealing) {
      // Optional momentum (0 by default: Gauss-Newton steps need none). An
      // annealing move is a choice among trials, not a step to build speed on.
      m_velocity[j].row = m_momentum * m_velocity[j].row + dr[j];
      m_velocity[j].col = m_momentum * m_velocity[j].col + dc[j];
      vr = m_velocity[j].row;
      vc = m_velocity[j].col;
    }
    vr = std::clamp(vr, -m_max_step, m_max_step);
    vc = std::clamp(vc, -m_max_step, m_max_step);
    Position& p = state.positions[j];
    p.row = m_start[j].row + std::clamp(p.row + vr - m_start[j].row, -m_max_total, m_max_total);
    p.col = m_start[j].col + std::clamp(p.col + vc - m_start[j].col, -m_max_total, m_max_total);
    // The patch stays on the object grid (rank-invariant), then, as a guard
    // the halo makes idle, inside this rank's extent (within the grid).
    p.row = clamp_centre(p.row, 0, scan.object_rows, m);
    p.col = clamp_centre(p.col, 0, scan.object_cols, m);
    p.row = clamp_centre(p.row, scan.extent.row0, scan.extent.row0 + scan.extent.rows, m);
    p.col = clamp_centre(p.col, scan.extent.col0, scan.extent.col0 + scan.extent.cols, m);
  }
  m_ws.set_positions(state.positions);
  if (annealing) {
    ++m_anneal_step;  // the next step searches a smaller radius
    m_spectrum_ready = false;
  }
}

}  // namespace ptycho
