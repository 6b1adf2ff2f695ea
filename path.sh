# Sourced by every recipe (root and egs2/*/adapt1, where it is a symlink to this file).
# Puts the project's venv first on PATH and the repository on PYTHONPATH, and sets the
# locale and thread settings Kaldi-style tools rely on.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export MAIN_ROOT
export PATH="${MAIN_ROOT}/utils:${MAIN_ROOT}/tools/venv/bin:${PATH}"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=1
# Never reach for the Hugging Face Hub unless the user asks for it (HF_HUB_OFFLINE=0).
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export TOKENIZERS_PARALLELISM=false
