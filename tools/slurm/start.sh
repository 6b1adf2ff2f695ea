#!/usr/bin/env bash
# Start a private single-node SLURM cluster on this machine (for trying and testing
# utils/slurm.pl without a real cluster).
#
#   tools/slurm/start.sh [STATE_DIR]        # default: ${SLURM_STATE_DIR:-tools/slurm/state}
#   export SLURM_CONF=<STATE_DIR>/slurm.conf # printed at the end; sbatch/squeue/sinfo need it
#   tools/slurm/stop.sh [STATE_DIR]
#
# What it runs, as root, with everything kept inside STATE_DIR:
#   - munged on its own socket (STATE_DIR/munge/munge.socket) with its own random key, so
#     it never touches a system munge (/run/munge);
#   - slurmctld and slurmd, from a slurm.conf generated from `slurmd -C` (CPUs, sockets,
#     cores, threads of this machine; RealMemory = 90% of what slurmd reports), on two free
#     TCP ports (or ${SLURMCTLD_PORT} / ${SLURMD_PORT}), so several clusters can coexist.
# Partitions: "cpu" (default) and "gpu".  There is no GPU here: the node advertises
# ${SLURM_FAKE_GPUS:-2} fake "gpu" generic resources (device files STATE_DIR/dev/fakegpuN,
# copies of /dev/null), so that jobs submitted with --gres=gpu:N (slurm.pl --gpu N) are
# scheduled and can be tested; what they run still runs on the CPU (torch sees no CUDA).
# SLURM_FAKE_GPUS=0: no GRES at all; the gpu partition is then CPU-only and --gres jobs fail.
# No cgroups (proctrack/linuxproc, task/none), no accounting daemon (sacct does not work),
# MinJobAge=5 so that finished/cancelled jobs leave squeue after ~5 s, KillWait=5.
# Each start clears the previous job state (slurmctld -c); the munge key is kept.
#
# Idempotent: if the cluster of STATE_DIR is running, it says so and exits 0.
# Waits until sinfo reports the node idle (timeout ${SLURM_START_TIMEOUT:-60} s; on timeout
# it prints the end of the daemons' logs and their paths, and exits 1).
# Needs the Debian packages slurmctld slurmd slurm-client munge (tools/install.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${1:-${SLURM_STATE_DIR:-${here}/state}}
timeout=${SLURM_START_TIMEOUT:-60}
fake_gpus=${SLURM_FAKE_GPUS:-2}

die() { echo "start.sh: $*" >&2; exit 1; }

for c in munged slurmctld slurmd sinfo sbatch squeue scancel; do
    command -v "${c}" >/dev/null 2>&1 \
        || die "'${c}' not found; install the packages: slurmctld slurmd slurm-client munge (tools/install.sh)"
done

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts the jobs as their users; untested otherwise)"

mkdir -p "${state}"
state=$(cd "${state}" && pwd)
# Unix socket paths are limited to 108 bytes (munge socket, slurmstepd sockets in the spool).
[ ${#state} -le 70 ] || die "state dir path too long for unix sockets (${#state} > 70 chars): ${state}"
# munged serves its socket only if every directory above it is searchable by all users.
d=$(dirname "${state}")
while [ "${d}" != / ]; do
    [ "$(( 0$(stat -c %a "${d}") & 01 ))" -eq 1 ] \
        || die "munged needs every directory above its socket to be searchable by all (chmod o+x): ${d} is $(stat -c %a "${d}"); choose another state dir, e.g. under /tmp"
    d=$(dirname "${d}")
done

conf=${state}/slurm.conf
node=$(hostname -s)

# alive PIDFILE: the process in PIDFILE exists and is not a zombie (PID 1 does not reap here).
alive() {
    local pid st
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    st=$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null) || return 1
    [ -n "${st}" ] && [ "${st}" != Z ] && [ "${st}" != X ]
}

usage_hint() {
    echo "start.sh: SLURM cluster of ${state} is up; to use it:"
    echo "export SLURM_CONF=${conf}"
}

if alive "${state}/munge/munged.pid" && alive "${state}/run/slurmctld.pid" && alive "${state}/run/slurmd.pid" \
    && SLURM_CONF=${conf} sinfo -h >/dev/null 2>&1; then
    echo "start.sh: already running (state dir ${state})"
    usage_hint
    exit 0
fi
# Partly running (e.g. one daemon died): stop the rest and start afresh.
"${here}/stop.sh" "${state}" >/dev/null 2>&1 || true

mkdir -p "${state}/munge" "${state}/run" "${state}/log" "${state}/ctld" "${state}/spool"
# munged refuses insecure permissions: the key and its directory must not be group/other
# writable; the socket's directory must be readable by clients (755).
chmod 755 "${state}" "${state}/munge"
if [ ! -s "${state}/munge/munge.key" ]; then
    (umask 077; head -c 1024 /dev/urandom > "${state}/munge/munge.key")
fi
chmod 600 "${state}/munge/munge.key"
rm -f "${state}/munge/munge.socket" "${state}/munge/munge.socket.lock"

# Two free TCP ports (the kernel picks them), unless given.
read -r p1 p2 < <(perl -MIO::Socket::INET -e '
    my @s = map { IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1, ReuseAddr => 1)
                  or die "no free port: $!\n" } 1 .. 2;
    print join(" ", map { $_->sockport } @s), "\n";')
ctld_port=${SLURMCTLD_PORT:-${p1}}
slurmd_port=${SLURMD_PORT:-${p2}}

# Hardware as slurmd sees it; RealMemory must not exceed what the node reports.
hw=$(slurmd -C | awk 'NR == 1')
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "${hw}"; }
cpus=$(field CPUs); sockets=$(field SocketsPerBoard); cores=$(field CoresPerSocket)
threads=$(field ThreadsPerCore); mem=$(field RealMemory)
[ -n "${cpus}" ] && [ -n "${mem}" ] || die "cannot parse 'slurmd -C': ${hw}"
mem=$((mem * 9 / 10))

# Fake GPUs: SLURM drops a GPU without device files, so each gets one: a character device
# like /dev/null (mknod) or, where mknod is not allowed, an empty file (slurmd then logs
# "not a valid character or block device" but still counts it).
gres_node="" gres_types=""
rm -rf "${state}/dev"
: > "${state}/gres.conf"
if [ "${fake_gpus}" -gt 0 ]; then
    mkdir -p "${state}/dev"
    for ((i = 0; i < fake_gpus; i++)); do
        mknod "${state}/dev/fakegpu${i}" c 1 3 2>/dev/null || touch "${state}/dev/fakegpu${i}"
    done
    gres_node=" Gres=gpu:${fake_gpus}"
    gres_types="GresTypes=gpu"
    echo "NodeName=${node} Name=gpu File=${state}/dev/fakegpu[0-$((fake_gpus - 1))]" > "${state}/gres.conf"
fi

cat > "${conf}" <<EOF
# Generated by tools/slurm/start.sh on $(date '+%Y-%m-%dT%H:%M:%S'): a private single-node cluster.
ClusterName=local
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${state}/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${state}/log/jobcomp.txt
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
MinJobAge=5
EnforcePartLimits=ALL
KillWait=5
MaxArraySize=10001
StateSaveLocation=${state}/ctld
SlurmdSpoolDir=${state}/spool
SlurmctldPidFile=${state}/run/slurmctld.pid
SlurmdPidFile=${state}/run/slurmd.pid
SlurmctldLogFile=${state}/log/slurmctld.log
SlurmdLogFile=${state}/log/slurmd.log
${gres_types}
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} SocketsPerBoard=${sockets} CoresPerSocket=${cores} ThreadsPerCore=${threads} RealMemory=${mem}${gres_node} State=UNKNOWN
PartitionName=cpu Nodes=${node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${node} Default=NO MaxTime=INFINITE State=UP
EOF

logs="${state}/log/munged.log ${state}/log/slurmctld.log ${state}/log/slurmd.log"
fail() {
    echo "start.sh: $*" >&2
    local f
    for f in ${logs}; do
        [ -f "${f}" ] || continue
        echo "---- last lines of ${f} (without the harmless PMIx/MPI plugin errors)" >&2
        grep -v -e 'pmix' -e 'MPI: Cannot create context' "${f}" | tail -n 12 >&2
    done
    echo "start.sh: logs: ${logs}" >&2
    "${here}/stop.sh" "${state}" >/dev/null 2>&1 || true
    echo "start.sh: stopped the daemons that had started (${here}/stop.sh ${state})" >&2
    exit 1
}

munged --key-file="${state}/munge/munge.key" --socket="${state}/munge/munge.socket" \
    --pid-file="${state}/munge/munged.pid" --log-file="${state}/log/munged.log" \
    --seed-file="${state}/munge/munged.seed" --num-threads=2 \
    || fail "munged did not start"

export SLURM_CONF=${conf}
slurmctld -c -f "${conf}" || fail "slurmctld did not start"
slurmd -f "${conf}" -N "${node}" || fail "slurmd did not start"

t0=${SECONDS}
deadline=$((SECONDS + timeout))
node_state=""
while :; do
    node_state=$(sinfo -h -N -o %T 2>/dev/null | awk 'NR == 1') || true
    [ "${node_state}" = idle ] && break
    if [ ${SECONDS} -ge ${deadline} ]; then
        fail "the node did not become idle within ${timeout} s (sinfo state: '${node_state:-no answer}')"
    fi
    for f in munge/munged.pid run/slurmctld.pid run/slurmd.pid; do
        # Daemons write their pid files right after daemonizing; give them a moment.
        if [ $((SECONDS - t0)) -ge 3 ] && ! alive "${state}/${f}"; then
            fail "$(basename "${f}" .pid) is not running"
        fi
    done
    sleep 0.2
done
usage_hint
