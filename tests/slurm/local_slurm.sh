#!/bin/bash
# A private, real SLURM on localhost for testing slurm/ scripts:
#   tests/slurm/local_slurm.sh start|stop|status BASE
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files)
# lives under BASE, so several instances can coexist and nothing in /etc is
# touched. Follows ../shared/docs/ENVIRONMENT.md, "A real SLURM on localhost".
# `start` prints `export SLURM_CONF=...` on stdout (everything else goes to
# stderr), so `eval "$(tests/slurm/local_slurm.sh start BASE)"` sets it up.
# start and stop are idempotent; stop kills by pid file only, never by name.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status BASE" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
mkdir -p "$2"
BASE=$(cd "$2" && pwd)
CONF=$BASE/slurm.conf
export SLURM_CONF=$CONF

say() { echo "local_slurm: $*" >&2; }
die() { say "error: $*"; exit 1; }

# pid of a daemon from its pid file, if that process is alive and is ours
# (its command line names BASE), so a recycled pid is never touched.
live_pid() {
  local file=$BASE/$1.pid pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$BASE" || return 1
  echo "$pid"
}

port_free() { [[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

write_conf() {
  # Two free TCP ports (slurmctld, slurmd): another local SLURM may hold 6817/6818.
  local port=6817
  while ! { port_free $port && port_free $((port + 1)); }; do
    port=$((port + 2))
    (( port < 7817 )) || die "no free pair of TCP ports in 6817-7817"
  done
  # The node's hardware as slurmd sees it; memory kept below the real amount.
  # CPUs too: slurmctld refuses a node whose CPUs= disagrees with what slurmd
  # finds, and `nproc` would not do (it honours OMP_NUM_THREADS and
  # OMP_THREAD_LIMIT, which a test environment may set to 1).
  local node hw mem cpus
  node=$(slurmd -C | head -n1)
  hw=$(grep -o 'Boards=.*ThreadsPerCore=[0-9]*' <<<"$node") \
    || die "slurmd -C did not report the node's hardware"
  mem=$(( $(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node") * 9 / 10 ))
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  [[ $cpus =~ ^[1-9][0-9]*$ ]] || cpus=$(getconf _NPROCESSORS_ONLN)
  cat >"$CONF" <<EOF
ClusterName=ptycho-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job may start again only after this many seconds
# (default 120).
AuthInfo=socket=$BASE/munge.sock,cred_expire=10
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/slurmctld.log
SlurmdLogFile=$BASE/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
# Short waits so that a requeued job starts again within seconds.
KillWait=5
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus $hw RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  if ! command -v slurmctld >/dev/null; then
    say "installing slurm-wlm and munge"
    apt-get install -y slurm-wlm munge >/dev/null \
      || { apt-get update >/dev/null && apt-get install -y slurm-wlm munge >/dev/null; } \
      || die "apt-get install slurm-wlm munge failed"
  fi
  mkdir -p "$BASE/state" "$BASE/spool"
  chmod 755 "$BASE"   # munged wants its socket's folder readable by all

  if ! live_pid munged >/dev/null; then
    [[ -s $BASE/munge.key ]] || mungekey --create --keyfile="$BASE/munge.key" \
      || die "mungekey could not create $BASE/munge.key"
    munged --key-file="$BASE/munge.key" --socket="$BASE/munge.sock" \
      --pid-file="$BASE/munged.pid" --log-file="$BASE/munged.log" \
      --seed-file="$BASE/munged.seed" \
      || die "munged did not start (see $BASE/munged.log)"
  fi
  [[ -s $CONF ]] || write_conf
  if ! live_pid slurmctld >/dev/null; then
    slurmctld -f "$CONF" || die "slurmctld did not start (see $BASE/slurmctld.log)"
  fi
  if ! live_pid slurmd >/dev/null; then
    slurmd -f "$CONF" -N localhost || die "slurmd did not start (see $BASE/slurmd.log)"
  fi

  # The node registers within a second or two; a down node is resumed once.
  local state="" t
  for ((t = 0; t < 60; t++)); do
    state=$(sinfo -h -N -n localhost -o %t 2>/dev/null || true)
    [[ $state == idle || $state == mix || $state == alloc ]] && break
    if [[ $state == down* || $state == drain* ]]; then
      scontrol update NodeName=localhost State=RESUME 2>/dev/null || true
    fi
    sleep 0.5
  done
  [[ $state == idle || $state == mix || $state == alloc ]] || \
    die "node not idle after 30 s (sinfo state '${state:-none}'); see $BASE/slurmctld.log and $BASE/slurmd.log"
  say "SLURM is up under $BASE"
  echo "export SLURM_CONF=$CONF"
}

stop() {
  local name pid t
  # Jobs first, so no slurmstepd outlives slurmd (the cluster is private to BASE).
  if live_pid slurmctld >/dev/null; then
    # shellcheck disable=SC2046 # one job id per word
    scancel --full --signal=KILL $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
  fi
  for name in slurmd slurmctld munged; do
    pid=$(live_pid $name) || { rm -f "$BASE/$name.pid"; continue; }
    kill "$pid" 2>/dev/null || true
    for ((t = 0; t < 50; t++)); do [[ -e /proc/$pid ]] || break; sleep 0.2; done
    if [[ -e /proc/$pid ]]; then
      say "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$BASE/$name.pid"
    say "stopped $name (pid $pid)"
  done
}

status() {
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid $name); then say "$name running (pid $pid)"; else say "$name not running"; rc=1; fi
  done
  [[ $rc == 0 ]] && sinfo >&2
  return $rc
}

case $action in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
