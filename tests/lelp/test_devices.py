"""``lelp.devices.resolve``: one meaning of each device name, and the record of where a job ran."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from lelp.devices.resolve import describe_device, device_summary, resolve_device
from lelp.errors import ConfigError


def test_names_resolve_the_same_everywhere() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    if torch.cuda.is_available():
        assert resolve_device("gpu") == torch.device("cuda")
    else:
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("gpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu-please'"):
        resolve_device("tpu-please")


def test_the_library_has_one_resolve_device() -> None:
    import lelp.teacher.features
    import lelp.teacher.loading
    import lelp.training.loop

    assert lelp.training.loop.resolve_device is resolve_device
    assert lelp.teacher.features.resolve_device is resolve_device
    assert not hasattr(lelp.teacher.loading, "resolve_device") or lelp.teacher.loading.resolve_device is resolve_device


def test_describe_device_on_cpu() -> None:
    described = describe_device("cpu")
    assert described == {"host": socket.gethostname(), "device": "cpu"}
    assert device_summary(described) == f"host {socket.gethostname()}, cpu"


def test_summary_of_a_gpu_record() -> None:
    record = {"host": "h1", "device": "cuda:0", "gpu_name": "NVIDIA H200", "gpu_memory_bytes": 3 * 2**30}
    assert device_summary(record) == "host h1, cuda:0 (NVIDIA H200, 3.0 GiB)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_describe_device_on_cuda() -> None:
    described = describe_device("gpu")
    assert described["device"] == "cuda:0" and described["gpu_name"] and described["gpu_memory_bytes"] > 2**30


def test_importing_lelp_devices_does_not_import_torch() -> None:
    code = "import sys\nimport lelp.devices.resolve\nassert 'torch' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
