"""GPU figures: teacher extraction and transformer-student training, fp32 against bf16, 1 vs N GPUs.

Needs a CUDA device (exits with a message otherwise); ``scripts/gpu_check.sh`` runs it on a lent
GPU machine and keeps the JSON. The teacher is a random BERT-base-sized classifier (12 layers,
hidden 768; random weights do not change speed) over the SST-2 dev sentences shipped in
``demo/data`` (a word-level vocabulary: one token per word, so lengths are realistic).

(a) extraction: ``lelp.teacher.features.extract_teacher_features`` sentences/s, fp32 vs the library's
    choice (bf16 autocast, fp16 where bf16 is missing), TF32 on in both;
(b) training: ``lelp.training.loop.train_student`` steps/s of the transformer student (6 layers from the
    teacher), fp32 vs the library's choice;
(c) 1 vs N GPUs: a whole ``distill`` job's train stage with ``gpus: 1`` and ``gpus: N``, where N GPUs
    are visible (skipped, and said so, on a one-GPU machine).
GPU utilisation is sampled every 0.1 s during each measurement (``torch.cuda.utilization``,
through NVML; ``nvidia-smi`` when that is unavailable). fp32 is the baseline: ratios are ours / it.

    python benchmarks/gpu.py --out gpu.json              # about 2-4 minutes on one H100/H200
    python benchmarks/gpu.py --rows 2000 --train-rows 512 # a quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lelp.devices.cuda import FP32, Precision, choose_precision  # noqa: E402

DATA = ROOT / "demo" / "data" / "sst2_dev.csv"


def sentences(n: int) -> list[str]:
    with DATA.open() as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return [texts[i % len(texts)] for i in range(n)]


def make_teacher(out: Path) -> Path:
    """A random BERT-base-sized classifier with the tiny word-level tokenizer of tests/tiny.py."""
    from transformers import BertConfig, BertForSequenceClassification

    from tests.tiny import make_tiny_teacher

    make_tiny_teacher(out)
    config = BertConfig.from_pretrained(out)
    config.update({"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "max_position_embeddings": 512})
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(out, safe_serialization=True)
    return out


class Utilisation:
    """Samples GPU utilisation (%) in a thread while the block runs."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s, self.samples, self._stop = interval_s, [], threading.Event()

    @staticmethod
    def read() -> float | None:
        if not DEVICE.startswith("cuda"):
            return None
        try:
            return float(torch.cuda.utilization())
        except Exception:  # no NVML in this environment
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5)
                return float(out.stdout.strip().splitlines()[0])
            except Exception:
                return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    @contextmanager
    def measuring(self):
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def extraction(teacher_dir: Path, texts: list[str], precision: str) -> dict:
    from lelp.teacher.features import extract_teacher_features
    from lelp.teacher.loading import load_teacher

    teacher = load_teacher(teacher_dir, device=DEVICE)
    target = "lelp.teacher.features.choose_precision"
    patch = mock.patch(target, return_value=FP32) if precision == "fp32" else _nothing()
    if DEVICE == "cpu" and precision != "fp32":  # the CPU check: the same code, bf16 forced
        patch = mock.patch(target, return_value=Precision(torch.bfloat16))
    with patch:
        extract_teacher_features(teacher, texts[:512], max_length=128, batch_size=128)  # warm-up
        _sync()
        util = Utilisation()
        with util.measuring():
            start = time.perf_counter()
            extract_teacher_features(teacher, texts, max_length=128, batch_size=128)
            _sync()
            seconds = time.perf_counter() - start
    return {"rows": len(texts), "seconds": round(seconds, 3), "sentences_per_s": round(len(texts) / seconds, 1),
            "gpu_util_pct": util.mean}


@contextmanager
def _nothing():
    yield


DEVICE = "cuda"  # --device cpu runs the script's code on a CPU, to check it before a GPU session


def _sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def training(teacher_dir: Path, texts: list[str], precision: str, batch_size: int) -> dict:
    from lelp.students.kind import KindContext
    from lelp.students.registry import student_kind
    from lelp.teacher.loading import load_teacher
    from lelp.training.loop import TrainConfig, train_student

    teacher = load_teacher(teacher_dir, device=DEVICE)
    kind = student_kind("transformer")(KindContext(teacher=teacher, max_length=128, device=torch.device(DEVICE),
                                                   options={"layers": 6}))
    inputs = kind.inputs(texts, None, None)
    rng = np.random.default_rng(0)
    targets = rng.dirichlet([1.0, 1.0], size=len(texts)).astype(np.float32)
    labels = rng.integers(0, 2, size=len(texts))
    config = TrainConfig(epochs=1, learning_rate=5e-5, batch_size=batch_size)
    patch = mock.patch("lelp.training.state.choose_precision", return_value=FP32) if precision == "fp32" else _nothing()
    if DEVICE == "cpu" and precision != "fp32":
        patch = mock.patch("lelp.training.state.choose_precision", return_value=Precision(torch.bfloat16))
    with patch:
        torch.manual_seed(0)
        train_student(kind.build(2, ["negative", "positive"], 1), inputs, targets[:batch_size * 4],
                      labels[:batch_size * 4], config, device=DEVICE)  # warm-up
        torch.manual_seed(0)
        student = kind.build(2, ["negative", "positive"], 1)
        _sync()
        if DEVICE.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        util = Utilisation()
        with util.measuring():
            start = time.perf_counter()
            result = train_student(student, inputs, targets, labels, config, device=DEVICE)
            _sync()
            seconds = time.perf_counter() - start
    return {"rows": len(texts), "steps": result.steps, "seconds": round(seconds, 3),
            "steps_per_s": round(result.steps / seconds, 2), "final_loss": round(result.epoch_losses[-1], 4),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if DEVICE.startswith("cuda") else None,
            "gpu_util_pct": util.mean}


def multi_gpu(teacher_dir: Path, rows: int, gpus: int, work: Path) -> dict:
    from lelp.pipeline import DistillConfig, distill
    from tests.tiny import make_text_rows, write_csv

    train = write_csv(work / "train.csv", make_text_rows(rows, seed=1))
    evald = write_csv(work / "eval.csv", make_text_rows(400, seed=2))
    out = {}
    for n in (1, gpus):
        config = DistillConfig(teacher_dir=str(teacher_dir), train_path=str(train), eval_path=str(evald),
                               method="kd", student="transformer", student_options={"layers": 6}, epochs=1,
                               device=DEVICE, gpus=n)
        start = time.perf_counter()
        result = distill(config, work / f"out-{n}", cache_dir=work / f"cache-{n}")
        out[n] = {"wall_s": round(time.perf_counter() - start, 2), "stage_s": result.metrics["stage_seconds"],
                  "accuracy": result.metrics["student"]["accuracy"]}
    return out


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="sentences extracted")
    parser.add_argument("--train-rows", type=int, default=4_096, help="rows of the training epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ddp-rows", type=int, default=4_000, help="rows of the 1 vs N GPU job")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--device", default="cuda", help="cpu: check the script itself (no figures)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device; none is visible here")
        return 2
    cuda = DEVICE == "cuda"
    gpus = torch.cuda.device_count() if cuda else 0
    name, memory = ((torch.cuda.get_device_properties(0).name, torch.cuda.get_device_properties(0).total_memory)
                    if cuda else ("cpu", 0))
    mixed = choose_precision("cuda", "transformer").name if cuda else "bf16"
    figures: dict = {"gpu": name, "gpu_memory_gib": round(memory / 2**30, 1), "gpus": gpus,
                     "torch": torch.__version__, "mixed_precision": mixed}
    with tempfile.TemporaryDirectory(prefix="lelp-gpu-bench-") as tmp:
        work = Path(tmp)
        teacher = make_teacher(work / "teacher")
        texts = sentences(args.rows)
        figures["extraction"] = {p: extraction(teacher, texts, p) for p in ("fp32", mixed)}
        figures["training"] = {p: training(teacher, texts[:args.train_rows], p, args.batch_size)
                               for p in ("fp32", mixed)}
        figures["multi_gpu"] = (multi_gpu(teacher, args.ddp_rows, gpus, work) if gpus >= 2
                                else f"skipped: {gpus} GPU(s) visible")
    ext, tr = figures["extraction"], figures["training"]
    print(f"\n{name}, {figures['gpu_memory_gib']} GiB, torch {torch.__version__}\n")
    print(f"| stage | fp32 | {mixed} (ours) | ours / fp32 | GPU util fp32 / {mixed} |")
    print("|---|---|---|---|---|")
    print(f"| teacher extraction, sentences/s ({args.rows} rows) | {ext['fp32']['sentences_per_s']} | "
          f"{ext[mixed]['sentences_per_s']} | {ratio(ext[mixed]['sentences_per_s'], ext['fp32']['sentences_per_s'])}"
          f" | {ext['fp32']['gpu_util_pct']} / {ext[mixed]['gpu_util_pct']} % |")
    print(f"| transformer student training, steps/s (batch {args.batch_size}) | {tr['fp32']['steps_per_s']} | "
          f"{tr[mixed]['steps_per_s']} | {ratio(tr[mixed]['steps_per_s'], tr['fp32']['steps_per_s'])} | "
          f"{tr['fp32']['gpu_util_pct']} / {tr[mixed]['gpu_util_pct']} % |")
    if isinstance(figures["multi_gpu"], dict):
        one, many = figures["multi_gpu"][1], figures["multi_gpu"][gpus]
        print(f"\n| job ({args.ddp_rows} rows, 1 epoch) | 1 GPU | {gpus} GPUs | speed-up |\n|---|---|---|---|")
        print(f"| train stage, s | {one['stage_s']['train']} | {many['stage_s']['train']} | "
              f"{ratio(one['stage_s']['train'], many['stage_s']['train'])} |")
        print(f"| extract stage, s | {one['stage_s']['extract']} | {many['stage_s']['extract']} | "
              f"{ratio(one['stage_s']['extract'], many['stage_s']['extract'])} |")
        print(f"| student accuracy | {one['accuracy']:.4f} | {many['accuracy']:.4f} | |")
    else:
        print(f"\n1 vs N GPUs: {figures['multi_gpu']}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
