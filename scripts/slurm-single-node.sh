#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's slurm-wlm packages: munged, slurmctld
# and slurmd, the node being this host with all its CPUs, one partition. For running
# examples/slurm-array.sh on a real Slurm (scripts/slurm-example-check.sh does, in CI).
#
#   sudo bash scripts/slurm-single-node.sh          # install if missing, configure, start
#   sudo bash scripts/slurm-single-node.sh --stop   # stop the three daemons
#
# Needs root (it writes /etc/slurm/slurm.conf and starts the daemons). It overwrites
# /etc/slurm/slurm.conf: do not run it on a machine that belongs to a real cluster.
set -euo pipefail

if [ "${1:-}" = "--stop" ]; then
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "slurm-single-node.sh: needs root (it writes /etc/slurm/slurm.conf and starts the Slurm daemons); run it with sudo" >&2
  exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-single-node.sh: installing Debian's slurm-wlm (slurmctld, slurmd, munge)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 - 1024 ))

# munge: the key Slurm's daemons and clients authenticate with.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged
  else
    munged --force
  fi
fi

# Slurm: root runs the daemons; no cgroups (proctrack/linuxproc, task/none), so it also runs in a
# container or a VM without a delegated cgroup tree.
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<EOF
# Written by slimbench's scripts/slurm-single-node.sh: one node, this host.
ClusterName=slimbench
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

# Wait until the node takes jobs.
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$host" -o '%t' 2>/dev/null || true)
  case "$state" in
    idle*|mix*|alloc*) echo "slurm-single-node.sh: node ${host} is ${state} (${cpus} CPUs)" >&2; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "slurm-single-node.sh: the node did not come up in 60 s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
