#!/usr/bin/env bash
# The shared stage script of every espnet-adapters recipe (the role of ESPnet's asr.sh).
# Run it from a recipe directory: the repository root (all languages) or
# egs2/<language>/adapt1 (one language), where it is called by a thin run.sh.
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [--langs "hi it"] [--option value ...]
#
# Stages (each guarded by --stage/--stop_stage/--skip_stages, logged under exp/,
# skipped when its .done marker matches the current inputs and options):
#   1  Data preparation: data/<lang>_{train,dev,test} Kaldi dirs (local/data.sh --corpus:
#      synth, one real corpus, or mix = conf/data/<lang>.yaml; corpus roots in db.sh)
#   2  Speed perturbation of the training sets (--speed_perturb_factors; off by default)
#   3  Format audio: 16 kHz mono into dump/raw/<set>; drop too short/long and
#      empty-text utterances (counted in exp/format/<set>/combine.log)
#   4  Feature dump: Whisper log-mel -> dump/<model>/<set>/feats.scp (kaldiio) + feats_shape
#   5  Encoder cache: frozen encoder outputs -> dump/<model>/encoder/<set>
#      (only when the adapter leaves the encoder alone: decoder-only training never runs it)
#   6  LoRA training, one adapter per language (and --lora_ranks rank), submitted as one
#      job array of the cells not yet done -> exp/<model>_lora_<lang>_<tag>/adapter
#   7  Decoding: the base model and each language's adapter on <lang>_<test_sets>, and
#      (--cross_eval true) every adapter on every other language's test set
#   8  Scoring: WER/CER (result.txt, scores.json per decode dir) and ${results}
# Grids: --models "m1 m2" runs the stages once per model; --lora_ranks "8 32" trains every
# language at every rank (stage 6 resubmits only the cells that are not done).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0
run_args=$(printf '%q ' "$0" "$@")
orig_args=("$@")

# General
stage=1                # First stage to run.
stop_stage=10000       # Last stage to run.
skip_stages=""         # Stages to skip, e.g. "2 7".
langs="hi it pa te"    # Languages of this recipe (ISO 639-1 codes): one adapter each.
eval_langs="en"        # Languages only evaluated (test sets decoded by the base and every adapter; forgetting check).
nj=2                   # Parallel jobs of the data and feature stages (one per core here).
inference_nj=2         # Parallel decoding jobs.
ngpu=0                 # GPUs per training/decoding job (0 = CPU).
num_threads=1          # torch CPU threads per decoding/encoder job.
train_num_threads=2    # torch CPU threads of a training job.
dumpdir=dump           # Formatted audio, features and encoder caches.
expdir=exp             # Adapters, decodes, scores and the logs of every stage.
# Data
corpus=synth           # Stage 1: synth (espeak-ng speech, offline), mix (conf/data/<lang>.yaml), or one of
                       # commonvoice mls kathbath indicvoices fleurs (roots in db.sh).
data_config=""         # --corpus mix: data config of every language (default conf/data/<lang>.yaml).
train_utts=240         # synth: training utterances per language.
dev_utts=24            # synth: dev utterances per language (checkpoint selection).
test_utts=40           # synth: test utterances per language.
speed_perturb_factors=""  # Stage 2, e.g. "0.9 1.0 1.1": train on <lang>_train_sp instead.
fs=16000               # Sample rate after formatting (Whisper and OWSM expect 16 kHz).
min_dur=0.1            # Drop utterances shorter than this (seconds).
max_dur=30             # Drop utterances longer than this (seconds; Whisper sees 30 s windows).
test_sets="test"       # Splits decoded and scored for each language.
# Model and adapters
whisper_model=whisper-base  # tools/models/<name>, a local transformers dir, or a Hub id (HF_HUB_OFFLINE=0).
models=""              # Grid over models, e.g. "whisper-base openai/whisper-small": every stage per model.
lora_ranks=""          # Grid over ranks, e.g. "8 16 32": --lora_config at each rank (alpha/r kept).
lora_config=conf/lora/r32_qv_dec.yaml    # peft LoRA: rank, alpha, targets, encoder/decoder/both.
train_config=conf/train/default.yaml     # Optimiser, steps, batching, evaluation, early stopping.
adapter_tag=""         # exp/<model>_lora_<lang>_<tag>; default: lora config name [+ _train config name].
seed=1                 # Seed of the training runs.
# Decoding
beam_size=1            # Beam size; 1 = greedy search.
batch_size=8           # Utterances per decoding batch.
max_new_tokens=224     # Cap on tokens per hypothesis (unintelligible audio loops otherwise).
decode_lang=forced     # forced: language token from utt2lang; auto: Whisper detects the language.
decode_base=true       # Stage 7 decodes the base model too (the rows adapters are compared with).
cross_eval=true        # Stage 7 also decodes every adapter on every other language (forgetting check).
inference_tag=""       # Suffix of decode dirs; default: _beamN and/or _langauto when not greedy/forced.
results=RESULTS.md     # Results table rewritten by stage 8.

. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: unexpected arguments: $*"
    exit 2
fi
if [ -n "${models}" ]; then
    # A model grid is this script once per model (the last --whisper_model wins).
    for model in ${models}; do
        log "Model grid: ${model}"
        "$0" "${orig_args[@]}" --models "" --whisper_model "${model}"
    done
    exit 0
fi

# Creates or refreshes tools/venv and the converted Whisper base (cheap when up to date).
main_root=$(cd "$(dirname "$(readlink -f ./path.sh)")" && pwd)
"${main_root}/tools/install.sh"
. ./path.sh
. ./cmd.sh

run_stage() {
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] \
        && ! [[ " ${skip_stages} " =~ [[:space:]]$1[[:space:]] ]]
}
# DIR/.done holds the signature (inputs + options) of the run that completed DIR.
is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
# up_to_date LABEL DIR SIGNATURE: true (and says so) when DIR was completed with SIGNATURE.
up_to_date() {
    is_done "$2" "$3" || return 1
    log "  $1: up to date"
}
mark_done() { printf '%s\n' "$2" > "$1/.done.tmp" && mv "$1/.done.tmp" "$1/.done"; }
checksum() { cat "$@" | md5sum | cut -c1-16; }
# split_keys SCP DIR NJ: writes DIR/keys.1..N (N = min(NJ, lines)) and sets _nj.
split_keys() {
    local lines
    lines=$(wc -l < "$1")
    _nj=$(( $3 < lines ? $3 : lines ))
    mkdir -p "$2" && rm -f "$2"/keys.*
    split_scp.pl "$1" $(for n in $(seq "${_nj}"); do echo "$2/keys.${n}"; done)
}
# merge_jobs NAME OUT DIR...: concatenates DIR/NAME of every job into OUT (sorted, atomic).
merge_jobs() {
    local name=$1 out=$2 d
    shift 2
    for d in "$@"; do cat "${d}/${name}"; done | sort -k1,1 > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}
lora_field() { python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "${lora_config}" "$1"; }

if [ ! -f "${lora_config}" ] || [ ! -f "${train_config}" ]; then
    log "Error: --lora_config ${lora_config} or --train_config ${train_config} not found"
    exit 1
fi
model_tag=$(basename "${whisper_model%/}" | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '_')
if [ -z "${adapter_tag}" ]; then
    adapter_tag=$(basename "${lora_config}" .yaml)
    [ "$(basename "${train_config}")" = default.yaml ] || adapter_tag+="_$(basename "${train_config}" .yaml)"
fi
if [ -z "${inference_tag}" ]; then
    [ "${beam_size}" -gt 1 ] && inference_tag+="_beam${beam_size}"
    [ "${decode_lang}" = auto ] && inference_tag+="_langauto"
fi
train_split=train
[ -z "${speed_perturb_factors}" ] || train_split=train_sp
# adapter_exp LANG [TAG]: the experiment dir of LANG's adapter.
adapter_exp() { echo "${expdir}/${model_tag}_lora_$1_${2:-${adapter_tag}}"; }
# adapter_variants: one "TAG LORA_CONFIG [RANK]" line per adapter each language gets (one per
# --lora_ranks rank, whose config is --lora_config at that rank with the same alpha/r).
adapter_variants() {
    local rank tag
    if [ -z "${lora_ranks}" ]; then
        echo "${adapter_tag} ${lora_config}"
        return
    fi
    for rank in ${lora_ranks}; do
        # r32_qv_dec -> r8_qv_dec; any other tag gets _r8 appended.
        if [[ "${adapter_tag}" =~ ^r[0-9]+_ ]]; then tag="r${rank}_${adapter_tag#*_}"; else tag="${adapter_tag}_r${rank}"; fi
        echo "${tag} ${expdir}/conf/lora/${tag}.yaml ${rank}"
    done
}
if [ -n "${lora_ranks}" ]; then
    while read -r tag config rank; do
        mkdir -p "$(dirname "${config}")"
        python3 -c 'import sys, yaml
src, rank, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = yaml.safe_load(open(src))
spec["lora_alpha"], spec["r"] = spec["lora_alpha"] * rank / spec["r"], rank
open(out + ".tmp", "w").write(f"# {src} at rank {rank} (--lora_ranks)\n" + yaml.safe_dump(spec, sort_keys=False))' \
            "${lora_config}" "${rank}" "${config}"
        mv "${config}.tmp" "${config}"
    done < <(adapter_variants)
fi
# Sets that exist after stage 3, for every language.
all_sets() {
    local lang tset
    for lang in ${langs}; do
        echo "${lang}_${train_split} ${lang}_dev"
        for tset in ${test_sets}; do echo "${lang}_${tset}"; done
    done
    for lang in ${eval_langs}; do
        for tset in ${test_sets}; do echo "${lang}_${tset}"; done
    done
}
# The encoder cache is used only when the adapter leaves the encoder frozen.
use_encoder_cache=false
[ "$(lora_field where)" = decoder ] && use_encoder_cache=true
feats_dir=${dumpdir}/${model_tag}

if run_stage 1; then
    log "Stage 1: data preparation (${corpus}) -> data/<lang>_{train,dev,test}"
    for lang in ${langs} ${eval_langs}; do
        splits="train dev test"
        [[ " ${langs} " == *" ${lang} "* ]] || splits=test
        if [ "${corpus}" = synth ]; then
            inputs=(local/sentences/"${lang}".txt conf/synth.yaml)
        else
            inputs=(db.sh "${data_config:-conf/data/${lang}.yaml}")
        fi
        sig="corpus=${corpus} splits=${splits} train=${train_utts} dev=${dev_utts} test=${test_utts} $(checksum "${inputs[@]}" 2>/dev/null || true) roots=$(. ./db.sh && echo "${COMMONVOICE}:${MLS}:${KATHBATH}:${INDICVOICES}:${FLEURS}")"
        done_all=true
        for split in ${splits}; do is_done "data/${lang}_${split}" "${sig}" || done_all=false; done
        if ${done_all}; then
            log "  ${lang}: up to date"
            continue
        fi
        ${train_cmd} "${expdir}/log/data_prep_${lang}.log" \
            local/data.sh --corpus "${corpus}" --lang "${lang}" --nj "${nj}" --splits "${splits}" \
                --data_config "${data_config}" \
                --train_utts "${train_utts}" --dev_utts "${dev_utts}" --test_utts "${test_utts}"
        for split in ${splits}; do
            utils/validate_data_dir.sh "data/${lang}_${split}"
            mark_done "data/${lang}_${split}" "${sig}"
        done
        log "  ${lang}: $(for s in ${splits}; do printf '%s=%s ' "${s}" "$(wc -l < "data/${lang}_${s}/text")"; done)utterances"
    done
fi

if run_stage 2 && [ -n "${speed_perturb_factors}" ]; then
    log "Stage 2: speed perturbation (${speed_perturb_factors}) data/<lang>_train -> data/<lang>_train_sp"
    for lang in ${langs}; do
        out=data/${lang}_train_sp
        sig="factors=${speed_perturb_factors} $(checksum "data/${lang}_train"/{wav.scp,text,utt2spk})"
        up_to_date "${out}" "${out}" "${sig}" && continue
        ${train_cmd} "${expdir}/log/speed_perturb_${lang}.log" \
            python3 -m espnet_adapters.bin.speed_perturb --in_dir "data/${lang}_train" --out_dir "${out}" \
                --factors ${speed_perturb_factors}
        mark_done "${out}" "${sig}"
        log "  ${out}: $(wc -l < "${out}/text") utterances"
    done
fi

if run_stage 3; then
    log "Stage 3: format audio (${fs} Hz mono, ${min_dur}-${max_dur} s) data/ -> ${dumpdir}/raw/"
    for set_name in $(all_sets); do
        src=data/${set_name}
        out=${dumpdir}/raw/${set_name}
        sig="fs=${fs} min=${min_dur} max=${max_dur} $(checksum "${src}"/{wav.scp,text,utt2spk})"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        rm -f "${out}/.done"
        logdir=${expdir}/format/${set_name}
        audio=${dumpdir}/audio/${set_name}
        rm -rf "${audio}"
        split_keys "${src}/utt2spk" "${logdir}" "${nj}"
        ${train_cmd} JOB=1:"${_nj}" "${logdir}/format.JOB.log" \
            python3 -m espnet_adapters.bin.format_wav_scp --in_dir "${src}" \
                --keys "${logdir}/keys.JOB" --out_dir "${audio}/format.JOB" --fs "${fs}"
        ${train_cmd} "${logdir}/combine.log" \
            python3 -m espnet_adapters.bin.combine_formatted --in_dir "${src}" --out_dir "${out}" \
                --job_dirs $(for n in $(seq "${_nj}"); do echo "${audio}/format.${n}"; done) \
                --min_dur "${min_dur}" --max_dur "${max_dur}"
        mark_done "${out}" "${sig}"
        log "  ${set_name}: $(grep -o 'kept .*' "${logdir}/combine.log" | head -n 1)"
    done
fi

if run_stage 4; then
    log "Stage 4: log-mel features for ${whisper_model} ${dumpdir}/raw/ -> ${feats_dir}/"
    for set_name in $(all_sets); do
        data=${dumpdir}/raw/${set_name}
        out=${feats_dir}/${set_name}
        sig="model=${whisper_model} $(checksum "${data}/wav.scp")"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        rm -rf "${out}"
        split_keys "${data}/wav.scp" "${out}/logdir" "${nj}"
        jobs=$(for n in $(seq "${_nj}"); do echo "${out}/data/feats.${n}"; done)
        ${train_cmd} JOB=1:"${_nj}" "${out}/logdir/dump_feats.JOB.log" \
            python3 -m espnet_adapters.bin.dump_feats --data_dir "${data}" --keys "${out}/logdir/keys.JOB" \
                --whisper_model "${whisper_model}" --out_dir "${out}/data/feats.JOB"
        merge_jobs feats.scp "${out}/feats.scp" ${jobs}
        merge_jobs feats_shape "${out}/feats_shape" ${jobs}
        mark_done "${out}" "${sig}"
        log "  ${set_name}: $(wc -l < "${out}/feats.scp") utterances"
    done
fi

if run_stage 5 && ${use_encoder_cache}; then
    log "Stage 5: encoder outputs of ${whisper_model} ${feats_dir}/<set> -> ${feats_dir}/encoder/<set>"
    for set_name in $(all_sets); do
        feats=${feats_dir}/${set_name}/feats.scp
        out=${feats_dir}/encoder/${set_name}
        sig="model=${whisper_model} $(checksum "${feats}")"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        rm -rf "${out}"
        split_keys "${feats}" "${out}/logdir" "${nj}"
        if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu 1"; else _cmd=${train_cmd}; fi
        ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${out}/logdir/cache_encoder.JOB.log" \
            python3 -m espnet_adapters.bin.cache_encoder --feats_scp "${feats}" --keys "${out}/logdir/keys.JOB" \
                --whisper_model "${whisper_model}" --out_dir "${out}" --shard JOB \
                --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --num_threads "${num_threads}"
        mark_done "${out}" "${sig}"
        log "  ${set_name}: $(du -sh "${out}" | cut -f1)"
    done
fi

if run_stage 6; then
    log "Stage 6: LoRA training (${train_config}) -> $(adapter_exp '<lang>' '<tag>'), one job array"
    if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu ${ngpu}"; else _cmd=${cuda_cmd}; fi
    # Every (language, adapter variant) cell not yet done gets a script cells/cell.N.sh;
    # all of them run as one array, so a re-run after a failure resubmits only what failed.
    cells=${expdir}/log/train_cells
    mkdir -p "${cells}" && rm -f "${cells}"/cell.*.sh "${cells}"/train.*.log
    pending=()
    num_cells=0
    while read -r tag config _; do
        for lang in ${langs}; do
            num_cells=$((num_cells + 1))
            dir=$(adapter_exp "${lang}" "${tag}")
            sig="model=${whisper_model} seed=${seed} $(checksum "${config}" "${train_config}" \
                "${feats_dir}/${lang}_${train_split}/feats.scp" "${feats_dir}/${lang}_dev/feats.scp")"
            up_to_date "${dir}" "${dir}" "${sig}" && continue
            mkdir -p "${dir}" && rm -f "${dir}/.done"
            echo "${run_args} --langs ${lang} --stage 6 --stop_stage 6 \"\$@\"; exit \$?" > "${dir}/run.sh"
            chmod +x "${dir}/run.sh"
            data_opts=(--train_dir "${dumpdir}/raw/${lang}_${train_split}" --dev_dir "${dumpdir}/raw/${lang}_dev"
                --train_feats "${feats_dir}/${lang}_${train_split}/feats.scp" --dev_feats "${feats_dir}/${lang}_dev/feats.scp")
            if ${use_encoder_cache}; then
                data_opts+=(--train_encoder_cache "${feats_dir}/encoder/${lang}_${train_split}"
                    --dev_encoder_cache "${feats_dir}/encoder/${lang}_dev")
            fi
            pending+=("${dir}|${sig}")
            # An interrupted training resumes from ${dir}/checkpoints/last with the same command.
            printf '%q ' python3 -m espnet_adapters.bin.train_lora --lang "${lang}" "${data_opts[@]}" \
                --whisper_model "${whisper_model}" --lora_config "${config}" \
                --train_config "${train_config}" --out_dir "${dir}" --ngpu "${ngpu}" \
                --num_threads "${train_num_threads}" --seed "${seed}" > "${cells}/cell.${#pending[@]}.sh"
            # The array's task log is the cell's own log, where ESPnet users look for it.
            mkdir -p "${dir}/log"
            ln -sfn "$(cd "${dir}/log" && pwd)/train.log" "${cells}/train.${#pending[@]}.log"
        done
    done < <(adapter_variants)
    if [ ${#pending[@]} -gt 0 ]; then
        log "  ${#pending[@]} of ${num_cells} cells to train (logs: <dir>/log/train.log)"
        ${_cmd} --num-threads "${train_num_threads}" JOB=1:${#pending[@]} "${cells}/train.JOB.log" \
            bash "${cells}/cell.JOB.sh" || true
        failed=()
        for n in $(seq ${#pending[@]}); do
            dir=${pending[n-1]%%|*}
            if [ -f "${dir}/train.done" ] && grep -q '^# Ended (code 0)' "${cells}/train.${n}.log"; then
                mark_done "${dir}" "${pending[n-1]#*|}"
                log "  ${dir}: $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print("best dev WER %.1f%% at step %d, %d trainable parameters" % (s["best_dev_wer"], s["best_step"], s["trainable_params"]))' "${dir}/train_stats.json")"
            else
                failed+=("${dir} (log ${cells}/train.${n}.log)")
            fi
        done
        log "  cells: $(( num_cells - ${#pending[@]} )) up to date, $(( ${#pending[@]} - ${#failed[@]} )) trained, ${#failed[@]} failed"
        if [ ${#failed[@]} -gt 0 ]; then
            printf '    failed: %s\n' "${failed[@]}" >&2
            log "Error: ${#failed[@]} training cells failed; fix and re-run: only they are resubmitted"
            exit 1
        fi
    fi
fi

# decode_set MODEL_DIR_TAG DATA_SET LANG [ADAPTER_DIR]: decodes one set into
# ${expdir}/MODEL_DIR_TAG/decode_<set>${inference_tag} unless it is up to date.
decode_set() {
    local tag=$1 set_name=$2 adapter=${3:-}
    local data=${dumpdir}/raw/${set_name}
    local dir=${expdir}/${tag}/decode_${set_name}${inference_tag}
    local opts=(--feats_scp "${feats_dir}/${set_name}/feats.scp") sig
    ! ${use_encoder_cache} || opts+=(--encoder_cache "${feats_dir}/encoder/${set_name}")
    sig="model=${whisper_model} beam=${beam_size} lang=${decode_lang} max_new=${max_new_tokens} $(checksum "${data}"/{wav.scp,utt2lang} "${feats_dir}/${set_name}/feats.scp")"
    if [ -n "${adapter}" ]; then
        opts+=(--adapter_dir "${adapter}")
        sig+=" adapter=$(checksum "${adapter}/adapter_model.safetensors")"
    fi
    up_to_date "${dir}" "${dir}" "${sig}" && return
    mkdir -p "${dir}" && rm -f "${dir}/.done"
    split_keys "${data}/wav.scp" "${dir}/logdir" "${inference_nj}"
    if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu 1"; else _cmd=${decode_cmd}; fi
    ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${dir}/logdir/decode.JOB.log" \
        python3 -m espnet_adapters.bin.whisper_decode --data_dir "${data}" \
            --keys "${dir}/logdir/keys.JOB" --out_dir "${dir}/logdir/output.JOB" \
            "${opts[@]}" \
            --whisper_model "${whisper_model}" --beam_size "${beam_size}" \
            --batch_size "${batch_size}" --max_new_tokens "${max_new_tokens}" \
            --lang_mode "${decode_lang}" --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --num_threads "${num_threads}"
    local outs
    outs=$(for n in $(seq "${_nj}"); do echo "${dir}/logdir/output.${n}"; done)
    merge_jobs hyp "${dir}/hyp" ${outs}
    merge_jobs hyp_lang "${dir}/hyp_lang" ${outs}
    mark_done "${dir}" "${sig}"
    log "  ${dir}: $(wc -l < "${dir}/hyp") hypotheses"
}

# The decode dirs of stage 7, one "model_tag set lang adapter_dir" line each.
decode_plan() {
    local lang tset other tag dir
    for lang in ${langs} ${eval_langs}; do
        for tset in ${test_sets}; do
            ! ${decode_base} || echo "${model_tag} ${lang}_${tset} ${lang}"
            while read -r tag _; do
                for other in ${langs}; do
                    [ "${other}" = "${lang}" ] || ${cross_eval} || continue
                    dir=$(adapter_exp "${other}" "${tag}")
                    [ -d "${dir}/adapter" ] || continue
                    echo "$(basename "${dir}") ${lang}_${tset} ${lang} ${dir}/adapter"
                done
            done < <(adapter_variants)
        done
    done
}

if run_stage 7; then
    log "Stage 7: decoding (beam ${beam_size}, language ${decode_lang}) -> ${expdir}/*/decode_*${inference_tag}"
    mkdir -p "${expdir}"
    echo "${run_args} --stage 7 \"\$@\"; exit \$?" > "${expdir}/run_decode.sh"
    chmod +x "${expdir}/run_decode.sh"
    while read -r tag set_name lang adapter; do
        decode_set "${tag}" "${set_name}" "${adapter}"
    done < <(decode_plan)
fi

if run_stage 8; then
    log "Stage 8: scoring (WER/CER) -> ${expdir}/*/decode_*/score, ${results}"
    while read -r tag set_name lang adapter; do
        dir=${expdir}/${tag}/decode_${set_name}${inference_tag}
        if [ ! -f "${dir}/.done" ]; then
            log "Error: ${dir} has no finished decode; run stage 7 first"
            exit 1
        fi
        categories=()
        [ ! -f "${dumpdir}/raw/${set_name}/utt2category" ] \
            || categories=(--utt2category "${dumpdir}/raw/${set_name}/utt2category")
        ${train_cmd} "${dir}/score/score.log" \
            python3 -m espnet_adapters.bin.score --ref_text "${dumpdir}/raw/${set_name}/text" \
                --hyp_text "${dir}/hyp" --lang "${lang}" --set_name "${set_name}" --out_dir "${dir}/score" \
                "${categories[@]}"
    done < <(decode_plan)
    ${train_cmd} "${expdir}/log/make_results.log" \
        python3 -m espnet_adapters.bin.make_results --exp_dir "${expdir}" --out "${results}" \
            --command "${run_args}"
    log "Results in ${results}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
