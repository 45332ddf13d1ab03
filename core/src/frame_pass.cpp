#include "ptycho/core/frame_pass.hpp"

#include "ptycho/core/error.hpp"

namespace ptycho {

void FarFieldPropagator::forward(const CView3& waves) const {
  m_plan.execute(waves, FftDirection::forward, Centring::none);
}

void FarFieldPropagator::backward(const CView3& waves) const {
  m_plan.execute(waves, FftDirection::backward, Centring::none);
}

std::shared_ptr<const Propagator> make_propagator(const Workspace& ws) {
  return std::make_shared<const FarFieldPropagator>(ws.plan());
}

CView3 WaveStore::slots(long origin, long first, long count, int kmodes) const {
  const long at = first - origin;  // the batch's place in the pass
  PTYCHO_THROW_IF(at < m_kept && at + count > m_kept, "FramePass: frames " << first << ".." << first + count
                                                                           << " straddle the " << m_kept
                                                                           << " frames with slots of their own");
  const long start = (at < m_kept ? at : m_kept) * kmodes;
  const long end = start + count * kmodes;
  PTYCHO_THROW_IF(start < 0 || end > long(m_buffer.extent(0)),
                  "FramePass: frames " << first << ".." << first + count << " of a pass from frame " << origin
                                       << " need wave slots " << start << ".." << end << ", the buffer has "
                                       << m_buffer.extent(0));
  return Kokkos::subview(m_buffer, Kokkos::make_pair(start, end), Kokkos::ALL, Kokkos::ALL);
}

FramePass::FramePass(const Workspace& ws, std::shared_ptr<const Propagator> propagator, WaveStore waves,
                     Background* background)
    : m_ws(&ws), m_propagator(std::move(propagator)), m_waves(std::move(waves)), m_background(background) {
  PTYCHO_THROW_IF(!m_propagator, "FramePass: no propagator");
}

}  // namespace ptycho
