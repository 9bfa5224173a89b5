"""docker-compose.yml: a CPU worker and a GPU worker against the same Postgres, Redis and bucket."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_worker_reserves_a_gpu_and_consumes_the_gpu_queue() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    gpu, cpu = services["worker-gpu"], services["worker"]
    command = gpu["command"]
    assert command[:2] == ["lelp", "worker"] and command[command.index("--queues") + 1] == "gpu"
    assert "--gpus" in command
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"] == cpu["environment"]  # one database, one broker, one store
    assert gpu["profiles"] == ["gpu"]  # `docker compose up` still works on a machine without a GPU
    dockerfile = (ROOT / gpu["build"]["dockerfile"]).read_text()
    assert "FROM ${CUDA_IMAGE}" in dockerfile and "ARG CUDA_IMAGE=nvidia/cuda:" in dockerfile
