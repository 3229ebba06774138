#!/usr/bin/env bash
# The whole GPU check in one call, on a bare GPU box with this repository (docs/gpu.md):
#   tools/gpu_check.sh [OUT_DIR] [bench gpu options...]     (OUT_DIR default: $OUT, else bench-results)
# Installs the wheels in gpu-wheels/ (built beforehand: docs/gpu.md) into gpu-site/ without network,
# or, when there are none, runs tn_peft from this source tree; prints the card and the versions, then
# runs `tn-peft bench gpu`, which writes OUT_DIR/gpu.json and prints its summary. Exit status: bench gpu's.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-${OUT:-bench-results}}
[ $# -gt 0 ] && shift
mkdir -p "$out" && out=$(cd "$out" && pwd)
if compgen -G "$repo/gpu-wheels/*.whl" > /dev/null; then
    if python -m pip --version > /dev/null 2>&1; then
        python -m pip install --quiet --no-index --no-deps --upgrade --target "$repo/gpu-site" "$repo"/gpu-wheels/*.whl
    else   # no pip: a pure-Python wheel is a zip of the installed files
        for wheel in "$repo"/gpu-wheels/*.whl; do python -m zipfile -e "$wheel" "$repo/gpu-site"; done
    fi
    export PYTHONPATH="$repo/gpu-site"
    cd "$out"    # not the repository root: its tn_peft/ would shadow the installed one
else
    export PYTHONPATH="$repo"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import sys, torch, triton, tn_peft; print('python', sys.version.split()[0], '| torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__, '| tn_peft from', tn_peft.__file__)"
exec python -m tn_peft.cli bench gpu --output "$out/gpu.json" "$@"
