#include "ptycho/parallel/object_analysis.hpp"

#include "ptycho/core/error.hpp"

#include <fftw3-mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <complex>
#include <cstring>
#include <sstream>

namespace ptycho {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kTwoPi = 2 * kPi;
constexpr int kTagAbove = 7411;
constexpr int kTagBelow = 7412;

using Host = Kokkos::RangePolicy<HostExec>;

fftwf_complex* as_fftw(cfloat* p) { return reinterpret_cast<fftwf_complex*>(p); }

/// x wrapped into [-pi, pi).
double wrap(double x) { return x - kTwoPi * std::floor((x + kPi) / kTwoPi); }

void sum_all(MPI_Comm comm, std::vector<double>& v) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), int(v.size()), MPI_DOUBLE, MPI_SUM, comm),
            "object analysis: MPI_Allreduce");
}

}  // namespace

// ---- ObjectTransforms ----------------------------------------------------------------------------

ObjectTransforms::ObjectTransforms(MPI_Comm comm, long rows, long cols) : m_comm(comm), m_rows(rows), m_cols(cols) {
  PTYCHO_THROW_IF(rows < 2 || cols < 2, "ObjectTransforms: a " << rows << "x" << cols << " grid is too small");
  m_slab = fftw_slab(m_comm.get(), rows, cols);
  m_complex = reinterpret_cast<cfloat*>(fftwf_alloc_complex(size_t(m_slab.alloc)));
  // FFTW-MPI's local size counts elements: the same count of reals serves the r2r plans.
  m_real = fftwf_alloc_real(size_t(m_slab.alloc));
  PTYCHO_THROW_IF(!m_complex || !m_real, "ObjectTransforms: cannot allocate the " << rows << "x" << cols
                                                                                   << " slab buffers");
  std::fill(m_complex, m_complex + m_slab.alloc, cfloat(0, 0));
  std::fill(m_real, m_real + m_slab.alloc, 0.0f);
  const MPI_Comm c = m_comm.get();
  m_forward = fftwf_mpi_plan_dft_2d(rows, cols, as_fftw(m_complex), as_fftw(m_complex), c, FFTW_FORWARD,
                                    FFTW_ESTIMATE);
  m_inverse = fftwf_mpi_plan_dft_2d(rows, cols, as_fftw(m_complex), as_fftw(m_complex), c, FFTW_BACKWARD,
                                    FFTW_ESTIMATE);
  m_dct = fftwf_mpi_plan_r2r_2d(rows, cols, m_real, m_real, c, FFTW_REDFT10, FFTW_REDFT10, FFTW_ESTIMATE);
  m_idct = fftwf_mpi_plan_r2r_2d(rows, cols, m_real, m_real, c, FFTW_REDFT01, FFTW_REDFT01, FFTW_ESTIMATE);
  PTYCHO_THROW_IF(!m_forward || !m_inverse || !m_dct || !m_idct,
                  "ObjectTransforms: FFTW-MPI could not plan the " << rows << "x" << cols << " transforms");
}

ObjectTransforms::~ObjectTransforms() {
  for (void* p : {m_forward, m_inverse, m_dct, m_idct})
    if (p) fftwf_destroy_plan(static_cast<fftwf_plan>(p));
  if (m_complex) fftwf_free(m_complex);
  if (m_real) fftwf_free(m_real);
}

long ObjectTransforms::buffer_bytes() const { return m_slab.alloc * long(sizeof(cfloat) + sizeof(float)); }

void ObjectTransforms::forward() { fftwf_execute(static_cast<fftwf_plan>(m_forward)); }

void ObjectTransforms::inverse() {
  fftwf_execute(static_cast<fftwf_plan>(m_inverse));
  const float scale = float(1.0 / (double(m_rows) * double(m_cols)));
  cfloat* d = m_complex;
  Kokkos::parallel_for("ptycho::object_inverse_scale", Host(0, slab_size()), [=](long i) { d[i] *= scale; });
}

void ObjectTransforms::dct() { fftwf_execute(static_cast<fftwf_plan>(m_dct)); }

void ObjectTransforms::idct() {
  fftwf_execute(static_cast<fftwf_plan>(m_idct));
  const float scale = float(1.0 / (4.0 * double(m_rows) * double(m_cols)));
  float* d = m_real;
  Kokkos::parallel_for("ptycho::object_idct_scale", Host(0, slab_size()), [=](long i) { d[i] *= scale; });
}

// ---- neighbour rows ------------------------------------------------------------------------------

template <class T>
void neighbour_rows(const ObjectTransforms& t, const T* slab, std::vector<T>& above, std::vector<T>& below) {
  const MPI_Comm comm = t.comm();
  int size = 1;
  MPI_Comm_size(comm, &size);
  const long cols = t.cols();
  above.assign(size_t(cols), T{});
  below.assign(size_t(cols), T{});
  long mine[2] = {t.slab().row0, t.slab().rows};
  std::vector<long> all(2 * size_t(size));
  check_mpi(MPI_Allgather(mine, 2, MPI_LONG, all.data(), 2, MPI_LONG, comm), "neighbour_rows: MPI_Allgather");
  const auto owner = [&](long row) {
    for (int q = 0; q < size; ++q)
      if (all[2 * q + 1] > 0 && row >= all[2 * q] && row < all[2 * q] + all[2 * q + 1]) return q;
    return -1;
  };
  PTYCHO_THROW_IF(cols * long(sizeof(T)) > INT_MAX, "neighbour_rows: rows of " << cols << " elements are too long");
  const int bytes = int(cols * long(sizeof(T)));
  std::vector<MPI_Request> requests;
  requests.reserve(4);
  const Rect& s = t.slab();
  if (s.rows > 0) {
    const int up = s.row0 > 0 ? owner(s.row0 - 1) : -1;
    const int down = s.row1() < t.rows() ? owner(s.row1()) : -1;
    auto post = [&](auto fn) {
      requests.emplace_back();
      check_mpi(fn(&requests.back()), "neighbour_rows: MPI_Isend/Irecv");
    };
    if (up >= 0) {
      post([&](MPI_Request* r) { return MPI_Irecv(above.data(), bytes, MPI_BYTE, up, kTagBelow, comm, r); });
      post([&](MPI_Request* r) { return MPI_Isend(slab, bytes, MPI_BYTE, up, kTagAbove, comm, r); });
    }
    if (down >= 0) {
      post([&](MPI_Request* r) { return MPI_Irecv(below.data(), bytes, MPI_BYTE, down, kTagAbove, comm, r); });
      post([&](MPI_Request* r) {
        return MPI_Isend(slab + (s.rows - 1) * cols, bytes, MPI_BYTE, down, kTagBelow, comm, r);
      });
    }
  }
  check_mpi(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "neighbour_rows: MPI_Waitall");
}

template void neighbour_rows<float>(const ObjectTransforms&, const float*, std::vector<float>&, std::vector<float>&);
template void neighbour_rows<cfloat>(const ObjectTransforms&, const cfloat*, std::vector<cfloat>&,
                                     std::vector<cfloat>&);

// ---- phase ramps ---------------------------------------------------------------------------------

PhaseRamp fit_phase_ramp(const ObjectTransforms& t, const cfloat* object, const float* weight) {
  std::vector<cfloat> obj_above, obj_below;
  std::vector<float> w_above, w_below;
  neighbour_rows(t, object, obj_above, obj_below);
  neighbour_rows(t, weight, w_above, w_below);
  const Rect& s = t.slab();
  const long cols = t.cols();
  // [Re, Im] of the column and row products.
  std::vector<double> sums(4, 0.0);
  for (long i = 0; i < s.rows; ++i) {
    const cfloat* o = object + i * cols;
    const float* w = weight + i * cols;
    const bool last = i + 1 == s.rows;
    const cfloat* o_next = last ? obj_below.data() : o + cols;
    const float* w_next = last ? w_below.data() : w + cols;
    const bool has_next = s.row0 + i + 1 < t.rows();
    for (long j = 0; j < cols; ++j) {
      if (w[j] <= 0) continue;
      const std::complex<double> a(o[j].real(), o[j].imag());
      if (j + 1 < cols && w[j + 1] > 0) {
        const std::complex<double> p = std::complex<double>(o[j + 1].real(), o[j + 1].imag()) * std::conj(a) *
                                       double(std::min(w[j], w[j + 1]));
        sums[0] += p.real();
        sums[1] += p.imag();
      }
      if (has_next && w_next[j] > 0) {
        const std::complex<double> p = std::complex<double>(o_next[j].real(), o_next[j].imag()) * std::conj(a) *
                                       double(std::min(w[j], w_next[j]));
        sums[2] += p.real();
        sums[3] += p.imag();
      }
    }
  }
  sum_all(t.comm(), sums);
  PhaseRamp ramp;
  ramp.slope_col = (sums[0] != 0 || sums[1] != 0) ? std::atan2(sums[1], sums[0]) : 0.0;
  ramp.slope_row = (sums[2] != 0 || sums[3] != 0) ? std::atan2(sums[3], sums[2]) : 0.0;
  std::vector<double> offset(2, 0.0);
  for (long i = 0; i < s.rows; ++i)
    for (long j = 0; j < cols; ++j) {
      const long k = i * cols + j;
      if (weight[k] <= 0) continue;
      const double phase = -(ramp.slope_row * double(s.row0 + i) + ramp.slope_col * double(j));
      const std::complex<double> v =
          std::complex<double>(object[k].real(), object[k].imag()) * std::polar(double(weight[k]), phase);
      offset[0] += v.real();
      offset[1] += v.imag();
    }
  sum_all(t.comm(), offset);
  ramp.offset = (offset[0] != 0 || offset[1] != 0) ? std::atan2(offset[1], offset[0]) : 0.0;
  return ramp;
}

void remove_phase_ramp(const ObjectTransforms& t, cfloat* object, const PhaseRamp& ramp) {
  const long cols = t.cols(), row0 = t.slab().row0;
  const PhaseRamp r = ramp;
  Kokkos::parallel_for("ptycho::remove_phase_ramp", Host(0, t.slab_size()), [=](long k) {
    const long i = row0 + k / cols, j = k % cols;
    const double phase = -(r.offset + r.slope_row * double(i) + r.slope_col * double(j));
    const std::complex<double> v = std::complex<double>(object[k].real(), object[k].imag()) * std::polar(1.0, phase);
    object[k] = cfloat(float(v.real()), float(v.imag()));
  });
}

// ---- unwrapping ----------------------------------------------------------------------------------

void unwrap_phase(ObjectTransforms& t, const float* wrapped, float* unwrapped) {
  std::vector<float> above, below;
  neighbour_rows(t, wrapped, above, below);
  const Rect& s = t.slab();
  const long rows = t.rows(), cols = t.cols(), row0 = s.row0, nrows = s.rows;
  float* rho = t.real_data();
  const float* up = above.data();
  const float* down = below.data();
  // rho = the divergence of the wrapped gradient (Neumann: no difference across the grid's edge).
  Kokkos::parallel_for("ptycho::unwrap_divergence", Host(0, t.slab_size()), [=](long k) {
    const long li = k / cols, j = k % cols, i = row0 + li;
    const double p = wrapped[k];
    const double right = j + 1 < cols ? wrap(double(wrapped[k + 1]) - p) : 0.0;
    const double left = j > 0 ? wrap(p - double(wrapped[k - 1])) : 0.0;
    const double next = i + 1 < rows ? (li + 1 < nrows ? double(wrapped[k + cols]) : double(down[j])) : p;
    const double prev = i > 0 ? (li > 0 ? double(wrapped[k - cols]) : double(up[j])) : p;
    const double dn = i + 1 < rows ? wrap(next - p) : 0.0;
    const double dp = i > 0 ? wrap(p - prev) : 0.0;
    rho[k] = float(right - left + dn - dp);
  });
  t.dct();
  Kokkos::parallel_for("ptycho::unwrap_poisson", Host(0, t.slab_size()), [=](long k) {
    const long i = row0 + k / cols, j = k % cols;
    const double lambda = 2 * std::cos(kPi * double(i) / double(rows)) + 2 * std::cos(kPi * double(j) / double(cols)) - 4;
    rho[k] = (i == 0 && j == 0) ? 0.0f : float(double(rho[k]) / lambda);
  });
  t.idct();
  // Congruence: the input plus the multiple of 2 pi nearest the least-squares phase.
  Kokkos::parallel_for("ptycho::unwrap_congruence", Host(0, t.slab_size()), [=](long k) {
    const double p = wrapped[k];
    unwrapped[k] = float(p + kTwoPi * std::nearbyint((double(rho[k]) - p) / kTwoPi));
  });
}

// ---- Fourier filters -----------------------------------------------------------------------------

FourierFilter parse_fourier_filter(const std::string& text, const std::string& option) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  const auto bad = [&](const std::string& why) {
    return InputError(option + " '" + text + "': " + why +
                      " (expected lowpass:F, highpass:F or bandpass:F1:F2, each optionally :WIDTH; "
                      "frequencies in cycles per pixel, 0 to 0.5)");
  };
  if (parts.empty()) throw bad("empty");
  const auto number = [&](const std::string& p) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(p, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != p.size() || p.empty() || !std::isfinite(v)) throw bad("'" + p + "' is not a number");
    return v;
  };
  FourierFilter f;
  size_t nfreq = 0;
  if (parts[0] == "lowpass") {
    f.kind = FourierFilter::Kind::lowpass;
    nfreq = 1;
  } else if (parts[0] == "highpass") {
    f.kind = FourierFilter::Kind::highpass;
    nfreq = 1;
  } else if (parts[0] == "bandpass") {
    f.kind = FourierFilter::Kind::bandpass;
    nfreq = 2;
  } else {
    throw bad("unknown filter '" + parts[0] + "'");
  }
  if (parts.size() != 1 + nfreq && parts.size() != 2 + nfreq) throw bad("wrong number of values");
  std::vector<double> v;
  for (size_t i = 1; i < parts.size(); ++i) v.push_back(number(parts[i]));
  for (size_t i = 0; i < nfreq; ++i)
    if (v[i] <= 0 || v[i] > 0.5) throw bad("a frequency must lie in (0, 0.5] cycles per pixel");
  if (f.kind == FourierFilter::Kind::lowpass) f.high = v[0];
  if (f.kind == FourierFilter::Kind::highpass) f.low = v[0];
  if (f.kind == FourierFilter::Kind::bandpass) {
    f.low = v[0];
    f.high = v[1];
    if (f.low >= f.high) throw bad("the band's first frequency must be below its second");
  }
  if (parts.size() == 2 + nfreq) {
    f.width = v[nfreq];
    if (f.width < 0 || f.width > 0.5) throw bad("the edge width must lie in [0, 0.5]");
  }
  return f;
}

namespace {
/// 1 below cut - width / 2, 0 above cut + width / 2, cosine squared between.
double low_edge(double f, double cut, double width) {
  if (width <= 0) return f <= cut ? 1.0 : 0.0;
  const double x = (f - (cut - width / 2)) / width;
  if (x <= 0) return 1.0;
  if (x >= 1) return 0.0;
  const double c = std::cos(kPi / 2 * x);
  return c * c;
}
}  // namespace

double filter_gain(const FourierFilter& f, double frequency) {
  switch (f.kind) {
    case FourierFilter::Kind::lowpass:
      return low_edge(frequency, f.high, f.width);
    case FourierFilter::Kind::highpass:
      return 1.0 - low_edge(frequency, f.low, f.width);
    case FourierFilter::Kind::bandpass:
      return low_edge(frequency, f.high, f.width) * (1.0 - low_edge(frequency, f.low, f.width));
  }
  return 1.0;
}

void apply_fourier_filter(ObjectTransforms& t, const FourierFilter& filter) {
  t.forward();
  cfloat* d = t.complex_data();
  const long cols = t.cols(), row0 = t.slab().row0, rows = t.rows();
  const FourierFilter f = filter;
  Kokkos::parallel_for("ptycho::fourier_filter", Host(0, t.slab_size()), [=](long k) {
    const long i = row0 + k / cols, j = k % cols;
    const double fr = double(i <= (rows - 1) / 2 ? i : i - rows) / double(rows);
    const double fc = double(j <= (cols - 1) / 2 ? j : j - cols) / double(cols);
    d[k] *= float(filter_gain(f, std::sqrt(fr * fr + fc * fc)));
  });
  t.inverse();
}

// ---- registration and FRC ------------------------------------------------------------------------

void tukey_window(const ObjectTransforms& t, const Rect& region, double taper, float* out) {
  const long cols = t.cols(), row0 = t.slab().row0;
  const Rect g = region;
  const double tp = taper;
  const auto edge = [tp](long x, long lo, long hi) {
    const double d = std::min(double(x - lo) + 0.5, double(hi - x) - 0.5);
    if (d < 0) return 0.0;
    if (tp <= 0 || d >= tp) return 1.0;
    const double s = std::sin(kPi / 2 * d / tp);
    return s * s;
  };
  Kokkos::parallel_for("ptycho::tukey_window", Host(0, t.slab_size()), [=](long k) {
    const long i = row0 + k / cols, j = k % cols;
    out[k] = float(edge(i, g.row0, g.row1()) * edge(j, g.col0, g.col1()));
  });
}

namespace {
/// complex_data() := DFT(field * window).
void windowed_transform(ObjectTransforms& t, const cfloat* field, const float* window) {
  cfloat* d = t.complex_data();
  Kokkos::parallel_for("ptycho::apply_window", Host(0, t.slab_size()),
                       [=](long k) { d[k] = field[k] * window[k]; });
  t.forward();
}
}  // namespace

Shift register_shift(ObjectTransforms& t, const cfloat* a, const cfloat* b, const float* window) {
  const long n = t.slab_size(), cols = t.cols(), rows = t.rows(), row0 = t.slab().row0;
  std::vector<cfloat> fa(static_cast<size_t>(n));
  windowed_transform(t, a, window);
  std::copy(t.complex_data(), t.complex_data() + n, fa.begin());
  windowed_transform(t, b, window);
  cfloat* d = t.complex_data();
  const cfloat* pa = fa.data();
  Kokkos::parallel_for("ptycho::cross_power", Host(0, n), [=](long k) { d[k] = pa[k] * Kokkos::conj(d[k]); });
  t.inverse();
  double best = -1;
  long best_index = LONG_MAX;
  for (long k = 0; k < n; ++k) {
    const double v = Kokkos::abs(d[k]);
    if (v > best) {
      best = v;
      best_index = (row0 + k / cols) * cols + k % cols;
    }
  }
  double global_best = -1;
  check_mpi(MPI_Allreduce(&best, &global_best, 1, MPI_DOUBLE, MPI_MAX, t.comm()), "register_shift: MPI_Allreduce");
  long mine = best == global_best ? best_index : LONG_MAX, peak = 0;
  check_mpi(MPI_Allreduce(&mine, &peak, 1, MPI_LONG, MPI_MIN, t.comm()), "register_shift: MPI_Allreduce");
  const long pr = peak / cols, pc = peak % cols;
  // The peak and its four neighbours (periodic), from whichever rank holds them.
  const long where[5][2] = {{pr, pc}, {pr - 1, pc}, {pr + 1, pc}, {pr, pc - 1}, {pr, pc + 1}};
  std::vector<double> v(5, 0.0);
  for (int q = 0; q < 5; ++q) {
    const long r = (where[q][0] + rows) % rows, c = (where[q][1] + cols) % cols;
    if (r >= row0 && r < row0 + t.slab().rows) v[q] = Kokkos::abs(d[(r - row0) * cols + c]);
  }
  sum_all(t.comm(), v);
  const auto vertex = [](double minus, double centre, double plus) {
    const double den = minus - 2 * centre + plus;
    if (!(den < 0)) return 0.0;
    return std::clamp(0.5 * (minus - plus) / den, -0.5, 0.5);
  };
  Shift s;
  s.row = double(pr > rows / 2 ? pr - rows : pr) + vertex(v[1], v[0], v[2]);
  s.col = double(pc > cols / 2 ? pc - cols : pc) + vertex(v[3], v[0], v[4]);
  return s;
}

void shift_field(ObjectTransforms& t, cfloat* field, const Shift& s) {
  const long n = t.slab_size(), cols = t.cols(), rows = t.rows(), row0 = t.slab().row0;
  cfloat* d = t.complex_data();
  std::copy(field, field + n, d);
  t.forward();
  const Shift sh = s;
  Kokkos::parallel_for("ptycho::shift_ramp", Host(0, n), [=](long k) {
    const long i = row0 + k / cols, j = k % cols;
    const double fr = double(i <= (rows - 1) / 2 ? i : i - rows) / double(rows);
    const double fc = double(j <= (cols - 1) / 2 ? j : j - cols) / double(cols);
    const std::complex<double> v =
        std::complex<double>(d[k].real(), d[k].imag()) * std::polar(1.0, -kTwoPi * (fr * sh.row + fc * sh.col));
    d[k] = cfloat(float(v.real()), float(v.imag()));
  });
  t.inverse();
  std::copy(d, d + n, field);
}

FrcCurve fourier_ring_correlation(ObjectTransforms& t, const cfloat* a, const cfloat* b, const float* window) {
  const long n = t.slab_size(), cols = t.cols(), rows = t.rows(), row0 = t.slab().row0;
  const long big = std::max(rows, cols), rings = big / 2 + 1;
  std::vector<cfloat> fa(static_cast<size_t>(n));
  windowed_transform(t, a, window);
  std::copy(t.complex_data(), t.complex_data() + n, fa.begin());
  windowed_transform(t, b, window);
  const cfloat* fb = t.complex_data();
  // [cross, |A|^2, |B|^2, count] per ring.
  std::vector<double> sums(4 * size_t(rings), 0.0);
  for (long k = 0; k < n; ++k) {
    const long i = row0 + k / cols, j = k % cols;
    const double fr = double(i <= (rows - 1) / 2 ? i : i - rows) / double(rows);
    const double fc = double(j <= (cols - 1) / 2 ? j : j - cols) / double(cols);
    const double f = std::sqrt(fr * fr + fc * fc);
    const long ring = std::lround(f * double(big));
    if (ring >= rings) continue;
    const double ar = fa[k].real(), ai = fa[k].imag(), br = fb[k].real(), bi = fb[k].imag();
    sums[4 * ring] += ar * br + ai * bi;
    sums[4 * ring + 1] += ar * ar + ai * ai;
    sums[4 * ring + 2] += br * br + bi * bi;
    sums[4 * ring + 3] += 1;
  }
  sum_all(t.comm(), sums);
  FrcCurve c;
  // A ring with (almost) no power in either image, as the zero frequency of
  // mean-free images, correlates rounding errors only: its FRC is taken as 0.
  double largest = 0;
  for (long r = 0; r < rings; ++r) largest = std::max(largest, std::sqrt(sums[4 * r + 1] * sums[4 * r + 2]));
  for (long r = 0; r < rings; ++r) {
    const double den = std::sqrt(sums[4 * r + 1] * sums[4 * r + 2]);
    const double npix = sums[4 * r + 3];
    c.frequency.push_back(double(r) / double(big));
    c.frc.push_back(den > 1e-9 * largest ? sums[4 * r] / den : 0.0);
    c.pixels.push_back(long(npix));
    const double root = std::sqrt(std::max(1.0, npix));
    c.half_bit.push_back((0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root));
  }
  const auto crossing = [&](auto threshold, double& cutoff, bool& reached) {
    for (long r = 1; r < rings; ++r) {
      const double below = c.frc[r] - threshold(r);
      if (below >= 0) continue;
      const double prev = c.frc[r - 1] - threshold(r - 1);
      const double x = prev > 0 ? prev / (prev - below) : 0.0;
      cutoff = c.frequency[r - 1] + x * (c.frequency[r] - c.frequency[r - 1]);
      reached = true;
      return;
    }
  };
  crossing([&](long r) { return c.half_bit[r]; }, c.cutoff_half_bit, c.reached_half_bit);
  crossing([](long) { return 1.0 / 7.0; }, c.cutoff_one_seventh, c.reached_one_seventh);
  return c;
}

}  // namespace ptycho
