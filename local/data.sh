#!/usr/bin/env bash
# Stage 1 of the recipe for one language: corpus -> data/<lang>_{train,dev,test}.
#   local/data.sh --corpus synth --lang hi [--train_utts 300 --dev_utts 40 --test_utts 60]
#   local/data.sh --corpus mix --lang hi [--data_config conf/data/hi.yaml]   # real corpora, db.sh
#   local/data.sh --corpus commonvoice --lang pa                            # one real corpus
# Corpus-specific logic lives here only; the stage script stays corpus-agnostic.
set -euo pipefail

corpus=synth      # synth: real sentences spoken by espeak-ng; mix: conf/data/<lang>.yaml;
                  # or one of commonvoice mls kathbath indicvoices fleurs (roots in db.sh).
lang=""           # Language code, e.g. hi.
nj=2              # Parallel synthesis processes.
train_utts=240    # synth: training utterances.
dev_utts=24       # synth: dev utterances.
test_utts=40      # synth: test utterances.
splits="train dev test"  # Splits to prepare (an evaluation-only language needs only test); synth also
                         # dev_other, test_other: the dev/test sentences by another synthesizer.
data_config=""    # mix: the data config (default conf/data/<lang>.yaml).

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
    mix)
        . ./db.sh
        python3 -m espnet_adapters.bin.prepare_lang --lang "${lang}" \
            --config "${data_config:-conf/data/${lang}.yaml}" --splits ${splits}
        ;;
    commonvoice|mls|kathbath|indicvoices|fleurs)
        . ./db.sh
        python3 -m espnet_adapters.bin.prepare_lang --lang "${lang}" --corpus "${corpus}" --splits ${splits}
        ;;
    *)
        echo "$0: unknown --corpus ${corpus} (supported: synth mix commonvoice mls kathbath indicvoices fleurs)" >&2
        exit 2
        ;;
esac
