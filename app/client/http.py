"""A small Python client of the HTTP API (httpx), used by the CLI verbs and the demo.

Every method returns the decoded JSON body of the contract in docs/API.md (the spec's section 3); any
non-2xx answer raises ``ApiError(status, code, message)`` built from the API's
``{"error": {"code", "message", "param"}}`` body, and a server that cannot be reached
raises ``ApiError(0, "connection_error", ...)``, so callers handle one exception type.

    client = LelpClient("http://127.0.0.1:8000", api_key)
    teacher = client.upload_teacher("my-bert/")          # a directory is packed on the fly
    data = client.upload_dataset("train.csv")
    job = client.create_job(teacher["id"], data["id"])          # method auto, student cnn
    job = client.wait_job(job["id"])
    client.predict(job["model_id"], ["what a lovely film"])
    client.download_onnx(job["model_id"], "out/", quantize="int8")
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from app.vocabulary import DEFAULT_METHOD, DEFAULT_STUDENT_KIND, FINISHED_STATUSES

DEFAULT_API_URL = "http://127.0.0.1:8000"
FINISHED = tuple(s.value for s in FINISHED_STATUSES)
# Answers a poll waits out (no answer at all is status 0): the server or its database is restarting.
TRANSIENT_STATUSES = frozenset({0, 502, 503, 504})
# ``download`` formats: the file name's ending and the artifact endpoint's query.
DOWNLOAD_FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    "artifact": (".tar.gz", {}),
    "onnx": ("-onnx-fp32.zip", {"format": "onnx"}),
    "onnx-int8": ("-onnx-int8.zip", {"format": "onnx", "quantize": "int8"}),
}


class ApiError(Exception):
    """An error answer of the API (or no answer at all: status 0)."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.param = status, code, message, param


# What to do about an authentication error, in the client's terms (the API speaks of headers).
KEY_HINTS = {
    "missing_api_key": "set LELP_API_KEY (`lelp admin create-key --tenant NAME` prints one; `lelp serve` "
                       "saves one in its data directory's api_key file)",
    "invalid_api_key": "check LELP_API_KEY: the key is unknown or was revoked (`lelp admin list-keys`)",
}


def _raise_for(response: httpx.Response, has_key: bool = True) -> None:
    if response.is_success:
        return
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code = str(error.get("code") or f"http_{response.status_code}")
    message = str(error.get("message") or response.text[:200] or response.reason_phrase)
    if code in KEY_HINTS and not (code == "missing_api_key" and has_key):
        message = f"{message}: {KEY_HINTS[code]}"
    raise ApiError(response.status_code, code, message, error.get("param"))


@contextmanager
def _packed(path: Path) -> Iterator[tuple[str, BinaryIO]]:
    """An upload-ready file: the file itself, or a directory packed to a temporary .tar.gz."""
    if path.is_file():
        with path.open("rb") as fh:
            yield path.name, fh
        return
    if not path.is_dir():
        raise ApiError(0, "not_found", f"{path} is neither a file nor a directory")
    with tempfile.TemporaryDirectory(prefix="lelp-upload-") as tmp:
        archive = Path(tmp) / f"{path.name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for file in sorted(path.rglob("*")):
                if file.is_file() and not file.is_symlink():  # the server refuses links anyway
                    tar.add(file, arcname=file.relative_to(path).as_posix(), recursive=False)
        with archive.open("rb") as fh:
            yield archive.name, fh


class LelpClient:
    """Thin, typed-by-contract wrapper over the ``/v1`` endpoints."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = (base_url or os.environ.get("LELP_API_URL") or DEFAULT_API_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("LELP_API_KEY")
        self.has_key = bool(api_key)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, "connection_error", f"cannot reach {self.base_url} ({exc}): is the server running? "
                           "set LELP_API_URL to its address") from None
        _raise_for(response, self.has_key)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- ops ---------------------------------------------------------------------------------

    def ready(self) -> dict:
        return self._json("GET", "/readyz")

    # --- teachers and datasets -----------------------------------------------------------------

    def _upload_model(self, route: str, path: Path, fields: dict[str, str]) -> dict:
        with _packed(path) as (filename, fh):
            return self._json("POST", route, files={"file": (filename, fh, "application/octet-stream")}, data=fields)

    def upload_teacher(self, path: str | Path, name: str | None = None, text_pairs: bool = False) -> dict:
        """Upload a .tar.gz/.zip of a Hugging Face model directory, or the directory itself."""
        path = Path(path)
        return self._upload_model("/v1/teachers", path, {"name": name or _stem(path),
                                                         "text_pairs": "true" if text_pairs else "false"})

    def teacher_from_uri(self, uri: str, name: str | None = None, text_pairs: bool = False) -> dict:
        return self._json("POST", "/v1/teachers", json={"uri": uri, "text_pairs": text_pairs,
                                                        **({"name": name} if name else {})})

    def get_teacher(self, teacher_id: str) -> dict:
        return self._json("GET", f"/v1/teachers/{teacher_id}")

    def list_teachers(self, limit: int | None = None, after: str | None = None) -> dict:
        return self._json("GET", "/v1/teachers", params=_params(limit=limit, after=after))

    def delete_teacher(self, teacher_id: str) -> None:
        self._request("DELETE", f"/v1/teachers/{teacher_id}")

    def upload_base_model(self, path: str | Path, name: str | None = None) -> dict:
        """Upload a pretrained encoder (directory or archive) to start students from (``student_base``)."""
        path = Path(path)
        return self._upload_model("/v1/base-models", path, {"name": name or _stem(path)})

    def base_model_from_uri(self, uri: str, name: str | None = None) -> dict:
        return self._json("POST", "/v1/base-models", json={"uri": uri, **({"name": name} if name else {})})

    def get_base_model(self, base_model_id: str) -> dict:
        return self._json("GET", f"/v1/base-models/{base_model_id}")

    def list_base_models(self, limit: int | None = None, after: str | None = None) -> dict:
        return self._json("GET", "/v1/base-models", params=_params(limit=limit, after=after))

    def delete_base_model(self, base_model_id: str) -> None:
        self._request("DELETE", f"/v1/base-models/{base_model_id}")

    def upload_dataset(self, path: str | Path, *, text_column: str = "text", text_pair_column: str | None = None,
                       label_column: str | None = "label", name: str | None = None) -> dict:
        """Upload a CSV/TSV/JSONL/Parquet file; the answer holds row and label counts."""
        path = Path(path)
        # An empty label column is how the API spells "unlabelled (transfer) data".
        data = _params(text_column=text_column, text_pair_column=text_pair_column, label_column=label_column or "",
                       name=name or path.name)
        with path.open("rb") as fh:
            return self._json("POST", "/v1/datasets", files={"file": (path.name, fh, "application/octet-stream")},
                              data=data)

    def get_dataset(self, dataset_id: str) -> dict:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def list_datasets(self, limit: int | None = None, after: str | None = None) -> dict:
        return self._json("GET", "/v1/datasets", params=_params(limit=limit, after=after))

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    # --- jobs ------------------------------------------------------------------------------------

    def create_job(self, teacher_id: str, train_dataset_id: str, *, eval_dataset_id: str | None = None,
                   validation_dataset_id: str | None = None,
                   method: str = DEFAULT_METHOD, student: str | dict = DEFAULT_STUDENT_KIND,
                   student_base: str | None = None,
                   device: str = "auto", hyperparameters: dict | None = None,
                   idempotency_key: str | None = None, webhook_url: str | None = None,
                   name: str | None = None) -> dict:
        """Submit a job (202); the same ``idempotency_key`` and body replay the same job.

        ``webhook_url``: POSTed the job's final state, signed (a host the server allows; docs/API.md).
        ``name``: a name the job lists show (optional).

        ``student_base``: the id of one of your base models or teachers (or a URI under the
        server's allowed roots) to start the student from; ``encoder_mlp`` needs one.
        """
        spec = dict(student) if isinstance(student, dict) else {"kind": student}
        if student_base:
            spec["base"] = student_base
        body: dict[str, Any] = {
            "teacher_id": teacher_id, "train_dataset_id": train_dataset_id, "method": method,
            "student": spec, "device": device,
            "hyperparameters": {k: v for k, v in (hyperparameters or {}).items() if v is not None},
        }
        if eval_dataset_id:
            body["eval_dataset_id"] = eval_dataset_id
        if validation_dataset_id:
            body["validation_dataset_id"] = validation_dataset_id
        if webhook_url:
            body["webhook_url"] = webhook_url
        if name:
            body["name"] = name
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, status: str | None = None, limit: int | None = None, after: str | None = None) -> dict:
        return self._json("GET", "/v1/jobs", params=_params(status=status, limit=limit, after=after))

    def cancel_job(self, job_id: str) -> dict:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def job_events(self, job_id: str, limit: int | None = None, after: str | int | None = None) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}/events", params=_params(limit=limit, after=after))

    def wait_job(self, job_id: str, on_progress: Callable[[dict], None] | None = None, poll: float = 1.0,
                 timeout: float | None = None, outage_s: float = 60.0) -> dict:
        """Poll until the job ends; ``on_progress`` sees every polled job body. Returns the final job.

        A server that does not answer or answers 502/503/504 (restarting, its database restarting)
        is polled again for up to ``outage_s`` seconds in a row: the job runs on meanwhile, and a
        long wait should not end in an error because of one blip. A 4xx ends the wait at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        down_since: float | None = None
        while True:
            try:
                job = self.get_job(job_id)
            except ApiError as exc:
                if exc.status not in TRANSIENT_STATUSES:
                    raise
                now = time.monotonic()
                down_since = now if down_since is None else down_since
                if now - down_since > outage_s:
                    raise
                time.sleep(poll)
                continue
            down_since = None
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise ApiError(0, "timeout", f"job {job_id} still {job['status']} after {timeout:.0f} s")
            time.sleep(poll)

    # --- models ------------------------------------------------------------------------------------

    def get_model(self, model_id: str) -> dict:
        return self._json("GET", f"/v1/models/{model_id}")

    def list_models(self, limit: int | None = None, after: str | None = None) -> dict:
        return self._json("GET", "/v1/models", params=_params(limit=limit, after=after))

    def predict(self, model_id: str, inputs: list[str] | list[dict], quantize: str | None = None) -> dict:
        """Label, score and every class's probability per input; ``quantize="int8"`` answers on the
        model's int8 onnxruntime export (built on first use)."""
        body: dict[str, Any] = {"inputs": inputs}
        if quantize:
            body["quantize"] = quantize
        return self._json("POST", f"/v1/models/{model_id}/predict", json=body)

    def predict_int8(self, model_id: str, inputs: list[str] | list[dict]) -> dict:
        """``predict`` on the int8 export: smaller and faster on CPU, within the accuracy delta in
        the model's ``metrics["export"]["onnx-int8"]``."""
        return self.predict(model_id, inputs, quantize="int8")

    # --- reports ----------------------------------------------------------------------------------

    def job_report(self, job_id: str) -> str:
        """The job's report page (HTML): live progress while it runs, the student's report once it succeeded."""
        return self._request("GET", f"/v1/jobs/{job_id}/report").text

    def model_report(self, model_id: str) -> str:
        """The model's self-contained ``report.html`` (no script, no requests: open it anywhere)."""
        return self._request("GET", f"/v1/models/{model_id}/report").text

    def save_report(self, resource_id: str, dest: str | Path) -> Path:
        """Write a job's (``job_...``) or model's report to ``dest`` (a file, or a directory to put it in)."""
        html = self.job_report(resource_id) if resource_id.startswith("job_") else self.model_report(resource_id)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{resource_id}-report.html"
        dest.write_text(html, encoding="utf-8")
        return dest

    # --- downloads --------------------------------------------------------------------------------

    def set_cascade(self, model_id: str, *, target_accuracy: float | None = None,
                    max_deferred_fraction: float | None = None, keep_traffic: bool = False,
                    max_kept_rows: int | None = None) -> dict:
        """Serve the model as a cascade (one target: a fraction of the teacher's accuracy, or a deferral budget)."""
        body = _params(target_accuracy=target_accuracy, max_deferred_fraction=max_deferred_fraction,
                       max_kept_rows=max_kept_rows)
        return self._json("POST", f"/v1/models/{model_id}/cascade", json={**body, "keep_traffic": keep_traffic})

    def disable_cascade(self, model_id: str) -> dict:
        return self._json("DELETE", f"/v1/models/{model_id}/cascade")

    def traffic(self, model_id: str) -> dict:
        return self._json("GET", f"/v1/models/{model_id}/traffic")

    def redistil(self, model_id: str) -> dict:
        """A new job on the model's training rows plus the traffic its cascade kept (202: the job)."""
        return self._json("POST", f"/v1/models/{model_id}/redistil")

    def download_artifact(self, model_id: str, dest: str | Path) -> Path:
        """Stream the model's tar.gz to ``dest`` (a file path, or a directory to put it in)."""
        return self.download(model_id, dest, "artifact")

    def download_onnx(self, model_id: str, dest: str | Path, quantize: str | None = None) -> Path:
        """Stream the model's checked ONNX package (zip; ``quantize="int8"`` for int8 weights) to ``dest``."""
        return self.download(model_id, dest, "onnx-int8" if quantize == "int8" else "onnx")

    def download(self, model_id: str, dest: str | Path, format: str = "artifact") -> Path:
        """Stream one of the model's files to ``dest`` (a file path, or a directory to put it in).

        ``format``: ``artifact`` (tar.gz of the student directory), ``onnx`` (zip of the ONNX
        package) or ``onnx-int8`` (the same with int8 weights); see ``DOWNLOAD_FORMATS``.
        """
        if format not in DOWNLOAD_FORMATS:
            raise ApiError(0, "invalid_option", f"format must be one of {', '.join(DOWNLOAD_FORMATS)}, "
                           f"got {format!r}")
        suffix, params = DOWNLOAD_FORMATS[format]
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{model_id}{suffix}"
        try:
            with self._http.stream("GET", f"/v1/models/{model_id}/artifact", params=params) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response, self.has_key)
                with dest.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise ApiError(0, "connection_error", f"cannot reach {self.base_url} ({exc}): is the server running? "
                           "set LELP_API_URL to its address") from None
        return dest

    def delete_model(self, model_id: str) -> None:
        self._request("DELETE", f"/v1/models/{model_id}")


def _stem(path: Path) -> str:
    """A display name from a directory or archive name (``teacher.tar.gz`` -> ``teacher``)."""
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
