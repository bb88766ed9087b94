#!/usr/bin/env bash
# Every GPU check of issue 18 in one prepared run of at most about 10 minutes, for a fresh CUDA machine that has
# torch and triton (bpcompile's other dependencies on PYTHONPATH, e.g. carried wheels): the kernel tests on the
# GPU (TRITON_INTERPRET=0), the LC, feedback-product (fp32 and tf32) and
# difference-target benchmarks, the rule-epoch benchmark, and
# the ImageNet LC net's peak memory at batch 256 (estimate against torch.cuda.max_memory_allocated).
# Every result lands in one folder, at most 9 files, named for benchmarks/results/ (copy them there to commit):
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default benchmarks/results/gpu_check; $OUT on the device tool)
# Each step has its own time limit, so one that hangs or fails leaves the others' results; the exit status is
# that of the last failing step.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-benchmarks/results/gpu_check}}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
DEV=$("$PYTHON" -c "import sys; sys.path.insert(0, 'benchmarks'); import torch; from timing import short_device_name; print(short_device_name(torch.device('cuda')))") || exit 1
status=0
step() {      # step SECONDS LOGNAME COMMAND...
    local limit=$1 name=$2; shift 2
    echo "== $name ($limit s): $*" | tee -a "$OUT_DIR/gpu_check.log"
    timeout "$limit" "$@" >> "$OUT_DIR/gpu_check.log" 2>&1 || { echo "   $name failed: exit $?" | tee -a "$OUT_DIR/gpu_check.log"; status=1; }
}
step 100 kernel-tests "$PYTHON" -m pytest -q -p no:logging tests/test_kernels_lc.py tests/test_kernels_feedback.py \
    tests/test_kernels_target.py
# torch.compile of unfold + einsum is left out here (lc_h100_compile.json has it at batch 128): it is the slow impl
step 180 lc "$PYTHON" benchmarks/lc.py --batches 32,128,256 \
    --impls unfold_einsum,reference,triton,triton_cl,triton_cells \
    --out "$OUT_DIR/lc_$DEV.json"
step 45 feedback "$PYTHON" benchmarks/feedback.py --out "$OUT_DIR/feedback_$DEV.json"
step 45 feedback-tf32 "$PYTHON" benchmarks/feedback.py --precision tf32 --out "$OUT_DIR/feedback_${DEV}_tf32.json"
step 45 target "$PYTHON" benchmarks/target.py --out "$OUT_DIR/target_$DEV.json"
step 110 epoch "$PYTHON" benchmarks/epoch.py --device cuda --nets mnist_fc,mnist_lc --steps 100 --repeats 1 \
    --out "$OUT_DIR/epoch_$DEV.json"
step 75 memory "$PYTHON" benchmarks/memory.py --device cuda --out "$OUT_DIR/memory_$DEV.json"
ls -la "$OUT_DIR"
exit $status
