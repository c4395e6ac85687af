#!/usr/bin/env bash
# Stop the loopback cluster of start-local-slurm.sh: cancel queued jobs, then stop every
# daemon by the PID in its pid file (the program name is checked first; never by name alone).
#   --purge  also delete the cluster's state and logs
set -uo pipefail
base=${CODEIFT_SLURM_BASE:-/tmp/codeift-slurm}
state=$base/state
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

stop_pid() {
	local file=$1 name=$2 pid _
	[ -s "$file" ] || return 0
	pid=$(tr -dc 0-9 <"$file")
	if [ -z "$pid" ] || [ ! -r "/proc/$pid/comm" ] || [ "$(cat "/proc/$pid/comm")" != "$name" ]; then
		echo "$name: not running (stale $file)"
		rm -f "$file"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 80); do
		kill -0 "$pid" 2>/dev/null || {
			echo "$name: stopped (pid $pid)"
			return 0
		}
		sleep 0.25
	done
	echo "$name: still alive after 20 s, killing pid $pid"
	kill -KILL "$pid" 2>/dev/null
}

# Jobs still queued would leave slurmstepd processes behind once slurmd is gone.
if command -v squeue >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
	jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
	if [ -n "${jobs// /}" ]; then
		echo "cancelling jobs: $jobs"
		# shellcheck disable=SC2086
		scancel $jobs
		for _ in $(seq 40); do
			[ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
			sleep 0.25
		done
	fi
fi

stop_pid "$state/slurmd.pid" slurmd
stop_pid "$state/slurmctld.pid" slurmctld
stop_pid "$state/slurmdbd.pid" slurmdbd
stop_pid /run/mysqld/mysqld.pid mariadbd
stop_pid /run/munge/munged.pid munged

if [ "${1:-}" = "--purge" ]; then
	rm -rf "$state" "$base/log"
	echo "removed $state and $base/log"
fi
