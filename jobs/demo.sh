#!/usr/bin/env bash
# The demo job: simulate a small ptychography dataset, reconstruct it on 2 MPI
# ranks, and say where the result and its PNG previews are.
#
#   jobs/demo.sh [OUTPUT_DIR]        (default: demo-out/ in the repository)
#
# Installs missing Debian packages (cmake/install-deps.sh), builds the
# Release program into build/serial (shared with tests/run.sh), then runs
#   ptycho simulate     -> OUTPUT_DIR/demo.cxi and the truth demo_truth.h5
#   ptycho reconstruct  -> OUTPUT_DIR/result.h5 and OUTPUT_DIR/previews/*.png
#   ptycho evaluate     -> quality of the result against the truth
# Any failing step stops the job with a message naming the step.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/demo-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

build=build/serial
exe=$build/jobs/ptycho
ranks=2

step_name=""
step() {
  step_name=$1
  printf '\n======== demo: %s ========\n' "$step_name"
}
trap 'echo "demo: FAILED during: $step_name (exit $?)" >&2' ERR

step "dependencies"
bash cmake/install-deps.sh

step "build ($build)"
args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -UKokkos_ROOT)
debian_kokkos=$(dpkg -L libtrilinos-kokkos-dev 2>/dev/null | grep '/cmake/Kokkos/KokkosConfig.cmake$' | head -n1 || true)
if [[ -n "$debian_kokkos" ]]; then
  args+=("-DKokkos_DIR=$(dirname "$debian_kokkos")")
fi
cmake -S . -B "$build" "${args[@]}" >"$out/configure.log" 2>&1 || {
  cat "$out/configure.log" >&2
  false
}
cmake --build "$build" -j "$(nproc)" --target ptycho

# A 256 x 256 object scanned by a 64 x 64 probe on a Fermat spiral, about 9 px apart.
step "simulate"
rm -f "$out/demo.cxi" "$out/demo_truth.h5" "$out/result.h5"
rm -rf "$out/previews"
"$exe" simulate --object-size 256 --probe-size 64 --step 9 --photons 1e6 --seed 1 --scan fermat \
  -o "$out/demo.cxi" --truth "$out/demo_truth.h5"
[[ -s "$out/demo.cxi" && -s "$out/demo_truth.h5" ]] || {
  echo "demo: simulate did not write $out/demo.cxi and $out/demo_truth.h5" >&2
  false
}
"$exe" info "$out/demo.cxi"

step "reconstruct on $ranks MPI ranks"
mpirun -n "$ranks" --oversubscribe --allow-run-as-root "$exe" reconstruct "$out/demo.cxi" \
  -o "$out/result.h5" --previews "$out/previews"
for f in "$out/result.h5" "$out/previews/amplitude.png" "$out/previews/phase.png" "$out/previews/probe.png"; do
  [[ -s "$f" ]] || {
    echo "demo: reconstruct did not write $f" >&2
    false
  }
done

step "evaluate against the truth"
"$exe" evaluate "$out/result.h5" --truth "$out/demo_truth.h5"

step "done"
echo "dataset:  $out/demo.cxi (truth: $out/demo_truth.h5)"
echo "result:   $out/result.h5"
echo "previews: $out/previews/amplitude.png"
echo "          $out/previews/phase.png"
echo "          $out/previews/probe.png"
