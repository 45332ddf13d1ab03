#include "position_refine.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/kernel_util.hpp"

#include <algorithm>
#include <cmath>

namespace ptycho {

namespace {
constexpr double kMomentum = 0.5;
}

PositionRefiner::PositionRefiner(Workspace& ws, const Collective& coll, const EngineOptions& opt,
                                 const ReconState& state)
    : m_ws(ws),
      m_coll(coll),
      m_max_step(opt.max_position_step),
      m_max_total(opt.max_position_shift),
      m_momentum(opt.position_momentum),
      m_affine_free(!opt.fix_affine),
      m_start(state.positions),
      m_velocity(state.positions.size()),
      m_sums("ptycho::positions::sums", ws.scan().num_local(), 5),
      m_work("ptycho::positions::work", std::size_t(3) * ws.batch() * ws.num_modes(), ws.frame_size(), ws.frame_size()) {}

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
}

void PositionRefiner::reset() { Kokkos::deep_copy(m_sums, 0.0); }

void PositionRefiner::accumulate(const CView2& object, long first, long count) {
  const int m = m_ws.frame_size(), kmodes = m_ws.num_modes();
  const auto probes = m_ws.probes();
  const auto row = m_ws.patch_row(), col = m_ws.patch_col();
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
        "ptycho::positions::waves", Policy3({0, 0, 0}, {nk, m, m}), KOKKOS_LAMBDA(long bk, int r, int c) {
          const long j = f0 + bk / kmodes, jk = f0 * kmodes + bk;
          const cfloat o = object(row(j) + r, col(j) + c);
          const cfloat p = probes(jk, r, c);
          const cfloat pr = (r + 1 < m ? probes(jk, r + 1, c) : cfloat(0, 0)) - (r > 0 ? probes(jk, r - 1, c) : cfloat(0, 0));
          const cfloat pc = (c + 1 < m ? probes(jk, r, c + 1) : cfloat(0, 0)) - (c > 0 ? probes(jk, r, c - 1) : cfloat(0, 0));
          wk(bk, r, c) = p * o;
          wk(nk + bk, r, c) = pr * 0.5f * o;
          wk(2 * nk + bk, r, c) = pc * 0.5f * o;
        });
    m_ws.plan().execute(work, FftDirection::forward, Centring::none);
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

void PositionRefiner::apply(ReconState& state) {
  const long n = m_ws.scan().num_local();
  auto s = Kokkos::create_mirror_view_and_copy(HostSpace(), m_sums);
  std::vector<double> dr(n, 0.0), dc(n, 0.0);
  std::vector<char> informed(n, 0);
  for (long j = 0; j < n; ++j) {
    const double a = s(j, 0), b = s(j, 1), c = s(j, 2), det = a * c - b * b;
    if (!(det > 1e-12 * (a * c)) || !(a > 0)) continue;  // a frame without texture: no information
    dr[j] = std::clamp((c * s(j, 3) - b * s(j, 4)) / det, -m_max_step, m_max_step);
    dc[j] = std::clamp((a * s(j, 4) - b * s(j, 3)) / det, -m_max_step, m_max_step);
    informed[j] = 1;
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
  const double mr = 0, mc = 0;
  for (long j = 0; j < n; ++j) {
    if (dr[j] == 0.0 && dc[j] == 0.0) continue;
    // Optional momentum (0 by default: Gauss-Newton steps need none).
    m_velocity[j].row = m_momentum * m_velocity[j].row + (dr[j] - mr);
    m_velocity[j].col = m_momentum * m_velocity[j].col + (dc[j] - mc);
    const double vr = std::clamp(m_velocity[j].row, -m_max_step, m_max_step);
    const double vc = std::clamp(m_velocity[j].col, -m_max_step, m_max_step);
    Position& p = state.positions[j];
    p.row = m_start[j].row + std::clamp(p.row + vr - m_start[j].row, -m_max_total, m_max_total);
    p.col = m_start[j].col + std::clamp(p.col + vc - m_start[j].col, -m_max_total, m_max_total);
  }
  m_ws.set_positions(state.positions);
}

}  // namespace ptycho
