#!/usr/bin/env bash
# A one-node Slurm on this machine, for the cluster tests (docs/cluster.md):
#   scripts/slurm-local.sh install   Debian's slurm-wlm and munge (apt), if missing
#   scripts/slurm-local.sh start     writes /etc/slurm/slurm.conf for this host, starts munged,
#                                    slurmctld and slurmd, waits until the node is idle
#   scripts/slurm-local.sh stop      stops the daemons it started
# Runs as root (or through sudo). No cgroups in this sandbox: proctrack/linuxproc, task/none.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
STATE=/var/spool/slurmctld

case "${1:-}" in
install)
  if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    $SUDO apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; }
  fi
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null
  ;;
start)
  host=$(hostname)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  $SUDO mkdir -p /etc/slurm $STATE /var/spool/slurmd /var/log/slurm /run/munge
  $SUDO tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  [ -f /etc/munge/munge.key ] || $SUDO mungekey --create >/dev/null 2>&1 || $SUDO /usr/sbin/create-munge-key >/dev/null 2>&1 || true
  pgrep -x munged >/dev/null || $SUDO munged --force 2>/dev/null || true
  pgrep -x slurmctld >/dev/null || $SUDO slurmctld
  pgrep -x slurmd >/dev/null || $SUDO slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "slurm: node $host up ($cpus CPUs)"
      exit 0
    fi
    sleep 1
  done
  echo "slurm: the node did not come up; see /var/log/slurm/" >&2
  exit 1
  ;;
stop)
  for d in slurmd slurmctld munged; do
    $SUDO pkill -x "$d" 2>/dev/null || true
  done
  echo "slurm: stopped"
  ;;
*)
  echo "usage: $0 install|start|stop" >&2
  exit 2
  ;;
esac
