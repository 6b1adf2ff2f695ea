#!/usr/bin/env bash
# The shared stage script of every espnet-adapters recipe (the role of ESPnet's asr.sh).
# Run it from a recipe directory: the repository root (all languages) or
# egs2/<language>/adapt1 (one language), where it is called by a thin run.sh.
#
# Usage: ./run.sh [--stage N] [--stop_stage M] [--langs "hi it"] [--option value ...]
#
# Stages (each guarded by --stage/--stop_stage/--skip_stages, logged under exp/,
# skipped when its .done marker matches the current inputs and options):
#   1  Data preparation: data/<lang>_{train,dev,test[,test_other]} Kaldi dirs (local/data.sh --corpus:
#      synth, one real corpus, or mix = conf/data/<lang>.yaml; corpus roots in db.sh)
#   2  Training-set augmentation (off by default): speed perturbation (--speed_perturb_factors)
#      -> <lang>_train_sp, then noisy/reverberant copies (--augment_config) -> <lang>_train[_sp]_aug
#   3  Format audio: 16 kHz mono into dump/raw/<set>; drop too short/long and
#      empty-text utterances (counted in exp/format/<set>/combine.log)
#   4  Feature dump: Whisper log-mel -> dump/<model>/<set>/feats.scp (kaldiio) + feats_shape
#   5  Encoder cache: frozen encoder outputs -> dump/<model>/encoder/<set>
#      (only when the adapter leaves the encoder alone: decoder-only training never runs it);
#      --cache_backend ct2: CTranslate2's encoder on a float32 export of the base model
#      (exp/<model>/export/base), the same outputs within float noise, 1.33x faster
#   6  LoRA training, one adapter per language (and --lora_ranks rank), submitted as one
#      job array of the cells not yet done -> exp/<model>_lora_<lang>_<tag>/adapter
#   7  Decoding: the base model and each language's adapter on <lang>_<test_sets>, and
#      (--cross_eval true) every adapter on every other language's test set; with
#      --decode_backend ct2 (Whisper), by CTranslate2: the base and each adapter (merged) are
#      exported once into exp/<model>/export/ and the decode dirs get _ct2
#   8  Scoring: WER/CER (result.txt, scores.json per decode dir) and ${results}
#   9  Language ID: a classifier on the frozen encoder's cached outputs (train sets, selected
#      on dev), evaluated on dev and the pooled test sets with Whisper's own LID as baseline
#  10  Routing: the pooled test sets of all languages decoded with oracle / hard / soft /
#      threshold (tau chosen on dev) / hierarchical (family, then language; --families) / base
#      routing of the language adapters
#  11  Code-switching: synthetic inter-sentential and rapid-switching utterances built from
#      the test sets, routed segment by segment (sliding-window LID over the encoder frames)
#  12  Report: LID, routing and code-switching tables and plots appended to ${results}
#  13  Adapter analysis: cosine similarity of the languages' weight deltas (heatmap, dendrogram),
#      their spectra and effective ranks -> exp/<model>_analysis_<tag>, appended to ${results}
#  14  Export: the adapters with Hugging Face model cards (stage 8's scores), the LID and the
#      threshold chosen on dev, checksummed, in exp/<model>_export_<tag> (./transcribe.sh reads it)
# Presets: --config FILE sources a shell file of option=value lines before the other options
# (Kaldi's parse_options), e.g. --config conf/preset/large.conf: the larger adapters of README
# "Levers" (top 2 encoder layers, 960 training sentences, 640 steps; about 23 min per language).
# Grids: --models "m1 m2" runs the stages once per model; --lora_ranks "8 32" trains every
# language at every rank (stage 6 resubmits only the cells that are not done).
# --model_family owsm: OWSM through ESPnet's own S2T task and LoRA adapters instead of Whisper
# (owsm_stages.sh): stage 4 writes S2T data dirs, stage 5 gets the base model (--owsm_model:
# a Hub name, a pack zip, or "tiny": a tiny OWSM trained here on the training sets), stage 6
# trains with espnet2.bin.s2t_train, stage 7 decodes base + adapter in-process; stages 9-13
# (LID, routing, analysis) are Whisper-only.
# Layout: this script has the options, the stage guards and order, and the stages every model
# family shares (1-3, 6's job array, 7-8); <family>_stages.sh (whisper_stages.sh,
# owsm_stages.sh) defines the same functions for what differs (stage4, stage5, train_cell,
# decode_set, stage9 ...); lib.sh has the helpers.
set -euo pipefail

# lib.sh: log, run_stage, the .done markers, job helpers, the recipe's layout.
template_dir=$(dirname "$(readlink -f "$0")")
# shellcheck source=lib.sh
. "${template_dir}/lib.sh"
exit_traps  # a failed or killed run says so (and timing.tsv marks the stage)
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
train_num_threads=2    # torch CPU threads of a training job, and of the one-job stages 9 (LID evaluation) and 11 (code-switching).
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
augment_config=""     # Stage 2, e.g. conf/augment/noise_reverb.yaml: train on <lang>_train[_sp]_aug, the
                       # originals plus noisy and reverberant copies.
fs=16000               # Sample rate after formatting (Whisper and OWSM expect 16 kHz).
min_dur=0.1            # Drop utterances shorter than this (seconds).
max_dur=30             # Drop utterances longer than this (seconds; Whisper sees 30 s windows).
test_sets=""           # Splits decoded and scored for each language; the first is the one of the cross-language
                       # decodes, eval_langs, LID and routing.  Default: "test test_other" with --corpus synth
                       # (test_other: the test sentences spoken by another synthesizer, Festival, for the
                       # languages with a voice in conf/synth_other.yaml; dev_other likewise), else "test".
# Model and adapters
model_family=whisper   # whisper (transformers + peft) or owsm (ESPnet S2T + loralib; owsm_stages.sh).
whisper_model=whisper-base  # tools/models/<name>, a local transformers dir, or a Hub id (HF_HUB_OFFLINE=0).
models=""              # Grid over models, e.g. "whisper-base openai/whisper-small": every stage per model.
lora_ranks=""          # Grid over ranks, e.g. "8 16 32": --lora_config at each rank (alpha/r kept).
lora_config=conf/lora/r32_qv_dec.yaml    # peft LoRA: rank, alpha, targets, encoder/decoder/both.
train_config=conf/train/default.yaml     # Optimiser, steps, batching, evaluation, early stopping.
adapter_tag=""         # exp/<model>_lora_<lang>_<tag>; default: lora config name [+ _train config name]
                       # [+ _speech<s> when the decode config has encoder_span: speech].
seed=1                 # Seed of the training runs.
tracker=tensorboard    # Stage 6 (Whisper) experiment tracking: tensorboard, wandb (offline: `wandb sync` later), none.
owsm_model=tiny        # owsm: Hub name (espnet/owsm_v3.1_ebf_base, HF_HUB_OFFLINE=0 or a HF cache in
                       # --owsm_cache), a pack zip (espnet2.bin.pack s2t), or tiny (trained in stage 5).
owsm_cache=""          # owsm: espnet_model_zoo cache dir (default: ${expdir}/owsm_cache).
owsm_train_config=conf/owsm/lora_train.yaml  # owsm: optimiser/batch/epochs of the LoRA runs (ESPnet keys).
owsm_tiny_config=conf/owsm/tiny_ebf.yaml     # owsm tiny: architecture and training of the base model.
owsm_tiny_epochs=20    # owsm tiny: epochs of the base model's training.
owsm_vocab_size=2000   # owsm tiny: sentencepiece vocabulary (incl. 1535 special tokens).
owsm_maxlenratio=0.0   # owsm decoding: max tokens / encoder frames (0: up to the encoder length).
# Decoding
decode_config=conf/decode/default.yaml  # Search, loop safeguards and encoder_trim of every Whisper decoder AND of
                       # the dev decoding that selects the adapter (one DecodeOptions); another file -> decode_*_<name>.
                       # conf/decode/speech.yaml: the encoder on the speech + 1 s (encoder_span), ~6x faster stage 5.
beam_size=""           # Overrides decode_config's beam_size (1 = greedy); e.g. 5 -> decode dirs get _beam5.
batch_size=""          # Overrides decode_config's batch_size (utterances per decoding batch).
max_new_tokens=""      # Overrides decode_config's flat cap on tokens per hypothesis.
decode_lang=forced     # forced: language token from utt2lang; auto: Whisper detects the language.
decode_base=true       # Stage 7 decodes the base model too (the rows adapters are compared with).
cross_eval=true        # Stage 7 also decodes every adapter on every other language (forgetting check).
cache_backend=hf       # Stage 5 encoder of the cache: hf (transformers) or ct2 (CTranslate2 float32 on the base
                       # model's export: outputs within ~1e-3, 1.3x faster; README "Where the default run's time
                       # goes" for why it is not the default); the states below top layers always hf.
decode_backend=hf      # Stage 7 Whisper decoder: hf (transformers + peft) or ct2 (CTranslate2 on exports).
ct2_quantization=int8  # decode_backend=ct2: weight type of the exports (int8 float32 float16 int8_float32 ...).
inference_tag=""       # Suffix of decode dirs; default: _<decode_config name> unless default.yaml, _beamN, _langauto,
                       # _ct2 (_ct2_<quantization> unless int8).
results=RESULTS.md     # Results table rewritten by stage 8.
# Language ID and routing (stages 9-11: recipes with two or more --langs)
lid_config=conf/lid/mlp_mean.yaml  # Stage 9: LID model (pooling, classifier) and its training.
lid_crops="1 2 3"      # Stage 9: also LID accuracy on the first N seconds of each test utterance.
route_strategies="oracle hard soft threshold hierarchical base"  # Stage 10: routing strategies decoded.
route_taus="0.5 0.7 0.9"  # Stage 10: threshold candidates; the one with the best dev WER is used on test.
route_top_k=2          # Stage 10: adapters mixed by threshold routing when max p < tau.
cs_kinds="inter rapid" # Stage 11: code-switched sets (inter: 2 sentences; rapid: 4 short ones alternating).
cs_utts=16             # Stage 11: utterances per code-switched set (test, and dev for choosing the switch smoothing).
cs_tolerance=0.3       # Stage 12: a detected switch within this many seconds of a true one can be its hit.
cs_select_tolerance=1.0  # Stage 11: the same, for choosing the switch smoothing on dev (best F1): a switch found
                         # 0.5 s off still cuts two sentences nearly right, a false alarm splits one.
families=conf/families.yaml  # Stages 10 and 13: language -> family (hierarchical routing; adapter similarity
                             # within vs across families).
export_licences=conf/export/data_licences.yaml  # Stage 14: the training data's licence per corpus (model cards).

. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: unexpected arguments: $*"
    exit 2
fi
test_sets_auto=false
if [ -z "${test_sets}" ]; then
    test_sets=test test_sets_auto=true
    [ "${corpus}" != synth ] || test_sets="test test_other"
fi
check_options
if [ -n "${models}" ]; then
    # A model grid is this script once per model (the last --whisper_model wins).
    for model in ${models}; do
        log "Model grid: ${model}"
        "$0" "${orig_args[@]}" --models "" --whisper_model "${model}"
    done
    exit 0
fi
lock_recipe
# The stages of --model_family: the functions of <family>_stages.sh beside this script.
family_stages=${template_dir}/${model_family}_stages.sh
if [[ ! "${model_family}" =~ ^[a-z0-9]+$ ]] || [ ! -f "${family_stages}" ]; then
    families=("${template_dir}"/*_stages.sh)
    families=("${families[@]##*/}")
    log "Error: --model_family ${model_family}: one of ${families[*]%_stages.sh}"
    exit 2
fi
# shellcheck source=whisper_stages.sh
. "${family_stages}"

# Creates or refreshes tools/venv and the converted Whisper base (cheap when up to date).
main_root=$(cd "$(dirname "$(readlink -f ./path.sh)")" && pwd)
"${main_root}/tools/install.sh"
. ./path.sh
. ./cmd.sh

if [ ! -f "${lora_config}" ] || [ ! -f "${train_config}" ]; then
    log "Error: --lora_config ${lora_config} or --train_config ${train_config} not found"
    exit 1
fi
adapter_tag_auto=false
if [ -z "${adapter_tag}" ]; then
    adapter_tag_auto=true
    adapter_tag=$(basename "${lora_config}" .yaml)
    [ "$(basename "${train_config}")" = default.yaml ] || adapter_tag+="_$(basename "${train_config}" .yaml)"
fi
if [ ! -f "${decode_config}" ]; then
    log "Error: --decode_config ${decode_config} not found"
    exit 1
fi
# Every config through its dataclass (unknown keys, types, ranges, empty files: an error naming the
# file), the languages against the model, and the LoRA settings the stage scripts read (config_field).
mapfile -t model_checks < <(model_check_args)
# With the default --test_sets of the synthetic corpus: the languages the other synthesizer speaks
# (they get test_other), its config checked here rather than in stage 1.
other_synth=()
! ${test_sets_auto} || [ "${corpus}" != synth ] || other_synth=(--synth_other_config conf/synth_other.yaml)
config_fields=$(quietly "${expdir}/log/check_configs.log" python3 -m espnet_adapters.bin.check_configs \
    --lora_config "${lora_config}" --train_config "${train_config}" --decode_config "${decode_config}" \
    --lid_config "${lid_config}" ${augment_config:+--augment_config "${augment_config}"} "${other_synth[@]}" \
    --families "${families}" --licences "${export_licences}" --corpus "${corpus}" \
    --lora_fields where encoder_top --decode_fields encoder_span encoder_trim "${model_checks[@]}")
other_langs=$(config_field other_langs)
case ${tracker} in tensorboard|wandb|none) ;; *) log "Error: --tracker ${tracker}: tensorboard, wandb or none"; exit 2 ;; esac
for _backend in "decode_backend=${decode_backend}" "cache_backend=${cache_backend}"; do
    if [ "${_backend#*=}" != hf ] && [ "${_backend#*=}" != ct2 ]; then
        log "Error: --${_backend%%=*} ${_backend#*=}: hf or ct2"
        exit 2
    fi
done
if [ "$(config_field encoder_span)" = speech ]; then
    if [ "${cache_backend}" = ct2 ] || [ "${decode_backend}" = ct2 ]; then
        log "Error: encoder_span speech (${decode_config}) runs the encoder on the speech only, which CTranslate2" \
            "cannot: use --cache_backend hf --decode_backend hf"
        exit 2
    fi
    # adapters trained on that encoder get their own dirs (the default tag's adapters stay)
    if ${adapter_tag_auto}; then adapter_tag+=_speech$(config_field encoder_trim); fi
fi
# search_tag: the search (decode config, beam) that stages 10-11's output dirs carry; stage 7's
# decode dirs carry inference_tag, which starts with it.
search_tag=""
[ "$(basename "${decode_config}")" = default.yaml ] || search_tag+="_$(basename "${decode_config}" .yaml)"
[ "${beam_size:-1}" -gt 1 ] && search_tag+="_beam${beam_size}"
if [ -z "${inference_tag}" ]; then
    inference_tag=${search_tag}
    [ "${decode_lang}" = auto ] && inference_tag+="_langauto"
    [ "${decode_backend}" != ct2 ] || inference_tag+="_ct2"
    [ "${decode_backend}" != ct2 ] || [ "${ct2_quantization}" = int8 ] || inference_tag+="_${ct2_quantization}"
fi
train_split=train
[ -z "${speed_perturb_factors}" ] || train_split+=_sp
[ -z "${augment_config}" ] || train_split+=_aug
family_init
if [ -n "${lora_ranks}" ]; then
    # --lora_config at each rank, with the same alpha/r.
    variants=()
    while read -r _ rank config; do variants+=("${rank}=${config}"); done < <(adapter_variants)
    quietly "${expdir}/log/lora_variant.log" \
        python3 -m espnet_adapters.bin.lora_variant --lora_config "${lora_config}" "${variants[@]}"
fi

if run_stage 1; then
    log "Stage 1: data preparation (${corpus}) -> data/<lang>_{train,dev,test}"
    for lang in ${langs} ${eval_langs}; do
        splits=$(lang_test_sets "${lang}")
        [[ " ${langs} " != *" ${lang} "* ]] || splits="train dev ${splits}"
        splits=$(tr ' ' '\n' <<< "${splits}" | awk 'NF && !seen[$0]++' | paste -sd ' ')
        [ "$(lang_test_sets "${lang}")" = "${test_sets}" ] || [[ " ${eval_langs} " == *" ${lang} "* ]] \
            || log "  ${lang}: no voice of the other synthesizer in conf/synth_other.yaml: no ${lang}_test_other (add one there)"
        if [ "${corpus}" = synth ]; then
            inputs=(local/sentences/"${lang}".txt conf/synth.yaml)
        else
            inputs=(db.sh "${data_config:-conf/data/${lang}.yaml}")
        fi
        # The corpus's own splits share a signature; a <split>_other adds the other synthesizer's
        # config to it, so asking for one later makes only it (nothing already trained is redone).
        base_splits=$(tr ' ' '\n' <<< "${splits}" | grep -v '_other$' | paste -sd ' ')
        sig="corpus=${corpus} splits=${base_splits} train=${train_utts} dev=${dev_utts} test=${test_utts} $(checksum "${inputs[@]}" 2>/dev/null || true) roots=$(. ./db.sh && echo "${COMMONVOICE}:${MLS}:${KATHBATH}:${INDICVOICES}:${FLEURS}")"
        other_sig="${sig} other=$(checksum conf/synth_other.yaml 2>/dev/null || true)"
        todo=()  # the corpus's splits all or none (a corpus may filter one against another), then each _other
        for split in ${base_splits}; do is_done "data/${lang}_${split}" "${sig}" || { read -r -a todo <<< "${base_splits}"; break; }; done
        for split in ${splits}; do
            [[ "${split}" != *_other ]] || is_done "data/${lang}_${split}" "${other_sig}" || todo+=("${split}")
        done
        if [ ${#todo[@]} -eq 0 ]; then
            log "  ${lang}: up to date"
            continue
        fi
        ${train_cmd} "${expdir}/log/data_prep_${lang}.log" \
            local/data.sh --corpus "${corpus}" --lang "${lang}" --nj "${nj}" --splits "${todo[*]}" \
                --data_config "${data_config}" \
                --train_utts "${train_utts}" --dev_utts "${dev_utts}" --test_utts "${test_utts}"
        for split in "${todo[@]}"; do
            utils/validate_data_dir.sh "data/${lang}_${split}"
            if [[ "${split}" == *_other ]]; then mark_done "data/${lang}_${split}" "${other_sig}"; else mark_done "data/${lang}_${split}" "${sig}"; fi
        done
        log "  ${lang}: $(for s in "${todo[@]}"; do printf '%s=%s ' "${s}" "$(wc -l < "data/${lang}_${s}/text")"; done)utterances"
    done
fi

if run_stage 2 && [ "${train_split}" = train ]; then
    skip_stage 2 "training-set augmentation: no --speed_perturb_factors, no --augment_config"
elif run_stage 2; then
    log "Stage 2: training-set augmentation data/<lang>_train -> data/<lang>_${train_split}"
    read -r -a factors <<< "${speed_perturb_factors}"
    for lang in ${langs}; do
        src=data/${lang}_train
        if [ -n "${speed_perturb_factors}" ]; then
            out=data/${lang}_train_sp
            sig="factors=${speed_perturb_factors} $(checksum "${src}"/{wav.scp,text,utt2spk}) $(audio_stamp "${src}")"
            if ! up_to_date "${out}" "${out}" "${sig}"; then
                ${train_cmd} "${expdir}/log/speed_perturb_${lang}.log" \
                    python3 -m espnet_adapters.bin.speed_perturb --in_dir "${src}" --out_dir "${out}" \
                        --factors "${factors[@]}"
                mark_done "${out}" "${sig}"
                log "  ${out}: $(wc -l < "${out}/text") utterances (speed ${speed_perturb_factors})"
            fi
            src=${out}
        fi
        if [ -n "${augment_config}" ]; then
            out=${src}_aug
            sig="augment=$(checksum "${augment_config}") $(checksum "${src}"/{wav.scp,text,utt2spk}) $(audio_stamp "${src}")"
            [ "${src}" = "data/${lang}_train" ] || sig+=" $(input_sig "${src}" 2)"
            up_to_date "${out}" "${out}" "${sig}" && continue
            ${train_cmd} "${expdir}/log/augment_${lang}.log" \
                python3 -m espnet_adapters.bin.augment_data_dir --in_dir "${src}" --out_dir "${out}" \
                    --augment_config "${augment_config}"
            mark_done "${out}" "${sig}"
            log "  ${out}: $(wc -l < "${out}/text") utterances ($(awk '/reverb/ { r++ } /dB$/ { n++ } END { printf "%d reverberated, %d with noise", r, n }' "${out}/utt2aug") copies)"
        fi
    done
fi

if run_stage 3; then
    log "Stage 3: format audio (${fs} Hz mono, ${min_dur}-${max_dur} s) data/ -> ${dumpdir}/raw/"
    for set_name in $(all_sets); do
        src=data/${set_name}
        out=${dumpdir}/raw/${set_name}
        made_by=1
        [[ "${set_name}" != *_train_sp && "${set_name}" != *_train*_aug ]] || made_by=2
        upstream=$(input_sig "${src}" "${made_by}")
        sig="fs=${fs} min=${min_dur} max=${max_dur} ${upstream} $(checksum "${src}"/{wav.scp,text,utt2spk}) $(audio_stamp "${src}")"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        # data/ may have been edited since stage 1: every problem named by file and line, not an
        # utterance silently dropped by the joins below.
        utils/validate_data_dir.sh "${src}"
        rm -f "${out}/.done"
        logdir=${expdir}/format/${set_name}
        audio=${dumpdir}/audio/${set_name}
        rm -rf "${audio}"
        split_keys "${src}/utt2spk" "${logdir}" "${nj}"
        mapfile -t jobs < <(job_dirs "${audio}/format." "${_nj}")
        ${train_cmd} JOB=1:"${_nj}" "${logdir}/format.JOB.log" \
            python3 -m espnet_adapters.bin.format_wav_scp --in_dir "${src}" \
                --keys "${logdir}/keys.JOB" --out_dir "${audio}/format.JOB" --fs "${fs}"
        ${train_cmd} "${logdir}/combine.log" \
            python3 -m espnet_adapters.bin.combine_formatted --in_dir "${src}" --out_dir "${out}" \
                --job_dirs "${jobs[@]}" --min_dur "${min_dur}" --max_dur "${max_dur}"
        mark_done "${out}" "${sig}"
        log "  ${set_name}: $(grep -o -m 1 'kept .*' "${logdir}/combine.log")"
    done
fi

if run_stage 4; then
    stage4
fi

if run_stage 5; then
    stage5
fi

if run_stage 6; then
    train_setup
    _cmd=$(job_cmd "${ngpu}" "${cuda_cmd}")
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
    while read -r tag _ config; do
        for lang in ${langs}; do
            num_cells=$((num_cells + 1))
            dir=$(adapter_exp "${lang}" "${tag}")
            cell_signature "${lang}" "${config}"
            up_to_date "${dir}" "${dir}" "${sig}" && continue
            mkdir -p "${dir}" && rm -f "${dir}/.done"
            echo "${run_args} --langs ${lang} --stage 6 --stop_stage 6 \"\$@\"; exit \$?" > "${dir}/run.sh"
            chmod +x "${dir}/run.sh"
            pending+=("${dir}|${sig}")
            train_cell "${lang}" "${config}" "${dir}" "${sig}" \
                "${cells}/cell.${#pending[@]}.sh" "${cells}/train.${#pending[@]}.log"
        done
    done < <(adapter_variants)
    if [ ${#pending[@]} -gt 0 ]; then
        log "  ${#pending[@]} of ${num_cells} cells to train (logs: <dir>/log/train.log)"
        ${_cmd} --num-threads "${train_num_threads}" JOB=1:"${#pending[@]}" "${cells}/train.JOB.log" \
            bash "${cells}/cell.JOB.sh" || true
        failed=()
        for n in $(seq "${#pending[@]}"); do
            dir=${pending[n-1]%%|*}
            # The task's log also goes into the cell's dir, where ESPnet users look for it.
            mkdir -p "${dir}/log"
            cp -f "${cells}/train.${n}.log" "${dir}/log/train.log" 2>/dev/null || true
            if cell_finished "${dir}" "${cells}/train.${n}.log"; then
                mark_done "${dir}" "${pending[n-1]#*|}"
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

if run_stage 7; then
    log "Stage 7: decoding (${decode_config}${beam_size:+, beam ${beam_size}}, language ${decode_lang}) -> ${expdir}/*/decode_*${inference_tag}"
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

if multilingual_stage 9 "language ID"; then
    stage9
fi

if multilingual_stage 10 "routing"; then
    stage10
fi

if multilingual_stage 11 "code-switching"; then
    if [ -n "${cs_kinds}" ]; then stage11; else skip_stage 11 "code-switching: --cs_kinds is empty"; fi
fi

if multilingual_stage 12 "the LID, routing and code-switching report"; then
    stage12
fi

if multilingual_stage 13 "the adapter analysis"; then
    stage13
fi

if run_stage 14; then
    stage14
fi

timing_report
log "Successfully finished. [elapsed=${SECONDS}s]"
