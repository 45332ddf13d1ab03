#!/bin/bash
# PtyPy against ptycho on the same scan, one process each, FFTW in both,
# interleaved runs, fixed probe (README, "PtyPy again"). A benchmark: it
# prints numbers and checks nothing.
#
#   PTYCHO=build/serial/jobs/ptycho PTYPY=/path/to/ptypy-checkout \
#     tests/benchmarks/ptypy/compare.sh WORKDIR [ITERATIONS=20]
#
# Needs PtyPy importable from $PTYPY (a checkout; pure Python), numpy,
# scipy, h5py and pyfftw (Debian: python3-pyfftw). WORKDIR gets the scan:
# 928 frames of 128^2 (ptycho simulate), and its .ptyd for PtyPy.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=$(realpath "${PTYCHO:?set PTYCHO to the ptycho binary}")
export PYTHONPATH=${PTYPY:?set PTYPY to a PtyPy checkout} OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$1" && cd "$1"
N=${2:-20}
[ -f cmp.cxi ] || "$P" simulate -o cmp.cxi --object-size 512 --probe-size 128 --step 11 --photons 1e6 --seed 5 > /dev/null
[ -f cmp.ptyd ] || "$P" convert cmp.cxi cmp.ptyd > /dev/null
for round in 1 2; do
  for eng in DM ML; do
    /usr/bin/python3 "$here/ptypy_run.py" cmp.ptyd $eng "$N" fftw 2>&1 | grep '^ptypy'
    e=$(echo $eng | tr A-Z a-z)
    /usr/bin/time -f "ptycho $e peak RSS %M kB" "$P" reconstruct cmp.cxi -o cmp_$e.h5 --engines $e:$((N + 2)) \
      --progress-every 1 > cmp_$e.log 2> cmp_$e.time
    # The progress line's s/it is the engine's running mean: iterations 3..N+2 took s(N+2)(N+2) - 2 s(2).
    grep -o 'iter *[0-9]*/[0-9]* .* s/it' cmp_$e.log | awk -v n="$N" -v e=$e '{it=$2+0; for(i=1;i<=NF;i++) if($i=="s/it") v=$(i-1); t[it]=v*it} END{printf "ptycho %s: mean %.4f s/it over iterations 3..%d\n", e, (t[n+2]-t[2])/n, n+2}'
    tail -1 cmp_$e.time
  done
done
