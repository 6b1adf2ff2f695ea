#!/usr/bin/env bash
# The shared stage script of every espnet-adapters recipe (the role of ESPnet's asr.sh).
# Run it from a recipe directory: the repository root (all languages) or
# egs2/<language>/adapt1 (one language), where it is called by a thin run.sh.
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [--langs "hi it"] [--option value ...]
#
# Stages (each guarded by --stage/--stop_stage/--skip_stages, logged under exp/,
# skipped when its .done marker matches the current inputs and options):
#   1  Data preparation: data/<lang>_{train,dev,test} Kaldi dirs (local/data.sh --corpus)
#   2  Format audio: 16 kHz mono into dump/raw/<lang>_<split>; drop too short/long and
#      empty-text utterances (counted in exp/format/<set>/combine.log)
#   5  Decoding: <lang>_<test_sets> with Whisper -> exp/<model>/decode_<lang>_<set>[suffix]/hyp
#   6  Scoring: WER/CER (result.txt, scores.json per decode dir) and ${results}
# (Stages 3-4, feature dumps and LoRA training, come with the adapter stages.)
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0
run_args=$(printf '%q ' "$0" "$@")

# General
stage=1                # First stage to run.
stop_stage=10000       # Last stage to run.
skip_stages=""         # Stages to skip, e.g. "2 5".
langs="hi it pa te"    # Languages of this recipe (ISO 639-1 codes).
nj=4                   # Parallel jobs of the data stages.
inference_nj=2         # Parallel decoding jobs.
ngpu=0                 # GPUs per decoding job (0 = CPU).
num_threads=1          # torch CPU threads per decoding job.
dumpdir=dump           # Formatted audio (dump/raw) and its arks (dump/audio).
expdir=exp             # Decodes, scores and the logs of every stage.
# Data
corpus=synth           # Corpus of stage 1: synth (espeak-ng speech of real sentences, offline).
train_utts=300         # synth: training utterances per language.
dev_utts=40            # synth: dev utterances per language.
test_utts=60           # synth: test utterances per language.
fs=16000               # Sample rate after formatting (Whisper and OWSM expect 16 kHz).
min_dur=0.1            # Drop utterances shorter than this (seconds).
max_dur=30             # Drop utterances longer than this (seconds; Whisper sees 30 s windows).
test_sets="test"       # Splits decoded and scored for each language.
# Model and decoding
whisper_model=whisper-base  # tools/models/<name>, a local transformers dir, or a Hub id (HF_HUB_OFFLINE=0).
beam_size=1            # Beam size; 1 = greedy search.
batch_size=8           # Utterances per decoding batch.
max_new_tokens=224     # Cap on tokens per hypothesis (unintelligible audio loops otherwise).
decode_lang=forced     # forced: language token from utt2lang; auto: Whisper detects the language.
inference_tag=""       # Suffix of decode dirs; default: _beamN and/or _langauto when not greedy/forced.
results=RESULTS.md     # Results table rewritten by stage 6.

. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: unexpected arguments: $*"
    exit 2
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
mark_done() { printf '%s\n' "$2" > "$1/.done.tmp" && mv "$1/.done.tmp" "$1/.done"; }
checksum() { cat "$@" | md5sum | cut -c1-16; }
min() { echo $(( $1 < $2 ? $1 : $2 )); }

model_tag=$(basename "${whisper_model%/}" | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '_')
if [ -z "${inference_tag}" ]; then
    [ "${beam_size}" -gt 1 ] && inference_tag+="_beam${beam_size}"
    [ "${decode_lang}" = auto ] && inference_tag+="_langauto"
fi
splits="train dev test"

if run_stage 1; then
    log "Stage 1: data preparation (${corpus}) -> data/<lang>_{${splits// /,}}"
    for lang in ${langs}; do
        sig="corpus=${corpus} train=${train_utts} dev=${dev_utts} test=${test_utts} $(checksum local/sentences/"${lang}".txt conf/synth.yaml 2>/dev/null || true)"
        done_all=true
        for split in ${splits}; do is_done "data/${lang}_${split}" "${sig}" || done_all=false; done
        if ${done_all}; then
            log "  ${lang}: up to date"
            continue
        fi
        ${train_cmd} "${expdir}/log/data_prep_${lang}.log" \
            local/data.sh --corpus "${corpus}" --lang "${lang}" --nj "${nj}" \
                --train_utts "${train_utts}" --dev_utts "${dev_utts}" --test_utts "${test_utts}"
        for split in ${splits}; do
            utils/validate_data_dir.sh "data/${lang}_${split}"
            mark_done "data/${lang}_${split}" "${sig}"
        done
        log "  ${lang}: $(for s in ${splits}; do printf '%s=%s ' "${s}" "$(wc -l < "data/${lang}_${s}/text")"; done)utterances"
    done
fi

if run_stage 2; then
    log "Stage 2: format audio (${fs} Hz mono, ${min_dur}-${max_dur} s) data/ -> ${dumpdir}/raw/"
    for lang in ${langs}; do
        for split in ${splits}; do
            set_name=${lang}_${split}
            src=data/${set_name}
            out=${dumpdir}/raw/${set_name}
            sig="fs=${fs} min=${min_dur} max=${max_dur} $(checksum "${src}"/{wav.scp,text,utt2spk})"
            if is_done "${out}" "${sig}"; then
                log "  ${set_name}: up to date"
                continue
            fi
            rm -f "${out}/.done"
            logdir=${expdir}/format/${set_name}
            audio=${dumpdir}/audio/${set_name}
            _nj=$(min "${nj}" "$(wc -l < "${src}/utt2spk")")
            rm -rf "${audio}" && mkdir -p "${logdir}"
            key_files=() job_dirs=()
            for n in $(seq "${_nj}"); do key_files+=("${logdir}/keys.${n}"); job_dirs+=("${audio}/format.${n}"); done
            split_scp.pl "${src}/utt2spk" "${key_files[@]}"
            ${train_cmd} JOB=1:"${_nj}" "${logdir}/format.JOB.log" \
                python3 -m espnet_adapters.bin.format_wav_scp --in_dir "${src}" \
                    --keys "${logdir}/keys.JOB" --out_dir "${audio}/format.JOB" --fs "${fs}"
            ${train_cmd} "${logdir}/combine.log" \
                python3 -m espnet_adapters.bin.combine_formatted --in_dir "${src}" --out_dir "${out}" \
                    --job_dirs "${job_dirs[@]}" --min_dur "${min_dur}" --max_dur "${max_dur}"
            mark_done "${out}" "${sig}"
            log "  ${set_name}: $(grep -o 'kept .*' "${logdir}/combine.log" | head -n 1)"
        done
    done
fi

if run_stage 5; then
    log "Stage 5: decoding with ${whisper_model} (beam ${beam_size}, language ${decode_lang}) -> ${expdir}/${model_tag}/"
    mkdir -p "${expdir}/${model_tag}"
    echo "${run_args} --stage 5 \"\$@\"; exit \$?" > "${expdir}/${model_tag}/run.sh"
    chmod +x "${expdir}/${model_tag}/run.sh"
    if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu ${ngpu}"; else _cmd=${decode_cmd}; fi
    for lang in ${langs}; do
        for tset in ${test_sets}; do
            data=${dumpdir}/raw/${lang}_${tset}
            dir=${expdir}/${model_tag}/decode_${lang}_${tset}${inference_tag}
            sig="model=${whisper_model} beam=${beam_size} lang=${decode_lang} max_new=${max_new_tokens} $(checksum "${data}"/{wav.scp,utt2lang})"
            if is_done "${dir}" "${sig}"; then
                log "  ${dir}: up to date"
                continue
            fi
            mkdir -p "${dir}/logdir" && rm -f "${dir}/.done" "${dir}"/logdir/keys.*
            _nj=$(min "${inference_nj}" "$(wc -l < "${data}/wav.scp")")
            key_files=() outs=()
            for n in $(seq "${_nj}"); do key_files+=("${dir}/logdir/keys.${n}"); outs+=("${dir}/logdir/output.${n}"); done
            split_scp.pl "${data}/wav.scp" "${key_files[@]}"
            ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${dir}/logdir/decode.JOB.log" \
                python3 -m espnet_adapters.bin.whisper_decode --data_dir "${data}" \
                    --keys "${dir}/logdir/keys.JOB" --out_dir "${dir}/logdir/output.JOB" \
                    --whisper_model "${whisper_model}" --beam_size "${beam_size}" \
                    --batch_size "${batch_size}" --max_new_tokens "${max_new_tokens}" \
                    --lang_mode "${decode_lang}" --ngpu "${ngpu}" --num_threads "${num_threads}"
            for f in hyp hyp_lang; do
                for out in "${outs[@]}"; do cat "${out}/${f}"; done | sort -k1,1 > "${dir}/${f}.tmp"
                mv "${dir}/${f}.tmp" "${dir}/${f}"
            done
            mark_done "${dir}" "${sig}"
            log "  ${dir}: $(wc -l < "${dir}/hyp") hypotheses"
        done
    done
fi

if run_stage 6; then
    log "Stage 6: scoring (WER/CER) -> ${expdir}/${model_tag}/decode_*/score, ${results}"
    for lang in ${langs}; do
        for tset in ${test_sets}; do
            dir=${expdir}/${model_tag}/decode_${lang}_${tset}${inference_tag}
            if [ ! -f "${dir}/.done" ]; then
                log "Error: ${dir} has no finished decode; run stage 5 first"
                exit 1
            fi
            ${train_cmd} "${dir}/score/score.log" \
                python3 -m espnet_adapters.bin.score --ref_text "${dumpdir}/raw/${lang}_${tset}/text" \
                    --hyp_text "${dir}/hyp" --lang "${lang}" --set_name "${lang}_${tset}" --out_dir "${dir}/score"
        done
    done
    ${train_cmd} "${expdir}/log/make_results.log" \
        python3 -m espnet_adapters.bin.make_results --exp_dir "${expdir}" --out "${results}" \
            --command "${run_args}"
    log "Results in ${results}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
