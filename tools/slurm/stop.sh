#!/usr/bin/env bash
# Stop the private SLURM cluster started by tools/slurm/start.sh.
#
#   tools/slurm/stop.sh [STATE_DIR]          # default: ${SLURM_STATE_DIR:-tools/slurm/state}
#
# Cancels the cluster's remaining jobs (so that no job keeps running on its own), then stops
# slurmd, slurmctld and munged by the PIDs in their pid files: SIGTERM, then SIGKILL after
# 10 s.  A zombie counts as stopped (PID 1 of this machine does not reap orphans).
# Only processes named in STATE_DIR's pid files are signalled.  The state dir (logs, munge
# key, job state) is kept; delete it by hand if you like.  Exit 0 when nothing is left running.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${1:-${SLURM_STATE_DIR:-${here}/state}}
if [ ! -d "${state}" ]; then
    echo "stop.sh: no state dir ${state}; nothing to stop"
    exit 0
fi
state=$(cd "${state}" && pwd)

pid_of() {  # pid_of PIDFILE: prints the pid if that process is alive and not a zombie
    local pid st
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    st=$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null) || return 1
    [ -n "${st}" ] && [ "${st}" != Z ] && [ "${st}" != X ] || return 1
    echo "${pid}"
}

# Cancel the jobs of this cluster while its controller still answers; give them KillWait.
if pid_of "${state}/run/slurmctld.pid" >/dev/null && [ -f "${state}/slurm.conf" ]; then
    export SLURM_CONF=${state}/slurm.conf
    if [ -n "$(squeue -h -o %i 2>/dev/null | awk 'NR == 1')" ]; then
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED -o %i 2>/dev/null | awk 'NR == 1')" ] && break
            sleep 0.2
        done
    fi
fi

alive() {  # alive PID: exists and is not a zombie
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "${st}" ] && [ "${st}" != Z ] && [ "${st}" != X ]
}

rc=0
for d in slurmd:run/slurmd.pid slurmctld:run/slurmctld.pid munged:munge/munged.pid; do
    name=${d%%:*}
    pidfile=${state}/${d#*:}
    if ! pid=$(pid_of "${pidfile}"); then
        echo "stop.sh: ${name} not running"
        rm -f "${pidfile}"
        continue
    fi
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "${pid}" || break
        sleep 0.1
    done
    if alive "${pid}"; then
        echo "stop.sh: ${name} (pid ${pid}) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "${pid}" 2>/dev/null || true
        sleep 0.5
    fi
    if alive "${pid}"; then
        echo "stop.sh: could not stop ${name} (pid ${pid})" >&2
        rc=1
    else
        echo "stop.sh: stopped ${name} (pid ${pid})"
        rm -f "${pidfile}"
    fi
done
exit ${rc}
