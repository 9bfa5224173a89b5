"""Training speed of the `cnn` student: its packed convolution against the padded one, in turns.

Training convolves each batch's real tokens laid end to end (``CnnStudent._packed_responses``)
instead of the padded (B, L, D) batch, whose width is its longest row's. Both give the same
outputs and gradients (tests/lelp/test_cnn_student.py); this script measures what packing buys:
one epoch of kd training on ``quality.py``'s cached transfer set (teacher, variants and splits
as there), the padded path and the packed path alternating, same seed, same threads, and prints
each round's seconds, the best of each and their ratio, with the padding the batches carry.

Usage:  python benchmarks/cnn_training.py --dataset sst2 --transfer-rows 7000 --augment 6 --rounds 2
(the first run fills ``quality.py``'s caches: teacher fine-tuning and scoring, minutes on CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/quality.py: its prepared splits and caches)

from lelp.config import STUDENT_DEFAULTS  # noqa: E402
from lelp.method.targets import build_targets  # noqa: E402
from lelp.training.loop import TrainConfig, train_student  # noqa: E402


def padding_per_token(inputs, batch_size: int, seed: int) -> float:
    """Positions a padded batch convolves per real token, over one epoch's random batches."""
    lengths = inputs.lengths().float()
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
    padded = sum(float(lengths[order[i:i + batch_size]].max()) * len(order[i:i + batch_size])
                 for i in range(0, len(order), batch_size))
    return padded / float(lengths.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["sst2", "agnews"], default="sst2")
    parser.add_argument("--transfer-rows", type=int, default=7000)
    parser.add_argument("--augment", default="6", help="variants per row, or 'auto' (as quality.py)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (a job uses the machine's cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = quality.prepare(args.dataset, args.transfer_rows,
                             args.augment if args.augment == "auto" else int(args.augment))
    kind, inputs = quality.kind_for(bundle, "cnn")
    transfer = bundle["transfer"]
    hard = transfer["logits"].argmax(1)
    defaults = STUDENT_DEFAULTS["cnn"]
    targets, _, _ = build_targets("kd", transfer["logits"], transfer["embeddings"], hard, subclasses=1, beta=1.0,
                                  tau=defaults["tau"], seed=1, head_weight=None)  # kd: no projection
    config = TrainConfig(epochs=1, learning_rate=defaults["learning_rate"], batch_size=defaults["batch_size"],
                         subclasses=1, tau=defaults["tau"], seed=1)
    seconds: dict[str, list[float]] = {"padded": [], "packed": []}
    for _ in range(args.rounds):
        for path in seconds:
            torch.manual_seed(1)
            student = kind.build(len(bundle["labels"]), bundle["labels"], 1)
            if path == "padded":  # the convolution over the padded batch, as training did before packing
                student._packed_responses = lambda x, mask, s=student: s._padded_responses(x)
            started = time.perf_counter()
            train_student(student, inputs["transfer"], targets, hard, config, device="cpu")
            seconds[path].append(time.perf_counter() - started)
            quality.log(f"{path}: one epoch in {seconds[path][-1]:.1f} s")
    best = {path: min(times) for path, times in seconds.items()}
    rows = len(hard)
    print(f"\ncnn, one kd epoch of {rows:,} rows ({args.dataset}, {args.transfer_rows:,} transfer rows + variants), "
          f"batch {defaults['batch_size']}, {args.threads} threads; padded batches convolve "
          f"{padding_per_token(inputs['transfer'], defaults['batch_size'], 1):.2f} positions per real token")
    print("| convolution | seconds per round | best | rows/s | speed-up |")
    print("|---|---|---|---|---|")
    for path, times in seconds.items():
        print(f"| {path} | {' / '.join(f'{t:.1f}' for t in times)} | {best[path]:.1f} | {rows / best[path]:,.0f} | "
              f"{best['padded'] / best[path]:.2f}x |")


if __name__ == "__main__":
    main()
