#!/usr/bin/env bash
# SLURM end-to-end test: run the demo frame set through a one-node SLURM cluster set up on this
# machine (snakemake --executor slurm --profile profiles/slurm) and locally, and check that both
# give identical normalized frames.
#
# Usage, as root (it installs packages and starts daemons), from anywhere:
#   tests/slurm/run_slurm_test.sh
# It tests the tree it lives in (PYTHONPATH=<tree>/src) with the venv <tree>/.venv.
#
# What it does:
#   1. installs Debian's slurm-wlm and munge if missing (apt-get), and the SLURM executor plugin
#      into the venv if missing (pinned, as profiles/slurm/config.yaml says);
#   2. writes a one-node slurm.conf under $NSGFLOW_SLURM_DIR (node `hostname -s` at 127.0.0.1,
#      CPUs and RealMemory of this machine, select/cons_tres CR_Core_Memory, proctrack/linuxproc,
#      task/none, no accounting) and starts its own munged, slurmctld and slurmd. SLURM_CONF points
#      the Slurm commands at this file; the srun inside each job ignores it (see below), so for the
#      test /etc/slurm/slurm.conf is a link to it, made only if no such file exists, removed on exit;
#   3. renders the demo frames (nsgflow.synthetic), runs the workflow locally and through SLURM,
#      checks that every job of the SLURM run went through sbatch and compares the normalized
#      FITS data (must be identical);
#   4. stops the daemons it started (trap on exit, also on failure or Ctrl-C).
# Running it again starts from scratch: stale daemons of an earlier, killed run (pid files in
# $NSGFLOW_SLURM_DIR) are stopped, data and results are made anew.
#
# Settings (environment):
#   NSGFLOW_SLURM_DIR      work folder (default /tmp/nsgflow-slurm)
#   NSGFLOW_VENV           Python environment (default <tree>/.venv)
#   NSGFLOW_SLURM_FRAMES   demo frames (default 6)
#   NSGFLOW_SLURM_TIMEOUT  seconds allowed for each workflow run (default 900)
#   NSGFLOW_SLURM_PORTS    slurmctld,slurmd ports (default 6817,6818)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${NSGFLOW_SLURM_DIR:-/tmp/nsgflow-slurm}
VENV=${NSGFLOW_VENV:-$REPO/.venv}
FRAMES=${NSGFLOW_SLURM_FRAMES:-6}
RUN_TIMEOUT=${NSGFLOW_SLURM_TIMEOUT:-900}
IFS=, read -r CTLD_PORT SLURMD_PORT <<<"${NSGFLOW_SLURM_PORTS:-6817,6818}"
PLUGIN_PIN="snakemake-executor-plugin-slurm==2.8.0"
PY=$VENV/bin/python
NODE=$(hostname -s)
START=$SECONDS

say() { printf '[slurm-test %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
    say "FAILED: $*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root: it installs packages and starts munged, slurmctld and slurmd"
[[ -x $PY ]] || die "no Python at $PY; make the venv first (make test) or set NSGFLOW_VENV"
command -v timeout >/dev/null || die "needs coreutils' timeout"

# --- 1. software --------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
    ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
if ! "$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    say "installing $PLUGIN_PIN into $VENV"
    timeout 600 "$VENV/bin/pip" install --quiet "$PLUGIN_PIN"
fi
plugin_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')
say "$(slurmctld -V), $(munged --version 2>&1 | awk '{print $1}'), snakemake $("$PY" -m snakemake --version)," \
    "snakemake-executor-plugin-slurm $plugin_version"

# --- 2. one-node cluster ------------------------------------------------------------------
mkdir -p "$WORK"/{etc,munge,state,spool,log,pids,run}
chmod 700 "$WORK/munge"
export SLURM_CONF=$WORK/etc/slurm.conf

STARTED=()
ETC_CONF=/etc/slurm/slurm.conf
LINKED_ETC=0
stop_pid() { # stop one process we started (by pid), politely first
    local pid=$1 name=$2
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    say "$name ($pid) ignored SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if ((${#STARTED[@]})); then
        timeout 20 scancel --user="$(id -un)" 2>/dev/null
        for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
            read -r name pid <<<"${STARTED[i]}"
            stop_pid "$pid" "$name"
            rm -f "$WORK/pids/$name.pid"
        done
        say "stopped ${#STARTED[@]} daemons"
    fi
    if ((LINKED_ETC)) && [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$SLURM_CONF" ]]; then
        rm -f "$ETC_CONF"
    fi
    if ((status == 0)); then
        say "PASSED in $((SECONDS - START)) s"
    else
        say "FAILED (status $status) after $((SECONDS - START)) s; logs in $WORK/log and $WORK/run"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# daemons left over by an earlier run that was killed: ours if the pid file says so and the
# process is still that daemon
for file in "$WORK"/pids/*.pid; do
    [[ -e $file ]] || continue
    name=$(basename "$file" .pid)
    pid=$(cat "$file")
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name.*$WORK"; then
        say "stopping $name ($pid) left by an earlier run"
        stop_pid "$pid" "$name"
    fi
    rm -f "$file"
done

start_daemon() { # name, command...: start in the foreground mode of the daemon, in the background
    local name=$1
    shift
    "$@" >"$WORK/log/$name.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$WORK/pids/$name.pid"
    STARTED+=("$name $pid")
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || {
        tail -n 20 "$WORK/log/$name.out" "$WORK/log/$name.log" 2>/dev/null >&2
        die "$name did not start (see $WORK/log/$name.*)"
    }
}

# munge: its own key and socket, so a system munged (if any) is left alone
if [[ ! -s $WORK/munge/munge.key ]]; then
    dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$WORK/munge/munge.key"
rm -f "$WORK/munge/munge.socket.2"*
start_daemon munged munged --foreground --force --key-file="$WORK/munge/munge.key" \
    --socket="$WORK/munge/munge.socket.2" --pid-file="$WORK/munge/munged.pid" \
    --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/munged.seed"
for _ in $(seq 50); do [[ -S $WORK/munge/munge.socket.2 ]] && break; sleep 0.2; done
timeout 10 munge --socket="$WORK/munge/munge.socket.2" -n </dev/null |
    timeout 10 unmunge --socket="$WORK/munge/munge.socket.2" >/dev/null || die "munge does not work"

# this machine's CPUs and memory, as slurmd sees them
hw=$(slurmd -C | head -n 1)
field() { grep -o "$1=[0-9]*" <<<"$hw" | cut -d= -f2; }
CPUS=$(field CPUs)
CPUS=${CPUS:-$(nproc)}
MEM=$(field RealMemory)
MEM=${MEM:-$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))}
TOPOLOGY=""
for key in Boards SocketsPerBoard CoresPerSocket ThreadsPerCore; do
    value=$(field "$key")
    if [[ -n $value ]]; then TOPOLOGY+=" $key=$value"; fi
done

cat >"$SLURM_CONF" <<EOF
# written by tests/slurm/run_slurm_test.sh: a one-node test cluster, no accounting
ClusterName=nsgflowtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$WORK/munge/munge.socket.2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/state/slurmctld.pid
SlurmdPidFile=$WORK/spool/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue must still list a finished job when Snakemake next asks (checks at most 180 s apart)
MinJobAge=600
ReturnToService=2
SlurmdTimeout=300
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS$TOPOLOGY RealMemory=$MEM State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
say "slurm.conf: node $NODE, $CPUS CPUs, $MEM MB ($SLURM_CONF)"

# Inside each job the plugin runs the rule with srun, and snakemake-executor-plugin-slurm-jobstep
# (0.6.1) removes SLURM_CONF from srun's environment, so srun reads the default
# /etc/slurm/slurm.conf: link ours there for the duration of the test, never over an existing one.
if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$SLURM_CONF" ]]; then
    LINKED_ETC=1 # left by an earlier run
elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    die "$ETC_CONF exists: this machine has a Slurm configuration of its own; not touching it"
else
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$SLURM_CONF" "$ETC_CONF"
    LINKED_ETC=1
fi

start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
for _ in $(seq 60); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
# jobs run under slurmd: niced, as this machine is shared
start_daemon slurmd nice -n 10 slurmd -D -f "$SLURM_CONF" -N "$NODE"
state=""
for _ in $(seq 60); do
    state=$(timeout 5 sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 1
done
if [[ $state != idle ]]; then
    timeout 5 scontrol show node "$NODE" >&2 || true
    tail -n 20 "$WORK/log/slurmctld.log" "$WORK/log/slurmd.log" >&2 || true
    die "node $NODE is '$state', not idle, after 60 s"
fi
say "cluster up: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"

# --- 3. the demo set, locally and through SLURM ----------------------------------------------
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
export NSGFLOW_WORKFLOW=$REPO
RUN=$WORK/run
DATA=$RUN/data
rm -rf "$RUN"
mkdir -p "$RUN"/{local,slurm}
timeout 300 "$PY" - "$DATA" "$FRAMES" <<'EOF'
import sys

from nsgflow import synthetic

synthetic.make_frame_set(
    sys.argv[1], synthetic.SceneSpec(seed=0), synthetic.demo_specs(int(sys.argv[2]), 0), reference="frame_01"
)
EOF
say "$FRAMES demo frames in $DATA"

workflow() { # folder, snakemake options...: run the workflow with results in <folder>/results
    local folder=$1
    shift
    (cd "$folder" && timeout "$RUN_TIMEOUT" nice -n 10 "$VENV/bin/snakemake" --snakefile "$REPO/Snakefile" \
        "$@" --config "frames=$DATA/*.fits" "reference=$DATA/frame_01.fits" "results=$folder/results") \
        >"$folder/snakemake.log" 2>&1 || {
        tail -n 40 "$folder/snakemake.log" >&2
        die "workflow run in $folder failed or timed out (log: $folder/snakemake.log)"
    }
}

t0=$SECONDS
workflow "$RUN/local" --cores 1
LOCAL_S=$((SECONDS - t0))
say "local run: ${LOCAL_S} s"

t0=$SECONDS
# status checks every 5 s (the plugin's default is 40 s): the demo's jobs take seconds
workflow "$RUN/slurm" --executor slurm --profile "$REPO/profiles/slurm" --slurm-init-seconds-before-status-checks 5
SLURM_S=$((SECONDS - t0))
# every job that is not a local rule ("localrule ..." in the log) must have gone through sbatch
submitted=$(grep -c "has been submitted with SLURM jobid" "$RUN/slurm/snakemake.log" || true)
remote=$(grep -c "^rule " "$RUN/slurm/snakemake.log" || true)
((remote >= FRAMES)) || die "only $remote non-local jobs ran for $FRAMES frames"
[[ $submitted -eq $remote ]] || die "$submitted of $remote non-local jobs went through sbatch"
say "SLURM run: ${SLURM_S} s, all $submitted non-local jobs submitted with sbatch" \
    "($(grep "^localrule " "$RUN/slurm/snakemake.log" | sort -u | awk '{sub(/:$/, "", $2); printf "%s ", $2}')ran locally)"

timeout 300 "$PY" - "$RUN/local/results/normalized" "$RUN/slurm/results/normalized" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

local, slurm = Path(sys.argv[1]), Path(sys.argv[2])
names = sorted(p.name for p in local.glob("*_nsg.fits"))
if not names or names != sorted(p.name for p in slurm.glob("*_nsg.fits")):
    sys.exit(f"different normalized frames: {names} locally, {sorted(p.name for p in slurm.glob('*'))} on SLURM")
differ, same_bytes = [], 0
for name in names:
    a, b = fits.getdata(local / name), fits.getdata(slurm / name)
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
        differ.append(name)
    same_bytes += (local / name).read_bytes() == (slurm / name).read_bytes()
if differ:
    sys.exit(f"normalized data differ between the local and the SLURM run: {differ}")
print(f"{len(names)} normalized frames: data identical; {same_bytes} of {len(names)} files byte-identical")
EOF
say "timings: local ${LOCAL_S} s, SLURM ${SLURM_S} s"
