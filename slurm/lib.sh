# Shared by reconstruct.sbatch and array.sbatch (sourced, not run): find the
# ptycho program, launch it as a job step, forward preemption signals to it,
# and requeue the job when ptycho stops early with a checkpoint (exit code 75).

# The exit code by which ptycho says "stopped on a signal, checkpoint written,
# run me again" (EX_TEMPFAIL).
PTYCHO_EXIT_REQUEUE=75

ptycho_log() { echo "[$(date '+%Y-%m-%d %H:%M:%S')] ptycho-slurm: $*"; }
ptycho_die() { ptycho_log "error: $*" >&2; exit 1; }

# Sets PTYCHO_BIN: $PTYCHO if set, else `ptycho` on PATH, else the build in
# the submit folder (build/jobs/ptycho, or build/serial/jobs/ptycho as made by
# the top-level README's instructions).
ptycho_find_binary() {
  local top=${SLURM_SUBMIT_DIR:-$PWD} candidate
  if [[ -n ${PTYCHO:-} ]]; then
    PTYCHO_BIN=$(command -v "$PTYCHO") || true
    [[ -n $PTYCHO_BIN && -x $PTYCHO_BIN ]] || ptycho_die "PTYCHO=$PTYCHO is not an executable program"
    return
  fi
  if PTYCHO_BIN=$(command -v ptycho); then return; fi
  for candidate in "$top/build/jobs/ptycho" "$top/build/serial/jobs/ptycho"; do
    if [[ -x $candidate ]]; then PTYCHO_BIN=$candidate; return; fi
  done
  ptycho_die "no ptycho program: set PTYCHO=/path/to/ptycho or put ptycho on PATH (also looked for $top/build/jobs/ptycho and $top/build/serial/jobs/ptycho)"
}

# The signal trap: pass the signal on to the running step. USR1 is sent for
# USR1 and TERM alike: ptycho treats both the same, srun and mpirun both pass
# USR1 on to every task untouched, while mpirun answers TERM by killing its
# ranks about a second later, too soon for a checkpoint.
_ptycho_forward() {
  _ptycho_signalled=1
  [[ $1 != USR1 ]] || _ptycho_got_usr1=1
  ptycho_log "received SIG$1, forwarding SIGUSR1 to the job step (pid $_ptycho_step)"
  kill -USR1 "$_ptycho_step" 2>/dev/null || true
}

# ptycho_run ARGS...: runs `ptycho ARGS...` on all tasks of the job and exits
# the batch script: with ptycho's exit code, or 0 after requeueing the job
# when ptycho exits 75 (it then resumes from its checkpoint on the next start).
ptycho_run() {
  local launcher=${PTYCHO_LAUNCHER:-} rc
  local -a cmd
  # srun needs a SLURM allocation; outside one (bash slurm/reconstruct.sbatch), use mpirun.
  if [[ -z $launcher ]]; then
    if [[ -n ${SLURM_JOB_ID:-} ]] && command -v srun >/dev/null; then launcher=srun; else launcher=mpirun; fi
  fi
  # Threads within a rank (a ptycho built with an OpenMP Kokkos): one
  # thread per CPU of the task (sbatch --cpus-per-task=T, default 1); ranks x
  # threads should fill the nodes. Set even for one thread: an OpenMP
  # runtime otherwise starts a thread per CPU of its mask, which under srun
  # without task binding is every CPU of the node, for every rank.
  local threads=${SLURM_CPUS_PER_TASK:-1}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
  case $launcher in
    # pmix: Debian's Open MPI has no SLURM PMI, so --mpi=pmi2 does not work here.
    # srun does not inherit --cpus-per-task from sbatch (SLURM 22.05 on): pass it.
    # Threads are not pinned here: OMP_PROC_BIND pins within the task's CPU
    # mask, and where SLURM does not bind tasks (TaskPlugin=task/none) every
    # task's mask is the whole node, so all ranks' threads would be pinned to
    # the same first cores (measured: 6x slower). --cpu-bind=cores gives each
    # task cores of its own where the task/affinity or task/cgroup plugin runs.
    srun)
      cmd=(srun --mpi="${PTYCHO_SRUN_MPI:-pmix}")
      [[ $threads -gt 1 ]] && cmd+=(--cpus-per-task="$threads" --cpu-bind=cores)
      cmd+=("$PTYCHO_BIN" "$@") ;;
    mpirun)
      # mpirun binds each rank to T cores of its own, so its threads may be pinned within them.
      if [[ $threads -gt 1 ]]; then
        export OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-cores}
      fi
      command -v mpirun >/dev/null || ptycho_die "neither srun (in a SLURM job) nor mpirun is available"
      cmd=(mpirun --oversubscribe)
      [[ $(id -u) == 0 ]] && cmd+=(--allow-run-as-root)
      [[ -n ${SLURM_NTASKS:-} ]] && cmd+=(-n "$SLURM_NTASKS")
      # -x always: mpirun's ranks on other nodes do not inherit this shell's
      # environment, and one-thread ranks need OMP_NUM_THREADS=1 there too.
      cmd+=(-x OMP_NUM_THREADS)
      [[ $threads -gt 1 ]] && cmd+=(--map-by "slot:PE=$threads" --bind-to core -x OMP_PROC_BIND -x OMP_PLACES)
      cmd+=("$PTYCHO_BIN" "$@") ;;
    *) ptycho_die "PTYCHO_LAUNCHER must be 'srun' or 'mpirun', got '$launcher'" ;;
  esac

  ptycho_log "start: job ${SLURM_JOB_ID:-(not in SLURM)}, restart count ${SLURM_RESTART_COUNT:-0}, ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NODELIST:-$(hostname)}"
  # A signal that came before the launch (the sbatch scripts trap it from their
  # first line): USR1 means "stop and come back later", so requeue at once.
  case ${ptycho_early_signal:-} in
    USR1) ptycho_log "SIGUSR1 arrived before ptycho started"; _ptycho_requeue ;;
    TERM) ptycho_log "SIGTERM arrived before ptycho started: not starting it"; exit 143 ;;
  esac
  ptycho_log "launcher $launcher: ${cmd[*]}"

  # Bash dies on USR1 by default, and SLURM sends it to this shell (--signal=B:USR1@...),
  # so the traps are what keeps the step alive long enough to write its checkpoint.
  _ptycho_got_usr1=0
  "${cmd[@]}" &
  _ptycho_step=$!
  trap '_ptycho_forward USR1' USR1
  trap '_ptycho_forward TERM' TERM
  # A signal between the launch and these traps was only noted: pass it on now.
  [[ -z ${ptycho_early_signal:-} ]] || _ptycho_forward "$ptycho_early_signal"
  # `wait` returns early (128+signal) when a trapped signal arrives; wait again
  # until the step itself has ended (bash keeps its exit status for us).
  while :; do
    _ptycho_signalled=0
    rc=0
    wait "$_ptycho_step" || rc=$?
    [[ $_ptycho_signalled == 1 ]] || break
  done
  trap - USR1 TERM
  ptycho_log "ptycho exit code $rc"
  if [[ $rc == "$PTYCHO_EXIT_REQUEUE" ]]; then
    ptycho_log "ptycho stopped early and wrote its checkpoint (exit code $rc)"
    _ptycho_requeue
  fi
  # 128 + SIGUSR1: the signal came before ptycho could catch it (at its very
  # start), so it wrote nothing new and the last checkpoint, if any, stands.
  if [[ $rc == $((128 + $(kill -l USR1))) && $_ptycho_got_usr1 == 1 ]]; then
    ptycho_log "ptycho was killed by SIGUSR1 before it could catch it; the last checkpoint, if any, stands"
    _ptycho_requeue
  fi
  exit "$rc"
}

# Puts the job back in the queue and ends the batch script with 0; the next
# start runs the same command, and ptycho resumes from its checkpoint.
_ptycho_requeue() {
  if [[ -z ${SLURM_JOB_ID:-} ]]; then
    ptycho_log "not in SLURM, so not requeued: run the same command again to resume from the checkpoint"
    exit "$PTYCHO_EXIT_REQUEUE"
  fi
  # A plain scancel or the time limit also stops ptycho with 75 (SIGTERM), and
  # SLURM would requeue even a cancelled job: requeue only a job still running.
  local state
  state=$(scontrol -o show job "$SLURM_JOB_ID" | sed -n "s/^JobId=$SLURM_JOB_ID .*JobState=\([A-Z_]*\).*/\1/p") \
    || ptycho_die "scontrol show job $SLURM_JOB_ID failed, so the job is not requeued; resubmit it to resume from the checkpoint"
  if [[ $state != RUNNING ]]; then
    ptycho_log "job $SLURM_JOB_ID is ${state:-in an unknown state} (cancelled or ended by SLURM): not requeued; resubmit it to resume from the checkpoint"
    exit "$PTYCHO_EXIT_REQUEUE"
  fi
  ptycho_log "requeueing job $SLURM_JOB_ID: its next start resumes from the checkpoint"
  scontrol requeue "$SLURM_JOB_ID" \
    || ptycho_die "scontrol requeue $SLURM_JOB_ID failed; resubmit the job to resume from its checkpoint"
  exit 0
}
