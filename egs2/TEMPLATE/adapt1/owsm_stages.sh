# shellcheck shell=bash
# OWSM's stages of adapt.sh (--model_family owsm), sourced by it: ESPnet's own S2T task,
# entry points and LoRA adapters, launched through ${train_cmd}/${cuda_cmd}/${decode_cmd}
# as ESPnet's s2t.sh launches them.  The same functions as whisper_stages.sh (see there);
# they use adapt.sh's options and lib.sh's helpers:
#   model_check_args  none (see below)
#   family_init     model_tag owsm_<model>; --owsm_cache; multi-node training is refused
#   stage4          S2T data dirs ${dumpdir}/owsm/<set>: text with <lang><asr><notimestamps>,
#                   text.prev, text.ctc
#   stage5          the base model: --owsm_model tiny trains a tiny OWSM v3.1-architecture model
#                   on the pooled training sets and packs it like a released one
#                   (${expdir}/owsm_tiny/owsm_tiny.zip); a Hub name or a pack zip is fetched
#                   into --owsm_cache by espnet_model_zoo
#   train_setup     stage 6's header; the base model's weights
#   cell_signature, train_cell, cell_finished
#                   stage 6, one cell per language: the train config made from the base model's
#                   own config.yaml, espnet2.bin.s2t_train from the base weights (only LoRA
#                   trains; checked), the best adapter-only checkpoint -> <exp>/adapter/adapter.pth
#   decode_set      stage 7: Speech2Text in-process, base + adapter attached, --inference_nj jobs
#   stage9-stage14  skipped: language ID, routing, analysis and export are Whisper-only so far

# s2t_data_args SPLIT DIR: ESPnet's --SPLIT_data_path_and_name_and_type options for an S2T dir,
# one word a line (read them with mapfile).
s2t_data_args() {
    python3 -c 'import sys
from pathlib import Path
from espnet_adapters.owsm.data import data_args
print("\n".join(data_args(sys.argv[1], Path(sys.argv[2]))))' "$1" "$2"
}

# espnet_run: ESPnet's entry points with our two import fixes (espnet_adapters/owsm/espnet_compat.py).
espnet_run=(python3 -m espnet_adapters.bin.espnet_run)

# model_check_args: none (the tiny OWSM learns the recipe's languages; a pretrained OWSM's
# language list is not checked before stage 1).
model_check_args() { :; }

family_init() {
    model_tag=owsm_$(basename "${owsm_model%/}" .zip | sed 's/^owsm_//' | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '_')
    owsm_cache=${owsm_cache:-${expdir}/owsm_cache}
    if [ "${num_nodes}" -gt 1 ]; then
        log "Error: --num_nodes ${num_nodes} with --model_family owsm: multi-node training is wired for Whisper only (OWSM: --ngpu N on one node)"
        exit 2
    fi
    if [ "${decode_backend}" != hf ]; then
        log "Error: --decode_backend ${decode_backend} with --model_family owsm: CTranslate2 decoding is Whisper's only"
        exit 2
    fi
}

stage4() {
    local set_name src out sig upstream
    log "Stage 4: OWSM S2T data dirs ${dumpdir}/raw/ -> ${dumpdir}/owsm/"
    for set_name in $(all_sets); do
        src=${dumpdir}/raw/${set_name}
        out=${dumpdir}/owsm/${set_name}
        upstream=$(input_sig "${src}" 3)
        sig="${upstream} $(checksum "${src}"/{wav.scp,text,utt2lang}) $(audio_stamp "${src}")"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        ${train_cmd} "${expdir}/log/s2t_data/${set_name}.log" \
            python3 -m espnet_adapters.bin.prepare_s2t_data "${src}" "${out}"
        mark_done "${out}" "${sig}"
        log "  ${out}: $(wc -l < "${out}/text") utterances, e.g. $(head -n 1 "${out}/text" | cut -d' ' -f2)"
    done
}

# owsm_fresh_run DIR SIGNATURE: the output dir of an ESPnet training.  ESPnet (--resume true)
# resumes any DIR/checkpoint.pth whatever options made it, which is what a killed job needs;
# a DIR made with other options (another config, rank, base model, data) is removed instead,
# so that changed options start over rather than continue, or re-install, the old run.
owsm_fresh_run() {
    local dir=$1 sig=$2
    if [ -d "${dir}" ] && [ "$(cat "${dir}/.options" 2>/dev/null)" != "${sig}" ]; then
        log "  ${dir}: made with other options: starting over"
        rm -rf "${dir}"
    fi
    mkdir -p "${dir}" && printf '%s\n' "${sig}" > "${dir}/.options"
}

stage5() {
    if [ "${owsm_model}" != tiny ]; then
        log "Stage 5: OWSM base model ${owsm_model} -> ${owsm_cache}"
        owsm_base
        log "  ${owsm_base_file}"
        return
    fi
    local tiny=${expdir}/owsm_tiny sig texts args split stats_nj n keys input_dirs _cmd inputs=() set_dir
    mapfile -t texts < <(each_lang "${dumpdir}/owsm/<lang>_${train_split}/text" "${dumpdir}/owsm/<lang>_dev/text")
    for set_dir in "${texts[@]%/text}"; do inputs+=("$(input_sig "${set_dir}" 4)") || return 1; done
    sig="epochs=${owsm_tiny_epochs} vocab=${owsm_vocab_size} seed=${seed} ${inputs[*]} $(checksum "${owsm_tiny_config}" "${texts[@]}")"
    log "Stage 5: tiny OWSM (${owsm_tiny_config}, ${owsm_tiny_epochs} epochs) on the training sets of ${langs} -> ${tiny}/owsm_tiny.zip"
    up_to_date "${tiny}" "${tiny}" "${sig}" && return
    mkdir -p "${tiny}" && rm -f "${tiny}/.done"
    pool_sets "${tiny}/data/train" "${dumpdir}/owsm" "${train_split}" wav.scp text text.prev text.ctc utt2spk utt2lang utt2dur
    pool_sets "${tiny}/data/dev" "${dumpdir}/owsm" dev wav.scp text text.prev text.ctc utt2spk utt2lang utt2dur
    for split in train dev; do
        ${train_cmd} "${tiny}/log/keys_${split}.log" python3 -m espnet_adapters.bin.owsm_fit_keys \
            --config "${owsm_tiny_config}" --out "${tiny}/data/${split}/keys" "${tiny}/data/${split}"
    done
    ${train_cmd} "${tiny}/log/tokens.log" python3 -m espnet_adapters.bin.owsm_tokens \
        --out_dir "${tiny}/token_list" --vocab_size "${owsm_vocab_size}" "${tiny}/data/train/text.ctc"
    mapfile -t args < <(s2t_data_args train "${tiny}/data/train"; s2t_data_args valid "${tiny}/data/dev")
    args+=(--config "${owsm_tiny_config}" --token_type bpe --token_list "${tiny}/token_list/tokens.txt"
        --bpemodel "${tiny}/token_list/bpe.model" --use_preprocessor true --seed "${seed}")
    # Feature statistics for global_mvn, as ESPnet's s2t.sh collects them: collect_stats over
    # key shards (${nj} jobs), then aggregate_stats_dirs.
    stats_nj=$(printf '%s\n' "${nj}" "$(wc -l < "${tiny}/data/train/keys")" "$(wc -l < "${tiny}/data/dev/keys")" \
        | sort -n | awk 'NR == 1')
    rm -rf "${tiny}/stats_logdir" && mkdir -p "${tiny}/stats_logdir"
    for split in train dev; do
        keys=()
        for n in $(seq "${stats_nj}"); do keys+=("${tiny}/stats_logdir/${split}.${n}.keys"); done
        split_scp.pl "${tiny}/data/${split}/keys" "${keys[@]}"
    done
    ${train_cmd} JOB=1:"${stats_nj}" "${tiny}/stats_logdir/stats.JOB.log" \
        "${espnet_run[@]}" espnet2.bin.s2t_train --collect_stats true "${args[@]}" \
            --train_shape_file "${tiny}/stats_logdir/train.JOB.keys" --valid_shape_file "${tiny}/stats_logdir/dev.JOB.keys" \
            --output_dir "${tiny}/stats_logdir/stats.JOB" --ngpu 0
    input_dirs=()
    for n in $(seq "${stats_nj}"); do input_dirs+=(--input_dir "${tiny}/stats_logdir/stats.${n}"); done
    ${train_cmd} "${tiny}/log/stats.log" "${espnet_run[@]}" espnet2.bin.aggregate_stats_dirs \
        "${input_dirs[@]}" --output_dir "${tiny}/stats"
    owsm_fresh_run "${tiny}/train" "${sig}"
    _cmd=$(job_cmd "${ngpu}" "${cuda_cmd}")
    ${_cmd} --num-threads "${train_num_threads}" "${tiny}/log/train.log" \
        "${espnet_run[@]}" espnet2.bin.s2t_train "${args[@]}" \
        --normalize global_mvn --normalize_conf "stats_file=${tiny}/stats/train/feats_stats.npz" \
        --train_shape_file "${tiny}/stats/train/speech_shape" --valid_shape_file "${tiny}/stats/valid/speech_shape" \
        --max_epoch "${owsm_tiny_epochs}" --resume true --output_dir "${tiny}/train" --ngpu "${ngpu}"
    ${train_cmd} "${tiny}/log/pack.log" python3 -m espnet_adapters.bin.owsm_pack \
        --exp_dir "${tiny}/train" --model_file valid.acc.ave.pth --out "${tiny}/owsm_tiny.zip"
    mark_done "${tiny}" "${sig}"
    log "  ${tiny}/owsm_tiny.zip: $(grep -o -m 1 'Total Number of model parameters: [^ ]* [A-Z]*' "${tiny}/log/train.log")"
}

# owsm_base: sets owsm_pack (what --owsm_model resolves to) and owsm_base_file (its weights).
owsm_base() {
    owsm_pack=${owsm_model}
    if [ "${owsm_model}" = tiny ]; then
        owsm_pack=${expdir}/owsm_tiny/owsm_tiny.zip
        if [ ! -f "${owsm_pack}" ]; then
            log "Error: no ${owsm_pack}: run stage 5 first"
            exit 1
        fi
    fi
    owsm_base_file=$(python3 -c 'import sys
from pathlib import Path
from espnet_adapters.owsm.model import fetch_owsm
from espnet_adapters.utils.cli import UserInputError
try:
    print(fetch_owsm(sys.argv[1], Path(sys.argv[2])).model_file)
except UserInputError as err:
    sys.exit(f"Error: {err}")' "${owsm_pack}" "${owsm_cache}")
}

train_setup() {
    log "Stage 6: OWSM LoRA training (${owsm_train_config}, ESPnet) -> $(adapter_exp '<lang>' '<tag>'), one job array"
    owsm_base
}

# cell_signature LANG LORA_CONFIG: sets sig, what LANG's adapter with LORA_CONFIG is made from.
cell_signature() {
    local inputs=() split
    for split in "${train_split}" dev; do inputs+=("$(input_sig "${dumpdir}/owsm/$1_${split}" 4)") || return 1; done
    sig="owsm=${owsm_model} seed=${seed} ${inputs[*]} $(checksum "$2" "${owsm_train_config}" "${owsm_base_file}" \
        "${dumpdir}/owsm/$1_${train_split}/text" "${dumpdir}/owsm/$1_dev/text")"
}

# train_cell LANG LORA_CONFIG DIR SIGNATURE SCRIPT LOG: writes SCRIPT, one cell's command (LOG is
# its job's log).  The train config and adapter.yaml are written now; the job keeps the
# utterances that fit the model's window (owsm_fit_keys), trains (resuming from
# DIR/espnet/checkpoint.pth when killed; a run of other options is cleared first, by
# owsm_fresh_run), and owsm_finish_adapter checks that only LoRA trained and installs the adapter.
train_cell() {
    local lang=$1 config=$2 dir=$3 sig=$4 script=$5 cell_log=$6 launch=() split set_dir train_data valid_data
    owsm_fresh_run "${dir}/espnet" "${sig}"
    python3 -m espnet_adapters.bin.owsm_lora_config --owsm_model "${owsm_pack}" --owsm_cache "${owsm_cache}" \
        --lora_config "${config}" --train_preset "${owsm_train_config}" \
        --out "${dir}/train.yaml" --adapter_meta "${dir}/adapter/adapter.yaml" > /dev/null
    [ "${ngpu}" -le 1 ] || launch=(--multiprocessing_distributed true)
    mapfile -t train_data < <(s2t_data_args train "${dumpdir}/owsm/${lang}_${train_split}")
    mapfile -t valid_data < <(s2t_data_args valid "${dumpdir}/owsm/${lang}_dev")
    {
        for split in train valid; do
            set_dir=${dumpdir}/owsm/${lang}_$([ "${split}" = train ] && echo "${train_split}" || echo dev)
            printf '%q ' python3 -m espnet_adapters.bin.owsm_fit_keys --config "${dir}/train.yaml" \
                --out "${dir}/${split}_keys" "${set_dir}"
            printf '&& '
        done
        printf '%q ' "${espnet_run[@]}" espnet2.bin.s2t_train --config "${dir}/train.yaml" \
            --init_param "${owsm_base_file}" --output_dir "${dir}/espnet" --resume true --seed "${seed}" \
            --ngpu "${ngpu}" "${launch[@]}" \
            --train_shape_file "${dir}/train_keys" --valid_shape_file "${dir}/valid_keys" \
            "${train_data[@]}" "${valid_data[@]}"
        printf '&& '
        printf '%q ' python3 -m espnet_adapters.bin.owsm_finish_adapter --exp_dir "${dir}" --train_log "${cell_log}"
        echo
    } > "${script}"
}

# cell_finished DIR LOG: true when the cell of DIR finished (its job's LOG ends with code 0).
cell_finished() {
    if ! { [ -f "$1/train_stats.json" ] && grep -q '^# Ended (code 0)' "$2"; }; then
        return 1
    fi
    log "  $1: $(python3 -c 'import json, sys; print("%d trainable (LoRA) parameters" % json.load(open(sys.argv[1]))["trainable_params"])' "$1/train_stats.json")"
}

# decode_set MODEL_DIR_TAG DATA_SET [ADAPTER_DIR]: stage 7, the base model or one adapter on one set.
decode_set() {
    local tag=$1 set_name=$2 adapter=${3:-} opts=() sig upstream trained
    [ -n "${owsm_base_file:-}" ] || owsm_base
    upstream=$(input_sig "${dumpdir}/raw/${set_name}" 3)
    sig="owsm=${owsm_model} beam=${beam_size:-1} maxlenratio=${owsm_maxlenratio} ${upstream} $(checksum "${owsm_base_file}" "${dumpdir}/raw/${set_name}"/{wav.scp,utt2lang}) $(audio_stamp "${dumpdir}/raw/${set_name}")"
    if [ -n "${adapter}" ]; then
        opts+=(--adapter_dir "${adapter}")
        trained=$(input_sig "$(dirname "${adapter}")" 6)
        sig+=" adapter=$(checksum "${adapter}"/adapter.{yaml,pth}) ${trained}"
    fi
    decode_jobs "${expdir}/${tag}/decode_${set_name}${inference_tag}" "${set_name}" "${sig}" owsm_decode \
        --owsm_model "${owsm_pack}" --owsm_cache "${owsm_cache}" \
        --beam_size "${beam_size:-1}" --maxlenratio "${owsm_maxlenratio}" \
        --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" "${opts[@]}"
}

# Stages 9-13 (language ID, routing, code-switching, their report, the adapter analysis) are Whisper's so far.
stage9() { skip_stage 9 "language ID is Whisper-only (--model_family owsm)"; }
stage10() { skip_stage 10 "routing is Whisper-only (--model_family owsm)"; }
stage11() { skip_stage 11 "code-switching is Whisper-only (--model_family owsm)"; }
stage12() { skip_stage 12 "the LID, routing and code-switching report is Whisper-only (--model_family owsm)"; }
stage13() { skip_stage 13 "the adapter analysis is Whisper-only (--model_family owsm)"; }
stage14() { skip_stage 14 "the adapter export (model cards, transcribe) is Whisper-only (--model_family owsm)"; }
