#!/usr/bin/env bash
# Install (if missing) and start a single-node SLURM cluster on loopback, with accounting
# (slurmdbd + MariaDB) so that `sacct` answers as on a real cluster. Debian 12, as root, no
# systemd: every daemon is started directly and writes a pid file. Safe to rerun: it installs
# only what is missing, starts only what is not running, and restarts the SLURM daemons only
# when the generated slurm.conf changed.
#
#   CODEIFT_SLURM_BASE   state and logs (default /tmp/codeift-slurm)
#   CODEIFT_SLURM_MEM_MB RealMemory of the node (default: 85% of MemTotal)
#   CODEIFT_SLURM_GPUS   GPUs the node declares as the generic resource `gpu` (default 2; 0 for
#                        none), so jobs asking for GPUs (`--gpus=2`) are scheduled, see
#                        SLURM_GPUS_ON_NODE, and run on CPU (tests/train/test_launch.py).
#                        slurmd drops GPUs without device files, so each is a character device
#                        that is /dev/null (1:3) under the state folder: nothing a program can
#                        use.
#
# Stop it with scripts/slurm/stop-local-slurm.sh (by PID, never by process name).
set -euo pipefail

base=${CODEIFT_SLURM_BASE:-/tmp/codeift-slurm}
state=$base/state
logs=$base/log
started_at=$(date +%s)
packages="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
programs="slurmctld slurmd sbatch sacct munged slurmdbd mariadbd"

log() { echo "[local-slurm +$(($(date +%s) - started_at))s] $*"; }
fail() {
	echo "[local-slurm] error: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages and starts daemons)"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# running PIDFILE NAME: the pid in PIDFILE is alive and is the program NAME
running() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(tr -dc 0-9 <"$1")
	[ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
# stop_pid PIDFILE NAME: TERM, wait up to 20 s, then KILL
stop_pid() {
	local pid _
	running "$1" "$2" || return 0
	pid=$(tr -dc 0-9 <"$1")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 80); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.25
	done
	kill -KILL "$pid" 2>/dev/null || true
}
# wait_until SECONDS WHAT COMMAND...
wait_until() {
	local seconds=$1 what=$2 _
	shift 2
	for _ in $(seq $((seconds * 4))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.25
	done
	fail "gave up after ${seconds}s waiting for $what (logs in $logs)"
}

# 1. packages ------------------------------------------------------------------------------
missing=0
for program in $programs; do command -v "$program" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 1 ]; then
	log "installing $packages"
	# Package scripts would start the daemons with Debian's default configs: forbid it.
	own_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $packages >"$base.apt.log" 2>&1 ||
		fail "apt-get install failed (see $base.apt.log)"
	[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
	log "installed"
fi
mkdir -p "$state/ctld" "$state/d" "$logs"

# 2. munge ---------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid munged; then
	log "starting munged"
	rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
	runuser -u munge -- munged
fi
wait_until 15 "munge" sh -c 'munge -n | unmunge'

# 3. slurm.conf (before slurmdbd: its clients read it) ---------------------------------------
node=$(hostname -s)
mem_total=$(awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
real_mem=${CODEIFT_SLURM_MEM_MB:-$((mem_total * 85 / 100))}
gpus=${CODEIFT_SLURM_GPUS:-2}
case "$gpus" in '' | *[!0-9]*) fail "CODEIFT_SLURM_GPUS=$gpus: expected a whole number" ;; esac
node_gres=""
[ "$gpus" -gt 0 ] && node_gres=" Gres=gpu:$gpus"
# The node line as slurmd itself sees the hardware (CPUs, sockets, cores), with our memory.
node_line=$(slurmd -C | head -1 |
	sed -e "s/RealMemory=[0-9]*/RealMemory=$real_mem/" -e "s/^NodeName=[^ ]*/NodeName=$node/")
conf=$(mktemp)
cat >"$conf" <<CONF
# Single-node loopback cluster for codeift's tests (scripts/slurm/start-local-slurm.sh).
ClusterName=codeift
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that names no memory would take the whole node.
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# Snakemake writes the rule and wildcards of each job into its comment: keep it in sacct.
AccountingStoreFlags=job_comment
# GPUs as a generic resource (gres.conf; their device files are /dev/null): the GPU requests of
# the shipped profile are scheduled and accounted as on a site; the jobs run on CPU.
GresTypes=gpu
AccountingStorageTRES=gres/gpu
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
$node_line$node_gres NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
gres=$(mktemp)
devices=$state/dev
if [ "$gpus" -gt 0 ]; then
	mkdir -p "$devices"
	for index in $(seq 0 $((gpus - 1))); do
		[ -c "$devices/gpu$index" ] || mknod -m 0666 "$devices/gpu$index" c 1 3
	done
	echo "NodeName=$node Name=gpu File=$devices/gpu[0-$((gpus - 1))]" >"$gres"
fi
if ! cmp -s "$conf" /etc/slurm/slurm.conf || ! cmp -s "$gres" /etc/slurm/gres.conf; then
	log "writing /etc/slurm/slurm.conf and gres.conf ($gpus GPUs)"
	stop_pid "$state/slurmd.pid" slurmd
	stop_pid "$state/slurmctld.pid" slurmctld
	install -m 0644 "$conf" /etc/slurm/slurm.conf
	install -m 0644 "$gres" /etc/slurm/gres.conf
fi
rm -f "$conf" "$gres"

# 4. accounting: MariaDB + slurmdbd ----------------------------------------------------------
install -d -o mysql -g mysql -m 0755 /run/mysqld
# MariaDB's own temporary folder: mariadbd runs as mysql and would otherwise use the caller's
# TMPDIR, which mysql may not write (a private TMPDIR makes it abort at start-up).
db_tmp=/run/mysqld/tmp
install -d -o mysql -g mysql -m 0700 "$db_tmp"
if [ ! -d /var/lib/mysql/mysql ]; then
	log "initialising MariaDB"
	TMPDIR=$db_tmp mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! mariadb-admin ping >/dev/null 2>&1; then
	log "starting mariadbd"
	TMPDIR=$db_tmp setsid -f mariadbd --user=mysql --bind-address=127.0.0.1 \
		--socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
		--tmpdir="$db_tmp" --innodb-lock-wait-timeout=900 >>"$logs/mariadb.log" 2>&1 </dev/null
	wait_until 60 "mariadbd" mariadb-admin ping
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
	CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'codeift-local';
	GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
dbd_conf=$(mktemp)
cat >"$dbd_conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$logs/slurmdbd.log
PidFile=$state/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=codeift-local
StorageLoc=slurm_acct_db
CONF
install -m 0600 "$dbd_conf" /etc/slurm/slurmdbd.conf
rm -f "$dbd_conf"
if ! running "$state/slurmdbd.pid" slurmdbd; then
	log "starting slurmdbd"
	slurmdbd
fi
wait_until 60 "slurmdbd" sacctmgr -n list cluster

# 5. controller and node daemon ------------------------------------------------------------
if ! running "$state/slurmctld.pid" slurmctld; then
	log "starting slurmctld"
	slurmctld -i
fi
wait_until 30 "slurmctld" sh -c 'scontrol ping | grep -q UP'
if ! running "$state/slurmd.pid" slurmd; then
	log "starting slurmd"
	slurmd
fi

node_state() { sinfo -h -n "$node" -o %T 2>/dev/null | head -1; }
for _ in $(seq 240); do
	case "$(node_state)" in
	idle | mixed | allocated) break ;;
	down* | drain*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
	esac
	sleep 0.25
done
case "$(node_state)" in
idle | mixed | allocated) ;;
*) fail "node $node is '$(node_state)' (see $logs/slurmd.log and $logs/slurmctld.log)" ;;
esac
log "cluster up: node $node is $(node_state); sacct answers"
