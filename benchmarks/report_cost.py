"""What the report adds to a distillation: the tiny job of the tests, with and without its report.

Runs ``distill`` on the tests' tiny random BERT (160 rows, 2 epochs) ``--repeat`` times, each
in a fresh process (the report's first figure pays for importing matplotlib, as a real job
does), and prints the whole job's wall time next to the part spent on the report (collecting
``report_data.json`` and drawing ``report.html``). CPU seconds are shown too: the machines here
are shared, and wall time moves with the load.

    python benchmarks/report_cost.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import lelp.job, lelp.pipeline, lelp.report
spent = {"wall": 0.0, "cpu": 0.0}
def timed(owner, name):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent["wall"] += time.perf_counter() - w
            spent["cpu"] += time.process_time() - c
    setattr(owner, name, wrapper)
for owner, name in ((lelp.report, "write_report"), (lelp.report, "write_report_data"),
                    (lelp.job.DistillJob, "report_data")):
    timed(owner, name)
from lelp.pipeline import DistillConfig, distill
root = Path(sys.argv[2])
w, c = time.perf_counter(), time.process_time()
distill(DistillConfig(teacher_dir=str(root / "teacher"), train_path=str(root / "train.csv"),
                      eval_path=str(root / "eval.csv"), method=sys.argv[3], epochs=2, max_length=32, device="cpu",
                      student_options={"n_features": 2**12, "embedding_dim": 16, "hidden": 32}),
        root / "out", cache_dir=root / "cache")
print(json.dumps({"job_wall": time.perf_counter() - w, "job_cpu": time.process_time() - c,
                  "report_wall": spent["wall"], "report_cpu": spent["cpu"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--method", default="lelp")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.tiny import make_text_rows, make_tiny_teacher, write_csv

    with tempfile.TemporaryDirectory(prefix="lelp-report-cost-") as tmp:
        root = Path(tmp)
        make_tiny_teacher(root / "teacher")
        write_csv(root / "train.csv", make_text_rows(160, seed=1))
        write_csv(root / "eval.csv", make_text_rows(40, seed=2))
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(root), args.method], check=True,
                                 capture_output=True, text=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| run | whole job (s) | report (s) | report share | report CPU (s) |  # method {args.method}")
    print("|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {r['job_wall']:.2f} | {r['report_wall']:.2f} | {r['report_wall'] / r['job_wall']:.0%} "
              f"| {r['report_cpu']:.2f} |")


if __name__ == "__main__":
    main()
