"""The /ui console in chromium against the real service (uvicorn API + Celery worker, Postgres, Redis)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser_support import console_errors, requested_urls
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.timeout(400), pytest.mark.slow]


def _shot(driver, name: str) -> None:
    """With LELP_BROWSER_SHOTS=DIR, keep a screenshot of each step (to look at a failure)."""
    if os.environ.get("LELP_BROWSER_SHOTS"):
        Path(os.environ["LELP_BROWSER_SHOTS"]).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(os.environ["LELP_BROWSER_SHOTS"]) / f"{name}.png"))


def _wait(driver, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def _text_is(selector: str, expected: str):
    def check(driver):
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return bool(found) and found[0].text.strip() == expected

    return check


@pytest.fixture(scope="module")
def module_client(api_server, service_api_key):
    from app.client.http import LelpClient

    with LelpClient(api_server, service_api_key, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def finished_job(module_client, celery_worker_process, tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("console-data")
    client = module_client
    teacher = client.upload_teacher(tiny_teacher_dir, name="tiny")
    train = client.upload_dataset(write_csv(root / "train.csv", make_text_rows(160, seed=1)))
    evald = client.upload_dataset(write_csv(root / "eval.csv", make_text_rows(40, seed=2)))
    job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"], method="lelp", student="ngram",
                            device="cpu", hyperparameters={"subclasses": 2, "epochs": 2, "seed": 0})
    job = client.wait_job(job["id"], poll=0.5, timeout=180)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    return {"job": job, "teacher": teacher, "train": train}


def test_console_signs_in_lists_jobs_shows_progress_report_and_predicts(browser, api_server, service_api_key,
                                                                         module_client, finished_job):
    job = finished_job["job"]
    browser.set_window_size(1280, 900)
    requested_urls(browser)  # drop what earlier tests asked for
    browser.get(f"{api_server}/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    console_errors(browser)

    # a wrong key: a clear message, and still the sign-in form
    key_box = _wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
    key_box.send_keys("lelp_this-is-not-a-real-key-000000000000000")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    error = _wait(browser).until(ec.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted" in error.text and "invalid_api_key" in error.text
    _shot(browser, "1-wrong-key")
    assert browser.find_element(By.ID, "login-view").is_displayed()
    console_errors(browser)  # the refused request's 401 is logged by the browser: expected here

    # the right key: the jobs list, with the finished job at 100%
    key_box.clear()
    key_box.send_keys(service_api_key)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    row = f"tr[data-job-id='{job['id']}']"
    _wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, row)))
    _wait(browser).until(_text_is(f"{row} td:nth-child(2)", "succeeded"))
    assert browser.find_element(By.CSS_SELECTOR, f"{row} td:nth-child(4)").text.strip() == "100%"
    _shot(browser, "2-jobs")
    assert service_api_key not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('lelp_api_key')") == service_api_key

    # a running job shows its stage and progress, in the list and on its live page
    client = module_client
    slow = client.create_job(finished_job["teacher"]["id"], finished_job["train"]["id"], method="kd",
                             student="ngram", device="cpu", hyperparameters={"epochs": 200, "batch_size": 4})
    try:
        slow_row = f"tr[data-job-id='{slow['id']}']"
        _wait(browser, 90).until(_text_is(f"{slow_row} td:nth-child(3)", "train"))
        assert browser.find_element(By.CSS_SELECTOR, f"{slow_row} td:nth-child(2)").text == "running"
        browser.find_element(By.CSS_SELECTOR, f"{slow_row} a").click()
        _wait(browser).until(_text_is("#job-status", "running"))
        _wait(browser).until(lambda d: "epoch" in d.find_element(By.ID, "job-progress").text)
        _wait(browser).until(lambda d: d.find_element(By.ID, "job-report").get_attribute("srcdoc"))
        _shot(browser, "3-running-job")
        browser.switch_to.frame(browser.find_element(By.ID, "job-report"))
        try:
            assert _text_is("#stage", "train")(browser) and "of this stage" in browser.find_element(
                By.ID, "progress").text
        finally:
            browser.switch_to.default_content()
    finally:
        client.cancel_job(slow["id"])

    # the finished job's page: events and the report, fetched with the header into the iframe
    browser.get(f"{api_server}/ui#/jobs/{job['id']}")
    _wait(browser).until(_text_is("#job-status", "succeeded"))
    _wait(browser).until(lambda d: "succeeded" in d.find_element(By.ID, "events-table").text)
    _wait(browser).until(lambda d: "<!doctype html>" in (d.find_element(By.ID, "job-report").get_attribute("srcdoc")
                                                         or "").lower())
    _shot(browser, "4-finished-job")
    browser.switch_to.frame(browser.find_element(By.ID, "job-report"))
    try:
        # srcdoc is set before the frame's document has loaded: wait for it, as for the live page above
        _wait(browser).until(lambda d: d.find_elements(By.ID, "headline"))
        headline = browser.find_element(By.ID, "headline").text
        assert f"{job['metrics']['agreement'] * 100:.1f}%" in headline
        assert browser.find_elements(By.CSS_SELECTOR, "img.plot")
    finally:
        browser.switch_to.default_content()

    # the model: "try it" calls predict
    browser.find_element(By.ID, "job-model-link").click()
    _wait(browser).until(_text_is("#model-id", job["model_id"]))
    browser.find_element(By.CSS_SELECTOR, "#predict-form button").click()
    _wait(browser).until(ec.visibility_of_element_located((By.ID, "predict-table")))
    labels = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#predict-table td.label")]
    assert len(labels) == 2 and set(labels) <= {"negative", "positive"}
    _shot(browser, "5-model")

    assert console_errors(browser) == []
    origin, urls = api_server.rstrip("/"), requested_urls(browser)
    outside = [u for u in urls if not u.startswith((origin, "data:", "about:"))]
    assert outside == [], outside
    assert any("/report" in u for u in urls) and all(service_api_key not in u for u in urls)


def test_a_revoked_session_goes_back_to_sign_in(browser, api_server):
    """A key that stops working mid-session (here: replaced by garbage) sends the user back to sign in."""
    browser.get(f"{api_server}/ui#/jobs")
    browser.execute_script("sessionStorage.setItem('lelp_api_key', 'lelp_garbage'); location.reload()")
    _wait(browser).until(ec.visibility_of_element_located((By.ID, "login-error")))
    assert "not accepted" in browser.find_element(By.ID, "login-error").text
    time.sleep(0.1)
    assert browser.execute_script("return sessionStorage.getItem('lelp_api_key')") is None
