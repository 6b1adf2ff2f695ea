#!/usr/bin/env bash
# Stage 1 of the recipe for one language: corpus -> data/<lang>_{train,dev,test}.
#   local/data.sh --corpus synth --lang hi [--train_utts 300 --dev_utts 40 --test_utts 60]
# Corpus-specific logic lives here only; the stage script stays corpus-agnostic.
set -euo pipefail

corpus=synth      # synth: real sentences (local/sentences/<lang>.txt) spoken by espeak-ng.
lang=""           # Language code, e.g. hi.
nj=2              # Parallel synthesis processes.
train_utts=240    # Training utterances.
dev_utts=24       # Dev utterances.
test_utts=40      # Test utterances.
splits="train dev test"  # Splits to prepare (an evaluation-only language needs only test).

. utils/parse_options.sh

if [ -z "${lang}" ]; then
    echo "$0: --lang is required" >&2
    exit 2
fi

case "${corpus}" in
    synth)
        sentences=local/sentences/${lang}.txt
        if [ ! -f "${sentences}" ]; then
            echo "$0: no sentence file ${sentences}: add one (see local/sentences/README.md)" >&2
            exit 1
        fi
        python3 -m espnet_adapters.bin.synth_corpus --lang "${lang}" --sentences "${sentences}" \
            --config conf/synth.yaml --data_dir data --audio_dir downloads/synth --nj "${nj}" \
            --train_utts "${train_utts}" --dev_utts "${dev_utts}" --test_utts "${test_utts}" \
            --splits ${splits}
        ;;
    *)
        echo "$0: unknown --corpus ${corpus} (supported: synth)" >&2
        exit 2
        ;;
esac
