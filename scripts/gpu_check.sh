#!/usr/bin/env bash
# The GPU check (issue 15): the tests marked `cuda` and `distillrl bench speed --config gpu`, on one CUDA GPU,
# in under 8 minutes. Usage: bash scripts/gpu_check.sh [OUT_DIR]   (default runs/gpu-check)
# Needs distillrl installed with the `bench` extra (pip install -e ".[test,bench]"), or on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$out/machine.txt"
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.version.cuda}")
print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
started=$(date +%s)
timeout 240 python3 -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.log"
tests_status=${PIPESTATUS[0]}
echo "cuda tests: exit ${tests_status}, $(( $(date +%s) - started )) s"
timeout 420 python3 -m distillrl bench speed --config gpu --out "$out/bench_speed_gpu.json" 2>&1 | tee "$out/bench_speed_gpu.log"
bench_status=${PIPESTATUS[0]}
echo "bench speed: exit ${bench_status}, total $(( $(date +%s) - started )) s"
exit $(( tests_status || bench_status ))
