#!/usr/bin/env bash
# The hardware check, in one command on a machine with an NVIDIA GPU, from a
# copy of the working tree (nothing installed in editable mode):
#
#     bash bench/gpu_run.sh
#
# 1. `python -m numbaconv info` (is the GPU usable?);
# 2. the CUDA test suite on the device (tests/test_cuda_*.py);
# 3. bench/gpu_bench.py: numbaconv beside PyTorch/cuDNN (float32 with TF32
#    off and on, float64) and cupyx.scipy.ndimage.correlate, written to
#    bench/RESULTS-gpu.md and bench/ratios-gpu.png, with the test summary.
#
# Each step has a time limit so that the whole run, compilation included,
# stays under 8 minutes; a step cut short keeps what it produced.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
TEST_LIMIT=${GPU_RUN_TEST_LIMIT:-230}
BENCH_LIMIT=${GPU_RUN_BENCH_LIMIT:-220}
start=$(date +%s)

"$PY" -m numbaconv info || exit 2
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv \
    2>/dev/null || true

log=bench/gpu-tests.log
timeout "$TEST_LIMIT" "$PY" -m pytest -q -m cuda -p no:cacheprovider \
    tests/test_cuda_kernels.py tests/test_cuda_backend.py \
    tests/test_cuda_api.py 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
summary=$(tail -n 1 "$log")
[ "$test_status" = 124 ] && summary="cut at ${TEST_LIMIT} s: $summary"

timeout "$BENCH_LIMIT" "$PY" bench/gpu_bench.py \
    --out bench/RESULTS-gpu.md --png bench/ratios-gpu.png \
    --budget $((BENCH_LIMIT / 2))
bench_status=$?

{
    echo
    echo "## Tests on the device"
    echo
    echo "\`pytest -m cuda tests/test_cuda_kernels.py tests/test_cuda_backend.py tests/test_cuda_api.py\`: $summary (exit $test_status)"
    echo
    echo "Whole run: $(( $(date +%s) - start )) s; benchmark exit $bench_status."
} >> bench/RESULTS-gpu.md
echo "bench/gpu_run.sh: tests exit $test_status, bench exit $bench_status, $(( $(date +%s) - start )) s"
[ "$test_status" = 0 ] && [ "$bench_status" = 0 ]
