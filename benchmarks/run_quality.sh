#!/usr/bin/env bash
# The settings of the accuracy-vs-speed table in benchmarks/README.md, in priority order, then
# `python benchmarks/summarize_quality.py`. The first three ran for the first table of 2026-12-02
# (about 1 h on 2 cores shared with other jobs, before the cnn kind existed; with cnn add ~40 min);
# SKIP_SLOW=0 adds AG News and the 3-layer transformer, which did not fit that day's compute.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p benchmarks/out
S=${SEEDS:-3}
run() { python benchmarks/quality.py --seeds "$S" "$@"; }
run --dataset sst2 --transfer-rows 7000 --students ngram static cnn encoder_mlp 2> benchmarks/out/q-sst2-7k.log
run --dataset sst2 --transfer-rows 7000 --augment 2 --students ngram static cnn 2> benchmarks/out/q-sst2-7k-aug.log
run --dataset sst2 --students cnn static ngram 2> benchmarks/out/q-sst2-60k.log
if [ "${SKIP_SLOW:-1}" = "0" ]; then
  run --dataset agnews --students ngram static cnn encoder_mlp 2> benchmarks/out/q-agnews.log
  run --dataset agnews --augment 2 --students ngram static cnn 2> benchmarks/out/q-agnews-aug.log
  run --dataset sst2 --transfer-rows 7000 --students transformer --transformer-seeds 2 --transformer-methods kd \
    --tag sst2-n7000-aug0-transformer 2> benchmarks/out/q-sst2-7k-transformer.log
fi
python benchmarks/summarize_quality.py
