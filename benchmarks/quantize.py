"""int8 recipes side by side on one student: accuracy cost and speed vs torch fp32 and onnxruntime fp32.

    python benchmarks/quantize.py --student DIR --eval benchmarks/out/.../dev.csv [--threads 2]

One fp32 export (checked against torch as every export is), then each of
``lelp.export.onnx_export.INT8_RECIPES`` quantized from that same graph and scored on the
same labelled rows: accuracy, the change from fp32 in points, the agreement with fp32, and
sentences/s (batches of 64, every runtime timed in turn in this one process, best of
``--repeat``). The recipe the library uses (``INT8_RECIPE``) is the one this table chose.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def throughput(predict, texts: list[str], repeat: int) -> float:
    predict(texts[:64])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        predict(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", required=True, type=Path)
    parser.add_argument("--eval", required=True, type=Path, help="labelled rows (text,label)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=872)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from lelp.artifacts import load_student, read_manifest
    from lelp.export.check import rows_from_table
    from lelp.export.onnx_export import INT8_RECIPE, INT8_RECIPES, build_package, quantize_int8
    from lelp.export.runtime import OnnxPredictor

    labels = list(read_manifest(args.student)["labels"])
    rows = rows_from_table(args.eval, labels, max_rows=args.rows)
    y = np.asarray(rows.labels)
    student = load_student(args.student)

    def acc(probs: np.ndarray) -> float:
        return float((probs.argmax(1) == y).mean())

    results = []
    torch_probs = student.predict_proba(rows.texts)
    results.append(("torch fp32", acc(torch_probs), None, None,
                    throughput(student.predict_proba, rows.texts, args.repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_package(args.student, work, rows=rows)  # the checked fp32 package
        fp32 = OnnxPredictor(work, threads=args.threads)
        fp32_probs = fp32.predict_proba(rows.texts)
        results.append(("onnxruntime fp32", acc(fp32_probs), 0.0, float((fp32_probs.argmax(1) ==
                        torch_probs.argmax(1)).mean()), throughput(fp32.predict_proba, rows.texts, args.repeat)))
        for name in INT8_RECIPES:
            target = work / f"model-{name}.onnx"
            quantize_int8(work / "model.onnx", target, name)
            int8 = OnnxPredictor(work, model_file=target.name, threads=args.threads)
            probs = int8.predict_proba(rows.texts)
            agree = float((probs.argmax(1) == fp32_probs.argmax(1)).mean())
            results.append((f"int8 {name}" + (" (the default)" if name == INT8_RECIPE else ""), acc(probs),
                            100 * (acc(probs) - acc(fp32_probs)), agree,
                            throughput(int8.predict_proba, rows.texts, args.repeat)))
    base = results[0][4]
    kind = read_manifest(args.student)["kind"]
    print(f"\n{kind} student, {len(rows.texts)} labelled rows of {args.eval.name}, {args.threads} threads\n")
    print("| runtime | accuracy | Δ vs fp32 (points) | agreement with fp32 | sentences/s | x torch fp32 |")
    print("|---|---|---|---|---|---|")
    for name, accuracy, delta, agree, sps in results:
        print(f"| {name} | {100 * accuracy:.2f}% | {'-' if delta is None else f'{delta:+.2f}'} | "
              f"{'-' if agree is None else f'{100 * agree:.2f}%'} | {sps:,.0f} | {sps / base:.2f}x |")


if __name__ == "__main__":
    main()
