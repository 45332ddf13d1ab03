#!/bin/bash
# Crash safety of checkpoints and results: a reconstruction killed with
# SIGKILL at any moment (a node failure, the OOM killer, scancel after
# KillWait) must never leave a broken file under a final name.
#   tests/slurm/test_sigkill.sh PTYCHO_BINARY
# A small simulated scan (207 frames of 64x64) is reconstructed on 2 ranks
# with a checkpoint every 2 iterations. A first run, uninterrupted, measures
# its number of checkpoints K; then each trial starts the same job afresh and
# kills all ranks (and mpirun) with SIGKILL at a random moment (below), so
# kills land during start-up, iterations, checkpoint writes and the result
# write. After each kill:
#   (a) the checkpoint, if it exists, is valid: `ptycho info CKPT` exits 0;
#   (b) the result, if it exists, is readable: `ptycho info` or h5ls succeeds;
#   (c) no other file in the output folder has a final-looking name (.h5,
#       .hdf5, .cxi, .nxs): temporary files must be named so that they cannot
#       be taken for results (other leftovers are listed, not failed).
# Environment: PTYCHO_SIGKILL_TRIALS (10), PTYCHO_SIGKILL_ENGINES
# (dm:300,ml:300), PTYCHO_TEST_SEED (random; printed, to repeat a run),
# PTYCHO_TEST_KEEP=1 keeps the work files.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 PTYCHO_BINARY" >&2; exit 2; }
PTYCHO=$(realpath "$1")
[[ -x $PTYCHO ]] || { echo "FAIL: $1 is not an executable ptycho program" >&2; exit 1; }
trials=${PTYCHO_SIGKILL_TRIALS:-10}
engines=${PTYCHO_SIGKILL_ENGINES:-dm:300,ml:300}
seed=${PTYCHO_TEST_SEED:-$(( $$ ^ $(date +%s) ))}
RANDOM=$seed
mpirun=(mpirun -n 2 --oversubscribe)
[[ $(id -u) == 0 ]] && mpirun+=(--allow-run-as-root)

work=$(mktemp -d /tmp/ptycho-test-sigkill.XXXXXX)
ok=0
trap '[[ $ok == 1 && -z ${PTYCHO_TEST_KEEP:-} ]] && rm -rf "$work" || echo "work files kept in $work" >&2' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# job file in folder $1: its own result and checkpoint there
write_job() {
  mkdir -p "$1"
  cat >"$1/job.toml" <<EOF
input = "$work/scan.cxi"
output = "$1/result.h5"
engines = "$engines"
checkpoint = "$1/checkpoint.h5"
checkpoint_every = 2
EOF
}

# All processes below pid $1 (mpirun's ranks, and anything they started).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

# Checks (a)-(c) on folder $1; prints a summary, returns 1 on a problem.
check_folder() {
  local dir=$1 bad=0 notes=() f name
  if [[ -e $dir/checkpoint.h5 ]]; then
    if "$PTYCHO" info "$dir/checkpoint.h5" >"$dir/info-checkpoint.txt" 2>&1; then notes+=("checkpoint valid")
    else notes+=("CHECKPOINT INVALID (ptycho info: $(tail -n1 "$dir/info-checkpoint.txt"))"); bad=1; fi
  else notes+=("no checkpoint"); fi
  if [[ -e $dir/result.h5 ]]; then
    if "$PTYCHO" info "$dir/result.h5" >"$dir/info-result.txt" 2>&1; then notes+=("result readable")
    elif h5ls -r "$dir/result.h5" >/dev/null 2>&1; then notes+=("result readable by h5ls (not by ptycho info)")
    else notes+=("RESULT UNREADABLE"); bad=1; fi
  else notes+=("no result"); fi
  for f in "$dir"/*; do
    name=$(basename "$f")
    case $name in
      job.toml | log | info-*.txt | checkpoint.h5 | result.h5) ;;
      *.h5 | *.hdf5 | *.cxi | *.nxs) notes+=("STRAY FILE WITH A FINAL NAME: $name"); bad=1 ;;
      *) notes+=("leftover $name") ;;
    esac
  done
  local line
  printf -v line '%s; ' "${notes[@]}"
  echo "${line%; }"
  return $bad
}

echo "test_sigkill: seed $seed (PTYCHO_TEST_SEED=$seed repeats this run), work in $work"
"$PTYCHO" simulate --object-size 216 --probe-size 64 --step 9 -o "$work/scan.cxi" >"$work/simulate.log" 2>&1 \
  || fail "ptycho simulate failed: $(tail -n1 "$work/simulate.log")"

# Calibration: one uninterrupted run, which must succeed and pass the checks.
write_job "$work/full"
t0=$(date +%s%N)
"${mpirun[@]}" "$PTYCHO" reconstruct "$work/full/job.toml" >"$work/full/log" 2>&1 \
  || fail "the uninterrupted run failed: $(tail -n3 "$work/full/log")"
wall_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q 'checkpoint written' "$work/full/log" || fail "the uninterrupted run printed no 'checkpoint written' line"
summary=$(check_folder "$work/full") || fail "the uninterrupted run left bad files: $summary"
[[ -e $work/full/result.h5 ]] || fail "the uninterrupted run wrote no result.h5"
echo "uninterrupted run: $wall_ms ms, $(grep -c 'checkpoint written' "$work/full/log") checkpoints; $summary"

# Kill moments are drawn in progress, not in wall time (other jobs on the
# machine change the speed): wait for the k-th 'checkpoint written' line, k
# uniform in [0, K], then a random part of a checkpoint interval; k = 0 kills
# during start-up. Every third trial waits for the last checkpoint and then
# for the result's first file (result.h5 or its temporary) and kills within
# 10 ms, while the result is being written.
ckpts=$(grep -c 'checkpoint written' "$work/full/log")
interval_ms=$(( wall_ms / ckpts + 1 ))
rand() { echo $(( (RANDOM * 32768 + RANDOM) % $1 )); }

# Waits until log $1 shows $2 checkpoints, or process $3 has ended.
wait_checkpoints() {
  local n limit=$((SECONDS + 120))
  while kill -0 "$3" 2>/dev/null; do
    n=$(grep -c 'checkpoint written' "$1" 2>/dev/null || true)
    (( ${n:-0} >= $2 )) && return 0
    (( SECONDS < limit )) || fail "$1: fewer than $2 checkpoints after 120 s"
    sleep 0.01
  done
}

# Waits until a file named $2* exists, or process $3 has ended.
wait_file() {
  local limit=$((SECONDS + 120))
  while kill -0 "$3" 2>/dev/null; do
    compgen -G "$2*" >/dev/null && return 0
    (( SECONDS < limit )) || fail "no $2* after 120 s"
    sleep 0.002
  done
}

failures=0 killed=0 with_ckpt=0 with_result=0
for ((i = 1; i <= trials; i++)); do
  dir=$work/trial$i
  write_job "$dir"
  at_result=0
  if (( i % 3 == 0 )); then k=$ckpts at_result=1 extra_ms=$(rand 10)
  else k=$(rand $((ckpts + 1))) extra_ms=$(rand $((2 * interval_ms)))
  fi
  (( k > 0 )) || extra_ms=$(rand 1000)
  "${mpirun[@]}" "$PTYCHO" reconstruct "$dir/job.toml" >"$dir/log" 2>&1 &
  pid=$!
  wait_checkpoints "$dir/log" "$k" "$pid"
  [[ $at_result == 0 ]] || wait_file "$dir/result.h5" "$dir/result.h5" "$pid"
  sleep "$(printf '%d.%03d' $((extra_ms / 1000)) $((extra_ms % 1000)))"
  if kill -0 "$pid" 2>/dev/null; then
    # Ranks first and mpirun with them, in one kill, so no rank outlives the others for long.
    # shellcheck disable=SC2046 # one pid per word
    kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
    what="killed"
    killed=$((killed + 1))
  else
    what="finished first"
  fi
  { wait "$pid"; } 2>/dev/null || true
  [[ -e $dir/checkpoint.h5 ]] && with_ckpt=$((with_ckpt + 1))
  [[ -e $dir/result.h5 ]] && with_result=$((with_result + 1))
  if summary=$(check_folder "$dir"); then verdict=ok; else verdict=FAIL; failures=$((failures + 1)); fi
  if [[ $at_result == 1 ]]; then when="result write"; else when="checkpoint $k/$ckpts"; fi
  printf 'trial %2d: %-16s + %3d ms: %-14s (%3d checkpoints in the log) %s: %s\n' "$i" "$when" \
    "$extra_ms" "$what" "$(grep -c 'checkpoint written' "$dir/log" || true)" "$verdict" "$summary"
done

echo "summary: $trials trials, $killed killed, $with_ckpt left a checkpoint, $with_result left a result; $failures failed"
(( failures == 0 )) || fail "$failures of $trials trials left a broken or stray file (see above; seed $seed)"
ok=1
echo "PASS"
