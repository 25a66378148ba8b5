#!/usr/bin/env bash
# The one prepared device check, for a lent GPU machine (docs/engines.md, "On a GPU machine"):
#   1. install this checkout without touching the machine's own PyTorch (offline: --no-deps --no-index),
#   2. the tests marked gpu or tensorrt (they skip themselves where CUDA or TensorRT is missing),
#   3. the whole test suite with a GPU present (device="auto" paths then pick CUDA),
#   4. sharpen-bench's speed part on the GPU: shipped students at 1080p, every backend and precision there,
#   5. a short training run on the GPU (the fast recipe on the bundled sample frame: steps/s, not quality).
# Each step has its own time limit and log under OUT; the last lines say which steps passed. The limits add up
# to 9 minutes (a device command may run 10): run it with timeout_s=570.
#
#   bash scripts/gpu_check.sh [OUT]          # OUT defaults to $OUT (the device tool's), else ./gpu-check
#   DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh /tmp/gpu-check   # dry run on a CPU machine
set -uo pipefail
OUT=${1:-${OUT:-gpu-check}}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
declare -A STATUS

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, remember the exit status
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    STATUS[$name]=$?
    tail -n 15 "$OUT/$name.log"
}

{
    date -u
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    "$PY" -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())" 2>&1
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

if ! "$PY" -c "import trt_engine, kd_trainer, benchmarks" 2>/dev/null; then
    step install 60 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .
fi

step gpu_tests 60 "$PY" -m pytest -q -m "gpu or tensorrt" -p no:cacheprovider -rs
if [ "$QUICK" = 1 ]; then
    SUITE=(tests/test_trt_sharpener.py tests/test_bench_cli.py)
else
    SUITE=()
fi
XDIST=()
if "$PY" -c "import xdist" 2>/dev/null; then XDIST=(-n 8); fi
step all_tests 180 "$PY" -m pytest -q -x -p no:cacheprovider "${XDIST[@]}" "${SUITE[@]}"

BUDGET=1
[ "$QUICK" = 1 ] && BUDGET=0.3
step bench 150 "$PY" -m benchmarks.cli --device "$DEVICE" --no-quality --no-video --no-live \
    --models fast quality --budget "$BUDGET" -o "$OUT/bench"

SAMPLES=1024
[ "$QUICK" = 1 ] && SAMPLES=64
TRAIN_DIR=$(mktemp -d)
step train 90 "$PY" -m kd_trainer.cli --config fast "device=$DEVICE" \
    "train_dir=kd_trainer/assets/samples" "val_dir=kd_trainer/assets/samples" "out_dir=$TRAIN_DIR" name=gpu-check \
    epochs=1 "samples_per_epoch=$SAMPLES" batch_size=16 val_presets=gauss0.5,gauss1.5,downup2,jpeg30,clean \
    threads=4 --no-progress
cp "$TRAIN_DIR/gpu-check/summary.json" "$OUT/train-summary.json" 2>/dev/null
rm -rf "$TRAIN_DIR"
rm -f "$OUT/bench/pareto.png"  # the device tool returns at most 8 files; benchmark.json holds the plotted numbers

echo "== summary (exit status per step; 124: ran past its limit)"
failed=0
for name in install gpu_tests all_tests bench train; do
    [ -n "${STATUS[$name]+set}" ] || continue
    echo "$name: ${STATUS[$name]}"
    [ "${STATUS[$name]}" = 0 ] || failed=1
done
exit $failed
