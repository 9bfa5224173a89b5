#!/usr/bin/env bash
# All quality settings of benchmarks/README.md, one after the other (about an hour on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
# The last four: a small transfer set (1,000 rows), where extra information per example should matter
# most, with the default 5 epochs (80 steps) and with 40.
for setting in "agnews ngram 0" "sst2 ngram 0" "agnews encoder_mlp 0" "sst2 encoder_mlp 0" \
               "agnews ngram 0.5" "sst2 ngram 0.5" "agnews encoder_mlp 0.5" "sst2 encoder_mlp 0.5" \
               "agnews ngram 0 1000" "sst2 ngram 0 1000" "agnews ngram 0 1000 40" "sst2 ngram 0 1000 40"; do
  set -- $setting
  python benchmarks/quality.py --dataset "$1" --student "$2" --alpha "$3" --seeds "${SEEDS:-5}" \
    ${4:+--transfer-rows $4} ${5:+--epochs $5} 2> "benchmarks/out/quality-$1-$2-a$3${4:+-n$4}${5:+-e$5}.log"
done
