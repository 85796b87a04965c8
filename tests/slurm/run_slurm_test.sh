#!/usr/bin/env bash
# SLURM end-to-end test: run the demo frame set through a one-node SLURM cluster set up on this
# machine (snakemake --executor slurm --profile profiles/slurm) and locally, and check that both
# give identical normalized frames. CI runs it through tests/test_slurm.py (part of `make test`;
# NSGFLOW_SLURM_TEST=0 skips it there). About 160 CPU-seconds, so at least 1.5 minutes on 2 cores;
# 3.5-4.5 minutes measured on a shared, loaded 2-core machine. Installing Slurm took 10 s more.
#
# Usage, as root (it installs packages and starts daemons), from anywhere:
#   tests/slurm/run_slurm_test.sh
# It tests the tree it lives in (PYTHONPATH=<tree>/src) with the venv <tree>/.venv.
#
# What it does:
#   1. installs Debian's slurm-wlm and munge if missing (apt-get, with a policy-rc.d that keeps the
#      packages from starting system daemons), and the SLURM executor plugin into the venv if
#      missing (pinned, as profiles/slurm/config.yaml says);
#   2. writes a one-node slurm.conf under $NSGFLOW_SLURM_DIR (node `hostname -s` at 127.0.0.1,
#      CPUs and RealMemory of this machine, select/cons_tres CR_Core_Memory, proctrack/linuxproc,
#      task/none, no accounting) and starts its own munged, slurmctld and slurmd, each in its own
#      session. SLURM_CONF points the Slurm commands at this file; the srun inside each job ignores
#      it (see below), so for the test /etc/slurm/slurm.conf is a link to it, made only if no such
#      file exists (or it is a stale link of this test), removed on exit;
#   3. renders small demo frames (nsgflow.synthetic), runs the workflow locally and through SLURM,
#      checks that every job of the SLURM run went through sbatch and compares the normalized
#      FITS data (must be identical);
#   4. stops the daemons it started (trap on exit, also on failure, timeout, SIGTERM or Ctrl-C; a
#      workflow run still going is stopped first, which cancels its Slurm jobs).
# Every step has a timeout. Runs on one machine are serialized by a lock (/run/lock), so two
# trees' `make test` at once do not fight over ports and /etc/slurm/slurm.conf. Running it again
# starts from scratch: stale daemons of an earlier, killed run (pid files in $NSGFLOW_SLURM_DIR)
# are stopped, data and results are made anew.
#
# Settings (environment):
#   NSGFLOW_SLURM_DIR      work folder (default /tmp/nsgflow-slurm)
#   NSGFLOW_VENV           Python environment (default <tree>/.venv)
#   NSGFLOW_SLURM_FRAMES   demo frames (default 3: the reference and two others)
#   NSGFLOW_SLURM_SHAPE    their size, rows x columns (default 400x600; the demo's is 600x900)
#   NSGFLOW_SLURM_TIMEOUT  seconds allowed for each workflow run (default 600)
#   NSGFLOW_SLURM_STATUS_SECONDS  first wait before Snakemake asks squeue for job states, and the
#                          wait after a check that saw a job finish (default 2; the plugin's is 40;
#                          it adds 10 s per check that saw none, up to 180 s)
#   NSGFLOW_SLURM_PORTS    slurmctld,slurmd ports (default 6817,6818)
#   NSGFLOW_SLURM_LOCK_WAIT  seconds to wait for another run of this test to end (default 1200)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${NSGFLOW_SLURM_DIR:-/tmp/nsgflow-slurm}
VENV=${NSGFLOW_VENV:-$REPO/.venv}
FRAMES=${NSGFLOW_SLURM_FRAMES:-3}
SHAPE=${NSGFLOW_SLURM_SHAPE:-400x600}
RUN_TIMEOUT=${NSGFLOW_SLURM_TIMEOUT:-600}
STATUS_S=${NSGFLOW_SLURM_STATUS_SECONDS:-2}
LOCK_WAIT=${NSGFLOW_SLURM_LOCK_WAIT:-1200}
IFS=, read -r CTLD_PORT SLURMD_PORT <<<"${NSGFLOW_SLURM_PORTS:-6817,6818}"
PLUGIN_PIN="snakemake-executor-plugin-slurm==2.8.0"
PY=$VENV/bin/python
NODE=$(hostname -s)
MARK="# written by tests/slurm/run_slurm_test.sh"
START=$SECONDS

say() { printf '[slurm-test %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
    say "FAILED: $*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "run as root: it installs packages and starts munged, slurmctld and slurmd"
[[ -x $PY ]] || die "no Python at $PY; make the venv first (make test) or set NSGFLOW_VENV"
for tool in timeout flock setsid getent; do
    command -v "$tool" >/dev/null || die "needs $tool (coreutils, util-linux, libc-bin)"
done
[[ $SHAPE =~ ^([0-9]+)x([0-9]+)$ ]] || die "NSGFLOW_SLURM_SHAPE must be ROWSxCOLUMNS, not '$SHAPE'"
ROWS=${BASH_REMATCH[1]}
COLS=${BASH_REMATCH[2]}
mkdir -p "$WORK"/{etc,munge,state,spool,log,pids,run}
chmod 700 "$WORK/munge"

# one run at a time on this machine: the ports and /etc/slurm/slurm.conf are shared. The lock is
# released when this script ends (the daemons do not inherit it).
mkdir -p /run/lock
exec 9>/run/lock/nsgflow-slurm-test.lock
if ! flock -n 9; then
    say "another run of this test holds /run/lock/nsgflow-slurm-test.lock; waiting up to $LOCK_WAIT s"
    flock -w "$LOCK_WAIT" 9 || die "the other run did not end within $LOCK_WAIT s"
fi

STARTED=()       # "name pid" of the daemons we started, in start order
CHILD=""         # pid of the long step running now (see step)
ETC_CONF=/etc/slurm/slurm.conf
LINKED_ETC=0     # we made /etc/slurm/slurm.conf
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0   # we made policy-rc.d
HOSTS_LINE="127.0.0.1 $NODE $MARK"
ADDED_HOSTS=0    # we added $NODE to /etc/hosts

stop_pid() { # pid name [seconds]: stop one process we started, politely first
    local pid=$1 name=$2 wait=${3:-10}
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$((wait * 5))"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    say "$name ($pid) ignored SIGTERM for $wait s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}
drop_hosts_line() { # rewrite in place: /etc/hosts may be a mount point, which mv cannot replace
    local kept
    kept=$(grep -vxF "$HOSTS_LINE" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
}
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        # a workflow run (or another step) still going: TERM reaches Snakemake through timeout,
        # and Snakemake cancels its Slurm jobs
        say "stopping the step still running ($CHILD)"
        stop_pid "$CHILD" step 30
    fi
    if ((${#STARTED[@]})); then
        if timeout 10 squeue -h -o %i 2>/dev/null | grep -q .; then
            timeout 20 scancel --user="$(id -un)" 2>/dev/null
            for _ in $(seq 20); do
                timeout 5 squeue -h -o %i 2>/dev/null | grep -q . || break
                sleep 0.5
            done
        fi
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
    if ((ADDED_POLICY)); then rm -f "$POLICY"; fi
    if ((ADDED_HOSTS)); then drop_hosts_line; fi
    if ((status == 0)); then
        say "PASSED in $((SECONDS - START)) s"
    else
        say "FAILED (status $status) after $((SECONDS - START)) s; logs in $WORK/log and $WORK/run"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Long steps run in the background while this shell waits: bash runs a trap only between
# commands, and a signal ends `wait` at once, so SIGTERM or Ctrl-C cleans up without waiting for
# the step. Redirections given to `step` apply to the step (<&0: a background command's stdin
# would be /dev/null otherwise, not the here-document given to step).
step() {
    "$@" <&0 &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# --- 1. software --------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
    ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it"
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # keep the packages' scripts from starting system daemons (a container has no init to run
    # them, and the test starts its own)
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        ADDED_POLICY=1
    fi
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
    step timeout 600 apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed or timed out"
    step timeout 900 apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends slurm-wlm munge \
        >"$WORK/log/apt.log" 2>&1 || {
        tail -n 30 "$WORK/log/apt.log" >&2
        die "apt-get install slurm-wlm munge failed or timed out"
    }
    if ((ADDED_POLICY)); then
        rm -f "$POLICY"
        ADDED_POLICY=0
    fi
    say "installed $(dpkg-query -W -f '${Package} ${Version}\n' slurm-wlm munge | paste -sd ' ')"
fi
if ! "$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    say "installing $PLUGIN_PIN into $VENV"
    step timeout 600 "$VENV/bin/pip" install --quiet "$PLUGIN_PIN" || die "pip install $PLUGIN_PIN failed"
fi
plugin_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')
say "$(slurmctld -V), $(munged --version 2>&1 | awk '{print $1}'), snakemake $("$PY" -m snakemake --version)," \
    "snakemake-executor-plugin-slurm $plugin_version"

# --- 2. one-node cluster ------------------------------------------------------------------
export SLURM_CONF=$WORK/etc/slurm.conf

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
    # own session: a signal to this script's process group does not reach the daemons, so cleanup
    # stops them in order (jobs first); fd 9 (the lock) closed so a stray daemon cannot hold it
    setsid "$@" >"$WORK/log/$name.out" 2>&1 9>&- &
    local pid=$!
    echo "$pid" >"$WORK/pids/$name.pid"
    STARTED+=("$name $pid")
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || {
        tail -n 20 "$WORK/log/$name.out" "$WORK/log/$name.log" 2>/dev/null >&2
        die "$name did not start (see $WORK/log/$name.*)"
    }
}

# the node's name must resolve (srun and slurmd look it up); a clean machine usually has it in
# /etc/hosts, if not it is added for the test's duration
if ! getent hosts "$NODE" >/dev/null; then
    say "$NODE does not resolve; adding '127.0.0.1 $NODE' to /etc/hosts for the test"
    printf '%s\n' "$HOSTS_LINE" >>/etc/hosts
    ADDED_HOSTS=1
fi

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
hw=$(timeout 30 slurmd -C | head -n 1)
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
$MARK: a one-node test cluster, no accounting
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
# /etc/slurm/slurm.conf: link ours there for the duration of the test, never over a real one. A
# link to a file this script wrote (or to nothing) is left by an earlier run that was killed; as
# we hold the lock, that run is over.
if [[ -L $ETC_CONF ]] && { [[ ! -e $ETC_CONF ]] || [[ $(head -c ${#MARK} "$ETC_CONF") == "$MARK" ]]; }; then
    rm -f "$ETC_CONF"
fi
if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    die "$ETC_CONF exists: this machine has a Slurm configuration of its own; not touching it"
fi
mkdir -p "$(dirname "$ETC_CONF")"
ln -s "$SLURM_CONF" "$ETC_CONF"
LINKED_ETC=1

start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
for _ in $(seq 60); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
# not niced (nor is the local run): as a part of make test it takes the CPU share the other tests
# take, so a busy machine does not stretch it more than them
start_daemon slurmd slurmd -D -f "$SLURM_CONF" -N "$NODE"
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
say "cluster up: $(timeout 10 sinfo -h -o '%P %D %t %c CPUs %m MB')"

# --- 3. the demo set, locally and through SLURM ----------------------------------------------
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
export NSGFLOW_WORKFLOW=$REPO
RUN=$WORK/run
DATA=$RUN/data
rm -rf "$RUN"
mkdir -p "$RUN"/{local,slurm}
# small frames: the run's time is mostly Snakemake starting inside each job, not the science
step timeout 300 "$PY" - "$DATA" "$FRAMES" "$ROWS" "$COLS" <<'EOF'
import sys

from nsgflow import synthetic

folder, frames, rows, cols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# the demo's star density (3000 stars on 600x900)
scene = synthetic.SceneSpec(shape=(rows, cols), n_stars=round(3000 * rows * cols / (600 * 900)), seed=0)
synthetic.make_frame_set(folder, scene, synthetic.demo_specs(frames, 0), reference="frame_01")
EOF
say "$FRAMES demo frames of $SHAPE px in $DATA"

# folder, snakemake options...: run the workflow with results in <folder>/results. Only as
# `step workflow ...`: it replaces the step's process with timeout, so stopping the step stops
# Snakemake (a subshell in between would die alone and leave Snakemake running).
workflow() {
    local folder=$1
    shift
    cd "$folder" || return
    exec timeout "$RUN_TIMEOUT" "$VENV/bin/snakemake" --snakefile "$REPO/Snakefile" \
        "$@" --config "frames=$DATA/*.fits" "reference=$DATA/frame_01.fits" "results=$folder/results" \
        >"$folder/snakemake.log" 2>&1
}

t0=$SECONDS
step workflow "$RUN/local" --cores 2 || {
    tail -n 40 "$RUN/local/snakemake.log" >&2
    die "local workflow run failed or timed out after $RUN_TIMEOUT s (log: $RUN/local/snakemake.log)"
}
LOCAL_S=$((SECONDS - t0))
say "local run: ${LOCAL_S} s"

t0=$SECONDS
# first status check after $STATUS_S s (the plugin's default is 40 s): the test's jobs take seconds
step workflow "$RUN/slurm" --executor slurm --profile "$REPO/profiles/slurm" \
    --slurm-init-seconds-before-status-checks "$STATUS_S" || {
    tail -n 40 "$RUN/slurm/snakemake.log" >&2
    die "SLURM workflow run failed or timed out after $RUN_TIMEOUT s (log: $RUN/slurm/snakemake.log)"
}
SLURM_S=$((SECONDS - t0))
# for a look at where the time went: each job's start and end as Slurm saw them
timeout 10 squeue -h -t all -o '%i %j %V %S %e %T' >"$RUN/slurm/jobs.txt" 2>&1 || true
# every job that is not a local rule ("localrule ..." in the log) must have gone through sbatch:
# single rules ("rule ...") and group jobs ("Group job frame ...", one submission), two per frame:
# detect_stars, and one group job that runs every later stage of the frame (photometry to normalized)
submitted=$(grep -c "has been submitted with SLURM jobid" "$RUN/slurm/snakemake.log" || true)
rules=$(grep -c "^rule " "$RUN/slurm/snakemake.log" || true)
groups=$(grep -c "Group job frame" "$RUN/slurm/snakemake.log" || true)
remote=$((rules + groups))
((remote >= 2 * FRAMES)) || die "only $remote jobs went to SLURM for $FRAMES frames (2 each)"
((groups == FRAMES)) || die "$groups group jobs for $FRAMES frames: each frame's stages must be one submission"
[[ $submitted -eq $remote ]] || die "$submitted of $remote non-local jobs went through sbatch"
say "SLURM run: ${SLURM_S} s, all $submitted non-local jobs submitted with sbatch" \
    "($(grep "^localrule " "$RUN/slurm/snakemake.log" | sort -u | awk '{sub(/:$/, "", $2); printf "%s ", $2}')ran locally)"

step timeout 300 "$PY" - "$RUN/local/results/normalized" "$RUN/slurm/results/normalized" "$FRAMES" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

local, slurm, frames = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
names = sorted(p.name for p in local.glob("*_nsg.fits"))
if len(names) != frames or names != sorted(p.name for p in slurm.glob("*_nsg.fits")):
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
