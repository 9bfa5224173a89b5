"""``student="auto"``: every fast kind trained on the same rows, timed against the teacher in alternation,
the most accurate on validation at or above ``min_speedup`` kept; reported as a table and a plot."""

from __future__ import annotations

import json

import pytest

from lelp.errors import ConfigError
from lelp.pipeline import DistillConfig, distill
from lelp.students.registry import AUTO_STUDENT_KINDS


def _config(teacher, train, eval_, **overrides) -> DistillConfig:
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval_), student="auto",
                method="kd", max_length=32, epochs=1, augment=0, min_speedup=0.0)
    base.update(overrides)
    return DistillConfig(**base)


def test_auto_keeps_the_best_validation_kind_above_the_floor(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                             tmp_path):
    from lelp.artifacts import read_manifest

    result = distill(_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv), tmp_path / "out",
                     cache_dir=tmp_path / "cache")
    search = result.metrics["student_search"]
    rows = {r["kind"]: r for r in search["candidates"]}
    assert set(rows) == set(AUTO_STUDENT_KINDS) and search["floor_met"]
    best_val = max(r["validation_accuracy"] for r in rows.values())
    chosen = search["chosen"]
    assert rows[chosen]["chosen"] and rows[chosen]["validation_accuracy"] == best_val
    assert sum(r["chosen"] for r in rows.values()) == 1
    for r in rows.values():  # every candidate timed in the same rounds as the teacher, sized as saved
        assert r["sentences_per_second"] > 0 and r["x_teacher"] > 0 and r["size_bytes"] > 0
        assert len(search["speed"]["models"][r["kind"]]["sentences_per_second"]) == search["speed"]["rounds"]
    assert result.metrics["student"]["kind"] == chosen == read_manifest(tmp_path / "out")["kind"]
    assert result.metrics["baseline"]["kind"] == chosen  # the no-teacher baseline is the kept kind
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="student-search"' in html and all(f"student_search-{k}-validation" in html for k in rows)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["student_search"]["chosen"] == chosen


def test_auto_keeps_the_fastest_when_none_reaches_the_floor(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                            tmp_path):
    result = distill(_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, min_speedup=1e9), tmp_path / "out",
                     cache_dir=tmp_path / "cache")
    search = result.metrics["student_search"]
    assert not search["floor_met"] and not any(r["meets_min_speedup"] for r in search["candidates"])
    fastest = max(search["candidates"], key=lambda r: r["x_teacher"])
    assert search["chosen"] == fastest["kind"]
    assert "none reached the floor" in (tmp_path / "out" / "report.html").read_text()


def test_auto_refuses_bad_settings():
    with pytest.raises(ConfigError, match="min_speedup"):
        distill(DistillConfig(teacher_dir="t", train_path="x", student="auto", min_speedup=-1), "out")
    with pytest.raises(ConfigError, match="unknown student"):
        distill(DistillConfig(teacher_dir="t", train_path="x", student="automatic"), "out")


def test_speeds_are_timed_on_one_thread_each_and_the_threads_restored():
    """Per CPU core, as benchmarks/speed_check.py times them: the job's ratio no longer depends on the core count."""
    import torch

    from lelp.evaluate import alternating_speeds

    seen: list[int] = []

    def predict(rows, pairs=None):  # noqa: ANN001, ANN202
        seen.append(torch.get_num_threads())
        return rows

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        speed = alternating_speeds({"teacher": (predict, 16, 1.0), "student": (predict, 16, 1.0)}, ["a b"] * 16,
                                   rounds=2)
        assert set(seen) == {1} and speed["threads"] == 1
        assert torch.get_num_threads() == 2, "the job's own thread count is back after timing"
        seen.clear()
        alternating_speeds({"teacher": (predict, 16, 1.0)}, ["a b"] * 16, rounds=1, threads=None)
        assert set(seen) == {2}, "threads=None times on the threads as they are"
    finally:
        torch.set_num_threads(before)
