#pragma once
/// FramePlan's saved FFTW wisdom (internal to core/): one file per machine,
/// FFTW version, precision and frame size, measured once under an exclusive
/// file lock and imported by every process (see FramePlan in fft.hpp).
#include "ptycho/core/fft.hpp"

#include <fftw3.h>

namespace ptycho::detail {

/// Makes the forward and backward in-place plans of M x M frames on the
/// aligned `scratch` frame (which measuring overwrites): from the wisdom file
/// (measured and saved first if it is missing, corrupt or foreign), or with
/// FFTW_ESTIMATE when no wisdom folder can be used. Leaves FFTW's in-memory
/// wisdom empty. The caller holds the process's planner mutex.
PlanSource plan_frames_from_wisdom(int m, fftwf_complex* scratch, fftwf_plan& fwd, fftwf_plan& bwd);

}  // namespace ptycho::detail
