"""Settings: defaults derived from the data directory, env names, list parsing."""

from __future__ import annotations

from app.settings import Settings, get_settings


def test_defaults_follow_the_data_dir(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    for name in ("LELP_DATABASE_URL", "LELP_BROKER_URL", "LELP_ARTIFACT_URL", "LELP_ALLOWED_URI_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LELP_DATA_DIR", str(tmp_path / "d"))
    s = Settings()
    assert s.data_dir == (tmp_path / "d").resolve()
    assert s.database_url == f"sqlite:///{s.data_dir / 'lelp.db'}"
    assert s.broker_url == f"sqla+sqlite:///{s.data_dir / 'broker.sqlite'}"
    assert s.artifact_url == str(s.data_dir / "artifacts")
    assert s.allowed_uri_roots == [] and s.max_concurrent_jobs_per_tenant == 4 and s.max_predict_inputs == 256


def test_env_overrides_and_root_lists(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LELP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LELP_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LELP_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("LELP_ALLOWED_URI_ROOTS", "/srv/models, s3://bucket/teachers")
    s = Settings()
    assert s.database_url == "postgresql://u@h/db" and s.max_upload_bytes == 1234
    assert s.allowed_uri_roots == ["/srv/models", "s3://bucket/teachers"]
    monkeypatch.setenv("LELP_ALLOWED_URI_ROOTS", '["/a", "/b"]')
    assert Settings().allowed_uri_roots == ["/a", "/b"]


def test_get_settings_is_cached(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("LELP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()
