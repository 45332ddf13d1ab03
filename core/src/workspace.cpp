#include "ptycho/core/error.hpp"
#include "ptycho/core/geometry.hpp"
#include "ptycho/core/kernel_util.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/collective.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace ptycho {

namespace {

KOKKOS_INLINE_FUNCTION void atomic_add_c(cdouble* dst, const cfloat& v) {
  double* p = reinterpret_cast<double*>(dst);
  Kokkos::atomic_add(p, double(v.real()));
  Kokkos::atomic_add(p + 1, double(v.imag()));
}
/// out = p * o over a row of n complex values. The row helpers work on
/// (re, im) float pairs through restrict pointers and without `omp simd`,
/// which is what lets GCC vectorise them (complex temporaries keep it scalar).
KOKKOS_INLINE_FUNCTION void complex_product_row(cfloat* out_c, const cfloat* p_c, const cfloat* o_c, int n) {
  float* PTYCHO_RESTRICT out = reinterpret_cast<float*>(out_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  for (int c = 0; c < n; ++c) {
    const float pr = p[2 * c], pi = p[2 * c + 1], orr = o[2 * c], oi = o[2 * c + 1];
    out[2 * c] = pr * orr - pi * oi;
    out[2 * c + 1] = pr * oi + pi * orr;
  }
}

/// num += conj(p) w (in double) and, if den is given, den += |p|^2, over a row of n.
inline void accumulate_row(cdouble* num_c, double* den_p, const cfloat* p_c, const cfloat* w_c, int n) {
  double* PTYCHO_RESTRICT num = reinterpret_cast<double*>(num_c);
  const float* PTYCHO_RESTRICT p = reinterpret_cast<const float*>(p_c);
  const float* PTYCHO_RESTRICT w = reinterpret_cast<const float*>(w_c);
  for (int c = 0; c < n; ++c) {
    const float pr = p[2 * c], pi = p[2 * c + 1], wr = w[2 * c], wi = w[2 * c + 1];
    num[2 * c] += double(pr * wr + pi * wi);
    num[2 * c + 1] += double(pr * wi - pi * wr);
  }
  if (den_p) {
    double* PTYCHO_RESTRICT den = den_p;
    for (int c = 0; c < n; ++c) den[c] += double(p[2 * c] * p[2 * c] + p[2 * c + 1] * p[2 * c + 1]);
  }
}

/// out = (s * rc) * a over n complex values: part of a row of a shifted
/// probe's spectrum (shifted_modes).
PTYCHO_ROW_FUNCTION void ramp_product_row(cfloat* out_c, const cfloat* s_c, const cfloat* rc_c, cfloat a, int n) {
  float* PTYCHO_RESTRICT out = reinterpret_cast<float*>(out_c);
  const float* PTYCHO_RESTRICT s = reinterpret_cast<const float*>(s_c);
  const float* PTYCHO_RESTRICT rc = reinterpret_cast<const float*>(rc_c);
  const float ar = a.real(), ai = a.imag();
  for (int c = 0; c < n; ++c) {
    const float tr = s[2 * c] * rc[2 * c] - s[2 * c + 1] * rc[2 * c + 1];
    const float ti = s[2 * c] * rc[2 * c + 1] + s[2 * c + 1] * rc[2 * c];
    out[2 * c] = tr * ar - ti * ai;
    out[2 * c + 1] = tr * ai + ti * ar;
  }
}

/// out = conj(o) w over a row of n.
PTYCHO_ROW_FUNCTION void conj_product_row(cfloat* out_c, const cfloat* o_c, const cfloat* w_c, int n) {
  float* PTYCHO_RESTRICT out = reinterpret_cast<float*>(out_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  const float* PTYCHO_RESTRICT w = reinterpret_cast<const float*>(w_c);
  for (int c = 0; c < n; ++c) {
    const float orr = o[2 * c], oi = o[2 * c + 1], wr = w[2 * c], wi = w[2 * c + 1];
    out[2 * c] = orr * wr + oi * wi;
    out[2 * c + 1] = orr * wi - oi * wr;
  }
}

/// acc += (-1)^c s0 conj(o) w over a row of n (n even), in double.
PTYCHO_ROW_FUNCTION void signed_conj_product_add_row(cdouble* acc_c, const cfloat* o_c, const cfloat* w_c, float s0,
                                                        int n) {
  double* PTYCHO_RESTRICT acc = reinterpret_cast<double*>(acc_c);
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  const float* PTYCHO_RESTRICT w = reinterpret_cast<const float*>(w_c);
  for (int c = 0; c < n; c += 2) {
    for (int q = 0; q < 2; ++q) {
      const int i = c + q;
      const float s = q == 0 ? s0 : -s0;
      const float orr = o[2 * i], oi = o[2 * i + 1], wr = w[2 * i], wi = w[2 * i + 1];
      acc[2 * i] += double(s * (orr * wr + oi * wi));
      acc[2 * i + 1] += double(s * (orr * wi - oi * wr));
    }
  }
}

/// acc += a conj(rc) q over n values, in double: part of a row of the
/// unshifted spectrum sum (accumulate_probe).
PTYCHO_ROW_FUNCTION void unshift_add_row(cdouble* acc_c, const cfloat* a_c, const cfloat* rc_c, cfloat q, int n) {
  double* PTYCHO_RESTRICT acc = reinterpret_cast<double*>(acc_c);
  const float* PTYCHO_RESTRICT a = reinterpret_cast<const float*>(a_c);
  const float* PTYCHO_RESTRICT rc = reinterpret_cast<const float*>(rc_c);
  const float qr = q.real(), qi = q.imag();
  for (int c = 0; c < n; ++c) {
    // conj(rc) q
    const float fr = rc[2 * c] * qr + rc[2 * c + 1] * qi, fi = rc[2 * c] * qi - rc[2 * c + 1] * qr;
    acc[2 * c] += double(a[2 * c] * fr - a[2 * c + 1] * fi);
    acc[2 * c + 1] += double(a[2 * c] * fi + a[2 * c + 1] * fr);
  }
}

/// den += |o|^2 over a row of n, in double.
PTYCHO_ROW_FUNCTION void norm_add_row(double* den_p, const cfloat* o_c, int n) {
  double* PTYCHO_RESTRICT den = den_p;
  const float* PTYCHO_RESTRICT o = reinterpret_cast<const float*>(o_c);
  for (int c = 0; c < n; ++c) den[c] += double(o[2 * c]) * o[2 * c] + double(o[2 * c + 1]) * o[2 * c + 1];
}

/// Frame first + b of a batch: the frames of shifted_copies() for a run of frames.
struct FirstPlus {
  long first;
  KOKKOS_INLINE_FUNCTION long operator()(long b) const { return first + b; }
};

#if !defined(KOKKOS_ENABLE_CUDA)
/// Whether the m x m patches at the origins (row[j], col[j]) of frames
/// first..first+count-1 are pairwise disjoint.
bool patches_disjoint(const std::vector<int>& row, const std::vector<int>& col, long first, long count, int m) {
  for (long a = first; a < first + count; ++a)
    for (long b = a + 1; b < first + count; ++b)
      if (std::abs(row[a] - row[b]) < m && std::abs(col[a] - col[b]) < m) return false;
  return true;
}

/// On the host: f(b, j, r, r0, c0) for every row r of the patch of every
/// frame j = first + b (patch origin r0, c0 in the tile; `row` and `col`
/// hold the origins of all local frames). No two threads touch one pixel,
/// and a row vectorises:
///  - with several threads and pairwise disjoint patches (the frames of a
///    batch in a Fermat scan lie far apart), the frames in parallel, each
///    frame on one thread (the team of the frame kernels, frame_policy, so a
///    frame's waves stay in the cache of the core that made them);
///  - otherwise the frames one after another, each frame's rows in parallel.
/// Either way every pixel receives its frames' terms in frame order, so the
/// sums are the same floats.
template <class F>
void for_each_patch_row(const char* label, const std::vector<int>& row, const std::vector<int>& col, long first,
                        long count, int m, const F& f) {
  if (count > 1 && ExecSpace().concurrency() > 1 && patches_disjoint(row, col, first, count, m)) {
    const int* r0s = row.data() + first;
    const int* c0s = col.data() + first;
    Kokkos::parallel_for(
        label, frame_policy(count), KOKKOS_LAMBDA(const FrameMember& team) {
          const long b = team.league_rank();
          for (int r = 0; r < m; ++r) f(b, first + b, r, r0s[b], c0s[b]);
        });
    return;
  }
  for (long b = 0; b < count; ++b) {
    const long j = first + b;
    const int r0 = row[j], c0 = col[j];
    Kokkos::parallel_for(label, Kokkos::RangePolicy<ExecSpace>(0, m),
                         KOKKOS_LAMBDA(int r) { f(b, j, r, r0, c0); });
  }
}
#endif
}  // namespace

Workspace::Workspace(const LocalScan& scan, int num_modes, int batch, int shift_quantum)
    : m_scan(scan),
      m_modes(num_modes),
      m_batch(batch),
      m_quantum(shift_quantum),
      m_plan(scan.frame_size),
      m_probes("ptycho::Workspace::probes", std::size_t(probe_slots_for(scan.num_local(), shift_quantum)) * num_modes,
               scan.frame_size, scan.frame_size),
      m_probe_spectrum("ptycho::Workspace::probe_spectrum", num_modes, scan.frame_size, scan.frame_size),
      m_row("ptycho::Workspace::row", scan.num_local()),
      m_col("ptycho::Workspace::col", scan.num_local()),
      m_slot("ptycho::Workspace::slot", scan.num_local()),
      m_frac_row("ptycho::Workspace::frac_row", scan.num_local()),
      m_frac_col("ptycho::Workspace::frac_col", scan.num_local()),
      m_ramp_row("ptycho::Workspace::ramp_row", scan.num_local(), scan.frame_size),
      m_ramp_col("ptycho::Workspace::ramp_col", scan.num_local(), scan.frame_size),
      m_freq("ptycho::Workspace::freq", scan.frame_size) {
  PTYCHO_THROW_IF(num_modes < 1 || batch < 1, "Workspace: need at least one mode and a batch of one");
  PTYCHO_THROW_IF(shift_quantum < 0 || shift_quantum > kMaxShiftQuantum,
                  "Workspace: shift quantum " << shift_quantum << " outside 0.." << kMaxShiftQuantum);
  const int m = scan.frame_size;
  auto f = Kokkos::create_mirror_view(m_freq);
  for (int i = 0; i < m; ++i) f(i) = (i < (m + 1) / 2 ? i : i - m) / double(m);
  Kokkos::deep_copy(m_freq, f);
  auto valid = Kokkos::create_mirror_view_and_copy(HostSpace(), scan.valid);
  double per_frame = 0;
  for (size_t i = 0; i < valid.size(); ++i) per_frame += valid.data()[i];
  m_valid_pixels = per_frame * scan.total_frames;
}

void Workspace::set_positions(const std::vector<Position>& positions) {
  const long n = m_scan.num_local();
  const int m = m_scan.frame_size;
  PTYCHO_THROW_IF(long(positions.size()) != n, "Workspace: " << positions.size() << " positions for " << n << " frames");
  auto row = Kokkos::create_mirror_view(m_row);
  auto col = Kokkos::create_mirror_view(m_col);
  auto fr = Kokkos::create_mirror_view(m_frac_row);
  auto fc = Kokkos::create_mirror_view(m_frac_col);
  auto slot = Kokkos::create_mirror_view(m_slot);
  ++m_probe_version;
  // With a shift quantum q, the sub-pixel shift is rounded to 1/q px (a
  // fraction that rounds to 1 moves the patch one pixel on), and frames
  // with the same rounded shift share one cached probe: q^2 slots at most.
  const int q = m_quantum;
  std::vector<int> slot_of_shift(q > 0 ? size_t(q) * q : 0, -1);
  std::vector<long> slot_frame;  // a frame of each slot (whose rounded shift it has)
  m_frac_row_h.resize(n);
  m_frac_col_h.resize(n);
  m_row_h.resize(n);
  m_col_h.resize(n);
  m_batch_orders.clear();
  const Rect& e = m_scan.extent;
  for (long j = 0; j < n; ++j) {
    PatchOrigin o = patch_origin(positions[j].row, positions[j].col, m);
    long s = j;
    if (q > 0) {
      long qr = std::lround(o.frac_row * q), qc = std::lround(o.frac_col * q);
      // Where the next pixel's patch would leave the tile (a frame at the
      // edge of the reach), the remainder rounds down instead (an error of
      // less than 1/q px).
      if (qr == q) {
        if (e.contains(Rect{o.row + 1, o.col, m, m})) {
          qr = 0;
          ++o.row;
        } else {
          qr = q - 1;
        }
      }
      if (qc == q) {
        if (e.contains(Rect{o.row, o.col + 1, m, m})) {
          qc = 0;
          ++o.col;
        } else {
          qc = q - 1;
        }
      }
      o.frac_row = double(qr) / q;
      o.frac_col = double(qc) / q;
      int& found = slot_of_shift[size_t(qr) * q + size_t(qc)];
      if (found < 0) {
        found = int(slot_frame.size());
        slot_frame.push_back(j);
      }
      s = found;
    }
    slot(j) = int(s);
    const Rect patch{o.row, o.col, m, m};
    PTYCHO_THROW_IF(!e.contains(patch), "frame " << m_scan.index[j] << " at (" << positions[j].row << ", "
                                                 << positions[j].col << ") reads outside this rank's tile");
    row(j) = m_row_h[j] = static_cast<int>(o.row - e.row0);
    col(j) = m_col_h[j] = static_cast<int>(o.col - e.col0);
    fr(j) = m_frac_row_h[j] = o.frac_row;
    fc(j) = m_frac_col_h[j] = o.frac_col;
  }
  if (q > 0) {
    // Made here, once per position change, for every set_probe after.
    m_slot_frame = View1<long>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::Workspace::slot_frame"),
                               slot_frame.size());
    auto sf = Kokkos::create_mirror_view(m_slot_frame);
    for (size_t s = 0; s < slot_frame.size(); ++s) sf(s) = slot_frame[s];
    Kokkos::deep_copy(m_slot_frame, sf);
  }
  Kokkos::deep_copy(m_row, row);
  Kokkos::deep_copy(m_col, col);
  Kokkos::deep_copy(m_slot, slot);
  Kokkos::deep_copy(m_frac_row, fr);
  Kokkos::deep_copy(m_frac_col, fc);
  // The ramps, in double, once per position change (2 M phasors per frame).
  auto rr = Kokkos::create_mirror_view(m_ramp_row);
  auto rc = Kokkos::create_mirror_view(m_ramp_col);
  auto freq = Kokkos::create_mirror_view_and_copy(HostSpace(), m_freq);
  for (long j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const double pr = -2.0 * M_PI * freq(i) * m_frac_row_h[j], pc = -2.0 * M_PI * freq(i) * m_frac_col_h[j];
      rr(j, i) = cfloat(float(std::cos(pr)), float(std::sin(pr)));
      rc(j, i) = cfloat(float(std::cos(pc)), float(std::sin(pc)));
    }
  Kokkos::deep_copy(m_ramp_row, rr);
  Kokkos::deep_copy(m_ramp_col, rc);
}

void Workspace::set_probe(const CView3& probe) {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const long n = m_scan.num_local();
  PTYCHO_THROW_IF(probe.extent(0) != size_t(kmodes) || probe.extent(1) != size_t(m),
                  "Workspace: probe is " << probe.extent(0) << "x" << probe.extent(1) << ", expected " << kmodes
                                         << "x" << m);
  ++m_probe_version;
  if (n == 0) return;
  // The spectrum of each mode once (raw DFT), then every frame's copy is that
  // spectrum times its shift ramp, brought back by a raw IDFT: one transform
  // per frame and mode.
  Kokkos::deep_copy(m_probe_spectrum, probe);
  m_plan.execute(m_probe_spectrum, FftDirection::forward, Centring::none);
  if (m_quantum == 0) {
    shifted_modes(m_probe_spectrum, 0, n, m_probes);
    return;
  }
  // One copy per slot, made from the shift ramp of the first frame in it.
  shifted_copies(m_probe_spectrum, long(m_slot_frame.extent(0)), m_slot_frame, m_probes);
}

const std::vector<long>& Workspace::batch_order(long first, long last) const {
  PTYCHO_THROW_IF(first < 0 || last < first || last > long(m_row_h.size()),
                  "Workspace::batch_order: frames " << first << ".." << last << " of " << m_row_h.size());
  const auto made = m_batch_orders.find({first, last});
  if (made != m_batch_orders.end()) return made->second;
  struct Key {
    long band;
    double along;
    long first;
  };
  std::vector<Key> keys;
  keys.reserve(size_t((last - first + m_batch - 1) / m_batch));
  const double band = std::max(1, m_scan.frame_size / 2);
  // A batch is placed by its first frame. With several threads each frame of
  // a batch goes to its own thread, and in a Fermat scan the frames after
  // the first lie at fixed turns of the spiral from it: ordering the first
  // frames gives every thread a path of neighbouring patches.
  for (long b0 = first; b0 < last; b0 += m_batch) {
    const long k = long(std::floor(m_row_h[b0] / band));
    keys.push_back({k, (k % 2 == 0) ? double(m_col_h[b0]) : -double(m_col_h[b0]), b0});
  }
  // Ties (frames at one place) keep the scan's order: the order is a function of the positions alone.
  std::stable_sort(keys.begin(), keys.end(),
                   [](const Key& a, const Key& b) { return a.band != b.band ? a.band < b.band : a.along < b.along; });
  std::vector<long> out;
  out.reserve(keys.size());
  for (const Key& k : keys) out.push_back(k.first);
  return m_batch_orders.emplace(std::make_pair(first, last), std::move(out)).first->second;
}

long Workspace::probe_slots_for(long frames, int shift_quantum) {
  return shift_quantum > 0 ? std::min<long>(frames, long(shift_quantum) * shift_quantum) : frames;
}

void Workspace::shifted_modes(const CView3& spectrum, long first, long count, const CView3& out) const {
  shifted_copies(spectrum, count, FirstPlus{first}, out);
}

template <class FrameOf>
void Workspace::shifted_copies(const CView3& spectrum, long count, const FrameOf& frame_of, const CView3& out) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  PTYCHO_THROW_IF(spectrum.extent(0) != size_t(kmodes) || out.extent(0) < size_t(count * kmodes),
                  "Workspace::shifted_modes: " << spectrum.extent(0) << " modes and room for " << out.extent(0)
                                               << " frames, need " << kmodes << " and " << count * kmodes);
  if (count <= 0) return;
  auto dst = Kokkos::subview(out, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
  const auto ramp_r = m_ramp_row, ramp_c = m_ramp_col;
  const float norm = 1.0f / (float(m) * m);
  // The checkerboard sign after the IDFT is a shift of the spectrum by M/2
  // on both axes before it ((-1)^x = exp(2 pi i x (M/2) / M)): the spectrum
  // row r' = r + M/2 (mod M), its two halves swapped, goes into row r.
  const int h = m / 2;
  Kokkos::parallel_for(
      "ptycho::Workspace::probe_ramp", Kokkos::RangePolicy<ExecSpace>(0, count * kmodes * m), KOKKOS_LAMBDA(long i) {
        const long bk = i / m;
        const int r = static_cast<int>(i % m), k = static_cast<int>(bk % kmodes);
        const long j = frame_of(bk / kmodes);
        const int rs = r < h ? r + h : r - h;
        const cfloat a = ramp_r(j, rs) * norm;
        ramp_product_row(&dst(bk, r, 0), &spectrum(k, rs, h), &ramp_c(j, h), a, h);
        ramp_product_row(&dst(bk, r, h), &spectrum(k, rs, 0), &ramp_c(j, 0), a, h);
      });
  m_plan.execute(dst, FftDirection::backward, Centring::none);
  ExecSpace().fence();
}

void Workspace::product_waves(const CView2& object, const CView3& modes, long first, long count,
                              const CView3& waves) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto row = m_row, col = m_col;
  Kokkos::parallel_for(
      "ptycho::Workspace::product_waves", frame_policy(count * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
        const long bk = team.league_rank();
        const long j = first + bk / kmodes;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
          if (r + kPrefetchRows < m)
            prefetch_row(&object(row(j) + r + kPrefetchRows, col(j)), long(m) * long(sizeof(cfloat)));
          complex_product_row(&waves(bk, r, 0), &modes(bk, r, 0), &object(row(j) + r, col(j)), m);
        });
      });
}

void Workspace::exit_waves(const CView2& object, long first, long count, const CView3& waves) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto probes = m_probes;
  const auto row = m_row, col = m_col, slot = m_slot;
  // One team per frame and mode, its rows shared; a row is a contiguous,
  // vectorisable complex product.
  Kokkos::parallel_for(
      "ptycho::Workspace::exit_waves", frame_policy(count * kmodes), KOKKOS_LAMBDA(const FrameMember& team) {
        const long bk = team.league_rank();
        const long j = first + bk / kmodes;
        const long pk = slot(j) * kmodes + bk % kmodes;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](int r) {
          if (r + kPrefetchRows < m) {
            prefetch_row(&object(row(j) + r + kPrefetchRows, col(j)), long(m) * long(sizeof(cfloat)));
            prefetch_row(&probes(pk, r + kPrefetchRows, 0), long(m) * long(sizeof(cfloat)));
          }
          complex_product_row(&waves(bk, r, 0), &probes(pk, r, 0), &object(row(j) + r, col(j)), m);
        });
      });
}

void Workspace::accumulate_object(const View2<cdouble>& num, const View2<double>& den, const CView3& waves, long first,
                                  long count, bool with_den) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto probes = m_probes;
  const auto slot = m_slot;
#if defined(KOKKOS_ENABLE_CUDA)
  const auto row = m_row, col = m_col;
  // Patches overlap: frames in parallel, sums with atomics.
  Kokkos::parallel_for(
      "ptycho::Workspace::accumulate_object", Policy3({0, 0, 0}, {count, m, m}),
      KOKKOS_LAMBDA(long b, int r, int c) {
        const long j = first + b;
        cfloat s(0, 0);
        float d = 0;
        for (int k = 0; k < kmodes; ++k) {
          const cfloat p = probes(slot(j) * kmodes + k, r, c);
          s += Kokkos::conj(p) * waves(b * kmodes + k, r, c);
          d += p.real() * p.real() + p.imag() * p.imag();
        }
        const int rr = row(j) + r, cc = col(j) + c;
        atomic_add_c(&num(rr, cc), s);
        if (with_den) Kokkos::atomic_add(&den(rr, cc), double(d));
      });
#else
  (void)atomic_add_c;
  for_each_patch_row("ptycho::Workspace::accumulate_object", m_row_h, m_col_h, first, count, m,
                     [=](long b, long j, int r, int r0, int c0) {
                       if (r + kPrefetchRows < m) {
                         prefetch_row<true>(&num(r0 + r + kPrefetchRows, c0), long(m) * long(sizeof(cdouble)));
                         if (with_den)
                           prefetch_row<true>(&den(r0 + r + kPrefetchRows, c0), long(m) * long(sizeof(double)));
                       }
                       for (int k = 0; k < kmodes; ++k)
                         accumulate_row(&num(r0 + r, c0), with_den ? &den(r0 + r, c0) : nullptr,
                                        &probes(slot(j) * kmodes + k, r, 0), &waves(b * kmodes + k, r, 0), m);
                     });
#endif
}

void Workspace::accumulate_illumination(const View2<double>& den, long first, long count) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  const auto probes = m_probes;
  const auto slot = m_slot;
#if defined(KOKKOS_ENABLE_CUDA)
  const auto row = m_row, col = m_col;
  Kokkos::parallel_for(
      "ptycho::Workspace::accumulate_illumination", Policy3({0, 0, 0}, {count, m, m}),
      KOKKOS_LAMBDA(long b, int r, int c) {
        const long j = first + b;
        float d = 0;
        for (int k = 0; k < kmodes; ++k) {
          const cfloat p = probes(slot(j) * kmodes + k, r, c);
          d += p.real() * p.real() + p.imag() * p.imag();
        }
        Kokkos::atomic_add(&den(row(j) + r, col(j) + c), double(d));
      });
#else
  for_each_patch_row("ptycho::Workspace::accumulate_illumination", m_row_h, m_col_h, first, count, m,
                     [=](long, long j, int r, int r0, int c0) {
                       if (r + kPrefetchRows < m)
                         prefetch_row<true>(&den(r0 + r + kPrefetchRows, c0), long(m) * long(sizeof(double)));
                       for (int k = 0; k < kmodes; ++k)
                         norm_add_row(&den(r0 + r, c0), &probes(slot(j) * kmodes + k, r, 0), m);
                     });
#endif
}

ProbeSums::ProbeSums(const std::string& label, int modes, int frame_size)
    : real(label + "::real", modes, frame_size, frame_size),
      spectrum(label + "::spectrum", modes, frame_size, frame_size),
      den(label + "::den", frame_size, frame_size),
      idft(std::make_shared<const HostInverseDft>(frame_size, frame_size)) {}

void ProbeSums::reset() const {
  Kokkos::deep_copy(real, cdouble(0, 0));
  Kokkos::deep_copy(spectrum, cdouble(0, 0));
  Kokkos::deep_copy(den, 0.0);
}

void ProbeSums::reduce(const Collective& coll, View3<cdouble, HostSpace>& num,
                       View2<double, HostSpace>& den_out) const {
  num = Kokkos::create_mirror_view_and_copy(HostSpace(), real);
  auto spec = Kokkos::create_mirror_view_and_copy(HostSpace(), spectrum);
  den_out = Kokkos::create_mirror_view_and_copy(HostSpace(), den);  // (host memory: the sums themselves)
  coll.sum(reinterpret_cast<double*>(num.data()), 2 * num.size());
  coll.sum(reinterpret_cast<double*>(spec.data()), 2 * spec.size());
  coll.sum(den_out.data(), den_out.size());
  // num <- num + IDFT(spectrum), unless no frame on any rank had a shift.
  bool any = false;
  for (size_t i = 0; i < spec.size() && !any; ++i) any = spec.data()[i] != cdouble(0, 0);
  if (!any) return;
  idft->execute(spec);
  for (size_t i = 0; i < num.size(); ++i) num.data()[i] += spec.data()[i];
}

void Workspace::accumulate_probe(const ProbeSums& sums, const CView2& object, const CView3& waves, long first,
                                 long count, const CView3& scratch) const {
  const int m = m_scan.frame_size, kmodes = m_modes;
  if (count <= 0) return;
  const auto row = m_row, col = m_col;
  const auto den = sums.den;
  bool shifted = false;
  for (long b = 0; b < count; ++b) shifted |= (m_frac_row_h[first + b] != 0.0 || m_frac_col_h[first + b] != 0.0);
  if (!shifted) {
    // u_j = s conj(O_j) psi_j straight into the real-space sum, one row of
    // the sum per work item (no two items touch one pixel).
    const auto num = sums.real;
    Kokkos::parallel_for(
        "ptycho::Workspace::probe_sum", Kokkos::RangePolicy<ExecSpace>(0, long(kmodes) * m), KOKKOS_LAMBDA(long i) {
          const int k = static_cast<int>(i / m), r = static_cast<int>(i % m);
          const float s0 = (r & 1) ? -1.0f : 1.0f;
          for (long b = 0; b < count; ++b) {
            const long j = first + b;
            signed_conj_product_add_row(&num(k, r, 0), &object(row(j) + r, col(j)), &waves(b * kmodes + k, r, 0), s0,
                                        m);
            if (k == 0) norm_add_row(&den(r, 0), &object(row(j) + r, col(j)), m);
          }
        });
    return;
  }
  // DFT(conj(O_j) psi_j) = DFT(s u_j) is DFT(u_j) shifted by M/2 on both
  // axes (the sign in real space); with it, the spectrum sum gets
  // DFT(u_j)(q) conj(R_j(q)) / M^2 at every frequency q. A few frames at a
  // time (as many as the execution space runs at once, for the transform),
  // so that their products, transforms and sums run while they are in
  // cache; rows in parallel, each row looping over the frames (no two work
  // items touch one pixel of the sums).
  const long chunk = std::max<long>(1, std::min<long>(ExecSpace().concurrency(), long(scratch.extent(0)) / kmodes));
  const auto spec = sums.spectrum;
  const auto ramp_r = m_ramp_row, ramp_c = m_ramp_col;
  const float norm = 1.0f / (float(m) * m);
  const int h = m / 2;
  for (long b0 = 0; b0 < count; b0 += chunk) {
    const long nb = std::min(chunk, count - b0);
    auto work = Kokkos::subview(scratch, Kokkos::make_pair(0L, nb * kmodes), Kokkos::ALL, Kokkos::ALL);
    Kokkos::parallel_for(
        "ptycho::Workspace::probe_terms", Kokkos::RangePolicy<ExecSpace>(0, long(kmodes) * m), KOKKOS_LAMBDA(long i) {
          const int k = static_cast<int>(i / m), r = static_cast<int>(i % m);
          for (long b = 0; b < nb; ++b) {
            const long j = first + b0 + b;
            conj_product_row(&work(b * kmodes + k, r, 0), &object(row(j) + r, col(j)),
                             &waves((b0 + b) * kmodes + k, r, 0), m);
            if (k == 0) norm_add_row(&den(r, 0), &object(row(j) + r, col(j)), m);  // the object row is in cache
          }
        });
    m_plan.execute(work, FftDirection::forward, Centring::none);
    Kokkos::parallel_for(
        "ptycho::Workspace::probe_unshift", Kokkos::RangePolicy<ExecSpace>(0, long(kmodes) * m), KOKKOS_LAMBDA(long i) {
          const int k = static_cast<int>(i / m), r = static_cast<int>(i % m);
          const int rs = r < h ? r + h : r - h;
          for (long b = 0; b < nb; ++b) {
            const long j = first + b0 + b;
            const cfloat q = Kokkos::conj(ramp_r(j, r)) * norm;
            unshift_add_row(&spec(k, r, 0), &work(b * kmodes + k, rs, h), &ramp_c(j, 0), q, h);
            unshift_add_row(&spec(k, r, h), &work(b * kmodes + k, rs, 0), &ramp_c(j, h), q, h);
          }
        });
  }
}

}  // namespace ptycho
