#!/usr/bin/env bash
# Create a new recipe directory that shares the repository's stage script and files,
# as ESPnet's egs2/TEMPLATE/*/setup.sh does:
#   egs2/TEMPLATE/adapt1/setup.sh egs2/bengali/adapt1 bn
# The new recipe gets symlinks to adapt.sh, path.sh, cmd.sh, db.sh, conf/, local/, utils/,
# transcribe.sh, demo.sh and a
# run.sh for the given languages.  A new language also needs local/sentences/<lang>.txt
# and a voice in conf/synth.yaml (or a real corpus).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "Usage: $0 <new-recipe-dir> \"<lang> [<lang> ...]\"" >&2
    exit 2
fi
dir=$1
langs=$2
# The same rule as adapt.sh's --langs (check_options): one or more ISO 639-1 codes.
if [ -z "${langs// /}" ] || [[ ! "${langs}" =~ ^[[:space:]]*[a-z]{2,3}([[:space:]]+[a-z]{2,3})*[[:space:]]*$ ]]; then
    echo "$0: languages '${langs}': expected one or more ISO 639-1 codes like hi, separated by spaces" >&2
    exit 2
fi
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
main_root=$(cd "${template}/../../.." && pwd)

if [ -e "${dir}/run.sh" ]; then
    echo "$0: ${dir}/run.sh exists already" >&2
    exit 1
fi
mkdir -p "${dir}"
dir=$(cd "${dir}" && pwd)
link() { ln -sfn "$(realpath --relative-to="${dir}" "$1")" "${dir}/$2"; }
link "${template}/adapt.sh" adapt.sh
for f in path.sh cmd.sh db.sh conf local utils transcribe.sh demo.sh; do
    link "${main_root}/${f}" "${f}"
done
cat > "${dir}/run.sh" <<RUN
#!/usr/bin/env bash
# Recipe for: ${langs}.  ./run.sh --help lists the stages and options of adapt.sh.
set -euo pipefail
./adapt.sh --langs "${langs}" "\$@"
RUN
chmod +x "${dir}/run.sh"
echo "Created ${dir}"
