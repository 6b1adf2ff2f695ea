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
#   9  Language ID: a classifier on the frozen encoder's cached outputs (train sets, selected
#      on dev), evaluated on dev and the pooled test sets with Whisper's own LID as baseline
#  10  Routing: the pooled test sets of all languages decoded with oracle / hard / soft /
#      threshold (tau chosen on dev) / base routing of the language adapters
#  11  Code-switching: synthetic inter-sentential and rapid-switching utterances built from
#      the test sets, routed segment by segment (sliding-window LID over the encoder frames)
#  12  Report: LID, routing and code-switching tables and plots appended to ${results}
# Grids: --models "m1 m2" runs the stages once per model; --lora_ranks "8 32" trains every
# language at every rank (stage 6 resubmits only the cells that are not done).
# --model_family owsm: OWSM through ESPnet's own S2T task and LoRA adapters instead of Whisper
# (owsm_stages.sh): stage 4 writes S2T data dirs, stage 5 gets the base model (--owsm_model:
# a Hub name, a pack zip, or "tiny": a tiny OWSM trained here on the training sets), stage 6
# trains with espnet2.bin.s2t_train, stage 7 decodes base + adapter in-process; stages 9-12
# (LID, routing) are Whisper-only.
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
ngpu=0                 # GPUs per training/decoding job (0 = CPU; > 1: DDP training under torchrun).
num_nodes=1            # Nodes per training job (> 1: multi-node DDP, with cmd_backend=slurm: srun per node).
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
model_family=whisper   # whisper (transformers + peft) or owsm (ESPnet S2T + loralib; owsm_stages.sh).
whisper_model=whisper-base  # tools/models/<name>, a local transformers dir, or a Hub id (HF_HUB_OFFLINE=0).
models=""              # Grid over models, e.g. "whisper-base openai/whisper-small": every stage per model.
lora_ranks=""          # Grid over ranks, e.g. "8 16 32": --lora_config at each rank (alpha/r kept).
lora_config=conf/lora/r32_qv_dec.yaml    # peft LoRA: rank, alpha, targets, encoder/decoder/both.
train_config=conf/train/default.yaml     # Optimiser, steps, batching, evaluation, early stopping.
adapter_tag=""         # exp/<model>_lora_<lang>_<tag>; default: lora config name [+ _train config name].
seed=1                 # Seed of the training runs.
owsm_model=tiny        # owsm: Hub name (espnet/owsm_v3.1_ebf_base, HF_HUB_OFFLINE=0 or a HF cache in
                       # --owsm_cache), a pack zip (espnet2.bin.pack s2t), or tiny (trained in stage 5).
owsm_cache=""          # owsm: espnet_model_zoo cache dir (default: ${expdir}/owsm_cache).
owsm_train_config=conf/owsm/lora_train.yaml  # owsm: optimiser/batch/epochs of the LoRA runs (ESPnet keys).
owsm_tiny_config=conf/owsm/tiny_ebf.yaml     # owsm tiny: architecture and training of the base model.
owsm_tiny_epochs=20    # owsm tiny: epochs of the base model's training.
owsm_vocab_size=2000   # owsm tiny: sentencepiece vocabulary (incl. 1535 special tokens).
owsm_maxlenratio=0.0   # owsm decoding: max tokens / encoder frames (0: up to the encoder length).
# Decoding
beam_size=1            # Beam size; 1 = greedy search.
batch_size=8           # Utterances per decoding batch.
max_new_tokens=224     # Cap on tokens per hypothesis (unintelligible audio loops otherwise).
decode_lang=forced     # forced: language token from utt2lang; auto: Whisper detects the language.
decode_base=true       # Stage 7 decodes the base model too (the rows adapters are compared with).
cross_eval=true        # Stage 7 also decodes every adapter on every other language (forgetting check).
inference_tag=""       # Suffix of decode dirs; default: _beamN and/or _langauto when not greedy/forced.
results=RESULTS.md     # Results table rewritten by stage 8.
# Language ID and routing (stages 9-11: recipes with two or more --langs)
lid_config=conf/lid/mlp_mean.yaml  # Stage 9: LID model (pooling, classifier) and its training.
lid_crops="1 2 3"      # Stage 9: also LID accuracy on the first N seconds of each test utterance.
route_strategies="oracle hard soft threshold base"  # Stage 10: routing strategies decoded.
route_taus="0.5 0.7 0.9"  # Stage 10: threshold candidates; the one with the best dev WER is used on test.
route_top_k=2          # Stage 10: adapters mixed by threshold routing when max p < tau.
cs_kinds="inter rapid" # Stage 11: code-switched sets (inter: 2 sentences; rapid: 4 short ones alternating).
cs_utts=16             # Stage 11: utterances per code-switched set.

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
case "${model_family}" in
    whisper) ;;
    owsm)
        model_tag=owsm_$(basename "${owsm_model%/}" .zip | sed 's/^owsm_//' | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '_')
        owsm_cache=${owsm_cache:-${expdir}/owsm_cache}
        if [ "${num_nodes}" -gt 1 ]; then
            log "Error: --num_nodes ${num_nodes} with --model_family owsm: multi-node training is wired for Whisper only (OWSM: --ngpu N on one node)"
            exit 2
        fi
        ;;
    *) log "Error: --model_family ${model_family}: whisper or owsm"; exit 2 ;;
esac
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
# The same scaling alpha/r at every rank; lora_alpha is an integer (peft, our validator).
alpha, r = spec["lora_alpha"], spec["r"]
if alpha * rank % r:
    sys.exit(f"{src}: lora_alpha {alpha} at r {r} scales to a fractional alpha at rank {rank}")
spec["lora_alpha"], spec["r"] = alpha * rank // r, rank
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
[ "$(lora_field where)" = decoder ] && [ "${model_family}" = whisper ] && use_encoder_cache=true
feats_dir=${dumpdir}/${model_tag}
# LID and routing need two languages; LID reads the base encoder's cached outputs (stage 5).
routing=false
[ "$(wc -w <<< "${langs}")" -lt 2 ] || [ "${model_family}" = owsm ] || routing=true
route_tag=$(adapter_variants | head -n 1 | cut -d' ' -f1)   # routing uses the first adapter variant
route_test=${test_sets%% *}
lid_exp=${expdir}/${model_tag}_lid_$(basename "${lid_config}" .yaml)
route_exp=${expdir}/${model_tag}_routing_${route_tag}
# lid_sets SPLIT: the DATA:FEATS:CACHE triples of SPLIT for every language (train_lid/eval_lid).
lid_sets() {
    local lang
    for lang in ${langs}; do
        echo "${dumpdir}/raw/${lang}_$1:${feats_dir}/${lang}_$1:${feats_dir}/encoder/${lang}_$1"
    done
}

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

# OWSM's stages 4-7 (ESPnet S2T): functions owsm_stage4 ... owsm_stage7.
. "$(dirname "$(readlink -f "$0")")/owsm_stages.sh"

if run_stage 4 && [ "${model_family}" = owsm ]; then
    owsm_stage4
elif run_stage 4; then
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

if run_stage 5 && [ "${model_family}" = owsm ]; then
    owsm_stage5
elif run_stage 5 && { ${use_encoder_cache} || ${routing}; }; then
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
    if [ "${model_family}" = owsm ]; then
        log "Stage 6: OWSM LoRA training (${owsm_train_config}, ESPnet) -> $(adapter_exp '<lang>' '<tag>'), one job array"
        owsm_base
    else
        log "Stage 6: LoRA training (${train_config}) -> $(adapter_exp '<lang>' '<tag>'), one job array"
    fi
    if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu ${ngpu}"; else _cmd=${cuda_cmd}; fi
    launcher=()
    if [ "${num_nodes}" -gt 1 ]; then
        # One training process group per node, started by srun inside the job (torchrun per node).
        _cmd+=" --num-nodes ${num_nodes}"
        launcher=(srun --ntasks-per-node 1)
    fi
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
            if [ "${model_family}" = owsm ]; then
                sig="owsm=${owsm_model} seed=${seed} $(checksum "${config}" "${owsm_train_config}" "${owsm_base_file}" \
                    "${dumpdir}/owsm/${lang}_${train_split}/text" "${dumpdir}/owsm/${lang}_dev/text")"
            else
                sig="model=${whisper_model} seed=${seed} $(checksum "${config}" "${train_config}" \
                    "${feats_dir}/${lang}_${train_split}/feats.scp" "${feats_dir}/${lang}_dev/feats.scp")"
            fi
            up_to_date "${dir}" "${dir}" "${sig}" && continue
            mkdir -p "${dir}" && rm -f "${dir}/.done"
            echo "${run_args} --langs ${lang} --stage 6 --stop_stage 6 \"\$@\"; exit \$?" > "${dir}/run.sh"
            chmod +x "${dir}/run.sh"
            if [ "${model_family}" = owsm ]; then
                pending+=("${dir}|${sig}")
                owsm_fresh_run "${dir}/espnet" "${sig}"
                owsm_cell "${lang}" "${config}" "${dir}" "${cells}/train.${#pending[@]}.log" > "${cells}/cell.${#pending[@]}.sh"
                continue
            fi
            data_opts=(--train_dir "${dumpdir}/raw/${lang}_${train_split}" --dev_dir "${dumpdir}/raw/${lang}_dev"
                --train_feats "${feats_dir}/${lang}_${train_split}/feats.scp" --dev_feats "${feats_dir}/${lang}_dev/feats.scp")
            if ${use_encoder_cache}; then
                data_opts+=(--train_encoder_cache "${feats_dir}/encoder/${lang}_${train_split}"
                    --dev_encoder_cache "${feats_dir}/encoder/${lang}_dev")
            fi
            pending+=("${dir}|${sig}")
            # An interrupted training resumes from ${dir}/checkpoints/last with the same command.
            printf '%q ' "${launcher[@]}" python3 -m espnet_adapters.bin.train_lora --lang "${lang}" "${data_opts[@]}" \
                --whisper_model "${whisper_model}" --lora_config "${config}" \
                --train_config "${train_config}" --out_dir "${dir}" --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
                --num_threads "${train_num_threads}" --seed "${seed}" > "${cells}/cell.${#pending[@]}.sh"
        done
    done < <(adapter_variants)
    if [ ${#pending[@]} -gt 0 ]; then
        log "  ${#pending[@]} of ${num_cells} cells to train (logs: <dir>/log/train.log)"
        ${_cmd} --num-threads "${train_num_threads}" JOB=1:${#pending[@]} "${cells}/train.JOB.log" \
            bash "${cells}/cell.JOB.sh" || true
        failed=()
        for n in $(seq ${#pending[@]}); do
            dir=${pending[n-1]%%|*}
            # The task's log also goes into the cell's dir, where ESPnet users look for it.
            mkdir -p "${dir}/log" && cp -f "${cells}/train.${n}.log" "${dir}/log/train.log" 2>/dev/null || true
            if [ "${model_family}" = owsm ] && [ -f "${dir}/train_stats.json" ] \
                    && grep -q '^# Ended (code 0)' "${cells}/train.${n}.log"; then
                mark_done "${dir}" "${pending[n-1]#*|}"
                log "  ${dir}: $(python3 -c 'import json, sys; print("%d trainable (LoRA) parameters" % json.load(open(sys.argv[1]))["trainable_params"])' "${dir}/train_stats.json")"
            elif [ -f "${dir}/train.done" ] && grep -q '^# Ended (code 0)' "${cells}/train.${n}.log"; then
                mark_done "${dir}" "${pending[n-1]#*|}"
                log "  ${dir}: $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(("best dev WER %.1f%% (words correct %.1f%%) at step %d vs the base model'"'"'s %.1f%%, %d trainable parameters" % (s["best_dev_wer"], s["best_dev_corr"], s["best_step"], s["base_dev_wer"], s["trainable_params"])) if s["adapter"] else "NO ADAPTER INSTALLED: no evaluation beat the base model'"'"'s dev WER %.1f%%; its language is decoded by the base model only" % s["base_dev_wer"])' "${dir}/train_stats.json")"
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

# decode_jobs DIR SET SIGNATURE PROGRAM [OPTION ...]: unless DIR is up to date with SIGNATURE,
# decodes ${dumpdir}/raw/SET into DIR with --inference_nj jobs of espnet_adapters.bin.PROGRAM
# (any of our decoders: --data_dir, --keys and --out_dir are added here) and merges their
# hyp, hyp_lang[, routing].
decode_jobs() {
    local dir=$1 set_name=$2 sig=$3 program=$4 outs name
    shift 4
    local data=${dumpdir}/raw/${set_name}
    up_to_date "${dir}" "${dir}" "${sig}" && return
    mkdir -p "${dir}" && rm -f "${dir}/.done"
    split_keys "${data}/wav.scp" "${dir}/logdir" "${inference_nj}"
    if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu 1"; else _cmd=${decode_cmd}; fi
    ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${dir}/logdir/decode.JOB.log" \
        python3 -m "espnet_adapters.bin.${program}" --data_dir "${data}" \
            --keys "${dir}/logdir/keys.JOB" --out_dir "${dir}/logdir/output.JOB" "$@"
    outs=$(for n in $(seq "${_nj}"); do echo "${dir}/logdir/output.${n}"; done)
    for name in hyp hyp_lang routing; do
        [ ! -f "${dir}/logdir/output.1/${name}" ] || merge_jobs "${name}" "${dir}/${name}" ${outs}
    done
    mark_done "${dir}" "${sig}"
    log "  ${dir}: $(wc -l < "${dir}/hyp") hypotheses"
}

# run_decode DIR SET SIGNATURE PROGRAM [OPTION ...]: decode_jobs for a Whisper decoder
# (whisper_decode or route_decode): their common options and inputs are added here.
run_decode() {
    local dir=$1 set_name=$2 sig=$3 program=$4
    shift 4
    local data=${dumpdir}/raw/${set_name}
    local opts=(--feats_scp "${feats_dir}/${set_name}/feats.scp")
    ! ${use_encoder_cache} || opts+=(--encoder_cache "${feats_dir}/encoder/${set_name}")
    sig="${program} model=${whisper_model} beam=${beam_size} max_new=${max_new_tokens} ${sig} $(checksum "${data}"/{wav.scp,utt2lang} "${feats_dir}/${set_name}/feats.scp")"
    decode_jobs "${dir}" "${set_name}" "${sig}" "${program}" "${opts[@]}" "$@" \
        --whisper_model "${whisper_model}" --beam_size "${beam_size}" \
        --batch_size "${batch_size}" --max_new_tokens "${max_new_tokens}" \
        --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --num_threads "${num_threads}"
}
decode_set() {
    local tag=$1 set_name=$2 adapter=${3:-}
    if [ "${model_family}" = owsm ]; then
        owsm_decode_set "$@"
        return
    fi
    local opts=(--lang_mode "${decode_lang}") sig="lang=${decode_lang}"
    if [ -n "${adapter}" ]; then
        opts+=(--adapter_dir "${adapter}")
        sig+=" adapter=$(checksum "${adapter}/adapter_model.safetensors")"
    fi
    run_decode "${expdir}/${tag}/decode_${set_name}${inference_tag}" "${set_name}" "${sig}" whisper_decode "${opts[@]}"
}

# write_results: ${results} from every scores.json, plus the routing report(s) of stage 11.
# Each model's run leaves its command line in ${expdir}/log/command.<model>, without stage
# selection (stages are resumable: the whole command reproduces everything); the header
# lists them all (a Whisper and an OWSM run of one recipe share the tables).
write_results() {
    local extra=() commands=() file args=() i line
    for ((i = 0; i < ${#orig_args[@]}; i++)); do
        case ${orig_args[i]} in
            --stage|--stop_stage|--skip_stages) i=$((i + 1)) ;;
            *) args+=("${orig_args[i]}") ;;
        esac
    done
    line=$(printf '%q ' "${0#"${PWD}/"}" "${args[@]}")
    mkdir -p "${expdir}/log" && printf '%s\n' "${line% }" > "${expdir}/log/command.${model_tag}"
    for file in "${expdir}"/log/command.*; do
        commands+=(--command "$(cat "${file}")")
    done
    if compgen -G "${expdir}/*_routing_*/routing.md" > /dev/null; then
        cat "${expdir}"/*_routing_*/routing.md "${expdir}"/*_routing_*/codeswitch/report/codeswitch.md \
            2>/dev/null > "${expdir}/results_extra.md" || true
        extra=(--extra_md "${expdir}/results_extra.md")
    fi
    ${train_cmd} "${expdir}/log/make_results.log" \
        python3 -m espnet_adapters.bin.make_results --exp_dir "${expdir}" --out "${results}" \
            "${commands[@]}" "${extra[@]}"
    log "Results in ${results}"
}

# pool_sets OUT SPLIT FILE...: FILEs of every language's SPLIT set concatenated into OUT/.
pool_sets() {
    local out=$1 split=$2 name lang
    shift 2
    mkdir -p "${out}"
    for name in "$@"; do
        for lang in ${langs}; do cat "${dumpdir}/raw/${lang}_${split}/${name}"; done | sort -k1,1 > "${out}/${name}.tmp"
        mv "${out}/${name}.tmp" "${out}/${name}"
    done
}

# routing_adapters: sets adapter_opts (--adapter LANG=DIR ...) and adapter_models (their
# weight files) of the adapters that stages 10-11 route between; all must exist.
routing_adapters() {
    local lang adapter
    adapter_opts=()
    adapter_models=()
    for lang in ${langs}; do
        adapter=$(adapter_exp "${lang}" "${route_tag}")/adapter
        if [ ! -f "${adapter}/adapter_model.safetensors" ]; then
            log "Error: no adapter ${adapter}: run stage 6 first"
            exit 1
        fi
        adapter_opts+=(--adapter "${lang}=${adapter}")
        adapter_models+=("${adapter}/adapter_model.safetensors")
    done
}

# route_pooled DIR SPLIT POSTERIORS [ROUTE_DECODE OPTION ...]: every language's SPLIT set
# routed into DIR/<lang>_<split>, the hyps pooled into DIR/hyp (the system is not told the
# language: posteriors decide), scored against the pooled references (per language too).
route_pooled() {
    local dir=$1 split=$2 posteriors=$3 lang sig
    shift 3
    sig="$* $(checksum "${adapter_models[@]}" ${posteriors:+"${posteriors}"})"
    for lang in ${langs}; do
        run_decode "${dir}/${lang}_${split}" "${lang}_${split}" "${sig}" route_decode \
            "${adapter_opts[@]}" ${posteriors:+--posteriors "${posteriors}"} "$@"
    done
    for name in hyp hyp_lang routing; do
        for lang in ${langs}; do cat "${dir}/${lang}_${split}/${name}"; done | sort -k1,1 > "${dir}/${name}.tmp"
        mv "${dir}/${name}.tmp" "${dir}/${name}"
    done
    pool_sets "${route_exp}/ref_${split}" "${split}" text utt2lang
    ${train_cmd} "${dir}/score/score.log" \
        python3 -m espnet_adapters.bin.score --ref_text "${route_exp}/ref_${split}/text" --hyp_text "${dir}/hyp" \
            --lang mul --set_name "pooled_${split}" --utt2category "${route_exp}/ref_${split}/utt2lang" \
            --out_dir "${dir}/score"
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
                    if [ ! -d "${dir}/adapter" ]; then
                        if [ -f "${dir}/train.done" ]; then
                            log "  ${dir}: no adapter (the base model was better on dev): not decoded on ${lang}_${tset}" >&2
                        else
                            log "  ${dir}: no adapter yet (stage 6 not run): not decoded on ${lang}_${tset}" >&2
                        fi
                        continue
                    fi
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
    write_results
fi

if run_stage 9 && [ "${model_family}" = owsm ]; then
    log "Stages 9-12: language ID and routing are Whisper-only (--model_family owsm): skipped"
fi
if run_stage 9 && ${routing}; then
    log "Stage 9: language ID (${lid_config}) on the frozen encoder's outputs -> ${lid_exp}"
    sig="model=${whisper_model} seed=${seed} $(checksum "${lid_config}" \
        $(for lang in ${langs}; do echo "${feats_dir}/${lang}_${train_split}/feats.scp ${feats_dir}/${lang}_dev/feats.scp"; done))"
    if ! up_to_date "${lid_exp}" "${lid_exp}" "${sig}"; then
        mkdir -p "${lid_exp}" && rm -f "${lid_exp}/.done"
        ${train_cmd} --num-threads "${train_num_threads}" "${lid_exp}/log/train.log" \
            python3 -m espnet_adapters.bin.train_lid --train_sets $(lid_sets "${train_split}") \
                --dev_sets $(lid_sets dev) --config "${lid_config}" --out_dir "${lid_exp}" \
                --whisper_model "${whisper_model}" --seed "${seed}" --num_threads "${train_num_threads}"
        mark_done "${lid_exp}" "${sig}"
    fi
    # dev: posteriors for choosing tau; test: the report (crops and Whisper's own LID too).
    for split in dev "${route_test}"; do
        out=${lid_exp}/eval_${split}
        opts=(--crop_seconds --whisper_baseline false)
        [ "${split}" = dev ] || opts=(--crop_seconds ${lid_crops} --whisper_baseline true)
        esig="${sig} ${opts[*]} $(checksum "${lid_exp}/lid_model.safetensors" \
            $(for lang in ${langs}; do echo "${feats_dir}/${lang}_${split}/feats.scp"; done))"
        up_to_date "${out}" "${out}" "${esig}" && continue
        mkdir -p "${out}" && rm -f "${out}/.done"
        ${decode_cmd} --num-threads "${num_threads}" "${out}/eval.log" \
            python3 -m espnet_adapters.bin.eval_lid --lid_dir "${lid_exp}" --test_sets $(lid_sets "${split}") \
                --out_dir "${out}" --whisper_model "${whisper_model}" --num_threads "${num_threads}" "${opts[@]}"
        mark_done "${out}" "${esig}"
        log "  ${out}: $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["systems"]; print(", ".join("%s accuracy %.1f%%" % (k, 100 * v["accuracy"]) for k, v in r.items()))' "${out}/results.json")"
    done
fi

if run_stage 10 && ${routing}; then
    log "Stage 10: routing (${route_strategies}) on the pooled ${route_test} sets -> ${route_exp}"
    routing_adapters
    tau=""
    if [[ " ${route_strategies} " == *" threshold "* ]]; then
        for candidate in ${route_taus}; do
            route_pooled "${route_exp}/dev/threshold_tau${candidate}" dev "${lid_exp}/eval_dev/posteriors" \
                --strategy threshold --tau "${candidate}" --top_k "${route_top_k}"
        done
        # The tau with the lowest pooled dev WER (ties: the higher tau, fewer mixtures).
        tau=$(python3 - "${route_exp}" ${route_taus} <<'PY'
import json, sys
from pathlib import Path
exp, taus = Path(sys.argv[1]), sys.argv[2:]
rows = []
for tau in taus:
    s = json.loads((exp / "dev" / f"threshold_tau{tau}" / "score" / "scores.json").read_text())
    rows.append({"tau": float(tau), "dev_wer": s["wer"], "dev_cer": s["cer"]})
chosen = min(rows, key=lambda r: (r["dev_wer"], -r["tau"]))["tau"]
(exp / "tau_selection.json").write_text(json.dumps({"candidates": rows, "chosen": chosen}, indent=2) + "\n")
print(chosen)
PY
)
        log "  threshold: tau ${tau} (best pooled dev WER of ${route_taus})"
    fi
    for strategy in ${route_strategies}; do
        opts=(--strategy "${strategy}")
        posteriors=${lid_exp}/eval_${route_test}/posteriors
        case "${strategy}" in
            oracle|base) posteriors="" ;;
            threshold) opts+=(--tau "${tau}" --top_k "${route_top_k}") ;;
        esac
        route_pooled "${route_exp}/${strategy}" "${route_test}" "${posteriors}" "${opts[@]}"
        log "  ${strategy}: $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print("pooled WER %.1f%% CER %.1f%%" % (s["wer"], s["cer"]))' "${route_exp}/${strategy}/score/scores.json")"
    done
fi

if run_stage 11 && ${routing} && [ -n "${cs_kinds}" ]; then
    log "Stage 11: code-switching (${cs_kinds}) from the ${route_test} sets -> ${route_exp}/codeswitch"
    routing_adapters
    for kind in ${cs_kinds}; do
        data=${dumpdir}/raw/cs_${kind}
        sig="utts=${cs_utts} seed=${seed} $(checksum $(for lang in ${langs}; do echo "${dumpdir}/raw/${lang}_${route_test}/wav.scp"; done))"
        if ! up_to_date "${data}" "${data}" "${sig}"; then
            ${train_cmd} "${expdir}/log/make_codeswitch_${kind}.log" \
                python3 -m espnet_adapters.bin.make_codeswitch --kind "${kind}" --num_utts "${cs_utts}" \
                    --seed "${seed}" --in_dirs $(for lang in ${langs}; do echo "${dumpdir}/raw/${lang}_${route_test}"; done) \
                    --out_dir "${data}" --audio_dir "${dumpdir}/audio/cs_${kind}"
            mark_done "${data}" "${sig}"
        fi
        dir=${route_exp}/codeswitch/cs_${kind}
        dsig="${sig} model=${whisper_model} max_new=${max_new_tokens} $(checksum "${lid_exp}/lid_model.safetensors" "${adapter_models[@]}")"
        up_to_date "${dir}" "${dir}" "${dsig}" && continue
        mkdir -p "${dir}" && rm -f "${dir}/.done"
        if [ "${ngpu}" -gt 0 ]; then _cmd="${cuda_cmd} --gpu 1"; else _cmd=${decode_cmd}; fi
        ${_cmd} --num-threads "${num_threads}" "${dir}/decode.log" \
            python3 -m espnet_adapters.bin.codeswitch_decode --data_dir "${data}" --lid_dir "${lid_exp}" \
                "${adapter_opts[@]}" --out_dir "${dir}" --whisper_model "${whisper_model}" \
                --max_new_tokens "${max_new_tokens}" --num_threads "${num_threads}" --ngpu "$(( ngpu > 0 ? 1 : 0 ))"
        mark_done "${dir}" "${dsig}"
    done
fi

if run_stage 12 && ${routing}; then
    log "Stage 12: LID, routing and code-switching report -> ${route_exp}/{routing,codeswitch}.md, ${results}"
    link_dir=$(dirname "${results}")
    ${train_cmd} "${route_exp}/log/report.log" \
        python3 -m espnet_adapters.bin.routing_report --routing_dir "${route_exp}" --lid_dir "${lid_exp}" \
            --utt2lang "${route_exp}/ref_${route_test}/utt2lang" --strategies ${route_strategies} \
            --out_md "${route_exp}/routing.md" --out_png "${route_exp}/routing.png" --link_dir "${link_dir}"
    if [ -n "${cs_kinds}" ]; then
        ${train_cmd} "${route_exp}/log/codeswitch_report.log" \
            python3 -m espnet_adapters.bin.codeswitch_report \
                --sets $(for kind in ${cs_kinds}; do echo "${dumpdir}/raw/cs_${kind}:${route_exp}/codeswitch/cs_${kind}"; done) \
                --single_hyps "${route_exp}/oracle/hyp" --out_dir "${route_exp}/codeswitch/report" \
                --link_dir "${link_dir}"
    fi
    write_results
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
