#!/usr/bin/env bash
# A real one-node Slurm on this machine, in a folder of its own, for tests and for trying the
# slurm/ scripts before a cluster (facts: shared/spec/SLURM.md). Needs root and the Debian
# packages slurmctld slurmd slurm-client munge libpmix-dev (launch/setup.sh installs them).
#
#   eval "$(bash launch/slurm-local.sh start [DIR])"   start; prints `export SLURM_CONF=...` and
#                                                      `export LOFTQ_SLURM_LOCAL=DIR` to eval
#   sbatch --wait ... / srun ... / squeue              use it (SLURM_CONF points at it)
#   bash launch/slurm-local.sh stop [DIR]              cancel its jobs, stop its daemons, remove DIR
#
# DIR defaults to a new /tmp/loftq-slurm.XXXXXX (start) and to $LOFTQ_SLURM_LOCAL (stop).
# The daemons (munged, slurmctld, slurmd) run in the foreground as background processes whose
# pids are kept in DIR/*.pid; stop signals exactly those pids (after checking each still runs the
# command started here) and no other process. Nothing outside DIR is written: the system's
# /etc/slurm and /run/munge are not used.
#   LOFTQ_SLURM_CPUS   CPUs of the node (default: max(2, nproc))
#   LOFTQ_SLURM_PORT   slurmctld port; slurmd uses the next one (default: a free pair >= 20000)
set -euo pipefail

die() { echo "slurm-local: $*" >&2; exit 2; }

# The pid in DIR/NAME.pid if that process still runs the command we started (its command line
# names DIR), else nothing.
live_pid() {
  local dir=$1 name=$2 pid
  [[ -f "$dir/$name.pid" ]] || return 0
  pid=$(<"$dir/$name.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/"; then
    echo "$pid"
  fi
}

# Wait up to $2 tenths of a second for command $1 to succeed.
wait_for() {
  local check=$1 tenths=$2 i
  for ((i = 0; i < tenths; i++)); do
    if eval "$check"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Stop the named daemons of DIR together (each takes ~2 s to shut down): TERM, then KILL after 10 s.
stop_daemons() {
  local dir=$1 name pid pids=()
  shift
  for name in "$@"; do
    pid=$(live_pid "$dir" "$name")
    [[ -n "$pid" ]] || continue
    pids+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    if ! wait_for "[[ ! -d /proc/$pid ]]" 100; then
      echo "slurm-local: pid $pid ignored TERM for 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

# A port P with P and P+1 free (slurmctld, slurmd), so that two of these Slurms can run at once.
free_port_pair() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 20000))
    if [[ -z "$(ss -Htan "( sport = :$p or sport = :$((p + 1)) )" 2>/dev/null)" ]]; then
      echo "$p"
      return 0
    fi
  done
  die "no free port pair found in 20000-40000"
}

start() {
  [[ $(id -u) -eq 0 ]] || die "needs root (slurmd runs jobs as their users); run with sudo"
  local cmd
  for cmd in munged slurmctld slurmd sbatch sinfo; do
    command -v "$cmd" >/dev/null || die "$cmd not found; install: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge libpmix-dev"
  done
  local dir=${1:-}
  if [[ -z "$dir" ]]; then
    dir=$(mktemp -d /tmp/loftq-slurm.XXXXXX)
  else
    mkdir -p "$dir"
  fi
  dir=$(cd "$dir" && pwd)
  [[ -z "$(live_pid "$dir" slurmctld)" ]] || die "a Slurm already runs from $dir; stop it first"
  # munged refuses a socket folder that others cannot traverse (mktemp gives 0700).
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 755 "$dir/munge"
  if [[ ! -f "$dir/munge/munge.key" ]]; then
    (umask 077 && head -c 1024 /dev/urandom >"$dir/munge/munge.key")
  fi
  local port=${LOFTQ_SLURM_PORT:-$(free_port_pair)}
  local cpus=${LOFTQ_SLURM_CPUS:-$(nproc 2>/dev/null || echo 1)}
  ((cpus >= 2)) || cpus=2
  cat >"$dir/slurm.conf" <<EOF
# One-node Slurm written by launch/slurm-local.sh
ClusterName=loftqlocal
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
MinJobAge=5
KillWait=5
JobRequeue=1
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/state/slurmctld.pidfile
SlurmdPidFile=$dir/spool/slurmd.pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  munged -F --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pidfile" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/log/munged.log" </dev/null >>"$dir/log/munged.out" 2>&1 &
  echo $! >"$dir/munged.pid"
  wait_for "[[ -S '$dir/munge/munge.socket' ]]" 100 || die "munged did not start; see $dir/log/munged.log"
  slurmctld -D -c -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  slurmd -D -N localhost -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"
  export SLURM_CONF=$dir/slurm.conf
  if ! wait_for "[[ \$(sinfo -h -N -o %T 2>/dev/null) == idle ]]" 300; then
    echo "slurm-local: the node did not become idle in 30 s; logs in $dir/log" >&2
    stop "$dir" >&2
    exit 1
  fi
  printf 'export SLURM_CONF=%q\nexport LOFTQ_SLURM_LOCAL=%q\n' "$dir/slurm.conf" "$dir"
}

stop() {
  local dir=${1:-${LOFTQ_SLURM_LOCAL:-}}
  [[ -n "$dir" ]] || die "stop: no folder given and LOFTQ_SLURM_LOCAL is unset"
  [[ -f "$dir/slurm.conf" ]] || die "stop: $dir/slurm.conf not found; is $dir a folder started by slurm-local.sh?"
  export SLURM_CONF=$dir/slurm.conf
  if [[ -n "$(live_pid "$dir" slurmctld)" ]]; then
    scancel --quiet --full --partition=debug 2>/dev/null || true
    wait_for "[[ -z \$(squeue -h -o %i 2>/dev/null) ]]" 150 || true
  fi
  # A job's slurmstepd outlives the job by about a second and slurmd must outlive it; while it
  # runs, its sockets and per-step files are in our spool folder (so no other Slurm's counts).
  wait_for "! compgen -G '$dir/spool/localhost_*' >/dev/null && ! compgen -G '$dir/spool/*pmix.*' >/dev/null" 100 || true
  stop_daemons "$dir" slurmd slurmctld
  stop_daemons "$dir" munged
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: launch/slurm-local.sh start [DIR] | stop [DIR]" ;;
esac
