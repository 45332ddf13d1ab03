#!/bin/bash
# Acceptance test for slurm/reconstruct.sbatch on a real local SLURM:
#   tests/slurm/test_preempt.sh PTYCHO_BINARY
# A: a reconstruction of standard_s01 (dm:60,ml:120, checkpoint every 10
# iterations) runs uninterrupted under sbatch -n 2.
# B: the same job is sent SIGUSR1 once its first checkpoint is written (as
# SLURM does before a time limit or a preemption); ptycho must stop with a
# checkpoint (exit 75), the script requeue the job, and the second start
# resume from the checkpoint and finish.
# Both results are scored with ptybench.py; they must agree within 0.002.
# Work files are kept (and named) on failure, or always with PTYCHO_TEST_KEEP=1.
# PTYCHO_TEST_TIMEOUT (seconds, default 600) bounds the whole test;
# PTYCHO_SHARED_DIR overrides ../shared; PTYCHO_LAUNCHER=mpirun tests the
# mpirun fallback of slurm/lib.sh.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 PTYCHO_BINARY" >&2; exit 2; }
PTYCHO=$(realpath "$1")
[[ -x $PTYCHO ]] || { echo "FAIL: $1 is not an executable ptycho program" >&2; exit 1; }
export PTYCHO    # read by slurm/lib.sh inside the jobs (sbatch passes the environment on)
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=$(realpath "${PTYCHO_SHARED_DIR:-$repo/../shared}")
data=$shared/bench/data/standard_s01.cxi
[[ -r $data ]] || { echo "FAIL: no benchmark scan $data" >&2; exit 1; }
deadline=$((SECONDS + ${PTYCHO_TEST_TIMEOUT:-600}))

work=$(mktemp -d /tmp/ptycho-test-preempt.XXXXXX)
chmod 755 "$work"   # munged refuses a socket in a folder others cannot enter
ok=0
cleanup() {
  "$repo/tests/slurm/local_slurm.sh" stop "$work/slurm" 2>/dev/null || true
  if [[ $ok == 1 && -z ${PTYCHO_TEST_KEEP:-} ]]; then rm -rf "$work"; else echo "work files kept in $work" >&2; fi
}
trap cleanup EXIT

log() { echo "[$(date +%T)] $*"; }
fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$work"/*.log; do [[ -e $f ]] && { echo "--- $f (last 20 lines)" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
check_time() { (( SECONDS < deadline )) || fail "$1: timed out (test limit ${PTYCHO_TEST_TIMEOUT:-600} s)"; }

job_state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true; }

# Waits until job $1 has ended; fails unless it COMPLETED. Requeued jobs pass
# through REQUEUED and PENDING, which are not an end. (Accounting is off, so
# sacct has nothing; scontrol keeps ended jobs for MinJobAge.)
wait_completed() {
  local state
  while :; do
    state=$(job_state "$1")
    case $state in
      COMPLETED) return 0 ;;
      FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        fail "$2: job $1 ended $state" ;;
    esac
    check_time "$2: waiting for job $1 to finish (state ${state:-unknown})"
    sleep 1
  done
}

# job file NAME: its own output and checkpoint under $work/NAME/
write_job() {
  mkdir -p "$work/$1"
  cat >"$work/$1.toml" <<EOF
input = "$data"
output = "$work/$1/result.h5"
engines = "dm:60,ml:120"
checkpoint = "$work/$1/checkpoint.h5"
checkpoint_every = 10
EOF
}

score() {
  /usr/bin/python3 "$shared/bench/ptybench.py" score "$data" "$1" | awk '$1 == "score_standard" { print $2 }'
}

log "starting a local SLURM under $work/slurm"
slurm_env=$("$repo/tests/slurm/local_slurm.sh" start "$work/slurm") || fail "the local SLURM did not start"
eval "$slurm_env"

# A: uninterrupted.
write_job A
A=$(sbatch --parsable -n 2 -o "$work/A.log" "$repo/slurm/reconstruct.sbatch" "$work/A.toml") \
  || fail "sbatch of job A failed"
log "A: job $A submitted"
wait_completed "$A" "A (uninterrupted run)"
[[ -s $work/A/result.h5 ]] || fail "A: job completed but wrote no $work/A/result.h5"
log "A: completed"

# B: signalled after its first checkpoint, requeued, resumed.
write_job B
# --iteration-delay (a testing aid: 50 ms after each iteration) keeps B running
# for about 9 s, so the signal lands mid-run however fast the machine is.
B=$(sbatch --parsable -n 2 -o "$work/B.log" "$repo/slurm/reconstruct.sbatch" "$work/B.toml" --iteration-delay 0.05) \
  || fail "sbatch of job B failed"
log "B: job $B submitted; waiting for its first checkpoint"
until grep -q 'checkpoint written' "$work/B.log" 2>/dev/null; do
  [[ $(job_state "$B") == COMPLETED ]] && fail "B: job $B finished without printing 'checkpoint written'"
  check_time "B: waiting for 'checkpoint written' in $work/B.log"
  sleep 0.5
done
log "B: checkpoint written; sending SIGUSR1 (scancel --signal=USR1 --full $B)"
# scancel's exit status is not reliable here (it can be non-zero when a step is
# just ending although the signal went out): the log checks below decide.
scancel --signal=USR1 --full "$B" || log "B: scancel returned $? (carrying on; the log decides)"
wait_completed "$B" "B (preempted run)"
grep -q 'ptycho exit code 75' "$work/B.log" || fail "B: ptycho did not exit with code 75 on SIGUSR1 (was the signal too late?)"
grep -q 'requeueing job' "$work/B.log" || fail "B: the batch script did not requeue the job"
grep -q 'restart count 1' "$work/B.log" || fail "B: the job did not start a second time after the requeue"
grep -q 'resuming from' "$work/B.log" || fail "B: the second start did not print 'resuming from' (checkpoint not used)"
[[ -s $work/B/result.h5 ]] || fail "B: job completed but wrote no $work/B/result.h5"
log "B: stopped with a checkpoint, requeued, resumed and completed ($(grep -m1 -o 'launcher [a-z]*' "$work/B.log"))"

score_a=$(score "$work/A/result.h5") || true
[[ -n $score_a ]] || fail "ptybench.py could not score A's result"
score_b=$(score "$work/B/result.h5") || true
[[ -n $score_b ]] || fail "ptybench.py could not score B's result"
echo "score_standard A (uninterrupted): $score_a"
echo "score_standard B (preempted, resumed): $score_b"
awk -v a="$score_a" -v b="$score_b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.002) }' \
  || fail "|A - B| = |$score_a - $score_b| > 0.002: the resumed run does not match the uninterrupted one"
ok=1
echo "PASS: |A - B| <= 0.002"
