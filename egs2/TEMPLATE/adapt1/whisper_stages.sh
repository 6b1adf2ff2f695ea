# shellcheck shell=bash
# Whisper's stages of adapt.sh (--model_family whisper: transformers + peft), sourced by it.
# Every family's stage file defines the same functions, which adapt.sh calls under its
# stage guards; they use adapt.sh's options and lib.sh's helpers:
#   model_check_args  check_configs' options that check --langs against the model, one a line
#   family_init     checks the family's options; sets model_tag (and what the stages share)
#   stage4          features: Whisper log-mel -> ${dumpdir}/<model>/<set>/feats.scp (kaldiio)
#   stage5          encoder cache: frozen encoder outputs -> ${dumpdir}/<model>/encoder/<set>,
#                   when a decoder-only adapter or LID (two or more --langs) reads them; for an
#                   adapter on the top N encoder layers (encoder_top: N in --lora_config), the
#                   states below them -> ${dumpdir}/<model>/encoder_top<N>/<lang>_{train,dev}
#   train_setup     stage 6's header and what its cells need
#   cell_signature  stage 6: sets sig, the inputs and options of one (language, adapter) cell
#   train_cell      stage 6: writes one cell's script (espnet_adapters.bin.train_lora)
#   cell_finished   stage 6: whether a cell's job finished; logs its summary
#   decode_set      stage 7: one decode dir (whisper_decode; --decode_backend ct2: of an export,
#                   export_ct2)
#   stage9-stage12  LID, routing, code-switching, their report (two or more --langs)
#   stage13         adapter analysis (two or more --langs)
#   stage14         export: the adapters with model cards, the LID and tau -> ${export_exp}

# model_check_args: every language of the recipe must have a language token in --whisper_model.
model_check_args() {
    local lang
    printf '%s\n' --whisper_model "${whisper_model}" --langs
    for lang in ${langs} ${eval_langs}; do echo "${lang}"; done
}

family_init() {
    model_tag=$(basename "${whisper_model%/}" | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '_')
    feats_dir=${dumpdir}/${model_tag}
    # The encoder cache is used only when the adapter leaves the encoder frozen (decoding and
    # training read it); with encoder_top N, training reads the states below the top N layers
    # (train_cache: the cache dir under ${feats_dir} that training reads, if any).  With
    # encoder_span: speech in the decode config, the encoder runs on each utterance's speech +
    # encoder_trim seconds: those caches carry _speech<seconds> (decode_cache: what decoding reads).
    lora_where=$(config_field where)
    encoder_top=$(config_field encoder_top)
    encoder_span=$(config_field encoder_span)
    span_tag=""
    [ "${encoder_span}" = window ] || span_tag=_speech$(config_field encoder_trim)
    use_encoder_cache=false train_cache="" decode_cache=encoder${span_tag}
    if [ "${lora_where}" = decoder ] && [ "${encoder_top}" -gt 0 ]; then
        train_cache=encoder_top${encoder_top}${span_tag}
    elif [ "${lora_where}" = decoder ]; then
        use_encoder_cache=true train_cache=${decode_cache}
    fi
    # Stages 9-12: LID reads the base encoder's cached outputs (stage 5); routing uses the
    # first adapter variant and the first test set.
    # awk, not head: head would close the pipe early and, under pipefail, the SIGPIPE of the
    # writer would end the script without a word (seen in CI with two --lora_ranks).
    route_tag=$(adapter_variants | awk 'NR == 1 { print $1 }')
    route_test=${test_sets%% *}
    lid_exp=${expdir}/${model_tag}_lid_$(basename "${lid_config}" .yaml)
    route_exp=${expdir}/${model_tag}_routing_${route_tag}${search_tag}
    analysis_exp=${expdir}/${model_tag}_analysis_${route_tag}
    export_exp=${expdir}/${model_tag}_export_${route_tag}
}

stage4() {
    local set_name data out sig jobs upstream
    log "Stage 4: log-mel features for ${whisper_model} ${dumpdir}/raw/ -> ${feats_dir}/"
    for set_name in $(all_sets); do
        data=${dumpdir}/raw/${set_name}
        out=${feats_dir}/${set_name}
        upstream=$(input_sig "${data}" 3)
        sig="model=${whisper_model} ${upstream} $(checksum "${data}/wav.scp") $(audio_stamp "${data}")"
        up_to_date "${set_name}" "${out}" "${sig}" && continue
        rm -rf "${out}"
        split_keys "${data}/wav.scp" "${out}/logdir" "${nj}"
        mapfile -t jobs < <(job_dirs "${out}/data/feats." "${_nj}")
        ${train_cmd} JOB=1:"${_nj}" "${out}/logdir/dump_feats.JOB.log" \
            python3 -m espnet_adapters.bin.dump_feats --data_dir "${data}" --keys "${out}/logdir/keys.JOB" \
                --whisper_model "${whisper_model}" --out_dir "${out}/data/feats.JOB"
        merge_jobs feats.scp "${out}/feats.scp" "${jobs[@]}"
        merge_jobs feats_shape "${out}/feats_shape" "${jobs[@]}"
        mark_done "${out}" "${sig}"
        log "  ${set_name}: $(wc -l < "${out}/feats.scp") utterances"
    done
}

# Stage 5 caches what training and decoding read: the encoder's outputs of every set for a
# decoder-only adapter, the states below the top N layers of the training and dev sets for
# encoder_top N.  Language ID's caches of the base encoder (train, dev, first test set) are made
# by stage 9 when it runs (lid_caches), so a run of another preset does not pay for them.
stage5() {
    local set_name lang
    if [ -z "${train_cache}" ]; then
        skip_stage 5 "encoder cache: not needed by the adapters (where: ${lora_where} in ${lora_config}; stage 9 caches what language ID reads)"
        return
    fi
    if ${use_encoder_cache}; then
        log "Stage 5: encoder outputs of ${whisper_model} (${cache_backend}, encoder_span ${encoder_span}) ${feats_dir}/<set> -> ${feats_dir}/${decode_cache}/<set>"
        for set_name in $(all_sets); do cache_set "${set_name}" "${decode_cache}" 0 "${encoder_span}"; done
    fi
    if [ "${encoder_top}" -gt 0 ]; then
        log "Stage 5: the states below the top ${encoder_top} encoder layers (encoder_top in ${lora_config}) -> ${feats_dir}/${train_cache}/<set>"
        for lang in ${langs}; do
            for set_name in "${lang}_${train_split}" "${lang}_dev"; do
                cache_set "${set_name}" "${train_cache}" "${encoder_top}" "${encoder_span}"
            done
        done
    fi
}

# cache_set SET DIR TOP [SPAN]: cache_encoder jobs for SET into ${feats_dir}/DIR/SET: the encoder's
# outputs (TOP 0; by --cache_backend), or the states below its top TOP layers (transformers); SPAN
# speech: of the encoder run on each utterance's speech + the decode config's encoder_trim.
cache_set() {
    local set_name=$1 feats=${feats_dir}/$1/feats.scp out=${feats_dir}/$2/$1 top=$3 span=${4:-window} sig _cmd upstream
    local backend=(--backend hf) span_opts=()
    if [ "${top}" -eq 0 ] && [ "${cache_backend}" = ct2 ]; then
        local ct2_quantization=float32 ct2_dir
        export_ct2
        backend=(--backend ct2 --ct2_dir "${ct2_dir}")
    fi
    upstream=$(input_sig "${feats_dir}/${set_name}" 4)
    sig="model=${whisper_model} ${upstream} $(checksum "${feats}")"
    [ "${top}" -eq 0 ] || sig+=" top=${top}"  # top 0: the signature from before encoder_top existed
    [ "${backend[1]}" = hf ] || sig+=" backend=ct2 $(export_sig "${ct2_dir}")"
    if [ "${span}" = speech ]; then
        # the durations (utt2dur) decide how many frames each utterance is encoded on
        span_opts=(--encoder_span speech --encoder_trim "$(config_field encoder_trim)" --data_dir "${dumpdir}/raw/${set_name}")
        sig+=" ${span_opts[*]} $(checksum "${dumpdir}/raw/${set_name}/utt2dur")"
    fi
    up_to_date "${set_name}" "${out}" "${sig}" && return 0
    rm -rf "${out}"
    split_keys "${feats}" "${out}/logdir" "${nj}"
    _cmd=$(job_cmd 1 "${train_cmd}")
    ${_cmd} --num-threads "${num_threads}" JOB=1:"${_nj}" "${out}/logdir/cache_encoder.JOB.log" \
        python3 -m espnet_adapters.bin.cache_encoder --feats_scp "${feats}" --keys "${out}/logdir/keys.JOB" \
            --whisper_model "${whisper_model}" --out_dir "${out}" --shard JOB --encoder_top "${top}" \
            "${backend[@]}" "${span_opts[@]}" --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --num_threads "${num_threads}"
    mark_done "${out}" "${sig}"
    log "  ${set_name}: $(du -sh "${out}" | cut -f1)"
}

# search_opts [train]: sets search (the decoding options of the recipe: --decode_config plus the
# overrides the user gave; train_lora's dev decoding takes no --batch_size) and search_sig (their
# content, for the .done signatures).
search_opts() {
    search=(--decode_config "${decode_config}")
    [ -z "${beam_size}" ] || search+=(--beam_size "${beam_size}")
    [ -z "${max_new_tokens}" ] || search+=(--max_new_tokens "${max_new_tokens}")
    [ -n "${1:-}" ] || [ -z "${batch_size}" ] || search+=(--batch_size "${batch_size}")
    search_sig="decode=$(checksum "${decode_config}") beam=${beam_size} max_new=${max_new_tokens} batch=${batch_size}"
}

train_setup() {
    log "Stage 6: LoRA training (${train_config}) -> $(adapter_exp '<lang>' '<tag>'), one job array"
}

# cell_signature LANG LORA_CONFIG: sets sig, what LANG's adapter with LORA_CONFIG is made from.
cell_signature() {
    local inputs=() split
    search_opts train
    for split in "${train_split}" dev; do
        inputs+=("$(input_sig "${dumpdir}/raw/$1_${split}" 3)") || return 1
        inputs+=("$(input_sig "${feats_dir}/$1_${split}" 4)") || return 1
        [ -z "${train_cache}" ] || inputs+=("$(input_sig "${feats_dir}/${train_cache}/$1_${split}" 5)") || return 1
    done
    sig="model=${whisper_model} seed=${seed} ${search_sig} ${inputs[*]} $(checksum "$2" "${train_config}" \
        "${feats_dir}/$1_${train_split}/feats.scp" "${feats_dir}/$1_dev/feats.scp")"
}

# train_cell LANG LORA_CONFIG DIR SIGNATURE SCRIPT LOG: writes SCRIPT, the command of one cell
# (prefixed by ${launcher[@]}, srun for multi-node training).  An interrupted training resumes
# from DIR/checkpoints/last with the same command.
train_cell() {
    local lang=$1 config=$2 dir=$3 script=$5 data_opts search search_sig
    search_opts train
    data_opts=(--train_dir "${dumpdir}/raw/${lang}_${train_split}" --dev_dir "${dumpdir}/raw/${lang}_dev"
        --train_feats "${feats_dir}/${lang}_${train_split}/feats.scp" --dev_feats "${feats_dir}/${lang}_dev/feats.scp")
    if [ -n "${train_cache}" ]; then
        data_opts+=(--train_encoder_cache "${feats_dir}/${train_cache}/${lang}_${train_split}"
            --dev_encoder_cache "${feats_dir}/${train_cache}/${lang}_dev")
    fi
    printf '%q ' "${launcher[@]}" python3 -m espnet_adapters.bin.train_lora --lang "${lang}" "${data_opts[@]}" \
        --whisper_model "${whisper_model}" --lora_config "${config}" \
        --train_config "${train_config}" --out_dir "${dir}" --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
        --num_threads "${train_num_threads}" --seed "${seed}" --tracker "${tracker}" "${search[@]}" > "${script}"
}

# cell_finished DIR LOG: true when the cell of DIR finished (its job's LOG ends with code 0);
# logs the adapter's dev WER against the base model's, or that none was installed.
cell_finished() {
    if ! { [ -f "$1/train.done" ] && grep -q '^# Ended (code 0)' "$2"; }; then
        return 1
    fi
    log "  $1: $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(("best dev WER %.1f%% (words correct %.1f%%) at step %d vs the base model'"'"'s %.1f%%, %d trainable parameters" % (s["best_dev_wer"], s["best_dev_corr"], s["best_step"], s["base_dev_wer"], s["trainable_params"])) if s["adapter"] else "NO ADAPTER INSTALLED: no evaluation beat the base model'"'"'s dev WER %.1f%%; its language is decoded by the base model only" % s["base_dev_wer"])' "$1/train_stats.json")"
}

# run_decode DIR SET SIGNATURE PROGRAM [OPTION ...]: decode_jobs for a Whisper decoder
# (whisper_decode or route_decode): their common options and inputs are added here.
run_decode() {
    local dir=$1 set_name=$2 sig=$3 program=$4
    shift 4
    local data=${dumpdir}/raw/${set_name} search search_sig inputs=()
    local opts=(--feats_scp "${feats_dir}/${set_name}/feats.scp")
    inputs+=("$(input_sig "${data}" 3)") || return 1
    inputs+=("$(input_sig "${feats_dir}/${set_name}" 4)") || return 1
    if ${use_encoder_cache}; then
        opts+=(--encoder_cache "${feats_dir}/${decode_cache}/${set_name}")
        inputs+=("$(input_sig "${feats_dir}/${decode_cache}/${set_name}" 5)") || return 1
    fi
    search_opts
    sig="${program} model=${whisper_model} ${search_sig} ${sig} ${inputs[*]} $(checksum "${data}"/{wav.scp,utt2lang,utt2dur} "${feats_dir}/${set_name}/feats.scp")"
    decode_jobs "${dir}" "${set_name}" "${sig}" "${program}" "${opts[@]}" "$@" \
        --whisper_model "${whisper_model}" "${search[@]}" \
        --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --num_threads "${num_threads}"
}

# export_ct2 [ADAPTER_DIR]: sets ct2_dir, the CTranslate2 model (--ct2_quantization) of the base
# model, or of ADAPTER_DIR merged into it, exported once into ${expdir}/${model_tag}/export/<name>
# (base, or the adapter's experiment dir name) by export_adapter.
export_ct2() {
    local adapter=${1:-} name=base out sig
    local opts=()
    if [ -n "${adapter}" ]; then
        name=$(basename "$(dirname "${adapter}")")
        opts=(--adapter_dir "${adapter}")
    fi
    out=${expdir}/${model_tag}/export/${name}
    ct2_dir=${out}/ct2_${ct2_quantization}
    sig="model=${whisper_model} quantization=${ct2_quantization}"
    [ -z "${adapter}" ] || sig+=" adapter=$(checksum "${adapter}/adapter_config.json" "${adapter}/adapter_model.safetensors")"
    is_done "${ct2_dir}" "${sig}" && return 0
    log "  export ${name} (${ct2_quantization}) -> ${ct2_dir}"
    ${train_cmd} "${expdir}/${model_tag}/export/log/${name}_${ct2_quantization}.log" \
        python3 -m espnet_adapters.bin.export_adapter --whisper_model "${whisper_model}" "${opts[@]}" \
            --out_dir "${out}" --quantization "${ct2_quantization}" --num_threads "${num_threads}"
    mark_done "${ct2_dir}" "${sig}"
}

# export_sig CT2_DIR: the sha256 of CT2_DIR's model.bin, as its export's manifest.json records it (not
# the manifest's own checksum: another quantization added to the export must not make this one's
# users stale).
export_sig() {
    python3 -c 'import json, sys, pathlib; d = pathlib.Path(sys.argv[1]); print(json.loads((d.parent / "manifest.json").read_text())["ct2"][d.name]["model_bin_sha256"])' "$1"
}

# decode_set MODEL_DIR_TAG DATA_SET [ADAPTER_DIR]: stage 7, the base model or one adapter on one set.
# --decode_backend ct2: the export of the model (export_ct2), decoded by CTranslate2 from the features.
decode_set() {
    local tag=$1 set_name=$2 adapter=${3:-} trained
    local opts=(--lang_mode "${decode_lang}") sig="lang=${decode_lang}"
    if [ "${decode_backend}" = ct2 ]; then
        # run_decode reads no encoder cache: the cached outputs are transformers', CTranslate2 encodes itself.
        local use_encoder_cache=false
        export_ct2 "${adapter}"
        opts+=(--decode_backend ct2 --ct2_dir "${ct2_dir}")
        sig+=" backend=ct2 export=$(export_sig "${ct2_dir}")"
    elif [ -n "${adapter}" ]; then
        opts+=(--adapter_dir "${adapter}")
        trained=$(input_sig "$(dirname "${adapter}")" 6)
        sig+=" adapter=$(checksum "${adapter}/adapter_model.safetensors") ${trained}"
    fi
    run_decode "${expdir}/${tag}/decode_${set_name}${inference_tag}" "${set_name}" "${sig}" whisper_decode "${opts[@]}"
}

# lid_sets SPLIT: the DATA:FEATS:CACHE triples of SPLIT for every language (train_lid/eval_lid).
lid_sets() { each_lang "${dumpdir}/raw/<lang>_$1:${feats_dir}/<lang>_$1:${feats_dir}/encoder/<lang>_$1"; }

# lid_caches: the base encoder's outputs of the sets language ID reads (stage 5 made them already
# for a decoder-only adapter: then every cache_set is up to date).
lid_caches() {
    local set_name
    for set_name in $(each_lang "<lang>_${train_split}" "<lang>_dev" "<lang>_${route_test}"); do
        cache_set "${set_name}" encoder 0
    done
}

stage9() {
    local sig split out opts esig feats train_sets dev_sets eval_sets crops caches cache inputs=()
    log "Stage 9: language ID (${lid_config}) on the frozen encoder's outputs -> ${lid_exp}"
    lid_caches
    mapfile -t feats < <(each_lang "${feats_dir}/<lang>_${train_split}/feats.scp" "${feats_dir}/<lang>_dev/feats.scp")
    mapfile -t caches < <(each_lang "${feats_dir}/encoder/<lang>_${train_split}" "${feats_dir}/encoder/<lang>_dev")
    for cache in "${caches[@]}"; do inputs+=("$(input_sig "${cache}" 5)") || return 1; done
    sig="model=${whisper_model} seed=${seed} ${inputs[*]} $(checksum "${lid_config}" "${feats[@]}")"
    if ! up_to_date "${lid_exp}" "${lid_exp}" "${sig}"; then
        mkdir -p "${lid_exp}" && rm -f "${lid_exp}/.done"
        mapfile -t train_sets < <(lid_sets "${train_split}")
        mapfile -t dev_sets < <(lid_sets dev)
        ${train_cmd} --num-threads "${train_num_threads}" "${lid_exp}/log/train.log" \
            python3 -m espnet_adapters.bin.train_lid --train_sets "${train_sets[@]}" \
                --dev_sets "${dev_sets[@]}" --config "${lid_config}" --out_dir "${lid_exp}" \
                --whisper_model "${whisper_model}" --seed "${seed}" --num_threads "${train_num_threads}"
        mark_done "${lid_exp}" "${sig}"
    fi
    # dev: posteriors for choosing tau; test: the report (crops and Whisper's own LID too).
    read -r -a crops <<< "${lid_crops}"
    for split in dev "${route_test}"; do
        out=${lid_exp}/eval_${split}
        opts=(--crop_seconds --whisper_baseline false)
        [ "${split}" = dev ] || opts=(--crop_seconds "${crops[@]}" --whisper_baseline true)
        mapfile -t feats < <(each_lang "${feats_dir}/<lang>_${split}/feats.scp")
        mapfile -t caches < <(each_lang "${feats_dir}/encoder/<lang>_${split}")
        inputs=()
        for cache in "${caches[@]}"; do inputs+=("$(input_sig "${cache}" 5)") || return 1; done
        esig="${sig} ${opts[*]} ${inputs[*]} $(checksum "${lid_exp}/lid.json" "${lid_exp}/lid_model.safetensors" "${feats[@]}")"
        up_to_date "${out}" "${out}" "${esig}" && continue
        mkdir -p "${out}" && rm -f "${out}/.done"
        mapfile -t eval_sets < <(lid_sets "${split}")
        # One job: it gets every core the training does (--train_num_threads), not one job's share.
        ${decode_cmd} --num-threads "${train_num_threads}" "${out}/eval.log" \
            python3 -m espnet_adapters.bin.eval_lid --lid_dir "${lid_exp}" --test_sets "${eval_sets[@]}" \
                --out_dir "${out}" --whisper_model "${whisper_model}" --num_threads "${train_num_threads}" "${opts[@]}"
        mark_done "${out}" "${esig}"
        log "  ${out}: $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["systems"]; print(", ".join("%s accuracy %.1f%%" % (k, 100 * v["accuracy"]) for k, v in r.items()))' "${out}/results.json")"
    done
}

# routing_adapters STAGE: sets adapter_opts (--adapter LANG=DIR ...) and adapter_models (their
# weight files) of the adapters that stages 10-11 route between (and stage 13 analyses); all must exist.  A language
# whose training installed no adapter (the base model was better on dev) skips STAGE (returns 1).
routing_adapters() {
    local lang adapter
    adapter_opts=()
    adapter_models=()
    for lang in ${langs}; do
        adapter=$(adapter_exp "${lang}" "${route_tag}")/adapter
        if [ ! -f "${adapter}/adapter_model.safetensors" ]; then
            if [ -f "$(dirname "${adapter}")/train.done" ]; then
                skip_stage "$1" "no adapter for ${lang} (its training did not beat the base model on dev); this stage needs one per language"
                return 1
            fi
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
    [[ " $* " != *" --families "* ]] || sig+=" families=$(checksum "${families}")"
    for lang in ${langs}; do
        run_decode "${dir}/${lang}_${split}" "${lang}_${split}" "${sig}" route_decode \
            "${adapter_opts[@]}" ${posteriors:+--posteriors "${posteriors}"} "$@"
    done
    pool_sets "${dir}" "${dir}" "${split}" hyp hyp_lang routing
    pool_sets "${route_exp}/ref_${split}" "${dumpdir}/raw" "${split}" text utt2lang
    ${train_cmd} "${dir}/score/score.log" \
        python3 -m espnet_adapters.bin.score --ref_text "${route_exp}/ref_${split}/text" --hyp_text "${dir}/hyp" \
            --lang mul --set_name "pooled_${split}" --utt2category "${route_exp}/ref_${split}/utt2lang" \
            --out_dir "${dir}/score"
}

stage10() {
    local tau="" taus candidate strategy opts posteriors
    log "Stage 10: routing (${route_strategies}) on the pooled ${route_test} sets -> ${route_exp}"
    routing_adapters 10 || return 0
    if [[ " ${route_strategies} " == *" threshold "* ]]; then
        read -r -a taus <<< "${route_taus}"
        for candidate in "${taus[@]}"; do
            route_pooled "${route_exp}/dev/threshold_tau${candidate}" dev "${lid_exp}/eval_dev/posteriors" \
                --strategy threshold --tau "${candidate}" --top_k "${route_top_k}"
        done
        # The tau with the lowest pooled dev WER (ties: the higher tau) -> tau_selection.json.
        tau=$(quietly "${route_exp}/log/select_tau.log" \
            python3 -m espnet_adapters.bin.select_tau --routing_dir "${route_exp}" --taus "${taus[@]}")
        log "  threshold: tau ${tau} (best pooled dev WER of ${route_taus})"
    fi
    for strategy in ${route_strategies}; do
        opts=(--strategy "${strategy}")
        posteriors=${lid_exp}/eval_${route_test}/posteriors
        case "${strategy}" in
            oracle|base) posteriors="" ;;
            threshold) opts+=(--tau "${tau}" --top_k "${route_top_k}") ;;
            # threshold's tau chosen on dev (0.5 without threshold routing), families from --families
            hierarchical) opts+=(--tau "${tau:-0.5}" --families "${families}") ;;
        esac
        route_pooled "${route_exp}/${strategy}" "${route_test}" "${posteriors}" "${opts[@]}"
        log "  ${strategy}: $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print("pooled WER %.1f%% CER %.1f%%" % (s["wer"], s["cer"]))' "${route_exp}/${strategy}/score/scores.json")"
    done
}

# cs_set KIND SPLIT: sets data, the code-switched set of KIND made from every language's SPLIT set
# (dump/raw/cs_KIND for the routed test set, dump/raw/cs_KIND_SPLIT otherwise), and data_sig.
cs_set() {
    local kind=$1 split=$2 wavs in_dirs
    data=${dumpdir}/raw/cs_${kind}
    [ "${split}" = "${route_test}" ] || data+=_${split}
    mapfile -t wavs < <(each_lang "${dumpdir}/raw/<lang>_${split}/wav.scp")
    mapfile -t in_dirs < <(each_lang "${dumpdir}/raw/<lang>_${split}")
    data_sig="utts=${cs_utts} seed=${seed} $(checksum "${wavs[@]}")"
    up_to_date "${data}" "${data}" "${data_sig}" && return 0
    ${train_cmd} "${expdir}/log/make_codeswitch_$(basename "${data}").log" \
        python3 -m espnet_adapters.bin.make_codeswitch --kind "${kind}" --num_utts "${cs_utts}" \
            --seed "${seed}" --in_dirs "${in_dirs[@]}" \
            --out_dir "${data}" --audio_dir "${dumpdir}/audio/$(basename "${data}")"
    mark_done "${data}" "${data_sig}"
}

# cs_decode DATA DIR SIG [CODESWITCH_DECODE OPTION ...]: codeswitch_decode of DATA into DIR, one job
# with every core the training gets (--train_num_threads), unless DIR is up to date with SIG.
cs_decode() {
    local data=$1 dir=$2 sig=$3 _cmd
    shift 3
    up_to_date "${dir}" "${dir}" "${sig}" && return 0
    mkdir -p "${dir}" && rm -f "${dir}/.done"
    _cmd=$(job_cmd 1 "${decode_cmd}")
    ${_cmd} --num-threads "${train_num_threads}" "${dir}/decode.log" \
        python3 -m espnet_adapters.bin.codeswitch_decode --data_dir "${data}" --lid_dir "${lid_exp}" \
            "${adapter_opts[@]}" --out_dir "${dir}" --whisper_model "${whisper_model}" \
            --num_threads "${train_num_threads}" --ngpu "$(( ngpu > 0 ? 1 : 0 ))" "$@"
    mark_done "${dir}" "${sig}"
}

# stage11: code-switched sets from the dev and the routed test sets; the switch detector's smoothing
# (majority vote or Viterbi with a switch penalty) chosen on the dev sets' LID posteriors (no
# decoding), then every system decoded on the test sets with it.
stage11() {
    local kind data data_sig dir model_sig dev_sets=() smoothing
    log "Stage 11: code-switching (${cs_kinds}) from the dev and ${route_test} sets -> ${route_exp}/codeswitch"
    routing_adapters 11 || return 0
    model_sig="model=${whisper_model} $(checksum "${lid_exp}/lid.json" "${lid_exp}/lid_model.safetensors" "${adapter_models[@]}")"
    search_opts
    for kind in ${cs_kinds}; do
        cs_set "${kind}" dev
        dir=${route_exp}/codeswitch/dev/$(basename "${data}")
        # the search options only for the adapters' encoder_trim check: nothing is decoded
        cs_decode "${data}" "${dir}" "${data_sig} ${model_sig} analysis" "${search[@]}" --systems
        dev_sets+=("${data}:${dir}")
    done
    smoothing=$(quietly "${route_exp}/log/select_smoothing.log" \
        python3 -m espnet_adapters.bin.select_smoothing --sets "${dev_sets[@]}" \
            --out_dir "${route_exp}/codeswitch/dev" --tolerance "${cs_select_tolerance}")
    log "  switch smoothing (best dev F1 within ${cs_select_tolerance} s): ${smoothing}"
    for kind in ${cs_kinds}; do
        cs_set "${kind}" "${route_test}"
        # shellcheck disable=SC2086  # the flags select_smoothing printed
        cs_decode "${data}" "${route_exp}/codeswitch/cs_${kind}" "${data_sig} ${model_sig} ${search_sig} ${smoothing}" \
            "${search[@]}" ${smoothing}
    done
}

stage12() {
    local link_dir strategies sets=() kind
    log "Stage 12: LID, routing and code-switching report -> ${route_exp}/{routing,codeswitch}.md, ${results}"
    routing_adapters 12 || { write_results; return 0; }
    link_dir=$(dirname "${results}")
    read -r -a strategies <<< "${route_strategies}"
    ${train_cmd} "${route_exp}/log/report.log" \
        python3 -m espnet_adapters.bin.routing_report --routing_dir "${route_exp}" --lid_dir "${lid_exp}" \
            --utt2lang "${route_exp}/ref_${route_test}/utt2lang" --strategies "${strategies[@]}" \
            --out_md "${route_exp}/routing.md" --out_png "${route_exp}/routing.png" --link_dir "${link_dir}"
    if [ -n "${cs_kinds}" ]; then
        for kind in ${cs_kinds}; do sets+=("${dumpdir}/raw/cs_${kind}:${route_exp}/codeswitch/cs_${kind}"); done
        ${train_cmd} "${route_exp}/log/codeswitch_report.log" \
            python3 -m espnet_adapters.bin.codeswitch_report --sets "${sets[@]}" \
                --single_hyps "${route_exp}/oracle/hyp" --out_dir "${route_exp}/codeswitch/report" \
                --tolerance "${cs_tolerance}" --smoothing_md "${route_exp}/codeswitch/dev/smoothing.md" \
                --link_dir "${link_dir}"
    fi
    write_results
}

# stage13: what the adapters of the routed preset changed in the weights (similarity between
# languages, spectra, effective ranks; espnet_adapters.analysis) -> ${analysis_exp}, ${results}.
stage13() {
    local sig adapter_files=() model
    log "Stage 13: adapter analysis (weight similarity, spectra) -> ${analysis_exp}"
    routing_adapters 13 || return 0
    for model in "${adapter_models[@]}"; do adapter_files+=("${model}" "$(dirname "${model}")/adapter_config.json"); done
    sig="model=${whisper_model} ${adapter_opts[*]} $(checksum "${adapter_files[@]}" "${families}")"
    if ! up_to_date "${analysis_exp}" "${analysis_exp}" "${sig}"; then
        mkdir -p "${analysis_exp}" && rm -f "${analysis_exp}/.done"
        ${train_cmd} "${analysis_exp}/log/analyze.log" \
            python3 -m espnet_adapters.bin.analyze_adapters --whisper_model "${whisper_model}" "${adapter_opts[@]}" \
                --families "${families}" --out_dir "${analysis_exp}" --link_dir "$(dirname "${results}")"
        mark_done "${analysis_exp}" "${sig}"
    fi
    log "  $(grep -m1 '^Pairs, most similar first' "${analysis_exp}/analysis.md")"
    write_results
}

# stage14: the adapters of the routed preset, each with a Hugging Face model card from stages 7-8's
# scores, plus the LID and the threshold chosen on dev, in one folder ${export_exp} that
# ./transcribe.sh and the demo read (espnet_adapters.publish).  A language without an adapter
# (the base model was better on dev) is left out and said so.
stage14() {
    local lang adapter opts=() inputs=() sig
    log "Stage 14: export the adapters with model cards -> ${export_exp}"
    for lang in ${langs}; do
        adapter=$(adapter_exp "${lang}" "${route_tag}")/adapter
        if [ ! -f "${adapter}/adapter_config.json" ]; then
            log "  ${lang}: no adapter $(dirname "${adapter}")/adapter (not trained, or the base model was better on dev): not exported"
            continue
        fi
        opts+=(--adapter "${lang}=${adapter}")
        inputs+=("${adapter}"/* "$(dirname "${adapter}")/train_stats.json" \
                 "$(dirname "${adapter}")"/decode_"${lang}"_*/score/scores.json)
    done
    if [ ${#opts[@]} -eq 0 ]; then
        skip_stage 14 "no adapter to export"
        return 0
    fi
    if multilingual && [ -f "${lid_exp}/.done" ]; then
        opts+=(--lid_dir "${lid_exp}")
        inputs+=("${lid_exp}/lid.json" "${lid_exp}/lid_model.safetensors")
    fi
    if [ -f "${route_exp}/tau_selection.json" ]; then
        opts+=(--routing_dir "${route_exp}" --top_k "${route_top_k}")
        inputs+=("${route_exp}/tau_selection.json")
    fi
    if multilingual; then
        opts+=(--families "${families}")
        inputs+=("${families}")
    fi
    inputs+=("${expdir}/${model_tag}"/decode_*/score/scores.json "${export_licences}")
    search_opts
    sig="model=${whisper_model} corpus=${corpus} ${opts[*]} ${search_sig} $(checksum "${inputs[@]}")"
    if ! up_to_date "${export_exp}" "${export_exp}" "${sig}"; then
        mkdir -p "$(dirname "${export_exp}")" "${expdir}/log"
        ${train_cmd} "${expdir}/log/export_adapters.log" \
            python3 -m espnet_adapters.bin.export_adapters --exp_dir "${expdir}" --out_dir "${export_exp}" \
                --whisper_model "${whisper_model}" --corpus "${corpus}" --licences "${export_licences}" \
                "${search[@]}" "${opts[@]}"
        mark_done "${export_exp}" "${sig}"
    fi
    log "  $(( $(grep -c '^| ' "${export_exp}/README.md") - 1 )) scored test sets; use: ./transcribe.sh --adapters ${export_exp} FILE..."
}

