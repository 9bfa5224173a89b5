"""The /ui console in chromium against the real service (uvicorn API + Celery worker, Postgres, Redis).

The first test does the whole loop through the page alone: sign in, upload a teacher archive and two
CSVs, submit a job from the form, watch it (live charts), read its report, predict, and download the
ONNX package. Names typed into the page are hostile HTML: they must come back as text.
"""

from __future__ import annotations

import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser_support import console_errors, requested_urls
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.timeout(500), pytest.mark.slow]

HOSTILE_TEACHER = '<img src=x onerror="window.pwned=1">tiny & "teacher"'
HOSTILE_DATASET = "train</td><script>window.pwned=2</script>"
HOSTILE_JOB = "first try <svg onload=\"window.pwned=3\">"


def _shot(driver, name: str) -> None:
    """With LELP_BROWSER_SHOTS=DIR, keep a screenshot of each step (to look at a failure)."""
    if os.environ.get("LELP_BROWSER_SHOTS"):
        Path(os.environ["LELP_BROWSER_SHOTS"]).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(os.environ["LELP_BROWSER_SHOTS"]) / f"{name}.png"))


def _wait(driver, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def _text_is(selector: str, expected: str):
    def check(driver):
        return (_now(driver, selector) or "").strip() == expected

    return check


def _now(driver, selector: str, what: str = "innerText"):
    """A property of the element now, read in one script call: the jobs list is redrawn every 2 s,
    so an element found in one call may be gone (stale) by the next."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e && e[arguments[1]]",
                                 selector, what)


def _click(driver, selector: str) -> None:
    """Click what ``selector`` finds now (one script call, for the same reason as ``_now``)."""
    assert driver.execute_script("const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e",
                                 selector), selector


def _visible(driver, element_id: str):
    return _wait(driver).until(ec.visibility_of_element_located((By.ID, element_id)))


def _sign_in(browser, api_server: str, key: str) -> None:
    browser.get(f"{api_server}/ui")
    browser.execute_script("sessionStorage.setItem('lelp_api_key', arguments[0])", key)


@pytest.fixture(scope="module")
def module_client(api_server, service_api_key):
    from app.client.http import LelpClient

    with LelpClient(api_server, service_api_key, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def files(tiny_teacher_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("console-files")
    archive = root / "tiny-teacher.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_teacher_dir, arcname="tiny-bert")
    return {"teacher": archive, "train": write_csv(root / "train.csv", make_text_rows(160, seed=1)),
            "eval": write_csv(root / "eval.csv", make_text_rows(40, seed=2)),
            "downloads": root / "downloads", "bogus": _bogus(root / "not-a-model.tar.gz")}


def _bogus(path: Path) -> Path:
    path.write_bytes(b"this is not a gzip archive\n" * 10)
    return path


def _upload(browser, form: str, fields: dict[str, str]) -> str:
    """Fill and send an upload form; returns the new resource's id from the page's answer."""
    status = browser.find_element(By.ID, f"{form}-status")
    browser.execute_script("arguments[0].removeAttribute('data-created-id')", status)
    for name, value in fields.items():
        box = browser.find_element(By.ID, f"{form}-{name}")
        if box.get_attribute("type") != "file":
            box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, f"#{form}-form button[type=submit]").click()
    _wait(browser, 90).until(lambda d: d.find_element(By.ID, f"{form}-status").get_attribute("data-created-id"))
    return status.get_attribute("data-created-id")


def _chart_ok(browser, chart_id: str, y_title: str) -> bool:
    """An SVG line chart with both axes, tick labels and titled axes (epoch, ``y_title``)."""
    svgs = browser.find_elements(By.CSS_SELECTOR, f"#{chart_id} svg")
    if not svgs:
        return False
    titles = [t.text for t in svgs[0].find_elements(By.CSS_SELECTOR, ".axis-title")]
    ticks = [t.text for t in svgs[0].find_elements(By.CSS_SELECTOR, ".y-tick")]
    def has(selector: str) -> bool:
        return bool(svgs[0].find_elements(By.CSS_SELECTOR, selector))

    return (has(".x-axis") and has(".y-axis") and has("path.series") and titles == ["epoch", y_title]
            and len(ticks) >= 2 and all(float(t) == float(t) for t in ticks))


def test_the_whole_loop_through_the_console(browser, api_server, service_api_key, module_client, files,
                                            celery_worker_process):
    browser.set_window_size(1280, 900)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(files["downloads"])})
    requested_urls(browser)  # drop what earlier tests asked for
    browser.get(f"{api_server}/")  # the server's address leads to the console
    assert browser.current_url.rstrip("/").endswith("/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    console_errors(browser)

    # a wrong key: a clear message, and still the sign-in form
    key_box = _visible(browser, "api-key")
    key_box.send_keys("lelp_this-is-not-a-real-key-000000000000000")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    error = _visible(browser, "login-error")
    assert "not accepted" in error.text and "invalid_api_key" in error.text
    assert browser.find_element(By.ID, "login-view").is_displayed()
    console_errors(browser)  # the refused request's 401 is logged by the browser: expected here
    key_box.clear()
    key_box.send_keys(service_api_key)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    _visible(browser, "jobs-view")
    assert service_api_key not in browser.current_url

    # 1. upload a teacher archive and two datasets from their pages
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/teachers']").click()
    _visible(browser, "teacher-form")
    teacher_id = _upload(browser, "teacher", {"file": str(files["teacher"]), "name": HOSTILE_TEACHER})
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-teacher-id='{teacher_id}']"))
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-teacher-id='{teacher_id}']")
    assert row.find_element(By.CSS_SELECTOR, "td.name").text == HOSTILE_TEACHER  # shown as text, not run
    assert row.find_element(By.CSS_SELECTOR, "td.labels").text == "negative, positive"
    _shot(browser, "1-teacher-uploaded")

    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/datasets']").click()
    _visible(browser, "dataset-form")
    train_id = _upload(browser, "dataset", {"file": str(files["train"]), "name": HOSTILE_DATASET})
    # an unlabelled transfer set: the label column emptied in the form is sent empty (= none)
    transfer_id = _upload(browser, "dataset", {"file": str(files["train"]), "name": "transfer", "label": ""})
    transfer = module_client.get_dataset(transfer_id)
    assert transfer["label_column"] is None and transfer["labelled_rows"] == 0 and transfer["rows"] == 160
    assert browser.find_element(By.ID, "dataset-label").get_attribute("value") == "label"  # the form reset
    eval_id = _upload(browser, "dataset", {"file": str(files["eval"]), "name": "held-out eval"})
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-dataset-id='{eval_id}']"))
    train_row = browser.find_element(By.CSS_SELECTOR, f"tr[data-dataset-id='{train_id}']")
    assert train_row.find_element(By.CSS_SELECTOR, "td.name").text == HOSTILE_DATASET
    assert train_row.find_element(By.CSS_SELECTOR, "td.rows").text == "160"
    assert "negative: 80" in train_row.find_element(By.CSS_SELECTOR, "td.labels").text
    # the dataset's own page
    train_row.find_element(By.CSS_SELECTOR, "td.name a").click()
    _wait(browser).until(_text_is("#dataset-title", HOSTILE_DATASET))
    assert "160 (160 labelled)" in browser.find_element(By.ID, "dataset-details").text
    _shot(browser, "2-dataset-page")

    # 2. the submit form: defaults filled in, the kind's own defaults when it changes
    browser.get(f"{api_server}/ui#/new?teacher={teacher_id}&train={train_id}")
    _visible(browser, "job-form")
    _wait(browser).until(lambda d: Select(d.find_element(By.ID, "f-teacher")).first_selected_option
                         .get_attribute("value") == teacher_id)
    from lelp.config import STUDENT_DEFAULTS

    lr = browser.find_element(By.ID, "hp-learning_rate")
    assert float(lr.get_attribute("value")) == STUDENT_DEFAULTS["cnn"]["learning_rate"]
    assert browser.find_element(By.ID, "hp-max_length").get_attribute("value") == "128"
    assert Select(browser.find_element(By.ID, "f-train")).first_selected_option.get_attribute("value") == train_id
    assert HOSTILE_TEACHER in Select(browser.find_element(By.ID, "f-teacher")).first_selected_option.text
    # an unlabelled set can be trained on, not evaluated on
    options = {box: [o.get_attribute("value") for o in Select(browser.find_element(By.ID, box)).options]
               for box in ("f-train", "f-eval", "f-validation")}
    assert transfer_id in options["f-train"] and transfer_id not in options["f-eval"]
    assert eval_id in options["f-eval"] and options["f-eval"][0] == ""  # "none" first
    # validation rows may be unlabelled (scored against the teacher): every set, "none" (a split) first
    assert options["f-validation"][0] == "" and {transfer_id, eval_id} <= set(options["f-validation"])
    Select(browser.find_element(By.ID, "f-kind")).select_by_value("ngram")
    assert float(lr.get_attribute("value")) == STUDENT_DEFAULTS["ngram"]["learning_rate"]
    Select(browser.find_element(By.ID, "f-eval")).select_by_value(eval_id)
    Select(browser.find_element(By.ID, "f-method")).select_by_value("lelp")
    Select(browser.find_element(By.ID, "f-device")).select_by_value("cpu")
    for name, value in (("f-name", HOSTILE_JOB), ("hp-epochs", "3"), ("hp-seed", "5")):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    _shot(browser, "3-submit-form")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()

    # 3. the job's page, live: status, charts with axes, then the finished report
    _wait(browser).until(lambda d: d.find_element(By.ID, "job-view").is_displayed()
                         and d.find_element(By.ID, "job-id").text.startswith("job_"))
    job_id = browser.find_element(By.ID, "job-id").text
    job = module_client.get_job(job_id)
    assert (job["teacher_id"], job["train_dataset_id"], job["eval_dataset_id"]) == (teacher_id, train_id, eval_id)
    assert job["method"] == "lelp" and job["student"]["kind"] == "ngram" and job["device"] == "cpu"
    assert job["name"] == HOSTILE_JOB and browser.find_element(By.ID, "job-name").text == HOSTILE_JOB
    assert job["hyperparameters"] == {"epochs": 3, "seed": 5}  # fields left at their default are not sent
    _wait(browser, 240).until(lambda d: _chart_ok(d, "chart-loss", "train loss"))
    _shot(browser, "4-live-job")
    _wait(browser, 240).until(_text_is("#job-status", "succeeded"))
    job = module_client.get_job(job_id)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    _wait(browser).until(lambda d: _chart_ok(d, "chart-score", "validation score"))
    points = browser.find_elements(By.CSS_SELECTOR, "#chart-loss circle")
    assert len(points) == len([p for p in job["progress"]["history"] if p.get("train_loss") is not None]) >= 1
    _wait(browser).until(lambda d: "<!doctype html>" in (d.find_element(By.ID, "job-report").get_attribute("srcdoc")
                                                         or "").lower())
    frame = browser.find_element(By.ID, "job-report")
    browser.switch_to.frame(frame)
    try:
        _wait(browser).until(lambda d: d.find_elements(By.ID, "headline"))
        assert f"{job['metrics']['agreement'] * 100:.1f}%" in browser.find_element(By.ID, "headline").text
        inner = browser.execute_script("return document.documentElement.scrollHeight")
    finally:
        browser.switch_to.default_content()
    # the report is not cut: the frame is as tall as its page (no inner scrolling)
    _wait(browser).until(lambda d: d.find_element(By.ID, "job-report").size["height"] >= inner)
    assert inner > 900  # a whole report, taller than the window the old 75vh frame allowed
    _shot(browser, "5-finished-job")

    # 4. the jobs list, readable: names, status, accuracy and its share of the teacher's, duration
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/jobs']").click()
    row = f"tr[data-job-id='{job_id}']"
    _wait(browser).until(_text_is(f"{row} td.status-cell", "succeeded"))
    student, teacher = job["metrics"]["student"]["accuracy"], job["metrics"]["teacher"]["accuracy"]
    cells = browser.execute_script(
        "const r = document.querySelector(arguments[0]); const out = {};"
        "for (const n of arguments[1]) out[n] = r.querySelector('td.' + n).innerText.trim(); return out;",
        row, ["job", "teacher", "dataset", "accuracy", "of-teacher", "duration", "method"])
    assert cells["job"].startswith(HOSTILE_JOB) and job_id[:12] in cells["job"]
    assert cells["teacher"] == HOSTILE_TEACHER and cells["dataset"].startswith(HOSTILE_DATASET)
    assert "held-out eval" in cells["dataset"] and cells["method"] == "lelp \u00b7 ngram"
    assert cells["accuracy"] == f"{student * 100:.1f}%"
    assert cells["of-teacher"] == (f"{student / teacher * 100:.1f}%" if teacher else "\u2013")
    assert cells["duration"].endswith(" s")
    _shot(browser, "6-jobs-list")

    # the models list: the new model with its teacher by name and its accuracy
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/models']").click()
    model_row = f"tr[data-model-id='{job['model_id']}']"
    _wait(browser).until(lambda d: _now(d, model_row) is not None)
    model_cells = [td.strip() for td in browser.execute_script(
        "return [...document.querySelector(arguments[0]).cells].map((c) => c.innerText)", model_row)]
    assert model_cells[1] == HOSTILE_TEACHER and f"{student * 100:.1f}%" in model_cells
    browser.back()

    # 5. the model: predict shows every class's probability; the ONNX package downloads
    _wait(browser).until(lambda d: _now(d, f"{row} td.job a") is not None)
    _click(browser, f"{row} td.job a")
    _visible(browser, "job-model-link").click()
    _wait(browser).until(_text_is("#model-id", job["model_id"]))
    browser.find_element(By.CSS_SELECTOR, "#predict-form button").click()
    _visible(browser, "predict-table")
    rows = browser.find_elements(By.CSS_SELECTOR, "#predict-table tbody tr")
    assert len(rows) == 2
    for tr in rows:
        probs = {p.get_attribute("data-label"): float(p.find_element(By.CSS_SELECTOR, ".prob-value").text)
                 for p in tr.find_elements(By.CSS_SELECTOR, ".prob")}
        assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 0.01
        assert tr.find_element(By.CSS_SELECTOR, "td.label").text == max(probs, key=probs.get)
    browser.find_element(By.ID, "download-onnx").click()
    _wait(browser, 180).until(lambda d: "Downloaded" in d.find_element(By.ID, "download-status").text)
    name = f"{job['model_id']}-onnx-fp32.zip"
    target = files["downloads"] / name
    deadline = time.monotonic() + 30
    while not (target.exists() and zipfile.is_zipfile(target)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the browser writes a .crdownload first, then renames it
    with zipfile.ZipFile(target) as package:
        assert any(n.endswith(".onnx") for n in package.namelist()), package.namelist()
    _shot(browser, "7-model")

    assert browser.execute_script("return window.pwned === undefined")
    assert console_errors(browser) == []
    origin, urls = api_server.rstrip("/"), requested_urls(browser)
    outside = [u for u in urls if not u.startswith((origin, "data:", "about:", "blob:"))]
    assert outside == [], outside
    assert any("/report" in u for u in urls) and all(service_api_key not in u for u in urls)


def test_cancel_and_retry_from_the_console(browser, api_server, service_api_key, module_client, files,
                                           celery_worker_process):
    """A cancelled job reads "cancelled" (not failed); Retry submits the same inputs again."""
    client = module_client
    teacher = client.upload_teacher(files["teacher"], name="tiny")
    train = client.upload_dataset(files["train"])
    slow = client.create_job(teacher["id"], train["id"], method="kd", student="ngram", device="cpu",
                             hyperparameters={"epochs": 200, "batch_size": 4})
    _sign_in(browser, api_server, service_api_key)
    browser.get(f"{api_server}/ui#/jobs")
    row = f"tr[data-job-id='{slow['id']}']"
    _wait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button[data-action=cancel]"))
    _click(browser, f"{row} button[data-action=cancel]")
    _wait(browser, 90).until(lambda d: _now(d, f"{row} td.status-cell") == "cancelled"
                             and _now(d, f"{row} button[data-action=retry]") is not None)
    pill = _now(browser, f"{row} td.status-cell .status", "className").split()
    assert "cancelled" in pill and "failed" not in pill
    assert _now(browser, f"{row} td.progress-cell").startswith("cancelled")
    _shot(browser, "8-cancelled")

    _click(browser, f"{row} button[data-action=retry]")
    _wait(browser).until(lambda d: d.find_element(By.ID, "job-id").text not in ("", slow["id"]))
    again = client.get_job(browser.find_element(By.ID, "job-id").text)
    for name in ("teacher_id", "train_dataset_id", "method", "student", "device", "hyperparameters"):
        assert again[name] == slow[name], name
    assert client.get_job(slow["id"])["status"] == "cancelled"
    _visible(browser, "job-cancel").click()
    _wait(browser, 90).until(_text_is("#job-status", "cancelled"))
    assert browser.find_element(By.ID, "job-retry").is_displayed()
    _shot(browser, "9-retried-and-cancelled")

    # paging through the list, one job a page: newest first, then older ones, then back to the newest
    newest_first = [j["id"] for j in client.list_jobs(limit=3)["data"]]
    assert len(newest_first) >= 2 and newest_first[:2] == [again["id"], slow["id"]]

    def ids_shown(d):
        return d.execute_script("return [...document.querySelectorAll('#jobs-table tbody tr')]"
                                ".map((r) => r.dataset.jobId)")

    browser.get(f"{api_server}/ui#/jobs?limit=1")
    _wait(browser).until(lambda d: ids_shown(d) == newest_first[:1])
    assert not browser.find_element(By.ID, "jobs-newest").is_displayed()
    for expected in newest_first[1:]:
        _click(browser, "#jobs-older")
        _wait(browser).until(lambda d, e=expected: ids_shown(d) == [e])
    _click(browser, "#jobs-newest")
    _wait(browser).until(lambda d: ids_shown(d) == newest_first[:1])


def test_mistakes_made_in_the_page_get_clear_messages(browser, api_server, service_api_key, module_client,
                                                     files):
    """A file that is no model archive, and a form value out of range: the API's own words, in the page."""
    _sign_in(browser, api_server, service_api_key)
    browser.get(f"{api_server}/ui#/teachers")
    _visible(browser, "teacher-form")
    browser.find_element(By.ID, "teacher-file").send_keys(str(files["bogus"]))
    browser.find_element(By.CSS_SELECTOR, "#teacher-form button[type=submit]").click()
    error = _wait(browser, 60).until(ec.visibility_of_element_located((By.ID, "teacher-error")))
    assert "(" in error.text and error.text.strip().endswith(")")  # "message (code)"
    assert browser.find_element(By.ID, "teacher-status").text == ""

    teacher = module_client.upload_teacher(files["teacher"], name="tiny")
    train = module_client.upload_dataset(files["train"])
    before = [j["id"] for j in module_client.list_jobs(limit=100)["data"]]
    browser.get(f"{api_server}/ui#/new?teacher={teacher['id']}&train={train['id']}")
    _visible(browser, "job-form")
    _wait(browser).until(lambda d: Select(d.find_element(By.ID, "f-teacher")).first_selected_option
                         .get_attribute("value") == teacher["id"])
    alpha = browser.find_element(By.ID, "hp-alpha")
    alpha.clear()
    alpha.send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    error = _wait(browser).until(ec.visibility_of_element_located((By.ID, "new-error")))
    assert "hyperparameters.alpha" in error.text and "invalid_request" in error.text
    assert browser.find_element(By.ID, "new-view").is_displayed()  # still on the form, values kept
    assert browser.find_element(By.ID, "hp-alpha").get_attribute("value") == "2"
    assert [j["id"] for j in module_client.list_jobs(limit=100)["data"]] == before  # nothing was submitted
    console_errors(browser)  # the refused requests' 4xx are logged by the browser: expected here


def test_docs_work_offline(browser, api_server):
    """/docs renders Swagger UI from the service's own files (the browser reaches nothing else)."""
    requested_urls(browser)
    browser.get(f"{api_server}/docs")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
    assert "/v1/jobs/{job_id}/retry" in browser.find_element(By.TAG_NAME, "body").text
    origin = api_server.rstrip("/")
    assert [u for u in requested_urls(browser) if not u.startswith((origin, "data:"))] == []


def test_a_revoked_session_goes_back_to_sign_in(browser, api_server):
    """A key that stops working mid-session (here: replaced by garbage) sends the user back to sign in."""
    browser.get(f"{api_server}/ui#/jobs")
    browser.execute_script("sessionStorage.setItem('lelp_api_key', 'lelp_garbage'); location.reload()")
    _wait(browser).until(ec.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted" in browser.find_element(By.ID, "login-error").text
    time.sleep(0.1)
    assert browser.execute_script("return sessionStorage.getItem('lelp_api_key')") is None
