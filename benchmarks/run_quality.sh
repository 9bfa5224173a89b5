#!/usr/bin/env bash
# Every setting of the accuracy-vs-speed table in benchmarks/README.md, one after the other
# (about 1.5 h on 2 shared cores), then `python benchmarks/summarize_quality.py`.
# Order = priority: SST-2 with 7k transfer rows (every kind but the slow transformer), 60k rows
# for the fast kinds, the 7k set augmented, AG News, then the 3-layer transformer (kd, 2 seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p benchmarks/out
S=${SEEDS:-3}
run() { python benchmarks/quality.py --seeds "$S" "$@"; }
FAST="--students ngram static"
run --dataset sst2 --transfer-rows 7000 --students ngram static encoder_mlp 2> benchmarks/out/q-sst2-7k.log
run --dataset sst2 $FAST 2> benchmarks/out/q-sst2-60k.log
run --dataset sst2 --transfer-rows 7000 --augment 2 $FAST 2> benchmarks/out/q-sst2-7k-aug.log
run --dataset agnews $FAST 2> benchmarks/out/q-agnews.log
run --dataset sst2 --transfer-rows 7000 --students transformer --transformer-seeds 2 --transformer-methods kd \
  --tag sst2-n7000-aug0-transformer 2> benchmarks/out/q-sst2-7k-transformer.log
python benchmarks/summarize_quality.py
