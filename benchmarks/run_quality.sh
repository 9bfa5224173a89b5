#!/usr/bin/env bash
# All quality settings of benchmarks/README.md, one after the other (about an hour on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
for setting in "sst2 ngram 0" "agnews ngram 0" "sst2 encoder_mlp 0" "agnews encoder_mlp 0" \
               "sst2 ngram 0.5" "agnews ngram 0.5" "sst2 encoder_mlp 0.5" "agnews encoder_mlp 0.5"; do
  set -- $setting
  python benchmarks/quality.py --dataset "$1" --student "$2" --alpha "$3" --seeds "${SEEDS:-5}" \
    2> "benchmarks/out/quality-$1-$2-a$3.log"
done
