# Finds ptycho's dependencies and makes imported targets for them. Used both
# by the build and by the installed PtychoConfig.cmake, so a consumer of
# find_package(Ptycho) sees the same targets.
include(CMakeFindDependencyMacro)

# MPI's C component and HDF5's C compiler wrapper (h5pcc) need the C language;
# a consumer declared with LANGUAGES CXX gets it enabled here.
get_property(_ptycho_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if(NOT "C" IN_LIST _ptycho_languages)
  enable_language(C)
endif()

find_dependency(MPI COMPONENTS C CXX)

# Kokkos: Debian's (Serial only) or an upstream build given by Kokkos_ROOT.
# From an installed PtychoConfig.cmake, PTYCHO_KOKKOS_DIR_HINT names the
# Kokkos ptycho was built with; Kokkos_ROOT and CMAKE_PREFIX_PATH still win.
set(CMAKE_CXX_EXTENSIONS OFF)
if(PTYCHO_KOKKOS_DIR_HINT)
  find_dependency(Kokkos CONFIG HINTS "${PTYCHO_KOKKOS_DIR_HINT}")
else()
  find_dependency(Kokkos CONFIG)
endif()
if(DEFINED Kokkos_INCLUDE_DIRS AND TARGET Kokkos::kokkos)
  # Debian's Kokkos names a non-existent include dir (/usr/lib/include).
  # Upstream Kokkos does not set Kokkos_INCLUDE_DIRS, so it is left alone.
  file(REAL_PATH "${Kokkos_INCLUDE_DIRS}" _ptycho_kokkos_inc)
  get_target_property(_ptycho_kokkos_aliased Kokkos::kokkos ALIASED_TARGET)
  if(_ptycho_kokkos_aliased)
    set_target_properties(${_ptycho_kokkos_aliased} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_ptycho_kokkos_inc}")
  else()
    set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_ptycho_kokkos_inc}")
  endif()
endif()

# FFTW3 (no CMake config in Debian): pkg-config plus the MPI library.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PTYCHO_FFTW3F REQUIRED IMPORTED_TARGET GLOBAL fftw3f)
pkg_check_modules(PTYCHO_FFTW3 REQUIRED IMPORTED_TARGET GLOBAL fftw3)
find_library(PTYCHO_FFTW3F_MPI_LIB NAMES fftw3f_mpi REQUIRED)
find_path(PTYCHO_FFTW3_MPI_INC NAMES fftw3-mpi.h REQUIRED)
if(NOT TARGET Ptycho::fftw3f_mpi)
  add_library(Ptycho::fftw3f_mpi UNKNOWN IMPORTED GLOBAL)
  set_target_properties(Ptycho::fftw3f_mpi PROPERTIES IMPORTED_LOCATION "${PTYCHO_FFTW3F_MPI_LIB}"
    INTERFACE_INCLUDE_DIRECTORIES "${PTYCHO_FFTW3_MPI_INC}"
    INTERFACE_LINK_LIBRARIES "PkgConfig::PTYCHO_FFTW3F;MPI::MPI_C")
endif()

# libpng (previews in ptycho_io; a static ptycho_io names PNG::PNG in its link interface).
find_dependency(PNG)

# Parallel HDF5.
set(HDF5_PREFER_PARALLEL TRUE)
find_dependency(HDF5 COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "ptycho needs a parallel HDF5 (Debian: libhdf5-openmpi-dev); found a serial one")
endif()
if(NOT TARGET Ptycho::hdf5)
  add_library(Ptycho::hdf5 INTERFACE IMPORTED GLOBAL)
  set_target_properties(Ptycho::hdf5 PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${HDF5_C_INCLUDE_DIRS}"
    INTERFACE_LINK_LIBRARIES "${HDF5_C_LIBRARIES};MPI::MPI_C"
    INTERFACE_COMPILE_DEFINITIONS "${HDF5_C_DEFINITIONS}")
endif()
