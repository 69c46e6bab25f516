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
#    --device cuda, and the full-ranking evaluation benchmark;
# 3. scale-out: the DDP tests with nccl (two GPUs), a torchrun launch of
#    the CLI on every GPU, bench_scale.py up to 1M users/items on the GPU
#    and bench_ann.py at 1M; one summary table at the end.
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

# 3. Scale-out (issue 13): the data-parallel tests with nccl on two GPUs
#    (skipped with a reason on a one-GPU machine, where the gloo version
#    of the same tests ran in step 1), a torchrun launch of the CLI over
#    every GPU present, and the 1M scale benchmark on the first GPU.
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
PYG_BRMRS_DDP_DEVICE=cuda "$PY" -m pytest -q -rs tests/utils/test_distributed.py \
  2>&1 | tail -n 8 | tee "$RESULTS_DIR/ddp_nccl_tests.txt"
DDP_RUN="$RESULTS_DIR/ddp_run"
rm -rf "$DDP_RUN"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" \
  -m pyg_brmrs train --model brmrs_paper --synthetic --epochs 3 \
  --device cuda --output-dir "$DDP_RUN" 2>&1 | tail -n 12 \
  | tee "$RESULTS_DIR/ddp_torchrun.txt"
"$PY" -W ignore benchmarks/bench_scale.py --device cuda \
  --sizes 100000 300000 1000000 --eval-users 1000000 --steps 5 \
  --name bench_scale_cuda 2>&1 | tail -n 12 | tee "$RESULTS_DIR/bench_scale_cuda.txt"
"$PY" -W ignore benchmarks/bench_ann.py --sizes 1000000 --threads 16 \
  --skip-real --name bench_ann_gpu_machine 2>&1 | tail -n 10 \
  | tee "$RESULTS_DIR/bench_ann.txt"

# One table of the scale-out checks:
"$PY" - "$RESULTS_DIR" "$NGPU" <<'PYEOF'
import json, pathlib, sys
out, ngpu = pathlib.Path(sys.argv[1]), sys.argv[2]
rows = [('GPUs', ngpu)]
def last(name):
    p = out / name
    lines = p.read_text().strip().splitlines() if p.exists() else []
    return lines[-1] if lines else 'missing'
rows.append(('DDP tests (nccl, 2 GPUs)', last('ddp_nccl_tests.txt')))
res = out / 'ddp_run' / 'results.json'
if res.exists():
    r = json.loads(res.read_text())
    rows.append(('torchrun train world_size', r.get('world_size')))
    rows.append(('torchrun train test recall@20',
                 r.get('test', {}).get('recall@20')))
else:
    rows.append(('torchrun train', 'no results.json'))
scale = out / 'bench_scale_cuda.json'
if scale.exists():
    for r in json.loads(scale.read_text())['results']:
        if 'error' in r:
            rows.append((f"scale n={r['n']:,}", r['error']))
            continue
        rows.append((f"scale n={r['n']:,}",
                     f"graph {r['graph_s']:.1f}s, epoch {r['epoch_s']:.0f}s, "
                     f"eval {r['eval_full_s']:.1f}s, GPU peak "
                     f"{max(r.get(k + '_gpu_peak_mb', 0) for k in ('graph', 'steps', 'eval')):.0f} MB"))
ann = out / 'bench_ann_gpu_machine.json'
if ann.exists():
    for r in json.loads(ann.read_text())['results']:
        if 'recall' in r:
            rows.append((f"ANN {r['spec']['index']} n={r['n']:,}",
                         f"recall {r['recall']:.4f}, {r['build_s']:.1f}s"))
print('\n| check | result |\n|---|---|')
for a, b in rows:
    print(f'| {a} | {b} |')
PYEOF
