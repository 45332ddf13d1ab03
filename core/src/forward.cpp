#include "ptycho/core/forward.hpp"

#include "ptycho/core/error.hpp"

#include <cmath>

namespace ptycho {

ProbeShifter::ProbeShifter(int frame_size)
    : m_frame_size(frame_size), m_plan(frame_size), m_freq("ptycho::ProbeShifter::freq", frame_size) {
  auto h = Kokkos::create_mirror_view(m_freq);
  for (int i = 0; i < frame_size; ++i) h(i) = (i < (frame_size + 1) / 2 ? i : i - frame_size) / double(frame_size);
  Kokkos::deep_copy(m_freq, h);
}

void ProbeShifter::shift(const CView3& in, double d_row, double d_col, const CView3& out) const {
  const int m = m_frame_size;
  PTYCHO_THROW_IF(in.extent(1) != size_t(m) || out.extent(0) != in.extent(0) || out.extent(1) != size_t(m),
                  "ProbeShifter: extents do not match the " << m << "x" << m << " plan");
  if (in.data() != out.data()) Kokkos::deep_copy(out, in);
  if (d_row == 0.0 && d_col == 0.0) return;
  m_plan.execute(out, FftDirection::forward, Centring::none);
  const auto freq = m_freq;
  const double norm = 1.0 / (double(m) * m);
  const int k = static_cast<int>(out.extent(0));
  Kokkos::parallel_for(
      "ptycho::ProbeShifter::ramp", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {k, m, m}),
      KOKKOS_LAMBDA(int b, int r, int c) {
        const double ph = -2.0 * M_PI * (freq(r) * d_row + freq(c) * d_col);
        out(b, r, c) *= cfloat(float(std::cos(ph) * norm), float(std::sin(ph) * norm));
      });
  m_plan.execute(out, FftDirection::backward, Centring::none);
}

ForwardModel::ForwardModel(int frame_size, int num_modes, int batch)
    : m_frame_size(frame_size),
      m_num_modes(num_modes),
      m_batch(batch),
      m_plan(frame_size),
      m_shifter(frame_size),
      m_shifted("ptycho::ForwardModel::shifted", num_modes, frame_size, frame_size),
      m_waves("ptycho::ForwardModel::waves", std::size_t(batch) * num_modes, frame_size, frame_size) {
  PTYCHO_THROW_IF(num_modes < 1 || batch < 1, "ForwardModel: need at least one mode and a batch of one");
}

void ForwardModel::intensities(const CView2& object, const CView3& probe_modes, const std::vector<Position>& positions,
                               const RView3& out) const {
  const int m = m_frame_size, kmodes = m_num_modes;
  PTYCHO_THROW_IF(probe_modes.extent(0) != size_t(kmodes) || probe_modes.extent(1) != size_t(m),
                  "ForwardModel: probe modes are " << probe_modes.extent(0) << "x" << probe_modes.extent(1)
                                                   << ", expected " << kmodes << "x" << m);
  PTYCHO_THROW_IF(out.extent(0) != positions.size(), "ForwardModel: output has " << out.extent(0) << " frames for "
                                                                               << positions.size() << " positions");
  const long h = static_cast<long>(object.extent(0)), w = static_cast<long>(object.extent(1));
  const long n = static_cast<long>(positions.size());
  for (long first = 0; first < n; first += m_batch) {
    const long count = std::min<long>(m_batch, n - first);
    // Exit waves of this batch: shift the modes for each position, multiply the patch.
    for (long j = 0; j < count; ++j) {
      const auto& p = positions[first + j];
      const PatchOrigin o = patch_origin(p.row, p.col, m);
      PTYCHO_THROW_IF(o.row < 0 || o.col < 0 || o.row + m > h || o.col + m > w,
                      "position " << first + j << " (" << p.row << ", " << p.col << ") leaves the " << h << "x" << w
                                  << " object");
      m_shifter.shift(probe_modes, o.frac_row, o.frac_col, m_shifted);
      const auto shifted = m_shifted;
      const auto waves = m_waves;
      const long r0 = o.row, c0 = o.col, base = j * kmodes;
      Kokkos::parallel_for(
          "ptycho::ForwardModel::exit_wave",
          Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {kmodes, m, m}),
          KOKKOS_LAMBDA(int k, int r, int c) { waves(base + k, r, c) = shifted(k, r, c) * object(r0 + r, c0 + c); });
    }
    auto waves = Kokkos::subview(m_waves, Kokkos::make_pair(0L, count * kmodes), Kokkos::ALL, Kokkos::ALL);
    m_plan.forward(waves);
    const long f0 = first;
    Kokkos::parallel_for(
        "ptycho::ForwardModel::intensity", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {count, m, m}),
        KOKKOS_LAMBDA(long j, int r, int c) {
          float s = 0;
          for (int k = 0; k < kmodes; ++k) {
            const cfloat v = waves(j * kmodes + k, r, c);
            s += v.real() * v.real() + v.imag() * v.imag();
          }
          out(f0 + j, r, c) = s;
        });
  }
  ExecSpace().fence();
}

HostRView3 model_intensities(const HostCView2& object, const HostCView3& probe_modes,
                             const std::vector<Position>& positions) {
  const int m = static_cast<int>(probe_modes.extent(1));
  const int k = static_cast<int>(probe_modes.extent(0));
  CView2 obj("ptycho::model_intensities::object", object.extent(0), object.extent(1));
  CView3 modes("ptycho::model_intensities::modes", k, m, m);
  Kokkos::deep_copy(obj, object);
  Kokkos::deep_copy(modes, probe_modes);
  RView3 out("ptycho::model_intensities::out", positions.size(), m, m);
  ForwardModel model(m, k);
  model.intensities(obj, modes, positions, out);
  HostRView3 host("ptycho::model_intensities", positions.size(), m, m);
  Kokkos::deep_copy(host, out);
  return host;
}

}  // namespace ptycho
