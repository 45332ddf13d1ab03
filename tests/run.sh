#!/usr/bin/env bash
# The test command. Builds ptycho twice and runs the ctest suite on each:
#   serial:      Release with Debian's Kokkos (Serial backend only), the whole
#                suite: SLURM tests, learned engines, Python module, benchmarks
#                built                                           -> build/serial
#   openmp-asan: an OpenMP Kokkos, built once per machine by
#                cmake/build-kokkos-openmp.sh from Debian's trilinos source
#                (seconds to a minute, then reused), with AddressSanitizer and
#                UndefinedBehaviorSanitizer (-O1 -g1); no libtorch, benchmarks,
#                SLURM tests or Python module; the suite without the tests
#                labelled `cli` (end-to-end scripts with one thread per rank:
#                serial's code) and without the rank counts between one
#                and a suite's largest (label `intermediate_ranks`), with
#                the fuzz targets (tests/fuzz) each fuzzed for 60 s
#                                                                -> build/openmp-asan
# (Until session 18 these were three builds: a plain OpenMP one and a
# sanitizer one on the Serial Kokkos besides serial; one instrumented OpenMP
# build covers both and saves about 13 minutes of CI.)
# Missing Debian packages are installed first (cmake/install-deps.sh: needs
# root or sudo, and does nothing when all are present). Exits non-zero if
# any build or suite fails; the last line is a one-line summary.
#
# Environment (all optional):
#   PTYCHO_BUILD_ROOT    where the build folders go (default: build)
#   PTYCHO_JOBS          parallel build and test jobs (default: nproc)
#   PTYCHO_SHARED_DIR    the shared/ folder (default: ../shared when present)
#   PTYCHO_KOKKOS_OPENMP prefix of the OpenMP Kokkos (default: /opt/ptycho/kokkos-openmp)
#   PTYCHO_ONLY          serial or openmp-asan (openmp, asan: the same): build and test that one only
#   PTYCHO_SANITIZE_TESTS 1 (default): the OpenMP build is instrumented; 0: plain
#                        Release instead, in build/openmp (stage "openmp")
#   PTYCHO_SLURM_TESTS   1 (default): the serial build also runs the SLURM tests
#                        (tests/slurm: a real SLURM on localhost, preemption and
#                        requeue, SIGKILL trials; installs slurm-wlm and munge); 0: skip
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_root=${PTYCHO_BUILD_ROOT:-build}
jobs=${PTYCHO_JOBS:-$(nproc)}
only=${PTYCHO_ONLY:-}
start=$SECONDS

section() { printf '\n======== %s ========\n' "$*"; }

# Plain logs (no colour codes from GoogleTest).
export GTEST_COLOR=no

# mpirun as root (CI containers) needs these; tests that call mpirun inherit them.
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Open MPI's start-up, for the suite's hundreds of processes (one machine, no
# MPI_Comm_spawn): the ob1 messaging layer instead of probing UCX's
# transports, and a process started without mpirun does not fork an orted.
# MPI_Init 0.43 s -> 0.06 s without mpirun, `mpirun -n 2` 0.43 s -> 0.22 s;
# test_jobs_bad_inputs 57 s -> 24 s, test_io_scan_formats 76 s -> 34 s.
# Either can be overridden from outside.
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1}
export OMPI_MCA_ess_singleton_isolated=${OMPI_MCA_ess_singleton_isolated:-1}

section "dependencies (cmake/install-deps.sh)"
bash cmake/install-deps.sh

common_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${PTYCHO_SHARED_DIR:-}" ]]; then
  common_args+=("-DPTYCHO_SHARED_DIR=$(realpath "$PTYCHO_SHARED_DIR")")
elif [[ -d ../shared ]]; then
  common_args+=("-DPTYCHO_SHARED_DIR=$(realpath ../shared)")
else
  echo "run.sh: no ../shared folder and no PTYCHO_SHARED_DIR; tests that need shared data may fail" >&2
fi

declare -A result=()
failed=0
ctest_env=()   # VAR=value for ctest and the tests only (the asan build's)
ctest_args=()  # more ctest arguments (the openmp build's label filter)

# build_and_test NAME DEVICES_REGEX CMAKE_ARGS...: configure, build and run
# ctest in $build_root/NAME; DEVICES_REGEX must match the Kokkos devices the
# configure step reports. Records result[NAME]; returns non-zero on failure.
build_and_test() {
  local name=$1 devices_re=$2
  shift 2
  local dir=$build_root/$name t0=$SECONDS
  mkdir -p "$dir"

  section "$name: configure ($dir)"
  if ! cmake -S . -B "$dir" "${common_args[@]}" "$@" 2>&1 | tee "$dir/run-configure.log"; then
    result[$name]="FAIL (configure)"
    return 1
  fi
  local devices
  devices=$(sed -n 's/^-- ptycho: Kokkos .* devices: //p' "$dir/run-configure.log" | tail -n1)
  if [[ ! "$devices" =~ $devices_re ]]; then
    echo "run.sh: $name build uses Kokkos devices '$devices', expected /$devices_re/" >&2
    result[$name]="FAIL (wrong Kokkos: devices '$devices')"
    return 1
  fi
  echo "run.sh: $name build uses Kokkos devices: $devices"

  section "$name: build"
  if ! cmake --build "$dir" -j "$jobs"; then
    result[$name]="FAIL (build)"
    return 1
  fi

  section "$name: ctest"
  local status=0
  env "${ctest_env[@]}" ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 --no-tests=error \
    "${ctest_args[@]}" 2>&1 |
    tee "$dir/run-ctest.log" || status=$?
  # ctest's "NN% tests passed, F tests failed out of T" as "P/T tests passed".
  local counts
  counts=$(sed -nE 's/^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$dir/run-ctest.log" |
    tail -n1 | awk '{ print $2 - $1 "/" $2 " tests passed" }')
  if ((status != 0)); then
    result[$name]="FAIL (${counts:-ctest failed}, $((SECONDS - t0)) s)"
    return 1
  fi
  result[$name]="PASS (${counts}, $((SECONDS - t0)) s)"
}

debian_kokkos=$(dpkg -L libtrilinos-kokkos-dev 2>/dev/null | grep '/cmake/Kokkos/KokkosConfig.cmake$' | head -n1 || true)

if [[ -z "$only" || "$only" == serial ]]; then
  # Debian's Kokkos, named explicitly so a cache from another Kokkos cannot linger.
  serial_args=(-UKokkos_ROOT -DPTYCHO_REQUIRE_KOKKOS_DEVICE=SERIAL)
  # The SLURM tests need only one build: the serial one.
  if [[ "${PTYCHO_SLURM_TESTS:-1}" != 0 ]]; then
    serial_args+=(-DPTYCHO_SLURM_TESTS=ON)
  else
    serial_args+=(-DPTYCHO_SLURM_TESTS=OFF)
  fi
  [[ -n "$debian_kokkos" ]] && serial_args+=("-DKokkos_DIR=$(dirname "$debian_kokkos")")
  build_and_test serial '^SERIAL$' "${serial_args[@]}" || failed=1
fi

# The second build: OpenMP Kokkos, instrumented. One build does both jobs
# that used to take two (a Release OpenMP build and a sanitizer build on
# Debian's Serial Kokkos): the GoogleTest suites run with two threads at one
# rank, so kernel races and the threaded code paths meet AddressSanitizer and
# UndefinedBehaviorSanitizer, and the Serial code is what the serial stage
# tests at -O2. PTYCHO_SANITIZE_TESTS=0 builds it as plain Release instead.
if [[ -z "$only" || "$only" == openmp-asan || "$only" == openmp || "$only" == asan ]]; then
  sanitize=1
  [[ "${PTYCHO_SANITIZE_TESTS:-1}" == 0 ]] && sanitize=0
  stage=openmp-asan
  ((sanitize)) || stage=openmp
  section "$stage: Kokkos with OpenMP (cmake/build-kokkos-openmp.sh, once per machine)"
  if kokkos_prefix=$(bash cmake/build-kokkos-openmp.sh ${PTYCHO_KOKKOS_OPENMP:+"$PTYCHO_KOKKOS_OPENMP"} | tail -n1) &&
    [[ -d "$kokkos_prefix" ]]; then
    echo "run.sh: OpenMP Kokkos at $kokkos_prefix"
    export KOKKOS_DISABLE_WARNINGS=1 OMP_PROC_BIND=spread OMP_PLACES=threads
    # Without the learned plugin (libtorch is not instrumented, and its OpenMP
    # runtime beside Kokkos's is not something we test here): this build
    # checks that everything else builds and that asking for a network says
    # what is missing. No benchmarks, SLURM tests or Python module (python3
    # is not instrumented): the serial stage has them. Without the tests
    # labelled `cli` either: scripts that drive the program end to end with
    # one thread per rank, the serial stage's code again; the bad-input
    # script (label `input`) does run here, under the sanitizers. A suite
    # registered at several rank counts runs here at one rank (two threads)
    # and at its largest count only: the counts between (label
    # `intermediate_ranks`, 2 and 3 ranks, about 2 of this stage's 13
    # minutes) run in the serial stage.
    omp_args=(-UKokkos_DIR "-DKokkos_ROOT=$kokkos_prefix" -DPTYCHO_REQUIRE_KOKKOS_DEVICE=OPENMP
      -DPTYCHO_TORCH=OFF -DPTYCHO_BUILD_BENCHMARKS=OFF -DPTYCHO_SLURM_TESTS=OFF -DPTYCHO_BUILD_PYTHON=OFF)
    if ((sanitize)); then
      # -O1 (ASan's recommendation) and line tables only: half the compile time of -O2 -g.
      omp_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
        -DPTYCHO_SANITIZE=address,undefined)
      # Every process of the suite (mpirun forwards the environment to its ranks)
      # stops at the first report; leaks in Open MPI and its libraries (never in
      # ptycho) are suppressed by tests/sanitizers/lsan.supp. The tests run with
      # dlclose a no-op (tests/sanitizers/no_dlclose.c), so that the leaks of Open
      # MPI's unloaded plugins have a module name to suppress; it comes before
      # the ASan runtime, hence verify_asan_link_order=0.
      export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_init_order=1:verify_asan_link_order=0"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
      export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
      ctest_env=("LD_PRELOAD=$(realpath -m "$build_root/$stage/tests/sanitizers/libptycho_no_dlclose.so")")
    else
      omp_args+=(-DPTYCHO_SANITIZE=)
    fi
    ctest_args=(-LE '^(cli|intermediate_ranks)$')
    build_and_test "$stage" '(^|;)OPENMP(;|$)' "${omp_args[@]}" || failed=1
    ctest_args=()
    ctest_env=()
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
  else
    result[$stage]="FAIL (building the OpenMP Kokkos)"
    failed=1
  fi
fi

section "summary"
summary=""
for name in serial openmp-asan openmp; do
  [[ -n "${result[$name]:-}" ]] && summary+="${summary:+; }$name: ${result[$name]}"
done
verdict=PASS
((failed == 0)) || verdict=FAIL
echo "tests/run.sh: $verdict in $((SECONDS - start)) s -- $summary"
exit "$failed"
