#!/usr/bin/env bash
# One prepared GPU check of alit (issue 33, item 9): benchmarks/gpu_check.py does the work.
#   benchmarks/gpu_check.sh                         # a GPU machine: under 8 minutes on one H100
#   benchmarks/gpu_check.sh --device cpu --quick    # tiny sizes, a few minutes on a CPU
# Arguments go to gpu_check.py (--help lists them). The table: $OUT/gpu_check.md when OUT is set,
# else benchmarks/results/gpu_check/gpu_check.md (--out DIR to choose).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="$repo/.venv/bin/python"
[[ -x "$python" ]] || python="$(command -v python3 || command -v python)"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"  # alit from this checkout, also where not installed
status=0
"$python" "$here/gpu_check.py" "$@" || status=$?
out="${OUT:-$repo/benchmarks/results/gpu_check}"
for ((i = 1; i <= $#; i++)); do  # an --out DIR given on the command line wins
    if [[ "${!i}" == "--out" ]]; then j=$((i + 1)); out="${!j}"; fi
    if [[ "${!i}" == --out=* ]]; then out="${!i#--out=}"; fi
done
echo "table: $out/gpu_check.md (JSON: $out/gpu_check.json, log: $out/gpu_check.log); exit status $status"
exit "$status"
