"""Service settings, read from ``LELP_*`` environment variables.

One pydantic-settings class for the API, the worker and the CLI, so that the same names
mean the same thing everywhere. Nothing here connects to anything: the values are only
read when ``get_settings()`` is first called.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3


class Settings(BaseSettings):
    """Every knob of the service; the defaults run the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="LELP_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".lelp",
                           description="Directory of the embedded default (SQLite, local broker, artifacts).")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite:///{data_dir}/lelp.db.")
    broker_url: str = Field("", description="Celery broker URL; default sqla+sqlite:///{data_dir}/broker.sqlite.")
    artifact_url: str = Field("", description="fsspec URL of the artifact store; default {data_dir}/artifacts.")
    allowed_uri_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Roots under which teacher/dataset URIs may point; empty = off.")
    api_url: str = Field("http://127.0.0.1:8000", description="Client side: base URL of the API.")
    api_key: str | None = Field(None, description="Client side: the API key sent as a Bearer token.")

    max_upload_bytes: int = Field(2 * GIB, gt=0, description="Largest request body of an upload.")
    max_json_bytes: int = Field(1 << 20, gt=0, description="Largest JSON request body (jobs, uris); 413 past it.")
    max_predict_body_bytes: int = Field(
        32 << 20, gt=0, description="Largest predict request body (LELP_MAX_PREDICT_INPUTS long texts); 413 past it.")
    body_timeout_s: float = Field(30.0, gt=0, description="A request body must arrive within this (408)...")
    body_min_rate: int = Field(
        64 << 10, gt=0, description="...plus one second per this many bytes received (slow uploads of big files).")
    max_archive_files: int = Field(10_000, gt=0, description="Most members in a teacher archive.")
    max_archive_bytes: int = Field(10 * GIB, gt=0, description="Most uncompressed bytes in a teacher archive.")
    max_dataset_rows: int = Field(5_000_000, gt=0, description="Most rows in one dataset.")
    max_dataset_columns: int = Field(1_000, gt=0, description="Most columns in one dataset.")
    max_dataset_bytes: int = Field(4 * GIB, gt=0, description="Most bytes a dataset may decompress to.")
    max_decompression_ratio: float = Field(
        100.0, gt=1, description="Most a compressed dataset or an archive may expand, as a multiple of its size.")
    max_dataset_memory_bytes: int = Field(
        4 * GIB, gt=0, description="Most memory a dataset may take once read (characters + per-cell overhead).")
    max_text_chars: int = Field(100_000, gt=0, description="Longest text of one row or one predict input.")
    max_concurrent_jobs_per_tenant: int = Field(4, gt=0, description="Queued+running jobs per tenant before 429.")
    max_predict_inputs: int = Field(256, gt=0, description="Most inputs in one predict request.")
    predict_max_batch: int = Field(64, gt=0, description="Most rows the micro-batcher runs in one forward.")
    opentelemetry: bool = Field(False, description="FastAPI's OpenTelemetry spans, metrics and logs (for a "
                                "process that configures an OTel SDK); off: checking for one on each request "
                                "was ~5% of a fast predict's time, and /metrics serves Prometheus either way.")
    cascade_teacher_threads: int = Field(0, ge=0, description="Torch threads of each cascade teacher process "
                                         "(0: torch's default).")
    cascade_max_kept_rows: int = Field(20000, gt=0, description="Most deferred rows a cascade keeps per model "
                                       "for redistil (a request may ask for fewer).")
    model_cache_size: int = Field(8, gt=0, description="Loaded models kept in memory (LRU).")
    predict_runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="Serve students on onnxruntime where it is installed (auto), or always on torch.")
    job_time_limit_s: int = Field(24 * 3600, gt=0, description="Hard time limit of one job attempt.")
    job_max_attempts: int = Field(3, gt=0, description="Deliveries of one job before it fails.")
    heartbeat_stale_s: int = Field(120, gt=0, description="A running job silent this long is requeued.")
    sweep_interval_s: float = Field(10, gt=0, description="How often each worker (and API process) sweeps.")
    enqueue_grace_s: float = Field(
        10, gt=0, description="A queued job still owed its message this long is sent again by the sweep.")
    queued_stale_s: float = Field(900, gt=0, description="A queued job untouched this long is enqueued again.")
    broker_audit_interval_s: float = Field(
        30, gt=0, description="How often a sweeper reads a Redis broker's queues for queued jobs whose message "
                              "is gone (lost with a broken link, or dropped by the worker that took it).")
    sweep_in_api: bool = Field(True, description="API processes run the recovery sweep too (not only workers).")
    max_model_parameters: int = Field(2_000_000_000, gt=0,
                                      description="Most parameters a teacher or base model's config may describe.")
    max_model_labels: int = Field(1_000, gt=1, description="Most labels (num_labels / id2label) of a teacher.")
    max_model_memory_bytes: int = Field(32 * GIB, gt=0,
                                        description="Most memory a model's config may need to load and run a batch.")
    probe_timeout_s: float = Field(60.0, gt=0, description="Time limit of the upload's tokenizer probe child.")
    probe_memory_bytes: int = Field(4 * GIB, gt=0, description="Address-space limit of the tokenizer probe child.")
    metrics_token: str | None = Field(None, description="Bearer token for /metrics; unset = no per-tenant data.")
    header_timeout_s: float = Field(10.0, gt=0, description="A client must send its request headers within this.")
    shutdown_timeout_s: float = Field(15.0, gt=0, description="Longest wait for requests in flight at shutdown.")
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts (host or host:port) a job's webhook_url may name; empty = no "
                                          "webhooks. Nothing else is ever called.")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key that signs webhook deliveries "
                                                          "(X-Lelp-Signature); required for webhooks.")
    webhook_max_attempts: int = Field(6, gt=0, le=20, description="Tries of one webhook delivery before giving up.")
    webhook_backoff_s: float = Field(2.0, gt=0, description="First retry delay of a webhook; doubles each try.")
    webhook_timeout_s: float = Field(10.0, gt=0, description="Time limit of one webhook request.")

    @property
    def heartbeat_interval_s(self) -> float:
        """How often a running job beats: a few beats fit in ``heartbeat_stale_s`` (at most 5 s apart)."""
        return max(0.5, min(5.0, self.heartbeat_stale_s / 4))

    @property
    def unsent_bound_s(self) -> float:
        """The longest a queued job stays without a message while any worker or API process lives."""
        return self.enqueue_grace_s + self.sweep_interval_s

    def model_limits(self):  # noqa: ANN201 - lelp.uploads.model_limits.ModelLimits (imported lazily, light)
        """The library's bounds on model configs, from these settings."""
        from lelp.uploads.model_limits import ModelLimits

        return ModelLimits(max_parameters=self.max_model_parameters, max_labels=self.max_model_labels,
                           max_memory_bytes=self.max_model_memory_bytes)

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """A JSON list or a comma-separated string (``hooks.example.com,127.0.0.1:9000``), lower-cased."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return [str(v).strip().lower() for v in value] if isinstance(value, list) else value

    @field_validator("allowed_uri_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string (``/srv/models,s3://bucket/teachers``)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        """Derive the URLs from ``data_dir`` so that one variable moves the whole embedded setup."""
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'lelp.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        if not self.artifact_url:
            self.artifact_url = str(self.data_dir / "artifacts")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
