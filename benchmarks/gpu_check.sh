#!/usr/bin/env bash
# One prepared GPU check: run from the repository root on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh            # results in benchmarks/results/gpu/
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. the tests marked `gpu` (CUDA vs CPU agreement of the conv, the kNN graph
#    transform, the baselines and the evaluation), then the whole suite on
#    the GPU machine's Python;
# 2. the training-speed benchmark on Baby-shaped data and TikTok with
#    --device cuda, and the full-ranking evaluation benchmark.
# The package is used from src/ (no install); the real data is read from
# $PYG_BRMRS_DATA (copy ../shared/data's amazon-baby-jclaf and tiktok-diffmm
# folders next to the checkout if they are not there).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR="${OUT:-benchmarks/results/gpu}"
mkdir -p "$RESULTS_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYG_BRMRS_RESULTS="$RESULTS_DIR"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.__version__, torch.cuda.get_device_name(0))' \
  | tee "$RESULTS_DIR/device.txt" || exit 1

"$PY" -m pytest -q -m gpu tests 2>&1 | tail -n 30 | tee "$RESULTS_DIR/gpu_tests.txt"
"$PY" -m pytest -q -x tests 2>&1 | tail -n 15 | tee "$RESULTS_DIR/all_tests.txt"

for ds in baby tiktok; do
  "$PY" -W ignore benchmarks/bench_train.py --dataset "$ds" --device cuda \
    --epochs 3 --out-name bench_train_cuda 2>&1 | tail -n 14 \
    | tee "$RESULTS_DIR/bench_train_cuda_$ds.txt"
done
"$PY" -W ignore benchmarks/bench_eval.py --device cuda \
  --out "$RESULTS_DIR/bench_eval_cuda" 2>&1 | tail -n 12 \
  | tee "$RESULTS_DIR/bench_eval_cuda.txt"
