"""One fraction for the whole job: stages and candidates fill one bar that never goes back."""

from __future__ import annotations

from lelp.progress import STAGE_BANDS, Progress, overall_fraction
from worker.job_progress import ProgressWriter


def a_three_candidate_job() -> list[Progress]:
    """What the library reports for method auto (kd, lelp, random_subclass), two teacher passes."""
    reports = [Progress("load", message="reading the teacher and the data")]
    for _pass in range(2):  # train rows, then eval rows: each pass restarts its own steps
        reports += [Progress("extract", step=s, total_steps=100) for s in (10, 50, 100)]
    names = ["kd-t1", "lelp-S2-b1-t1", "random_subclass-S2-b1-t1"]
    for i, name in enumerate(names, 1):
        reports.append(Progress("fit_projector", message=name, candidate=i, candidates=3))
        reports += [Progress("train", step=s, total_steps=40, epoch=1 + s // 20, loss=0.5) for s in (1, 20, 40)]
    reports += [Progress("evaluate", message="evaluating kd-t1"), Progress("save"),
                Progress("save", message="writing report.html")]
    return reports


def test_overall_fraction_splits_training_between_candidates():
    low, high = STAGE_BANDS["train"]
    assert overall_fraction("fit_projector", None, 1, 3) == low
    assert abs(overall_fraction("train", 0.5, 2, 3) - (low + (high - low) * 1.5 / 3)) < 1e-9
    assert abs(overall_fraction("train", 1.0, 3, 3) - high) < 1e-9
    assert abs(overall_fraction("extract", 0.5) - sum(STAGE_BANDS["extract"]) / 2) < 1e-9
    assert overall_fraction("export", 0.5) is None  # an unknown stage keeps the last figure
    assert overall_fraction("train", 0.5, None, None) == low + (high - low) * 0.5  # one candidate


def test_the_writer_reports_a_monotone_overall_fraction_and_the_candidate(monkeypatch):
    writer = ProgressWriter("sqlite://", "job_x", interval_s=0)
    seen = []
    clock = iter(range(1000))
    monkeypatch.setattr("worker.job_progress.time.monotonic", lambda: float(next(clock)))
    writer._began = 0.0
    for report in a_three_candidate_job():
        writer._track_history(report)
        fraction = report.step / report.total_steps if report.total_steps else None
        overall, eta = writer._overall_progress(report, fraction, float(len(seen) + 10))
        seen.append((report.stage, overall, eta, writer._position, writer._candidate))
    fractions = [s[1] for s in seen]
    assert fractions == sorted(fractions), "the bar never goes back (second teacher pass, next candidate)"
    assert fractions[0] < 0.05 < fractions[3] and fractions[-1] >= 0.97
    kd_train = [s for s in seen if s[0] == "train" and s[4] == "kd-t1"]
    lelp_train = [s for s in seen if s[0] == "train" and s[4] == "lelp-S2-b1-t1"]
    assert kd_train[-1][3] == (1, 3) and lelp_train[0][3] == (2, 3)
    assert max(s[1] for s in kd_train) <= min(s[1] for s in lelp_train)
    etas = [s[2] for s in seen if s[2] is not None]
    assert seen[0][2] is None, "no ETA before measurable progress"
    assert etas and all(e >= 0 for e in etas)


def test_lelp_distill_draws_the_same_single_bar():
    """The library's command line (``lelp distill``) uses the same bands and words: one bar, never back."""
    from lelp.cli import ProgressBars

    bars = ProgressBars()
    seen = []
    try:
        for report in a_three_candidate_job():
            bars(report)
            seen.append((bars.bar.n, bars.bar.desc))
    finally:
        bars.close()
    values = [n for n, _ in seen]
    assert values == sorted(values) and values[-1] >= 97
    descriptions = [d for _, d in seen]
    assert "training student 2/3 (LELP, 2 sub-classes per class), epoch 1" in descriptions
    assert not any("kd-t1" in d or "fit_projector" in d for d in descriptions)
