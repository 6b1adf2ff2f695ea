#!/usr/bin/env bats
# Tests for utils/parse_options.sh: a tiny script declares options, sources the parser and
# prints the resulting variables and positional arguments.

setup() {
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  SCRIPT="${BATS_TEST_TMPDIR}/demo.sh"
  cat > "${SCRIPT}" <<SCRIPT_EOF
#!/usr/bin/env bash
# demo.sh: exercises parse_options.sh.
set -euo pipefail

stage=1          # First stage to run.
stop_stage=100   # Last stage to run.
use_gpu=false    # Decode on a GPU (true/false).
langs="hi it"    # Space-separated language codes.
tag=default      # Experiment tag.
undocumented=1

. "${REPO}/utils/parse_options.sh"

echo "stage=\${stage}"
echo "stop_stage=\${stop_stage}"
echo "use_gpu=\${use_gpu}"
echo "langs=\${langs}"
echo "tag=[\${tag}]"
echo "nargs=\$#"
for a in "\$@"; do echo "arg=[\${a}]"; done
( set | grep -q '^__po_' ) && echo "LEAKED internal variables" || true
SCRIPT_EOF
  chmod +x "${SCRIPT}"
}

@test "defaults are kept without options" {
  run "${SCRIPT}"
  [ "$status" -eq 0 ]
  [[ "$output" == *"stage=1"* ]]
  [[ "$output" == *"stop_stage=100"* ]]
  [[ "$output" == *"nargs=0"* ]]
  [[ "$output" != *LEAKED* ]]
}

@test "--stage 3 --stop_stage 5 (space-separated values)" {
  run "${SCRIPT}" --stage 3 --stop_stage 5
  [ "$status" -eq 0 ]
  [[ "$output" == *$'stage=3\nstop_stage=5'* ]]
}

@test "--stop-stage=5 maps dashes to underscores, = form" {
  run "${SCRIPT}" --stage=3 --stop-stage=5
  [ "$status" -eq 0 ]
  [[ "$output" == *$'stage=3\nstop_stage=5'* ]]
}

@test "undeclared option fails with a message" {
  run "${SCRIPT}" --stage 2 --foo 1
  [ "$status" -eq 1 ]
  [[ "$output" == *"parse_options.sh: invalid option --foo"* ]]
  [[ "$output" != *"stage=2"* ]]
}

@test "true/false variables accept only true or false" {
  run "${SCRIPT}" --use-gpu true
  [ "$status" -eq 0 ]
  [[ "$output" == *"use_gpu=true"* ]]
  run "${SCRIPT}" --use_gpu yes
  [ "$status" -eq 1 ]
  [[ "$output" == *'expected "true" or "false"'* ]]
}

@test "--config file is sourced before the other options, wherever it appears" {
  printf 'stage=7\nstop_stage=8\nlangs="en fr"\n' > "${BATS_TEST_TMPDIR}/my.conf"
  run "${SCRIPT}" --stop_stage 9 --config "${BATS_TEST_TMPDIR}/my.conf"
  [ "$status" -eq 0 ]
  [[ "$output" == *$'stage=7\nstop_stage=9'* ]]   # command line wins over the config
  [[ "$output" == *"langs=en fr"* ]]
  run "${SCRIPT}" --config="${BATS_TEST_TMPDIR}/my.conf"
  [ "$status" -eq 0 ]
  [[ "$output" == *$'stage=7\nstop_stage=8'* ]]
}

@test "--config with a missing file fails" {
  run "${SCRIPT}" --config "${BATS_TEST_TMPDIR}/nope.conf"
  [ "$status" -eq 1 ]
  [[ "$output" == *"cannot read config file"* ]]
}

@test "--config naming an option the script does not have fails with file and line" {
  printf '# a preset\nstage=7\n  stop_stge=8\n' > "${BATS_TEST_TMPDIR}/typo.conf"
  run "${SCRIPT}" --config "${BATS_TEST_TMPDIR}/typo.conf"
  [ "$status" -eq 1 ]
  [[ "$output" == *"typo.conf:3: unknown option 'stop_stge'"* ]]
  [[ "$output" != *"stage=7"* ]]
}

@test "the shipped presets set only options of the recipe" {
  for f in "${REPO}"/conf/preset/*.conf; do
    run "${REPO}/egs2/TEMPLATE/adapt1/adapt.sh" --config "$f" --help
    [ "$status" -eq 0 ]
  done
}

@test "--help lists the declared options with their comments and exits 0" {
  run "${SCRIPT}" --stage 4 --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"demo.sh: exercises parse_options.sh."* ]]
  [[ "$output" == *"--stage 1  # First stage to run."* ]]
  [[ "$output" == *"--stop_stage 100  # Last stage to run."* ]]
  [[ "$output" == *"--use_gpu false  # Decode on a GPU (true/false)."* ]]
  [[ "$output" == *'--langs "hi it"  # Space-separated language codes.'* ]]
  [[ "$output" != *undocumented* ]]
  [[ "$output" != *"stage=4"* ]]    # the script body did not run
  run "${SCRIPT}" -h
  [ "$status" -eq 0 ]
  [[ "$output" == *"--tag default  # Experiment tag."* ]]
}

@test "--help prints help_message when the script sets one" {
  sed -i 's/^stage=1 /help_message="Usage: demo.sh <x>"\nstage=1 /' "${SCRIPT}"
  run "${SCRIPT}" --help
  [ "$status" -eq 0 ]
  [ "$output" = "Usage: demo.sh <x>" ]
}

@test "quoted multi-word and empty values" {
  run "${SCRIPT}" --langs "hi it  en" --tag ""
  [ "$status" -eq 0 ]
  [[ "$output" == *"langs=hi it  en"* ]]
  [[ "$output" == *"tag=[]"* ]]
  run "${SCRIPT}" --tag=
  [ "$status" -eq 0 ]
  [[ "$output" == *"tag=[]"* ]]
}

@test "positional arguments are left in \$@" {
  run "${SCRIPT}" --stage 2 data/train "a b" --not-an-option
  [ "$status" -eq 0 ]
  [[ "$output" == *"stage=2"* ]]
  [[ "$output" == *$'nargs=3\narg=[data/train]\narg=[a b]\narg=[--not-an-option]'* ]]
}

@test "-- ends the options" {
  run "${SCRIPT}" --stage 2 -- --stage 5
  [ "$status" -eq 0 ]
  [[ "$output" == *"stage=2"* ]]
  [[ "$output" == *$'nargs=2\narg=[--stage]\narg=[5]'* ]]
}

@test "an option without a value fails" {
  run "${SCRIPT}" --stage
  [ "$status" -eq 1 ]
  [[ "$output" == *"needs a value"* ]]
}
