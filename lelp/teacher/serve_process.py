"""A teacher answering class probabilities over a pipe: the cascade's teacher process (issue 22).

``python -m lelp.teacher.serve_process DIR [--max-length N] [--threads N]`` loads the teacher
once, writes one JSON line ``{"labels": [...]}`` to stdout, then answers each request line
``{"texts": [...], "pairs": [...] | null}`` with ``{"probs": [[...], ...]}`` (or ``{"error": "..."}``)
until stdin closes. The API process never imports torch: it starts this process per teacher
and feeds it whole batches (``app.services.teacher_process``).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lelp.teacher.serve_process")
    parser.add_argument("teacher_dir")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    import torch

    from lelp.artifacts import HFClassifierPredictor
    from lelp.teacher.loading import load_teacher

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher_dir)
    predictor = HFClassifierPredictor(teacher.model, teacher.tokenizer, list(teacher.info.labels),
                                      max_length=args.max_length)
    out.write(json.dumps({"labels": predictor.labels}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            probs = predictor.predict_proba(request["texts"], request.get("pairs"))
            reply = {"probs": [[round(float(p), 6) for p in row] for row in probs]}
        except Exception as exc:  # noqa: BLE001 - one bad batch must not end the process
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
