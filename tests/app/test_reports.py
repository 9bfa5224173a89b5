"""Report endpoints and the console's files: HTML, tenant-scoped, the live page while a job runs."""

from __future__ import annotations

import re
import subprocess
import sys

REPORT = "<!doctype html><html><body><p id='headline'>the stored report</p></body></html>"


def _running_job(client, db, headers: dict, body: dict, progress: dict) -> str:  # noqa: ANN001
    from app.db import job_states
    from app.db import repositories as repo
    from app.db.base import utcnow

    job = client.post("/v1/jobs", headers=headers, json=body).json()
    assert job_states.claim(db, job["id"], utcnow())
    job_states.record_progress(db, job["id"], progress)
    repo.add_event(db, job["id"], "stage", "fit_projector <b>lelp</b>", {"stage": "fit_projector"})
    db.commit()
    return job["id"]


def test_a_running_job_has_a_live_page_with_stage_progress_eta_and_curves(client, db, auth_a, job_body) -> None:  # noqa: ANN001, E501
    history = [{"candidate": "kd-t1", "epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)]
    job_id = _running_job(client, db, auth_a, job_body, {
        "stage": "train", "epoch": 3, "step": 42, "total_steps": 100, "fraction": 0.42, "loss": 0.3333,
        "eta_s": 17.4, "message": None, "history": history})
    r = client.get(f"/v1/jobs/{job_id}/report", headers=auth_a)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert re.search(r'id="stage">train<', page) and "42% of this stage" in page and "about 17 s left" in page
    assert page.count("<circle") == 3 and "kd-t1: epoch 3, loss 0.3333" in page
    points = re.search(r'<polyline[^>]*points="([^"]+)"', page).group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys), "a falling loss is drawn going down (SVG y grows downwards)"
    # with axes: epochs 1..3 along x, round loss values up y, both titled
    assert 'class="x-axis"' in page and 'class="y-axis"' in page
    assert re.findall(r'class="x-tick"[^>]*>(\d+)<', page) == ["1", "2", "3"]
    y_ticks = [float(v) for v in re.findall(r'class="y-tick"[^>]*>([\d.]+)<', page)]
    assert len(y_ticks) >= 3 and y_ticks[0] <= 1 / 3 and y_ticks[-1] >= 1.0
    assert ">epoch</text>" in page and ">train loss</text>" in page
    # user-controlled text is escaped, never markup
    assert "fit_projector &lt;b&gt;lelp&lt;/b&gt;" in page and "<b>lelp</b>" not in page
    # the JSON API carries the same curve
    assert client.get(f"/v1/jobs/{job_id}", headers=auth_a).json()["progress"]["history"] == history


def test_a_queued_job_page_says_it_waits(client, auth_a, job_body) -> None:  # noqa: ANN001
    job = client.post("/v1/jobs", headers=auth_a, json=job_body).json()
    r = client.get(f"/v1/jobs/{job['id']}/report", headers=auth_a)
    assert r.status_code == 200 and "waiting for a worker" in r.text and "queued" in r.text


def test_finished_job_and_model_serve_the_stored_report(client, auth_a, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)  # its files are the tiny teacher: no report.html yet
    r = client.get(f"/v1/models/{model['id']}/report", headers=auth_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "report_not_found"
    client.app.state.store.open(f"models/{model['id']}/report.html", "wb").write(REPORT.encode())
    for path in (f"/v1/models/{model['id']}/report", f"/v1/jobs/{model['job_id']}/report"):
        r = client.get(path, headers=auth_a)
        assert r.status_code == 200 and r.text == REPORT, path
        assert r.headers["content-type"].startswith("text/html") and "cache-control" not in r.headers
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no script at all


def test_reports_are_tenant_scoped(client, db, auth_a, auth_b, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    for path, code in ((f"/v1/models/{model['id']}/report", "model_not_found"),
                       (f"/v1/jobs/{model['job_id']}/report", "job_not_found")):
        r = client.get(path, headers=auth_b)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == code and set(r.json()["error"]) == {"code", "message", "param"}
        r = client.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = client.get("/v1/jobs/job_doesnotexist/report", headers=auth_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


def test_the_console_page_and_its_files(client) -> None:  # noqa: ANN001
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    page = r.text
    assert 'id="api-key"' in page and 'type="password"' in page
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from another origin
    for path in ("/ui/static/console.js", "/ui/static/console.css"):
        assert client.get(path).status_code == 200
    script = client.get("/ui/static/console.js").text
    assert "sessionStorage" in script and "innerHTML =" not in script
    assert client.get("/ui/", follow_redirects=False).status_code == 307


def test_app_imports_neither_matplotlib_nor_torch() -> None:
    code = ("import sys\nfrom app.main import create_app\nimport app.api.reports, app.services.reports, app.ui\n"
            "bad = [m for m in ('torch', 'matplotlib', 'lelp.report.plots') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
