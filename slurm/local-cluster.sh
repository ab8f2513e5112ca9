#!/usr/bin/env bash
# A throw-away SLURM cluster on this one machine, for tests and for trying sbatch templates.
#
#   slurm/local-cluster.sh start    # install (apt, root) if missing, then start munged, slurmctld, N slurmds
#   slurm/local-cluster.sh status   # exit 0 when every daemon it started is alive
#   slurm/local-cluster.sh stop     # stop what *this script* started, nothing else
#   slurm/local-cluster.sh env      # prints `export SLURM_CONF=...` for sbatch/squeue/scontrol
#
# Why it looks like this:
# - Debian 12's slurm 22.05 runs without systemd when started by hand; no cgroups (task/none,
#   proctrack/linuxproc), no accounting, root as SlurmUser, so it works in containers.
# - Several "nodes" on one host use slurmd's multiple-slurmd mode (`slurmd -N nX`, one port per node,
#   %n in the per-node paths), all at NodeAddr 127.0.0.1, so multi-node jobs really run as separate
#   slurmd/slurmstepd trees.
# - Nodes may declare more CPUs than the host has (SlurmdParameters=config_overrides), so a 2-node job fits
#   on a 2-core machine.
# - Everything (config, pids, logs, spool, state) lives in one state dir; `stop` only signals pids recorded
#   there, after checking the pid still runs the daemon it recorded. munged is shared with the system: it is
#   reused when already running and only stopped if this script started it.
#
# Environment:
#   ACL_DIST_SLURM_DIR    state dir (default /tmp/acl-dist-slurm)
#   ACL_DIST_SLURM_NODES  number of nodes n1..nN (default 2)
#   ACL_DIST_SLURM_CPUS   CPUs declared per node (default: this host's count from `slurmd -C`)
#   ACL_DIST_SLURM_PORT   slurmctld port; slurmd nodes use PORT+1.. (default 16817)
set -euo pipefail

STATE=${ACL_DIST_SLURM_DIR:-/tmp/acl-dist-slurm}
NODES=${ACL_DIST_SLURM_NODES:-2}
PORT=${ACL_DIST_SLURM_PORT:-16817}
CONF=$STATE/slurm.conf
MUNGE_SOCKET=/run/munge/munge.socket.2

log() { echo "local-cluster: $*" >&2; }
die() { log "$*"; exit "${2:-1}"; }

node_names() { local i; for ((i = 1; i <= NODES; i++)); do echo "n$i"; done; }

# True when the pid in file $1 is alive and its command line contains $2 (guards against pid reuse).
pid_alive() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"
}

install_if_missing() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die "slurm is not installed and installing it needs root (apt-get)" 3
    log "installing slurmctld slurmd slurm-client munge with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; } \
        || die "apt-get could not install slurm" 3
}

munge_works() { [[ -S $MUNGE_SOCKET ]] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then return 0; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    runuser -u munge -- munged
    local i
    for ((i = 0; i < 50; i++)); do munge_works && break; sleep 0.1; done
    munge_works || die "munged did not come up"
    cp /run/munge/munged.pid "$STATE/munged.pid"  # recorded: we started it, so `stop` may end it
}

write_conf() {
    local host cpus node_hw i name
    host=$(hostname -s)
    # slurmd -C: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=..."
    node_hw=$(slurmd -C | head -1 | cut -d' ' -f2-)
    if [[ -n ${ACL_DIST_SLURM_CPUS:-} ]]; then
        cpus=$ACL_DIST_SLURM_CPUS
        node_hw="CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=1000"
    fi
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
    cat >"$CONF" <<EOF
# written by slurm/local-cluster.sh; do not edit (it is rewritten on start)
ClusterName=acl-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdSpoolDir=$STATE/spool/%n
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
EOF
    for ((i = 1; i <= NODES; i++)); do
        name=n$i
        echo "NodeName=$name NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + i)) $node_hw State=UNKNOWN" >>"$CONF"
    done
    echo "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$CONF"
}

wait_idle() {
    local i states
    for ((i = 0; i < 300; i++)); do
        states=$(SLURM_CONF=$CONF sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ')
        [[ $states == "idle " || $states == "idle mix " || $states == "mix " ]] && return 0
        sleep 0.1
    done
    die "nodes did not become idle (sinfo: ${states:-no answer}); logs in $STATE/log" 1
}

start() {
    install_if_missing
    [[ $(id -u) -eq 0 ]] || die "starting the local cluster needs root (SlurmUser=root)" 3
    mkdir -p "$STATE"
    if all_alive; then log "already running ($CONF)"; return 0; fi
    start_munge
    if ! pid_alive "$STATE/slurmctld.pid" slurmctld; then
        write_conf
        # -c: a local test cluster starts with no jobs left over from a previous run.
        slurmctld -c -f "$CONF"
    fi
    local name
    for name in $(node_names); do
        pid_alive "$STATE/slurmd-$name.pid" slurmd && continue
        mkdir -p "$STATE/spool/$name"
        slurmd -f "$CONF" -N "$name"
    done
    wait_idle
    log "running: $NODES nodes; export SLURM_CONF=$CONF"
}

all_alive() {
    [[ -f $CONF ]] || return 1
    pid_alive "$STATE/slurmctld.pid" slurmctld || return 1
    local name
    for name in $(node_names); do pid_alive "$STATE/slurmd-$name.pid" slurmd || return 1; done
    munge_works
}

# Signal the recorded pid (if it still is that daemon) and wait for it to exit.
stop_one() {
    local file=$1 name=$2 pid i
    if pid_alive "$file" "$name"; then
        pid=$(<"$file")
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop() {
    [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
    local name
    if [[ -f $CONF ]]; then
        SLURM_CONF=$CONF timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    for name in $(node_names); do stop_one "$STATE/slurmd-$name.pid" slurmd; done
    stop_one "$STATE/slurmctld.pid" slurmctld
    [[ -f $STATE/munged.pid ]] && stop_one "$STATE/munged.pid" munged
    log "stopped"
}

status() {
    local rc=0 name file daemon
    for file in slurmctld.pid $(for name in $(node_names); do echo "slurmd-$name.pid"; done); do
        daemon=${file%%-*}; daemon=${daemon%.pid}
        if pid_alive "$STATE/$file" "$daemon"; then echo "${file%.pid}: running"; else echo "${file%.pid}: stopped"; rc=1; fi
    done
    if munge_works; then echo "munged: running"; else echo "munged: stopped"; rc=1; fi
    [[ $rc -eq 0 ]] && SLURM_CONF=$CONF sinfo -N 2>/dev/null
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 start|stop|status|env" 2 ;;
esac
