#!/usr/bin/env bash
# The result file of `ptycho reconstruct` does not depend on the rank count:
# one simulated scan (object 128, probe 32, step 6, 1e5 photons) is
# reconstructed with `--engines dm:10,ml:20 --refine-probe` at 1 and at 4
# ranks, and test_rank_count_output.py compares the two files (same datasets,
# shapes and dtypes under /entry_1/image_1 and image_2, identical positions,
# object and probe within TOLERANCE relative L2, cost histories of one length).
#
#   test_rank_count_output.sh PTYCHO_EXE MPIEXEC [TOLERANCE]   (default 1e-4)
#
# Run by ctest (tests/jobs/CMakeLists.txt). Works in a temporary directory of
# its own, removed on exit. Needs /usr/bin/python3 with h5py and numpy
# (cmake/install-deps.sh installs them).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 PTYCHO_EXE MPIEXEC [TOLERANCE]" >&2
  exit 2
fi
ptycho=$(realpath "$1")  # absolute: the script works in a temporary directory
mpiexec=$2
tolerance=${3:-1e-4}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=/usr/bin/python3

if ! "$python" -c 'import h5py, numpy' 2>/dev/null; then
  echo "test_rank_count_output: $python cannot import h5py and numpy (run cmake/install-deps.sh)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ptycho_rank_count_output.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "== simulate (in $work)"
"$ptycho" simulate -o scan.cxi --object-size 128 --probe-size 32 --step 6 --photons 1e5

chain=(--engines dm:10,ml:20 --refine-probe --progress-every 10)
echo "== reconstruct at 1 rank"
"$mpiexec" -n 1 --allow-run-as-root "$ptycho" reconstruct scan.cxi -o result_np1.h5 "${chain[@]}"
echo "== reconstruct at 4 ranks"
"$mpiexec" -n 4 --oversubscribe --allow-run-as-root "$ptycho" reconstruct scan.cxi -o result_np4.h5 "${chain[@]}"

echo "== compare (tolerance $tolerance)"
"$python" "$here/test_rank_count_output.py" result_np1.h5 result_np4.h5 --tolerance "$tolerance"
