#pragma once
/// Basic types of ptycho: complex floats and Kokkos views on the default
/// execution space (Serial, OpenMP or CUDA, whichever Kokkos was built with).
///
/// All multi-dimensional views are LayoutRight, so a (B, M, M) stack of frames
/// is B contiguous row-major M x M frames, as FFTW and cuFFT expect.
#include <Kokkos_Core.hpp>

#include <complex>
#include <cstdint>

namespace ptycho {

using cfloat = Kokkos::complex<float>;
using cdouble = Kokkos::complex<double>;

using ExecSpace = Kokkos::DefaultExecutionSpace;
using MemSpace = ExecSpace::memory_space;
using HostSpace = Kokkos::HostSpace;
using HostExec = Kokkos::DefaultHostExecutionSpace;

template <class T, class Space = MemSpace>
using View1 = Kokkos::View<T*, Kokkos::LayoutRight, Space>;
template <class T, class Space = MemSpace>
using View2 = Kokkos::View<T**, Kokkos::LayoutRight, Space>;
template <class T, class Space = MemSpace>
using View3 = Kokkos::View<T***, Kokkos::LayoutRight, Space>;

using CView2 = View2<cfloat>;  ///< complex image (object tile, probe mode)
using CView3 = View3<cfloat>;  ///< stack of complex frames or probe modes
using RView2 = View2<float>;
using RView3 = View3<float>;   ///< stack of intensity frames

using HostCView2 = View2<cfloat, HostSpace>;
using HostCView3 = View3<cfloat, HostSpace>;
using HostRView2 = View2<float, HostSpace>;
using HostRView3 = View3<float, HostSpace>;

/// A position in object pixels: (row, col) of the probe centre.
struct Position {
  double row = 0;
  double col = 0;
};

}  // namespace ptycho
