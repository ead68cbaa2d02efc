#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (for tests/cluster and local trials).
# Idempotent: installs Debian's slurm-wlm (+ slurm-wlm-torque) + munge when missing, creates a munge key if absent,
# (re)uses running munged/slurmctld/slurmd, writes a minimal slurm.conf, waits for the node to be
# idle and prints `sinfo`. Works in a container without systemd (daemons are started directly).
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "start_slurm.sh: need root (or sudo)" >&2
    exit 1
fi

# slurm-wlm-torque: Torque/PBS commands (qsub, qdel, qstat) on Slurm, for the PBS backend's tests
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
        || ! command -v munged >/dev/null 2>&1 || ! command -v sinfo >/dev/null 2>&1 \
        || ! command -v qsub >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm slurm-wlm-torque munge
fi

CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm
LOGS=/var/log/slurm
RUN=/run/slurm
$SUDO mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGS" "$RUN" /etc/munge /var/lib/munge /var/log/munge /run/munge

# --- munge ---------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then
        $SUDO mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
if id munge >/dev/null 2>&1; then
    $SUDO chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
fi
$SUDO chmod 0700 /etc/munge /var/lib/munge /var/log/munge
$SUDO chmod 0755 /run/munge
$SUDO chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1 && [ -z "$SUDO" ] && command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged --force
    elif id munge >/dev/null 2>&1 && [ -n "$SUDO" ]; then
        $SUDO -u munge /usr/sbin/munged --force
    else
        $SUDO /usr/sbin/munged --force
    fi
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { echo "start_slurm.sh: munge does not work" >&2; exit 1; }

# --- slurm.conf ----------------------------------------------------------------------------------
HOST=$(hostname -s 2>/dev/null || hostname)
[ -n "$HOST" ] || HOST=localhost
CPUS=$(nproc)
# the socket/core layout slurmd sees, so that it does not report a mismatch with slurm.conf
TOPO=$(slurmd -C 2>/dev/null | head -n1 | grep -o 'SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' \
       | sed 's/SocketsPerBoard=/Sockets=/' || true)
if [ -n "$TOPO" ]; then
    CPUS=$(slurmd -C | head -n1 | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
fi
MEM_TOTAL=$(free -m | awk '/^Mem:/ {print $2}')
REAL_MEM=$(( MEM_TOTAL * 8 / 10 ))
[ "$REAL_MEM" -ge 1 ] || REAL_MEM=1
CONF=$(cat <<CONF
# written by insilico scripts/start_slurm.sh
ClusterName=insilico
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmdSpoolDir=$SPOOL/d
StateSaveLocation=$SPOOL/ctld
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=60
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS $TOPO RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Default=YES Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
CHANGED=0
if [ ! -f "$CONF_DIR/slurm.conf" ] || [ "$(cat "$CONF_DIR/slurm.conf")" != "$CONF" ]; then
    printf '%s\n' "$CONF" | $SUDO tee "$CONF_DIR/slurm.conf" >/dev/null
    CHANGED=1
fi
# no cgroups are used (proctrack/linuxproc; task/affinity binds each job to its CPUs); Slurm 22.05 has no CgroupPlugin=disabled, so
# drop a cgroup.conf that would name one (older versions of this script wrote it)
if [ -f "$CONF_DIR/cgroup.conf" ] && grep -q 'CgroupPlugin=disabled' "$CONF_DIR/cgroup.conf"; then
    $SUDO rm -f "$CONF_DIR/cgroup.conf"
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$CHANGED" = 1 ]; then
    # a new configuration: restart daemons that run with the old one
    for pidf in "$RUN/slurmd.pid" "$RUN/slurmctld.pid"; do
        if running "$pidf"; then $SUDO kill "$(cat "$pidf")"; fi
    done
    for _ in $(seq 50); do running "$RUN/slurmd.pid" || running "$RUN/slurmctld.pid" || break; sleep 0.2; done
fi
running "$RUN/slurmctld.pid" || $SUDO /usr/sbin/slurmctld
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
running "$RUN/slurmd.pid" || $SUDO /usr/sbin/slurmd

# --- wait for the node --------------------------------------------------------------------------
state=""
for _ in $(seq 150); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*)
            $SUDO scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
sinfo
case "$state" in
    idle|mix|alloc) ;;
    *) echo "start_slurm.sh: node $HOST is '$state', not idle; see $LOGS/slurmd.log and $LOGS/slurmctld.log" >&2
       exit 1 ;;
esac
