"""The report of a real tiny job, opened in chromium: renders cleanly, self-contained, true to metrics.json."""

from __future__ import annotations

import json

import pytest

from tests.browser_support import console_errors, ink_share, requested_urls

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture(scope="module")
def artifact(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path_factory):
    from lelp.pipeline import DistillConfig, distill

    out = tmp_path_factory.mktemp("report") / "student"
    config = DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv),
                           eval_path=str(tiny_eval_csv), method="auto", student="ngram", epochs=2, max_length=16,
                           student_options={"n_features": 2**12, "embedding_dim": 16, "hidden": 32}, device="cpu")
    distill(config, out, cache_dir=out.parent / "cache")
    return out


def _text(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).text.strip()


def test_report_renders_self_contained_with_the_metrics(browser, artifact):
    metrics = json.loads((artifact / "metrics.json").read_text())
    url = (artifact / "report.html").as_uri()
    console_errors(browser), requested_urls(browser)  # drop what came before
    browser.set_window_size(1280, 900)
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"

    s, t = metrics["student"], metrics["teacher"]
    assert _text(browser, "[data-metric=keeps]") == f"{s['accuracy'] / t['accuracy'] * 100:.1f}%"
    speed = s["sentences_per_second"] / t["sentences_per_second"]
    assert _text(browser, "[data-metric=speed]") == (f"{speed:,.0f}" if speed >= 100 else f"{speed:.1f}")
    smaller = t["size_bytes"] / s["size_bytes"]
    size = smaller if smaller >= 1 else 1 / smaller
    assert _text(browser, "[data-metric=size]") == (f"{size:,.0f}" if size >= 100 else f"{size:.1f}")
    assert _text(browser, "[data-metric=agreement]") == f"{metrics['agreement'] * 100:.1f}%"
    assert _text(browser, "[data-metric=eval_rows]") == f"{metrics['eval_rows']:,}"
    assert _text(browser, "[data-metric=student-accuracy]") == f"{s['accuracy'] * 100:.2f}%"
    assert "the student keeps" in _text(browser, "#headline").lower()
    verdict = _text(browser, "#verdict")
    assert verdict and "kept" in verdict
    # every candidate of the search is in the table, the winner marked once
    rows = browser.find_elements("css selector", "#search tbody tr")
    assert len(rows) == len(metrics["candidates"]) and len(browser.find_elements("css selector", "tr.winner")) == 1

    images = browser.find_elements("css selector", "img.plot")
    # 3 confusion matrices, calibration, the cascade, training, candidates, one per class, label counts, lengths
    assert len(images) == 9 + len(metrics["labels"])
    for img in images:
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
        assert img.get_attribute("src").startswith("data:image/svg+xml;base64,")
        assert ink_share(img.screenshot_as_png) > 0.01, img.get_attribute("alt")

    # the cascade: its table's first row is the student alone, its last the teacher on every row
    cascade = browser.find_elements("css selector", "#cascade tbody tr")
    assert len(cascade) >= 2 and cascade[0].text.startswith("0%") and cascade[-1].text.startswith("100%")
    assert _text(browser, "[data-metric=temperature]") == f"{metrics['calibration']['temperature']:.3g}"

    assert console_errors(browser) == []
    outside = [u for u in requested_urls(browser) if u != url and not u.startswith("data:")]
    assert outside == [], outside


def test_report_fits_a_phone_screen(browser, artifact):
    browser.set_window_size(390, 844)
    try:
        browser.get((artifact / "report.html").as_uri())
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
        width = browser.execute_script("return document.querySelector('img.plot').getBoundingClientRect().width")
        assert 0 < width <= 390
    finally:
        browser.set_window_size(1280, 900)
