#!/usr/bin/env bash
# The GPU checks, in one run of under ~8 minutes on a lent GPU machine (see /work/.library/device):
#   1. tests/gpu (marked gpu): a whole job on the gpu queue with a real pinned worker, the CUDA
#      training path, the batch finder against a real OOM, DDP on 2 GPUs where 2 are visible;
#   2. tests/lelp/test_ddp.py and test_gpu.py (the CPU-side DDP and precision logic, there too);
#   3. benchmarks/gpu.py: extraction sentences/s and training steps/s, fp32 vs bf16, GPU
#      utilisation, 1 vs N GPUs.
# Everything it finds goes under $OUT (default ./gpu-out): pytest logs and JUnit XML, the
# benchmark's table and JSON, nvidia-smi. Run scripts/gpu_wheels.sh first where the service's
# packages are missing (then carry .whl). From the repository root, e.g. with the device tool:
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi; "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count())"; } \
  > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
status=0
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -rs tests/gpu tests/lelp/test_gpu.py tests/lelp/test_ddp.py \
  --junitxml="$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log" || status=1
timeout 240 "$PY" benchmarks/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/benchmark.log" || status=1
echo "gpu_check: status $status (files in $OUT)"
exit $status
