#include "ptycho/core/fft.hpp"

#include "ptycho/core/error.hpp"

#include "fft_wisdom.hpp"

#include <fftw3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#if defined(KOKKOS_ENABLE_CUDA)
#include <cufft.h>
#include <map>
#endif

namespace ptycho {

namespace {
std::atomic<long> g_frames_transformed{0};
}  // namespace

long FramePlan::frames_transformed() { return g_frames_transformed.load(std::memory_order_relaxed); }

namespace {
// FFTW's planner is not thread-safe; execution of a plan on new arrays is.
std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

struct FramePlan::Impl {
  fftwf_plan fwd = nullptr;
  fftwf_plan bwd = nullptr;
  PlanSource source = PlanSource::estimate;
#if defined(KOKKOS_ENABLE_CUDA)
  mutable std::map<int, cufftHandle> cuda_plans;  // per batch size, made on first use
#endif
  ~Impl() {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    if (fwd) fftwf_destroy_plan(fwd);
    if (bwd) fftwf_destroy_plan(bwd);
#if defined(KOKKOS_ENABLE_CUDA)
    for (auto& kv : cuda_plans) cufftDestroy(kv.second);
#endif
  }
};

FramePlan::FramePlan(int frame_size, bool effort_measure) : m_frame_size(frame_size), m_impl(new Impl) {
  PTYCHO_THROW_IF(frame_size < 2 || frame_size % 2 != 0,
                  "FramePlan: frame size must be even and >= 2, got " << frame_size);
  const int m = frame_size;
  // Plan on an aligned scratch frame; frames of a LayoutRight stack stay
  // 16-byte aligned because M*M*8 bytes is a multiple of 32 for even M.
  fftwf_complex* scratch = fftwf_alloc_complex(static_cast<size_t>(m) * m);
  PTYCHO_THROW_IF(!scratch, "FramePlan: cannot allocate a " << m << "x" << m << " scratch frame");
  {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    if (effort_measure) {
      m_impl->source = detail::plan_frames_from_wisdom(m, scratch, m_impl->fwd, m_impl->bwd);
    } else {
      // From empty wisdom: an estimate must not pick up what an earlier plan measured.
      fftwf_forget_wisdom();
      m_impl->fwd = fftwf_plan_dft_2d(m, m, scratch, scratch, FFTW_FORWARD, FFTW_ESTIMATE);
      m_impl->bwd = fftwf_plan_dft_2d(m, m, scratch, scratch, FFTW_BACKWARD, FFTW_ESTIMATE);
    }
  }
  fftwf_free(scratch);
  PTYCHO_THROW_IF(!m_impl->fwd || !m_impl->bwd, "FramePlan: FFTW could not plan a " << m << "x" << m << " transform");
}

PlanSource FramePlan::plan_source() const { return m_impl->source; }

FramePlan::~FramePlan() = default;
FramePlan::FramePlan(FramePlan&&) noexcept = default;
FramePlan& FramePlan::operator=(FramePlan&&) noexcept = default;

#if !defined(KOKKOS_ENABLE_CUDA)
void FramePlan::execute(const CView3& frames, FftDirection dir, Centring c) const {
  const int m = m_frame_size;
  PTYCHO_THROW_IF(static_cast<int>(frames.extent(1)) != m || static_cast<int>(frames.extent(2)) != m,
                  "FramePlan(" << m << "): got frames of " << frames.extent(1) << "x" << frames.extent(2));
  const fftwf_plan plan = dir == FftDirection::forward ? m_impl->fwd : m_impl->bwd;
  const bool centred = c == Centring::centred_unitary;
  const float scale = 1.0f / static_cast<float>(m);
  const long batch = static_cast<long>(frames.extent(0));
  g_frames_transformed.fetch_add(batch, std::memory_order_relaxed);
  cfloat* base = frames.data();
  // Frames are independent: each is signed, transformed and signed+scaled
  // while it sits in cache. new-array execution is thread-safe in FFTW.
  Kokkos::parallel_for(
      "ptycho::FramePlan::execute", Kokkos::RangePolicy<HostExec>(0, batch), [=](long b) {
        cfloat* f = base + b * static_cast<long>(m) * m;
        if (centred) {
          for (int r = 0; r < m; ++r)
            for (int q = 1 - (r & 1); q < m; q += 2) f[r * m + q] = -f[r * m + q];
        }
        auto* p = reinterpret_cast<fftwf_complex*>(f);
        fftwf_execute_dft(plan, p, p);
        if (centred) {
          for (int r = 0; r < m; ++r) {
            cfloat* row = f + r * m;
            const float s0 = (r & 1) ? -scale : scale;
            for (int q = 0; q < m; q += 2) {
              row[q] *= s0;
              row[q + 1] *= -s0;
            }
          }
        }
      });
  HostExec().fence();
}
#else
void FramePlan::execute(const CView3& frames, FftDirection dir, Centring c) const {
  const int m = m_frame_size;
  PTYCHO_THROW_IF(static_cast<int>(frames.extent(1)) != m || static_cast<int>(frames.extent(2)) != m,
                  "FramePlan(" << m << "): got frames of " << frames.extent(1) << "x" << frames.extent(2));
  const int batch = static_cast<int>(frames.extent(0));
  if (batch == 0) return;
  g_frames_transformed.fetch_add(batch, std::memory_order_relaxed);
  auto it = m_impl->cuda_plans.find(batch);
  if (it == m_impl->cuda_plans.end()) {
    cufftHandle h;
    int n[2] = {m, m};
    PTYCHO_THROW_IF(cufftPlanMany(&h, 2, n, nullptr, 1, m * m, nullptr, 1, m * m, CUFFT_C2C, batch) != CUFFT_SUCCESS,
                    "FramePlan: cufftPlanMany failed for " << batch << " frames of " << m << "x" << m);
    it = m_impl->cuda_plans.emplace(batch, h).first;
  }
  const bool centred = c == Centring::centred_unitary;
  const float scale = 1.0f / static_cast<float>(m);
  auto sign = [=](float s) {
    Kokkos::parallel_for(
        "ptycho::FramePlan::centre", Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {batch, m, m}),
        KOKKOS_LAMBDA(int b, int r, int q) { frames(b, r, q) *= s * centring_sign(r, q); });
  };
  if (centred) sign(1.0f);
  ExecSpace().fence();
  auto* p = reinterpret_cast<cufftComplex*>(frames.data());
  PTYCHO_THROW_IF(cufftExecC2C(it->second, p, p, dir == FftDirection::forward ? CUFFT_FORWARD : CUFFT_INVERSE) !=
                      CUFFT_SUCCESS,
                  "FramePlan: cufftExecC2C failed");
  if (centred) sign(scale);
  ExecSpace().fence();
}
#endif

struct HostInverseDft::Impl {
  fftw_complex* scratch = nullptr;
  fftw_plan plan = nullptr;
  ~Impl() {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    if (plan) fftw_destroy_plan(plan);
    if (scratch) fftw_free(scratch);
  }
};

HostInverseDft::HostInverseDft(int rows, int cols) : m_rows(rows), m_cols(cols), m_impl(new Impl) {
  PTYCHO_THROW_IF(rows < 1 || cols < 1, "HostInverseDft: planes of " << rows << "x" << cols);
  m_impl->scratch = fftw_alloc_complex(size_t(rows) * cols);
  PTYCHO_THROW_IF(!m_impl->scratch, "HostInverseDft: cannot allocate a " << rows << "x" << cols << " plane");
  {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    fftw_forget_wisdom();  // an estimate from empty wisdom, whatever was planned before
    m_impl->plan = fftw_plan_dft_2d(rows, cols, m_impl->scratch, m_impl->scratch, FFTW_BACKWARD, FFTW_ESTIMATE);
  }
  PTYCHO_THROW_IF(!m_impl->plan, "HostInverseDft: FFTW could not plan a " << rows << "x" << cols << " transform");
}

HostInverseDft::~HostInverseDft() = default;

void HostInverseDft::execute(const View3<cdouble, HostSpace>& planes) const {
  PTYCHO_THROW_IF(int(planes.extent(1)) != m_rows || int(planes.extent(2)) != m_cols,
                  "HostInverseDft(" << m_rows << "x" << m_cols << "): got planes of " << planes.extent(1) << "x"
                                    << planes.extent(2));
  const size_t plane = size_t(m_rows) * m_cols;
  for (size_t p = 0; p < planes.extent(0); ++p) {
    cdouble* data = planes.data() + p * plane;
    std::memcpy(m_impl->scratch, data, plane * sizeof(cdouble));
    fftw_execute(m_impl->plan);
    std::memcpy(static_cast<void*>(data), m_impl->scratch, plane * sizeof(cdouble));
  }
}

}  // namespace ptycho
