#!/usr/bin/env bash
# The GPU check (issue 15) on one CUDA GPU, in about 7 minutes (9.5 at most): the engines side by side
# (scripts/bench_engines.py), `distillrl bench speed --config gpu` (distillrl against TRL's DistillationTrainer)
# and the tests marked `cuda`. Each part has its own time limit and is run even when an earlier one failed.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (default runs/gpu-check)
# Needs distillrl with the `test` and `bench` extras (pip install -e ".[test,bench]"), or on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
started=$(date +%s)
part() {  # part NAME SECONDS COMMAND...: run, log to OUT/NAME.log, report exit code and elapsed time
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  echo "== $name: exit $status, $(( $(date +%s) - started )) s since start" | tee -a "$out/summary.txt"
  return "$status"
}
python3 - <<'PY' 2>&1 | tee "$out/machine.txt"
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, CUDA {torch.version.cuda}")
print(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
part engines 150 python3 scripts/bench_engines.py --config gpu --repeats 2; engines=$?
part bench_speed 240 python3 -m distillrl bench speed --config gpu --rounds 2 --steps 4 --out "$out/bench_speed_gpu.json"; bench=$?
part cuda_tests 180 python3 -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py; tests=$?
exit $(( engines || bench || tests ))
