"""The cost of big jobs: wall time per stage and peak RSS of a whole ``distill`` at 10k-1M rows.

Each size runs the real job the way the worker runs it (``lelp.pipeline.distill`` with a feature
cache and a checkpoint directory) in a fresh subprocess, so its peak RSS is its own. The teacher
is a tiny random BERT (2 layers, hidden 64, a word vocabulary of SST-2's commonest words) so the
job fits 2 CPU cores; the transfer sets are SST-2 train phrases, one or two joined per row
(labelled when the phrases agree, else unlabelled: the teacher labels them), written once as CSV
under ``benchmarks/out/scale/`` and reused.

Time per stage comes from the job's own ``metrics.json`` (``stage_seconds``); peak RSS is the
child's ``ru_maxrss`` from ``os.wait4`` (its whole life, file pages of the memmaps included) and
its ``VmHWM`` as each stage ends (which stage sets the peak). Goals (issue 11): time grows
linearly (1M rows within about 11x of 100k) and peak RSS < 4 GiB at 1M rows.

    nice -n 5 python benchmarks/scale.py --rows 10000 100000 1000000 --method kd
    nice -n 5 python benchmarks/scale.py --rows 1000000 --method kd     # one size; data reused
    python benchmarks/scale.py --table-only                              # the table of every run so far
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "scale"
SHARED = Path(os.environ.get("LELP_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
STAGES = ("start", "load", "extract", "train", "evaluate", "save")
GIB = 2**30


# --------------------------------------------------------------------------- inputs (made once)


def sst2_phrases() -> list[tuple[str, str]]:
    with (SHARED / "sst2_train.csv").open(newline="", encoding="utf-8") as fh:
        return [(row["text"].strip(), row["label"]) for row in csv.DictReader(fh) if row["text"].strip()]


def make_teacher(folder: Path, hidden: int, layers: int, vocab_words: int) -> Path:
    """A random BERT classifier whose word vocabulary covers SST-2's commonest words."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    counts = Counter(w for text, _ in sst2_phrases() for w in text.lower().split())
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(w for w, _ in counts.most_common(vocab_words))]
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(tmp)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=hidden * 2, max_position_embeddings=256, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def make_transfer_set(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` rows of one or two SST-2 phrases; labelled (0/1) when the phrases agree."""
    if path.exists():
        return path
    phrases = sst2_phrases()
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            a, la = phrases[rng.randrange(len(phrases))]
            if rng.random() < 0.5:
                writer.writerow([a, la])
                continue
            b, lb = phrases[rng.randrange(len(phrases))]
            writer.writerow([f"{a} {rng.choice((',', 'and', 'but', ';'))} {b}", la if la == lb else ""])
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------- one job (child process)


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_child(args: argparse.Namespace) -> None:
    import torch

    from lelp.pipeline import DistillConfig, distill

    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    shutil.rmtree(run, ignore_errors=True)  # a fresh cache: extraction is part of the cost
    hwm: dict[str, int] = {}  # stage -> VmHWM (KiB) when the next stage began
    current = ["start"]

    def progress(p) -> None:
        # the job's own stage timers' names; the static table's "extract" events come while training
        stage = {"fit_projector": "train", "augment": "extract"}.get(p.stage, p.stage)
        if stage in STAGES and STAGES.index(stage) > STAGES.index(current[0]):
            hwm[current[0]] = proc_status_kib("VmHWM")
            current[0] = stage

    config = DistillConfig(teacher_dir=args.teacher, train_path=args.data, method=args.method,
                           student=args.student, epochs=args.epochs, seed=0)
    start = time.perf_counter()
    result = distill(config, run / "artifact", cache_dir=run / "cache", checkpoint_dir=run / "checkpoints",
                     progress=progress)
    wall = time.perf_counter() - start
    hwm[current[0]] = proc_status_kib("VmHWM")
    m = result.metrics
    print(json.dumps({"stage_seconds": m["stage_seconds"], "wall_s": wall, "hwm_kib": hwm,
                      "epochs_run": m["training"]["epochs_run"], "steps": m["training"]["steps"],
                      "train_rows": m["train_rows"], "student_accuracy": m["student"]["accuracy"],
                      "agreement": m["agreement"], "chosen": m["chosen"]["method"]}))


# --------------------------------------------------------------------------- driver


def run_size(rows: int, args: argparse.Namespace, teacher: Path) -> dict:
    data = make_transfer_set(OUT / "data" / f"transfer_{rows}.csv", rows)
    tag = f"{rows}-{args.method}-{args.student}" + (f"-e{args.epochs}" if args.epochs else "") + (
        f"-{args.label}" if args.label else "")
    cmd = [sys.executable, __file__, "--child", "--data", str(data), "--teacher", str(teacher),
           "--run-dir", str(OUT / "runs" / tag), "--method", args.method, "--student", args.student,
           "--threads", str(args.threads)] + (["--epochs", str(args.epochs)] if args.epochs else [])
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    stdout = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{tag}: the job failed (exit {child.returncode})")
    out = json.loads(stdout.strip().splitlines()[-1])
    out.update(rows=rows, tag=tag, process_s=time.perf_counter() - start, maxrss_kib=usage.ru_maxrss,
               method=args.method, student=args.student, label=args.label, date=time.strftime("%Y-%m-%d %H:%M"),
               load_avg=round(os.getloadavg()[0], 1))
    (OUT / "results").mkdir(parents=True, exist_ok=True)
    (OUT / "results" / f"{tag}.json").write_text(json.dumps(out, indent=2))
    if not args.keep:
        shutil.rmtree(OUT / "runs" / tag, ignore_errors=True)
    return out


def table(results: list[dict]) -> str:
    head = ("| rows | method | " + " | ".join(f"{s} s" for s in STAGES[1:]) + " | total s | x previous | "
            "epochs (steps) | peak RSS | peak set in | load avg |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    previous: dict[str, dict] = {}
    for r in sorted(results, key=lambda r: (r["tag"].split("-", 1)[1], r["rows"])):
        key = r["tag"].split("-", 1)[1]  # the same method, student and epochs
        sec = r["stage_seconds"]
        total = sum(sec.values())
        prev = previous.get(key)
        ratio = ""
        if prev:
            ratio = f"{total / sum(prev['stage_seconds'].values()):.1f}x (rows {r['rows'] / prev['rows']:.0f}x)"
        hwm = {s: v for s, v in r["hwm_kib"].items() if s != "start"}
        first = next((s for s, v in hwm.items() if v == max(hwm.values())), "")  # the stage that set the peak
        method = r["method"] + (f" ({r['label']})" if r.get("label") else "")
        lines.append(f"| {r['rows']:,} | {method} | " + " | ".join(f"{sec.get(s, 0):.1f}" for s in STAGES[1:])
                     + f" | {total:.1f} | {ratio} | {r['epochs_run']} ({r['steps']:,}) | "
                     f"{r['maxrss_kib'] / 2**20:.2f} GiB | {first} | {r['load_avg']} |")
        previous[key] = r
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--method", default="kd", help="kd (cheap) or auto (the default: three candidates)")
    ap.add_argument("--student", default="static")
    ap.add_argument("--epochs", type=int, default=None, help="fixed epochs (default: the job's own budget)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--label", default="", help="a name added to the saved result (e.g. 'before' a fix)")
    ap.add_argument("--keep", action="store_true", help="keep each run's cache and artifact")
    ap.add_argument("--table-only", action="store_true", help="print the table of the saved results")
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--teacher", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return
    if not args.table_only:
        teacher = make_teacher(OUT / f"teacher-h{args.hidden}-l{args.layers}", args.hidden, args.layers, 8000)
        for rows in args.rows:
            r = run_size(rows, args, teacher)
            print(f"{rows:,} rows: {sum(r['stage_seconds'].values()):.1f} s, peak RSS "
                  f"{r['maxrss_kib'] / 2**20:.2f} GiB", flush=True)
    results = [json.loads(p.read_text()) for p in sorted((OUT / "results").glob("*.json"))]
    print(table(results))


if __name__ == "__main__":
    main()
