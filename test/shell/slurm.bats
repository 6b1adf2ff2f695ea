#!/usr/bin/env bats
# Tests for utils/slurm.pl against a REAL single-node SLURM cluster, started for this file by
# tools/slurm/start.sh in a private state dir and stopped (by PID) at the end.
# Skipped only when the SLURM/munge packages are missing (tools/install.sh installs them).

setup_file() {
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  local c
  for c in munged slurmctld slurmd sbatch squeue scancel sinfo; do
    if ! command -v "${c}" >/dev/null 2>&1; then
      # (bats 1.8 cannot skip from setup_file: every test skips in setup instead.)
      export SLURM_TEST_SKIP="SLURM not installed ('${c}' missing): apt-get install slurmctld slurmd slurm-client munge (tools/install.sh does)"
      return 0
    fi
  done
  # A short path: munge and slurmstepd use unix sockets in it (108-byte limit).
  SLURM_TEST_STATE="$(mktemp -d /tmp/slurm-bats.XXXXXX)"
  export SLURM_TEST_STATE
  "${REPO}/tools/slurm/start.sh" "${SLURM_TEST_STATE}" >"${SLURM_TEST_STATE}/start.out" 2>&1 || {
    cat "${SLURM_TEST_STATE}/start.out" >&3
    return 1
  }
  export SLURM_CONF="${SLURM_TEST_STATE}/slurm.conf"
}

teardown_file() {
  [ -n "${SLURM_TEST_STATE:-}" ] || return 0
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  "${REPO}/tools/slurm/stop.sh" "${SLURM_TEST_STATE}" >/dev/null
  rm -rf "${SLURM_TEST_STATE}"
}

setup() {
  [ -z "${SLURM_TEST_SKIP:-}" ] || skip "${SLURM_TEST_SKIP}"
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  # The project's rules (partitions cpu/gpu of the test cluster); every call is time-limited.
  SL=(timeout 90 "${REPO}/utils/slurm.pl" --config "${REPO}/conf/slurm.conf")
  D="${BATS_TEST_TMPDIR}"
  cd "${D}"
}

jobid_of() {  # jobid_of <q-log>: the job id that sbatch printed
  awk '/^[0-9]+$/ { print; exit }' "$1"
}

@test "JOB=1:4 is one sbatch array; 4 logs with run.pl's header and footer" {
  run "${SL[@]}" JOB=1:4 "${D}/log/task.JOB.log" echo hello from JOB
  [ "$status" -eq 0 ]
  for j in 1 2 3 4; do
    f="${D}/log/task.${j}.log"
    [ "$(sed -n 1p "$f")" = "# echo hello from ${j}" ]
    [[ "$(sed -n 2p "$f")" == "# Started at "* ]]
    grep -qx "hello from ${j}" "$f"
    [[ "$(tail -n 2 "$f" | head -n 1)" =~ ^"# Accounting: time="[0-9]+" threads=1"$ ]]
    [[ "$(tail -n 1 "$f")" == "# Ended (code 0) at "* ]]
  done
  [ ! -e "${D}/log/task.5.log" ]
  # One submission, an array, through the script in q/.
  [ -x "${D}/log/q/task.sh" ]
  [ "$(grep -c '^# sbatch' "${D}/log/q/task.log")" -eq 1 ]
  grep -q -- '--array=1-4 ' "${D}/log/q/task.log"
  grep -q -- ' -p cpu ' "${D}/log/q/task.log"
  # The status files are cleaned up.
  [ -z "$(ls "${D}/log/q" | grep done || true)" ]
}

@test "a task exiting 3 fails slurm.pl, which names the task and its log" {
  run "${SL[@]}" JOB=1:4 "${D}/log/t.JOB.log" 'if [ JOB -eq 2 ]; then echo boom >&2; exit 3; fi; echo ok'
  [ "$status" -eq 1 ]
  [[ "$output" == *"slurm.pl: 1 / 4 failed, log is in ${D}/log/t.2.log"* ]]
  [[ "$output" == *"failed tasks: JOB=2"* ]]
  [[ "$output" == *"task 2 (JOB=2, SLURM job "*"_2): exit code 3; log: ${D}/log/t.2.log"* ]]
  [[ "$(tail -n 1 "${D}/log/t.2.log")" == "# Ended (code 3) at "* ]]
  grep -qx boom "${D}/log/t.2.log"
  for j in 1 3 4; do [[ "$(tail -n 1 "${D}/log/t.${j}.log")" == "# Ended (code 0) at "* ]]; done
}

@test "--mem 1G and --num-threads 2 reach the job" {
  run "${SL[@]}" --mem 1G --num-threads 2 JOB=1:2 "${D}/res.JOB.log" \
    'env | grep -E "^SLURM_(CPUS_PER_TASK|MEM_PER_CPU)=" | sort'
  [ "$status" -eq 0 ]
  grep -qx 'SLURM_CPUS_PER_TASK=2' "${D}/res.1.log"
  grep -qx 'SLURM_MEM_PER_CPU=1024' "${D}/res.1.log"
  grep -q '^# Accounting: time=[0-9]* threads=2$' "${D}/res.2.log"
}

@test "--gpu 1 goes to the gpu partition with one (fake) GPU" {
  run "${SL[@]}" --gpu 1 "${D}/gpu.log" 'echo "partition=${SLURM_JOB_PARTITION} gpus=${SLURM_GPUS_ON_NODE}"'
  [ "$status" -eq 0 ]
  grep -qx 'partition=gpu gpus=1' "${D}/gpu.log"
  grep -q -- '-p gpu --gres=gpu:1' "${D}/q/gpu.log"
  ! grep -q -- '--array' "${D}/q/gpu.log"        # no range: a plain job
}

@test "scancel of a running task: slurm.pl fails quickly and names the task" {
  "${SL[@]}" JOB=1:3 "${D}/log/c.JOB.log" \
    "if [ JOB -eq 2 ]; then touch '${D}/running.JOB'; sleep 120; fi; echo done" >"${D}/out" 2>&1 &
  pid=$!
  for i in $(seq 300); do [ -e "${D}/running.2" ] && break; sleep 0.1; done
  [ -e "${D}/running.2" ]
  jid=$(jobid_of "${D}/log/q/c.log")
  t0=${SECONDS}
  scancel "${jid}_2"
  st=0; wait "${pid}" || st=$?
  [ "${st}" -eq 1 ]
  [ $((SECONDS - t0)) -le 30 ]
  grep -q "failed tasks: JOB=2$" "${D}/out"
  grep -q "task 2 (JOB=2, SLURM job ${jid}_2): exit code 143 .*; log: ${D}/log/c.2.log" "${D}/out"
  [[ "$(tail -n 1 "${D}/log/c.2.log")" == "# Ended (code 143) at "* ]]
  [[ "$(tail -n 1 "${D}/log/c.3.log")" == "# Ended (code 0) at "* ]]
}

@test "a task cancelled before it started is reported after the grace period, not waited for" {
  # With --max-jobs-run 1, task 3 is still pending when it is cancelled: it never writes a status.
  SLURM_PL_GRACE=2 "${SL[@]}" --max-jobs-run 1 JOB=1:3 "${D}/p.JOB.log" 'sleep 2; echo JOB' \
    >"${D}/out" 2>&1 &
  pid=$!
  for i in $(seq 100); do [ -n "$(jobid_of "${D}/q/p.log" 2>/dev/null)" ] && break; sleep 0.1; done
  jid=$(jobid_of "${D}/q/p.log")
  t0=${SECONDS}
  scancel "${jid}_3"
  st=0; wait "${pid}" || st=$?
  [ "${st}" -eq 1 ]
  [ $((SECONDS - t0)) -le 30 ]
  grep -q "failed tasks: JOB=3$" "${D}/out"
  grep -Eq "task 3 \(JOB=3, SLURM job ${jid}_3\): (ended in state CANCELLED|left the queue) without reporting an exit status" "${D}/out"
  grep -q "SLURM job ${jid}_3 .* without reporting an exit status" "${D}/p.3.log"
  grep -qx 1 "${D}/p.1.log"
  grep -qx 2 "${D}/p.2.log"
}

@test "--max-jobs-run 1 runs the tasks one after another" {
  run "${SL[@]}" --max-jobs-run 1 JOB=1:3 "${D}/seq.JOB.log" \
    "mkdir '${D}/lock' && sleep 0.5 && echo JOB >> '${D}/order' && rmdir '${D}/lock'"
  [ "$status" -eq 0 ]
  [ "$(tr '\n' ' ' < "${D}/order")" = "1 2 3 " ]
  grep -q -- '--array=1-3%1 ' "${D}/q/seq.log"
}

@test "--max-jobs-run 2: at most 2 tasks of 4 at once, all succeed" {
  # Each task counts the tasks running with it.
  run "${SL[@]}" --max-jobs-run 2 JOB=1:4 "${D}/mj.JOB.log" \
    "touch '${D}/run.JOB'; ls '${D}' | grep -c '^run\\.' >> '${D}/counts'; sleep 1; rm '${D}/run.JOB'"
  [ "$status" -eq 0 ]
  grep -q -- '--array=1-4%2 ' "${D}/q/mj.log"
  [ "$(wc -l < "${D}/counts")" -eq 4 ]
  [ "$(sort -n "${D}/counts" | tail -n 1)" -le 2 ]
}

@test "unknown options and bad configs are errors that name the problem" {
  run "${SL[@]}" --foo 1 "${D}/x.log" true
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown option --foo"*"conf/slurm.conf"* ]]
  [ ! -e "${D}/q" ]                                  # nothing was submitted
  printf 'option mem=* --mem $0\n' > "${D}/nocmd.conf"
  run timeout 30 "${REPO}/utils/slurm.pl" --config "${D}/nocmd.conf" "${D}/x.log" true
  [ "$status" -eq 1 ]
  [[ "$output" == *"has no 'command ...' line"* ]]
  run timeout 30 "${REPO}/utils/slurm.pl" --config "${D}/missing.conf" "${D}/x.log" true
  [ "$status" -eq 1 ]
  [[ "$output" == *"cannot read config file ${D}/missing.conf"* ]]
}

@test "a request the cluster refuses fails at submission with sbatch's message" {
  run "${SL[@]}" --num-threads 64 JOB=1:2 "${D}/big.JOB.log" true
  [ "$status" -eq 1 ]
  [[ "$output" == *"slurm.pl: submitting failed"* ]]
  [[ "$output" == *"sbatch: error:"* ]]
}

@test "without --config: ./conf/slurm.conf if present, else the built-in rules" {
  mkdir -p "${D}/conf"
  printf 'command sbatch --export=PATH\noption flavour=* --comment $0\n' > "${D}/conf/slurm.conf"
  run timeout 60 "${REPO}/utils/slurm.pl" --flavour vanilla "${D}/f.log" echo ok
  [ "$status" -eq 0 ]
  grep -q -- '--comment vanilla' "${D}/q/f.log"
  rm -r "${D}/conf"
  run timeout 60 "${REPO}/utils/slurm.pl" --flavour vanilla "${D}/f.log" echo ok
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown option --flavour: the built-in config of slurm.pl"* ]]
  run timeout 60 "${REPO}/utils/slurm.pl" --mem 1G --gpu 0 "${D}/f.log" echo ok   # built-in rules
  [ "$status" -eq 0 ]
  grep -qx ok "${D}/f.log"
}

@test "--max-wait: gives up, cancels the job and names the unfinished task" {
  run "${SL[@]}" --max-wait 3 JOB=1:2 "${D}/w.JOB.log" 'if [ JOB -eq 2 ]; then sleep 60; fi'
  [ "$status" -eq 1 ]
  [[ "$output" == *"gave up after 3 s (--max-wait)"*"unfinished: JOB=2"* ]]
  [[ "$output" == *"failed tasks: JOB=2"* ]]
  jid=$(jobid_of "${D}/q/w.log")
  for i in $(seq 50); do
    [ -z "$(squeue -h -r -j "${jid}" -t PENDING,RUNNING 2>/dev/null)" ] && break
    sleep 0.2
  done
  [ -z "$(squeue -h -r -j "${jid}" -t PENDING,RUNNING 2>/dev/null)" ]
}

@test "SIGTERM to slurm.pl cancels its job" {
  "${SL[@]}" JOB=1:2 "${D}/sig.JOB.log" "touch '${D}/on.JOB'; sleep 120" >"${D}/out" 2>&1 &
  pid=$!
  for i in $(seq 300); do [ -e "${D}/on.1" ] && [ -e "${D}/on.2" ] && break; sleep 0.1; done
  jid=$(jobid_of "${D}/q/sig.log")
  kill -TERM "${pid}"
  st=0; wait "${pid}" || st=$?
  [ "${st}" -eq 143 ]
  grep -q "cancelled SLURM job ${jid}" "${D}/out"
  for i in $(seq 50); do
    [ -z "$(squeue -h -r -j "${jid}" -t PENDING,RUNNING 2>/dev/null)" ] && break
    sleep 0.2
  done
  [ -z "$(squeue -h -r -j "${jid}" -t PENDING,RUNNING 2>/dev/null)" ]
}

@test "run.pl and slurm.pl give the same outputs and logs for JOB=1:3" {
  cmd='printf "task %s of %s\n" JOB 3 > out.JOB.txt; echo $((JOB * 2)); echo err JOB >&2'
  mkdir -p "${D}/local" "${D}/slurm"
  (cd "${D}/local" && timeout 60 "${REPO}/utils/run.pl" JOB=1:3 log/x.JOB.log "${cmd}")
  (cd "${D}/slurm" && timeout 90 "${REPO}/utils/slurm.pl" --config "${REPO}/conf/slurm.conf" \
    JOB=1:3 log/x.JOB.log "${cmd}")
  for j in 1 2 3; do
    cmp "${D}/local/out.${j}.txt" "${D}/slurm/out.${j}.txt"
    # Same log, up to the times.
    diff <(sed -E 's/ at .*//; s/time=[0-9]+/time=T/' "${D}/local/log/x.${j}.log") \
         <(sed -E 's/ at .*//; s/time=[0-9]+/time=T/' "${D}/slurm/log/x.${j}.log")
  done
  grep -qx 'task 2 of 3' "${D}/slurm/out.2.txt"
  grep -qx 6 "${D}/slurm/log/x.3.log"
}

@test "tools/slurm/start.sh is idempotent" {
  run "${REPO}/tools/slurm/start.sh" "${SLURM_TEST_STATE}"
  [ "$status" -eq 0 ]
  [[ "$output" == *"already running"* ]]
  [[ "$output" == *"export SLURM_CONF=${SLURM_TEST_STATE}/slurm.conf"* ]]
  [ "$(sinfo -h -N -o %T | head -n 1)" = idle ] || [ "$(sinfo -h -N -o %T | head -n 1)" = mixed ]
}
