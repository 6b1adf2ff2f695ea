#!/usr/bin/env bats
# Tests for utils/run.pl: logs, JOB substitution, failure reporting, concurrency limit.

setup() {
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  RUN="${REPO}/utils/run.pl"
  D="${BATS_TEST_TMPDIR}"
}

@test "JOB=1:4 writes 4 complete logs" {
  run "${RUN}" JOB=1:4 "${D}/log/task.JOB.log" echo hello from JOB
  [ "$status" -eq 0 ]
  for j in 1 2 3 4; do
    f="${D}/log/task.${j}.log"
    [ -f "$f" ]
    [ "$(sed -n 1p "$f")" = "# echo hello from ${j}" ]
    [[ "$(sed -n 2p "$f")" == "# Started at "* ]]
    grep -qx "hello from ${j}" "$f"
    [[ "$(tail -n 2 "$f" | head -n 1)" =~ ^"# Accounting: time="[0-9]+" threads=1"$ ]]
    [[ "$(tail -n 1 "$f")" == "# Ended (code 0) at "* ]]
  done
  [ ! -e "${D}/log/task.5.log" ]
}

@test "a failing task makes run.pl fail and names the task and its log" {
  run "${RUN}" JOB=1:4 "${D}/log/t.JOB.log" 'if [ JOB -eq 3 ]; then echo boom >&2; exit 3; fi'
  [ "$status" -eq 1 ]
  [[ "$output" == *"run.pl: 1 / 4 failed, log is in ${D}/log/t.3.log"* ]]
  [[ "$output" == *"JOB=3"* ]]
  [[ "$(tail -n 1 "${D}/log/t.3.log")" == "# Ended (code 3) at "* ]]
  grep -qx boom "${D}/log/t.3.log"                      # stderr goes to the log too
  [[ "$(tail -n 1 "${D}/log/t.2.log")" == "# Ended (code 0) at "* ]]
}

@test "--max-jobs-run 1 runs the tasks one after another" {
  # Each task holds a lock dir while it runs; an overlap makes mkdir fail.
  run "${RUN}" --max-jobs-run 1 JOB=1:4 "${D}/seq.JOB.log" \
    "mkdir '${D}/lock' && sleep 0.3 && echo JOB >> '${D}/order' && rmdir '${D}/lock'"
  [ "$status" -eq 0 ]
  [ "$(cat "${D}/order" | tr '\n' ' ')" = "1 2 3 4 " ]
}

@test "without --max-jobs-run the tasks run concurrently" {
  # Every task waits (up to 10 s) until all 3 have started: only possible if they overlap.
  run "${RUN}" JOB=1:3 "${D}/par.JOB.log" \
    "touch '${D}/started.JOB'; for i in \$(seq 100); do [ \$(ls '${D}' | grep -c started) -eq 3 ] && exit 0; sleep 0.1; done; exit 1"
  [ "$status" -eq 0 ]
}

@test "JOB is substituted inside the command and its arguments" {
  mkdir -p "${D}/split"
  for j in 1 2; do echo "content ${j}" > "${D}/split/in.${j}.txt"; done
  run "${RUN}" JOB=1:2 "${D}/sub.JOB.log" cp "${D}/split/in.JOB.txt" "${D}/split/out.JOB.txt"
  [ "$status" -eq 0 ]
  [ "$(cat "${D}/split/out.1.txt")" = "content 1" ]
  [ "$(cat "${D}/split/out.2.txt")" = "content 2" ]
}

@test "any range variable name works (TASK=2:3)" {
  run "${RUN}" TASK=2:3 "${D}/x.TASK.log" echo TASK
  [ "$status" -eq 0 ]
  [ ! -e "${D}/x.1.log" ]
  grep -qx 2 "${D}/x.2.log"
  grep -qx 3 "${D}/x.3.log"
}

@test "pipes and redirections in a quoted command" {
  run "${RUN}" JOB=1:2 "${D}/pipe.JOB.log" "printf 'a\nb\nc\n' | wc -l > '${D}/count.JOB'"
  [ "$status" -eq 0 ]
  [ "$(tr -d ' ' < "${D}/count.1")" = 3 ]
  [ "$(tr -d ' ' < "${D}/count.2")" = 3 ]
  # Kaldi style: the pipe as a separate (escaped) argument.
  run "${RUN}" "${D}/pipe2.log" echo a b c \| wc -w
  [ "$status" -eq 0 ]
  grep -qx ' *3' "${D}/pipe2.log"
}

@test "arguments with spaces stay single arguments" {
  run "${RUN}" "${D}/args.log" printf '[%s]\n' "a  b" "it's" ""
  [ "$status" -eq 0 ]
  grep -qx '\[a  b\]' "${D}/args.log"
  grep -qx "\\[it's\\]" "${D}/args.log"
  grep -qx '\[\]' "${D}/args.log"
}

@test "no range runs a single task into the given log" {
  run "${RUN}" "${D}/deep/dir/single.log" echo only once
  [ "$status" -eq 0 ]
  [ "$(ls "${D}/deep/dir")" = "single.log" ]
  grep -qx "only once" "${D}/deep/dir/single.log"
  [[ "$(tail -n 1 "${D}/deep/dir/single.log")" == "# Ended (code 0) at "* ]]
}

@test "a failing single task fails run.pl" {
  run "${RUN}" "${D}/fail.log" false
  [ "$status" -eq 1 ]
  [[ "$output" == *"1 / 1 failed, log is in ${D}/fail.log"* ]]
}

@test "cluster options are accepted and ignored; --num-threads is reported" {
  run "${RUN}" --mem 4G --gpu 1 --time 1:00:00 --config conf/slurm.conf --num-threads 4 \
    JOB=1:1 "${D}/opt.JOB.log" true
  [ "$status" -eq 0 ]
  grep -q '^# Accounting: time=[0-9]* threads=4$' "${D}/opt.1.log"
}

@test "a parallel range with a log lacking the variable is refused" {
  run "${RUN}" JOB=1:2 "${D}/same.log" true
  [ "$status" -eq 1 ]
  [[ "$output" == *"does not contain 'JOB'"* ]]
}

@test "SIGTERM stops the running tasks and closes their logs" {
  "${RUN}" JOB=1:2 "${D}/sig.JOB.log" "echo \$\$ > '${D}/pid.JOB'; sleep 60" &
  rp=$!
  for i in $(seq 50); do [ -s "${D}/pid.1" ] && [ -s "${D}/pid.2" ] && break; sleep 0.1; done
  kill -TERM "${rp}"
  st=0; wait "${rp}" || st=$?
  [ "${st}" -eq 143 ]
  for j in 1 2; do
    [[ "$(tail -n 1 "${D}/sig.${j}.log")" == "# Ended (code 143) at "* ]]
    ! kill -0 "$(cat "${D}/pid.${j}")" 2>/dev/null
  done
}
