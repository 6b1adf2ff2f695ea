#!/usr/bin/env bats
# Tests for egs2/TEMPLATE/adapt1/lib.sh (the helpers of adapt.sh) and the stage files'
# shared interface: every <family>_stages.sh defines the functions adapt.sh calls.
# Paths hold a space on purpose: a recipe may live in one.

setup() {
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  TEMPLATE="${REPO}/egs2/TEMPLATE/adapt1"
  export PATH="${REPO}/utils:${PATH}"
  D="${BATS_TEST_TMPDIR}/a dir"
  mkdir -p "${D}"
  # shellcheck source=../../egs2/TEMPLATE/adapt1/lib.sh
  . "${TEMPLATE}/lib.sh"
  langs="hi it"
}

@test "every family's stage file defines the functions adapt.sh calls" {
  interface="family_init stage4 stage5 train_setup cell_signature train_cell cell_finished decode_set stage9 stage10 stage11 stage12 stage13"
  files=("${TEMPLATE}"/*_stages.sh)
  [ "${#files[@]}" -ge 2 ]
  for file in "${files[@]}"; do
    defined=$(bash -c '. "$1" && . "$2" && declare -F | cut -d" " -f3' _ "${TEMPLATE}/lib.sh" "${file}")
    for name in ${interface}; do
      grep -qx "${name}" <<< "${defined}" || { echo "${file##*/} lacks ${name}"; return 1; }
    done
  done
}

@test "the stage files and lib.sh parse, and adapt.sh has no model_family branch in a stage" {
  for file in "${TEMPLATE}"/*.sh; do bash -n "${file}"; done
  run grep -n 'model_family}" = ' "${TEMPLATE}/adapt.sh" "${TEMPLATE}/lib.sh"
  [ "$status" -eq 1 ]
}

@test "log names the script and, for a sourced file, where the call is" {
  printf '%s\n' 'f() { log "from a stage file"; }' 'g() { skip_stage 9 "why"; }' > "${D}/stages.sh"
  printf '%s\n' '. "$1"; . "$2"' 'log "from the script"' 'f' 'g' 'skip_stage 2 "because"' > "${D}/adapt.sh"
  run bash "${D}/adapt.sh" "${TEMPLATE}/lib.sh" "${D}/stages.sh"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" =~ ^[0-9T:-]+\ \(adapt\.sh:2:main\)\ from\ the\ script$ ]]
  [[ "${lines[1]}" =~ ^[0-9T:-]+\ \(adapt\.sh:stages\.sh:1:f\)\ from\ a\ stage\ file$ ]]
  # A helper that logs for its caller (skip_stage, up_to_date) names the caller.
  [[ "${lines[2]}" =~ \ \(adapt\.sh:stages\.sh:2:g\)\ Skip\ stage\ 9:\ why$ ]]
  [[ "${lines[3]}" =~ \ \(adapt\.sh:5:main\)\ Skip\ stage\ 2:\ because$ ]]
}

@test "skip_stage says which stage and why" {
  run skip_stage 2 "speed perturbation: no --speed_perturb_factors"
  [[ "${output}" == *") Skip stage 2: speed perturbation: no --speed_perturb_factors" ]]
}

@test "run_stage: --stage, --stop_stage and --skip_stages" {
  selected() { local n out=""; for n in $(seq 12); do ! run_stage "${n}" || out+="${n} "; done; echo "${out% }"; }
  stage=2 stop_stage=9 skip_stages="5 11"
  [ "$(selected)" = "2 3 4 6 7 8 9" ]
  skip_stages="15"
  [ "$(selected)" = "2 3 4 5 6 7 8 9" ]
  stage=1 stop_stage=10000 skip_stages="1 12"
  [ "$(selected)" = "2 3 4 5 6 7 8 9 10 11" ]
}

@test "timing.tsv: a row per stage run, the failed one marked, this run's rows logged" {
  expdir="${D}/exp" stage=1 stop_stage=3 skip_stages="2"
  run_started="run-a"
  for n in 1 2 3; do ! run_stage "${n}" || true; done
  run_stage 3  # asked again (stage 2's if/elif does): still one row
  timing_report > "${D}/report"
  run_started="run-b"
  run_stage 1
  stage_clock_close failed
  [ "$(cut -f1,2,4 "${D}/exp/log/timing.tsv" | tr '\t\n' ',;')" = "run_started,stage,status;run-a,1,ok;run-a,3,ok;run-b,1,failed;" ]
  [ "$(cut -f3 "${D}/exp/log/timing.tsv" | tail -n +2 | grep -c '^[0-9][0-9]*$')" -eq 3 ]
  grep -q "Wall time per stage" "${D}/report"
  [ "$(grep -c "stage [13] " "${D}/report")" -eq 2 ]
}

@test "on_exit: a run that dies silently under set -e says its exit code and stage" {
  printf '%s\n' 'set -euo pipefail' '. "$1"' "trap 'on_exit \$?' EXIT" 'expdir=$2 stage=1 stop_stage=9 skip_stages=""' \
    'run_stage 4' 'false' > "${D}/adapt.sh"
  run bash "${D}/adapt.sh" "${TEMPLATE}/lib.sh" "${D}/exp"
  [ "$status" -eq 1 ]
  [[ "${lines[-1]}" == *"Error: ended with exit code 1 in stage 4 "* ]]
  [ "$(tail -n 1 "${D}/exp/log/timing.tsv" | cut -f2,4)" = "$(printf '4\tfailed')" ]
  printf '%s\n' 'set -euo pipefail' '. "$1"' "trap 'on_exit \$?' EXIT" 'expdir=$2' 'echo fine' > "${D}/ok.sh"
  run bash "${D}/ok.sh" "${TEMPLATE}/lib.sh" "${D}/exp"
  [ "$status" -eq 0 ] && [ "${output}" = fine ]
}

@test "exit_traps: a run stopped by TERM or HUP says so and timing.tsv marks its stage failed" {
  printf '%s\n' 'set -euo pipefail' '. "$1"' 'exit_traps' 'expdir=$2 stage=1 stop_stage=9 skip_stages=""' \
    'run_stage 6' 'touch "$2/started"' 'sleep 30 & wait $!' > "${D}/adapt.sh"
  local signal code
  for signal in TERM HUP; do  # (INT: ignored by a background job of a non-interactive shell, as here)
    rm -f "${D}/exp/started"
    mkdir -p "${D}/exp"
    bash "${D}/adapt.sh" "${TEMPLATE}/lib.sh" "${D}/exp" > "${D}/out" 2>&1 &
    local pid=$!
    # up to 60 s: on a loaded machine (CI installing, other jobs) starting bash and lib.sh can take long;
    # a signal sent before the traps are set would test nothing
    for _ in $(seq 600); do [ -f "${D}/exp/started" ] && break; sleep 0.1; done
    [ -f "${D}/exp/started" ]
    kill "-${signal}" "${pid}"
    code=0 && wait "${pid}" || code=$?
    [ "${code}" -eq "$([ "${signal}" = TERM ] && echo 143 || echo 129)" ]
    grep -q "Error: ended with exit code ${code} in stage 6 " "${D}/out"
    [ "$(tail -n 1 "${D}/exp/log/timing.tsv" | cut -f2,4)" = "$(printf '6\tfailed')" ]
  done
}

@test ".done markers: up to date only with the same signature" {
  run is_done "${D}" "sig a"
  [ "$status" -eq 1 ]
  mark_done "${D}" "sig a"
  [ "$(cat "${D}/.done")" = "sig a" ] && [ ! -e "${D}/.done.tmp" ]
  run up_to_date "label" "${D}" "sig a"
  [ "$status" -eq 0 ] && [[ "${output}" == *"  label: up to date" ]]
  run up_to_date "label" "${D}" "sig b"
  [ "$status" -eq 1 ] && [ -z "${output}" ]
}

@test "job_cmd: the GPU launcher only with --ngpu > 0" {
  cuda_cmd="run.pl --max-jobs-run 1" decode_cmd="run.pl"
  ngpu=0
  [ "$(job_cmd 1 "${decode_cmd}")" = "run.pl" ]
  [ "$(job_cmd "${ngpu}" "${cuda_cmd}")" = "run.pl --max-jobs-run 1" ]
  ngpu=2
  [ "$(job_cmd 1 "${decode_cmd}")" = "run.pl --max-jobs-run 1 --gpu 1" ]
  [ "$(job_cmd "${ngpu}" "${cuda_cmd}")" = "run.pl --max-jobs-run 1 --gpu 2" ]
}

@test "quietly: the command's log goes to a file, shown only when it fails" {
  run quietly "${D}/log/ok.log" bash -c 'echo out; echo noise >&2'
  [ "$status" -eq 0 ] && [ "${output}" = "out" ]
  [ "$(cat "${D}/log/ok.log")" = "noise" ]
  run quietly "${D}/log/bad.log" bash -c 'echo "ERROR: why" >&2; exit 3'
  [ "$status" -eq 3 ] && [ "${output}" = "ERROR: why" ]
}

@test "split_keys, job_dirs and merge_jobs in a dir with a space" {
  printf 'u%s x\n' 3 1 2 > "${D}/wav.scp"
  split_keys "${D}/wav.scp" "${D}/log dir" 2
  [ "${_nj}" -eq 2 ] && [ -s "${D}/log dir/keys.1" ] && [ -s "${D}/log dir/keys.2" ]
  split_keys "${D}/wav.scp" "${D}/log dir" 8
  [ "${_nj}" -eq 3 ] && [ ! -e "${D}/log dir/keys.4" ]
  mapfile -t jobs < <(job_dirs "${D}/out." 2)
  [ "${jobs[*]}" = "${D}/out.1 ${D}/out.2" ]
  mkdir -p "${jobs[@]}"
  printf 'u2 b\n' > "${jobs[0]}/hyp"
  printf 'u1 a\nu3 c\n' > "${jobs[1]}/hyp"
  merge_jobs hyp "${D}/hyp" "${jobs[@]}"
  [ "$(cat "${D}/hyp")" = "$(printf 'u1 a\nu2 b\nu3 c')" ] && [ ! -e "${D}/hyp.tmp" ]
}

@test "each_lang and pool_sets: every language of --langs, in order" {
  [ "$(each_lang "${D}/<lang>_dev" "x/<lang>")" = "$(printf '%s\n' "${D}/hi_dev" x/hi "${D}/it_dev" x/it)" ]
  for lang in hi it; do mkdir -p "${D}/${lang}_dev"; echo "${lang}1 ${lang}" > "${D}/${lang}_dev/utt2lang"; done
  pool_sets "${D}/pooled" "${D}" dev utt2lang
  [ "$(cat "${D}/pooled/utt2lang")" = "$(printf 'hi1 hi\nit1 it')" ]
}

@test "adapter_variants: one per rank, the config last (it may hold a space)" {
  expdir="${D}/exp" adapter_tag=r32_qv_dec lora_config="${D}/r32_qv_dec.yaml" lora_ranks=""
  [ "$(adapter_variants)" = "r32_qv_dec - ${D}/r32_qv_dec.yaml" ]
  lora_ranks="8 16"
  [ "$(adapter_variants)" = "$(printf '%s\n' "r8_qv_dec 8 ${D}/exp/conf/lora/r8_qv_dec.yaml" \
    "r16_qv_dec 16 ${D}/exp/conf/lora/r16_qv_dec.yaml")" ]
  adapter_tag=mine
  read -r tag rank config < <(adapter_variants)
  [ "${tag}" = mine_r8 ] && [ "${rank}" = 8 ] && [ "${config}" = "${D}/exp/conf/lora/mine_r8.yaml" ]
}

@test "family_init under pipefail: the first of many adapter variants, no SIGPIPE death" {
  # With head in the pipe, the writer of the later variants died of SIGPIPE and, under
  # set -euo pipefail, adapt.sh ended without a word (CI: two --lora_ranks, a loaded machine).
  printf 'where: decoder\n' > "${D}/r32_qv_dec.yaml"
  cat > "${D}/init.sh" <<'SH'
set -euo pipefail
. "$1"; . "$2"
expdir=$3/exp dumpdir=$3/dump adapter_tag=r32_qv_dec lora_config=$3/r32_qv_dec.yaml
lora_ranks=$(seq -s ' ' 1 20000) whisper_model=tools/models/whisper-base test_sets=test lid_config=conf/lid/mlp.yaml
search_tag=_beam5
config_fields=$'where=decoder\nencoder_top=0'
family_init
echo "route_tag=${route_tag} cache=${use_encoder_cache} route_exp=${route_exp##*/}"
SH
  PATH="${REPO}/tools/venv/bin:${PATH}" run bash "${D}/init.sh" "${TEMPLATE}/lib.sh" "${TEMPLATE}/whisper_stages.sh" "${D}"
  [ "$status" -eq 0 ]
  # stages 10-12 write under a dir that carries the search tag (another --beam_size: another dir)
  [ "${lines[-1]}" = "route_tag=r1_qv_dec cache=true route_exp=whisper_base_routing_r1_qv_dec_beam5" ]
}

@test "family_init and stage 5: encoder_top trains on the states below the top layers, decodes from features; encoder_span speech caches apart; language ID's encoder outputs wait for stage 9" {
  cat > "${D}/init.sh" <<'SH'
set -euo pipefail
. "$1"; . "$2"
expdir=$3/exp dumpdir=$3/dump adapter_tag=x lora_ranks="" whisper_model=tools/models/whisper-base
test_sets="test test_other" lid_config=conf/lid/mlp.yaml langs="hi it" train_split=train cache_backend=hf search_tag=""
cache_set() { echo "$2/$1${4:+:$4}"; }
all_sets() { echo hi_train hi_dev hi_test hi_test_other it_train it_dev it_test it_test_other; }
for lora_config in "$4"/conf/lora/r32_qv_dec.yaml "$4"/conf/lora/r32_qv_dec_enc2.yaml "$4"/conf/lora/r32_qv_both.yaml; do
    config_fields=$(PYTHONPATH=$4 python3 -m espnet_adapters.bin.check_configs --lora_config "${lora_config}" \
        --decode_config "$4/conf/decode/${5:-default}.yaml" --lora_fields where encoder_top \
        --decode_fields encoder_span encoder_trim 2> /dev/null)
    family_init
    echo "${lora_config##*/} top=${encoder_top} cache=${use_encoder_cache} train_cache=${train_cache}"
    echo "  stage5: $(stage5 2>&1 | grep -v '^[0-9]' | tr '\n' ' ')| lid: $(lid_caches | tr '\n' ' ')"
done
SH
  PATH="${REPO}/tools/venv/bin:${PATH}" run bash "${D}/init.sh" "${TEMPLATE}/lib.sh" "${TEMPLATE}/whisper_stages.sh" "${D}" "${REPO}"
  [ "$status" -eq 0 ]
  lid="| lid: encoder/hi_train encoder/hi_dev encoder/hi_test encoder/it_train encoder/it_dev encoder/it_test "
  [ "${lines[0]}" = "r32_qv_dec.yaml top=0 cache=true train_cache=encoder" ]
  [ "${lines[1]}" = "  stage5: encoder/hi_train:window encoder/hi_dev:window encoder/hi_test:window encoder/hi_test_other:window encoder/it_train:window encoder/it_dev:window encoder/it_test:window encoder/it_test_other:window ${lid}" ]
  [ "${lines[2]}" = "r32_qv_dec_enc2.yaml top=2 cache=false train_cache=encoder_top2" ]
  [ "${lines[3]}" = "  stage5: encoder_top2/hi_train:window encoder_top2/hi_dev:window encoder_top2/it_train:window encoder_top2/it_dev:window ${lid}" ]
  [ "${lines[4]}" = "r32_qv_both.yaml top=0 cache=false train_cache=" ]
  [ "${lines[5]}" = "  stage5: ${lid}" ]
  # conf/decode/speech.yaml: the encoder on the speech + 1 s; its caches apart; language ID keeps the window's
  PATH="${REPO}/tools/venv/bin:${PATH}" run bash "${D}/init.sh" "${TEMPLATE}/lib.sh" "${TEMPLATE}/whisper_stages.sh" "${D}" "${REPO}" speech
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "r32_qv_dec.yaml top=0 cache=true train_cache=encoder_speech1.0" ]
  [ "${lines[1]}" = "  stage5: encoder_speech1.0/hi_train:speech encoder_speech1.0/hi_dev:speech encoder_speech1.0/hi_test:speech encoder_speech1.0/hi_test_other:speech encoder_speech1.0/it_train:speech encoder_speech1.0/it_dev:speech encoder_speech1.0/it_test:speech encoder_speech1.0/it_test_other:speech ${lid}" ]
  [ "${lines[2]}" = "r32_qv_dec_enc2.yaml top=2 cache=false train_cache=encoder_top2_speech1.0" ]
  [ "${lines[3]}" = "  stage5: encoder_top2_speech1.0/hi_train:speech encoder_top2_speech1.0/hi_dev:speech encoder_top2_speech1.0/it_train:speech encoder_top2_speech1.0/it_dev:speech ${lid}" ]
}

@test "multilingual_stage: a stage that compares languages says why it is skipped with one" {
  stage=1 stop_stage=10000 skip_stages=""
  run multilingual_stage 9 "language ID"
  [ "$status" -eq 0 ] && [ -z "${output}" ]
  langs="it"
  run multilingual_stage 9 "language ID"
  [ "$status" -eq 1 ] && [[ "${output}" == *") Skip stage 9: language ID needs two or more --langs" ]]
  stop_stage=8
  run multilingual_stage 9 "language ID"
  [ "$status" -eq 1 ] && [ -z "${output}" ]  # not selected: nothing to say
}

@test "decode_set with --decode_backend ct2: each model exported once, its export decoded from features" {
  # shellcheck source=../../egs2/TEMPLATE/adapt1/whisper_stages.sh
  . "${TEMPLATE}/whisper_stages.sh"
  expdir="${D}/exp" model_tag=whisper_base whisper_model=whisper-base ct2_quantization=int8 num_threads=1
  decode_lang=forced inference_tag=_ct2 decode_backend=ct2 use_encoder_cache=true
  adapter="${D}/exp/whisper_base_lora_hi_r32/adapter"
  mkdir -p "${adapter}" && echo '{}' > "${adapter}/adapter_config.json" && echo w > "${adapter}/adapter_model.safetensors"
  fake_export() {  # ${train_cmd}: records the command, makes what export_adapter makes
    local out=""
    printf '%s|' "$@" >> "${D}/exports" && echo >> "${D}/exports"
    while [ $# -gt 0 ]; do [ "$1" != --out_dir ] || out=$2; shift; done
    mkdir -p "${out}/ct2_int8"
    echo "{\"ct2\": {\"ct2_int8\": {\"model_bin_sha256\": \"$(wc -l < "${D}/exports")\"}}}" > "${out}/manifest.json"
  }
  train_cmd=fake_export
  run_decode() { printf '%s|' "$@" "cache=${use_encoder_cache}" >> "${D}/decodes" && echo >> "${D}/decodes"; }
  decode_set whisper_base hi_test
  decode_set whisper_base_lora_hi_r32 hi_test "${adapter}"
  decode_set whisper_base_lora_hi_r32 it_test "${adapter}"
  [ "$(wc -l < "${D}/exports")" -eq 2 ]  # the base and the adapter, once each
  grep -qF -- "--whisper_model|whisper-base|--out_dir|${D}/exp/whisper_base/export/base|--quantization|int8|" "${D}/exports"
  grep -qF -- "--adapter_dir|${adapter}|--out_dir|${D}/exp/whisper_base/export/whisper_base_lora_hi_r32|" "${D}/exports"
  mapfile -t decodes < "${D}/decodes"
  [ "${#decodes[@]}" -eq 3 ]
  [[ "${decodes[0]}" == "${D}/exp/whisper_base/decode_hi_test_ct2|hi_test|"*"|whisper_decode|--lang_mode|forced|--decode_backend|ct2|--ct2_dir|${D}/exp/whisper_base/export/base/ct2_int8|cache=false|" ]]
  [[ "${decodes[2]}" == "${D}/exp/whisper_base_lora_hi_r32/decode_it_test_ct2|it_test|"*"|--ct2_dir|${D}/exp/whisper_base/export/whisper_base_lora_hi_r32/ct2_int8|cache=false|" ]]
  [[ "${decodes[1]}" != *--adapter_dir* ]] && ${use_encoder_cache}  # the cache stays on for the other stages
  # A retrained adapter is exported again.
  echo w2 > "${adapter}/adapter_model.safetensors"
  decode_set whisper_base_lora_hi_r32 hi_test "${adapter}"
  [ "$(wc -l < "${D}/exports")" -eq 3 ]
}

@test "cache_set: --cache_backend ct2 encodes by the base model's float32 export, exported once; encoder_top and hf by transformers" {
  # shellcheck source=../../egs2/TEMPLATE/adapt1/whisper_stages.sh
  . "${TEMPLATE}/whisper_stages.sh"
  expdir="${D}/exp" model_tag=whisper_base whisper_model=whisper-base ct2_quantization=int8 num_threads=1
  feats_dir="${D}/dump/whisper_base" nj=2 ngpu=0
  for set_name in hi_train hi_dev; do
    mkdir -p "${feats_dir}/${set_name}" && printf 'u1 a.ark:1\nu2 a.ark:2\n' > "${feats_dir}/${set_name}/feats.scp"
    echo sig > "${feats_dir}/${set_name}/.done"
  done
  fake_cmd() {  # ${train_cmd}: records each job's command; makes what export_adapter makes
    local out=""
    printf '%s|' "$@" >> "${D}/jobs" && echo >> "${D}/jobs"
    if [[ " $* " == *" espnet_adapters.bin.export_adapter "* ]]; then
      while [ $# -gt 0 ]; do [ "$1" != --out_dir ] || out=$2; shift; done
      mkdir -p "${out}/ct2_float32"
      echo '{"ct2": {"ct2_float32": {"model_bin_sha256": "abc"}}}' > "${out}/manifest.json"
    fi
  }
  train_cmd=fake_cmd cache_backend=ct2
  cache_set hi_train encoder 0
  cache_set hi_dev encoder 0
  cache_set hi_train encoder_top2 2
  mapfile -t jobs < "${D}/jobs"
  [ "${#jobs[@]}" -eq 4 ]  # one export, three caches
  [[ "${jobs[0]}" == *"espnet_adapters.bin.export_adapter|--whisper_model|whisper-base|--out_dir|${D}/exp/whisper_base/export/base|--quantization|float32|"* ]]
  [[ "${jobs[1]}" == *"--out_dir|${feats_dir}/encoder/hi_train|"*"|--backend|ct2|--ct2_dir|${D}/exp/whisper_base/export/base/ct2_float32|"* ]]
  [[ "${jobs[3]}" == *"--out_dir|${feats_dir}/encoder_top2/hi_train|"*"|--encoder_top|2|--backend|hf|"* ]]
  # the backend is in the signature: hf re-makes the ct2 cache; a re-run with the same backend does nothing
  cache_backend=hf
  cache_set hi_train encoder 0
  [ "$(wc -l < "${D}/jobs")" -eq 5 ] && [[ "$(tail -1 "${D}/jobs")" == *"|--backend|hf|"* ]]
  cache_set hi_train encoder 0
  [ "$(wc -l < "${D}/jobs")" -eq 5 ]
}

@test "lang_test_sets, all_sets, decode_plan: test_other where the other synthesizer has a voice" {
  langs="hi bn" eval_langs="en" train_split=train expdir="${D}/exp" model_tag=m adapter_tag=t lora_ranks=""
  decode_base=true cross_eval=true other_langs="hi it pa te"
  mkdir -p "${D}/exp/m_lora_hi_t/adapter" "${D}/exp/m_lora_bn_t/adapter"
  # The default --test_sets: a language without a voice keeps only its test set.
  test_sets="test test_other" test_sets_auto=true
  [ "$(lang_test_sets hi)" = "test test_other" ]
  [ "$(lang_test_sets bn)" = "test" ]
  [ "$(lang_test_sets en)" = "test" ]  # evaluated only: the first test set
  [ "$(all_sets | paste -sd ' ')" = "hi_train hi_dev hi_test hi_test_other bn_train bn_dev bn_test en_test" ]
  # Other languages' adapters (cross_eval) and the evaluated-only language: the first test set only.
  run decode_plan
  [ "$status" -eq 0 ]
  [ "$(grep -c test_other <<< "${output}")" -eq 2 ]
  grep -qx "m hi_test_other hi" <<< "${output}"
  grep -q "^m_lora_hi_t hi_test_other hi .*/m_lora_hi_t/adapter$" <<< "${output}"
  [ "$(grep -c " en_test " <<< "${output}")" -eq 3 ]
  # Asked for explicitly: every language gets it (stage 1 then says which has no voice).
  test_sets_auto=false
  [ "$(lang_test_sets bn)" = "test test_other" ]
}
