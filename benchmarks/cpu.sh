#!/usr/bin/env bash
# Every CPU speed figure of the README's "Measured" section and benchmarks/results/README.md, in one command
# (about 90 minutes on 2 cores; run it on a quiet machine): each rule's epoch against BP's, startup and
# compile times with the whole-process comparison against a plain loop, one epoch against the plain loop, and the
# Inductor backend against plain FX execution.
#   bash benchmarks/cpu.sh [DATA_DIR]          (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${1:-../shared/data}"
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" benchmarks/epoch.py --nets mnist_fc --repeats 5 --out benchmarks/results/epoch_cpu_fc.json
"$PYTHON" benchmarks/epoch.py --nets mnist_lc --repeats 1 --out benchmarks/results/epoch_cpu_lc.json
# train.backend 'inductor' (torch.compile of the step graphs) against 'fx', one thread per run
"$PYTHON" benchmarks/epoch.py --nets mnist_fc --backends fx,inductor --repeats 3 --threads 1 \
    --out benchmarks/results/backend_cpu_fc.json
"$PYTHON" benchmarks/epoch.py --nets mnist_lc --backends fx,inductor --repeats 1 --steps 100 --threads 1 \
    --out benchmarks/results/backend_cpu_lc.json
"$PYTHON" benchmarks/lc.py --device cpu --layers mnist_lc1,mnist_lc2,cifar_lc1,cifar_lc2,cifar_lc3 --batches 128 \
    --impls unfold_einsum,reference,compile --warmup 2 --iters 10 --threads 2 --out benchmarks/results/lc_cpu.json
"$PYTHON" benchmarks/startup.py --data-dir "$DATA_DIR" --repeats 3 --out benchmarks/results/startup_cpu.json
"$PYTHON" benchmarks/epoch_vs_plain.py --data-dir "$DATA_DIR" --out benchmarks/results/epoch_vs_plain_cpu.json
