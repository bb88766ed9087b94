#!/usr/bin/env bash
# Every MNIST LC cell of Bartunov et al.'s Table 1 and the BP ConvNet on one GPU, in one prepared run of at most
# about 9 minutes (issue 13): the ten cells at once on the one GPU (small nets: they share it), seed 0, up to
# EPOCHS epochs (default 20) in chunks of CHUNK (default 5) each resumed from the last one's checkpoint, no chunk
# begun that the previous chunk's time says would end after DEADLINE seconds (default 480). For a fresh CUDA
# machine with torch and triton, bpcompile's other dependencies on PYTHONPATH (e.g. carried wheels) and MNIST's
# four official files under DATA_DIR/mnist (carried with the working tree: ../shared does not travel).
#
#   bash results/bartunov_mnist/gpu.sh DATA_DIR [OUT_DIR]      (OUT_DIR: default $OUT, else results/bartunov_mnist/gpu_out)
#
# DEVICE=cpu, CELLS="..." and MAX_STEPS=N (train.max_steps_per_epoch) make a CPU smoke test of it
# (tests/test_bartunov_runner.py).
#
# OUT_DIR receives gpu.log and lc_runs_<device>.tar.gz, whose runs_<device>/<spec>/seed_0/ hold each run's
# spec.json, metrics.jsonl and summary.json. Here: tar -xzf OUT_DIR/lc_runs_<device>.tar.gz -C results/bartunov_mnist/
# then python -m bpcompile report results/bartunov_mnist/runs_<device> --out results/bartunov_mnist_<device>.md \
#        --reference results/reference/bartunov_table1.json
set -uo pipefail
cd "$(dirname "$0")/../.."
DATA_DIR="${1:-}"
if [ ! -d "$DATA_DIR/mnist" ]; then
    echo "gpu.sh: give the folder that holds mnist/ (MNIST's four official files) as the first argument; '$DATA_DIR/mnist' is not a folder" >&2
    exit 2
fi
OUT_DIR="${2:-${OUT:-results/bartunov_mnist/gpu_out}}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
DEVICE="${DEVICE:-cuda}"
DEV=$("$PYTHON" -c "import sys; sys.path.insert(0, 'benchmarks'); import torch; from timing import short_device_name; print(short_device_name(torch.device('$DEVICE')))") || exit 1
RUNS="$(mktemp -d)/runs_$DEV"
CELLS="${CELLS:-mnist_lc_bp mnist_lc_fa mnist_lc_dfa mnist_lc_dtp mnist_lc_dtp_parallel mnist_lc_sdtp mnist_lc_sdtp_parallel
       mnist_lc_ao_sdtp mnist_lc_ao_sdtp_parallel mnist_conv_bp}"
EPOCHS="${EPOCHS:-20}"
timeout $(( ${DEADLINE:-480} + 60 )) "$PYTHON" results/bartunov_mnist/run.py --data-dir "$DATA_DIR" --device "$DEVICE" \
    --only $CELLS --lc-epochs "$EPOCHS" --stability-epochs "$EPOCHS" --lc-seeds 0 --jobs 10 --threads 1 \
    --chunk-epochs "${CHUNK:-5}" --deadline "${DEADLINE:-480}" --runs "$RUNS" ${MAX_STEPS:+--max-steps "$MAX_STEPS"} \
    --no-report 2>&1 | tee "$OUT_DIR/gpu.log"
status=${PIPESTATUS[0]}
tar -czf "$OUT_DIR/lc_runs_$DEV.tar.gz" --exclude checkpoint.pt -C "$(dirname "$RUNS")" "runs_$DEV"
ls -la "$OUT_DIR"
exit "$status"
