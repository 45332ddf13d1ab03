# Run by the install_consumer test (cmake -P): install the build, then build
# and run the consumer project against the installed tree only.
foreach(v PTYCHO_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER EXPECTED_SPACE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_install.cmake: -D${v}=... is required")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install_consumer: ${what} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

run_step("cmake --install" ${CMAKE_COMMAND} --install "${PTYCHO_BINARY_DIR}" --prefix "${prefix}")
message(STATUS "installed ${PTYCHO_BINARY_DIR} into ${prefix}")

# Only the install prefix is given: the consumer must find Kokkos, FFTW, MPI,
# HDF5 and libpng through the installed PtychoConfig.cmake.
set(configure ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(C_COMPILER)
  list(APPEND configure "-DCMAKE_C_COMPILER=${C_COMPILER}")
endif()
if(BUILD_TYPE)
  list(APPEND configure "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
run_step("configuring the consumer" ${configure})
string(REGEX MATCH "consumer: Ptycho [^\n]*" found "${step_output}")
message(STATUS "${found}")
run_step("building the consumer" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")

run_step("running the consumer" "${WORK_DIR}/build/frameplan_consumer")
message(STATUS "consumer said:\n${step_output}")
if(NOT step_output MATCHES "execution space: ${EXPECTED_SPACE}\n")
  message(FATAL_ERROR "install_consumer: expected the ${EXPECTED_SPACE} execution space")
endif()
# The Python module, from the installed tree only (no build tree on the path).
if(PYTHON_DIR)
  set(ENV{PYTHONPATH} "${prefix}/${PYTHON_DIR}")
  run_step("importing the installed Python module" "${PYTHON}" -c
           "import os\nimport ptycho\nprint('python module:', ptycho.__version__, os.path.dirname(ptycho.__file__))")
  message(STATUS "${step_output}")
  if(NOT step_output MATCHES "python module: [^\n]*${prefix}/${PYTHON_DIR}/ptycho")
    message(FATAL_ERROR "install_consumer: the module was not imported from ${prefix}/${PYTHON_DIR}")
  endif()
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
