r"""A/B timings of the kernel choices inside a training step, on Baby-shaped
tensors: each choice against the one it replaced (or, for bf16, the fp32
default), timed in turn in ``--rounds`` rounds so that the machine's speed
drifting during the run reaches both alike.

* **CSR product** ``A @ X`` of :func:`pyg_brmrs.utils.sparse.csr_matmul`:
  MKL's sparse kernel into an uninitialised output (``torch.addmm`` with
  ``beta=0``) against ``torch.sparse.mm(reduce="sum")``, for the two
  halves of the user–item graph (Baby's training edges) at 64 and 128
  columns and a 40-nearest-neighbour user–user graph at 128 columns
  (random neighbours, Baby's user count); the largest absolute difference
  of the two results is reported.
* **Adam step** over ``brmrs_paper``'s Baby parameters (the ``[U, 2, 64]``
  user embeddings, the 4,096- and 384-d projections and their biases):
  torch's fused kernel (:func:`pyg_brmrs.training.make_adam`) against the
  element-wise one.
* **Mean fusion** of two ``[U, 64]`` user branches, forward and backward
  through an ``unbind`` of the ``[U, 2, 64]`` channels and a batch gather:
  the running sum of :class:`~pyg_brmrs.nn.MeanFusion` against a stack
  and mean.
* **Image projection** (7,050 × 4,096 features, 64 outputs), forward and
  weight gradient: the row stride of 4,097 of the extended features
  against 4,096, and bf16 (``projection_dtype``) against fp32.

    python benchmarks/bench_kernels.py --threads 1
    python benchmarks/bench_kernels.py --threads 2

Writes ``benchmarks/results/bench_kernels_<threads>t.json`` and ``.md``.
"""
import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    return 1000 * _common.median_time(fn, repeats, warmup=2)[0]


def sparse_cases(data):
    from pyg_brmrs.utils.sparse import BipartiteAdjacency, to_csr
    ei = data['user', 'rates', 'item'].edge_index
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    op = BipartiteAdjacency(ei, num_users, num_items)
    g = torch.Generator().manual_seed(0)
    k = 40
    uu = torch.stack([torch.randint(0, num_users, (num_users * k, ),
                                    generator=g),
                      torch.arange(num_users).repeat_interleave(k)])
    S = to_csr(uu, torch.rand(uu.size(1), generator=g) / k,
               (num_users, num_users))
    cases = []
    for name, A, cols in (('user-item R, 64 columns', op.R, 64),
                          ('user-item R^T, 64 columns', op.R_t, 64),
                          ('user-item R, 128 columns', op.R, 128),
                          ('user-item R^T, 128 columns', op.R_t, 128),
                          ('user-user (k=40), 128 columns', S, 128)):
        X = torch.randn(A.size(1), cols, generator=g)
        cases.append((name, A, X))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--name', default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = _common.load_baby(with_features=False)
    if data is None:
        return _common.skip('bench_kernels: the Baby data is absent')
    from pyg_brmrs.nn import MeanFusion
    from pyg_brmrs.training import make_adam
    num_users = data['user'].num_nodes
    num_items = data['item'].num_nodes

    pairs = []  # (kernel, new label, new fn, old label, old fn, check)
    if torch.backends.mkl.is_available():
        for name, A, X in sparse_cases(data):
            def mkl(A=A, X=X):
                return torch.addmm(X.new_empty(A.size(0), X.size(1)), A, X,
                                   beta=0)

            def reduce(A=A, X=X):
                return torch.sparse.mm(A, X, 'sum')

            def check(mkl=mkl, reduce=reduce):
                return float((mkl() - reduce()).abs().max())

            pairs.append((f'CSR product, {name}', 'MKL addmm (beta=0)', mkl,
                          'sparse.mm(reduce="sum")', reduce, check))

    g = torch.Generator().manual_seed(1)
    shapes = [(num_users, 2, 64), (64, 4096), (64, 384), (64, ), (64, )]

    def adam_step(fused):
        params = [torch.nn.Parameter(torch.randn(s, generator=g))
                  for s in shapes]
        opt = make_adam(params, lr=1e-3, fused=fused)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        return opt.step

    pairs.append(("Adam step, brmrs_paper's parameters", 'fused',
                  adam_step(None), 'element-wise', adam_step(False), None))

    channels = torch.randn(num_users, 2, 64, generator=g)
    batch = torch.randint(0, num_users, (2048, ), generator=g)
    fusion = MeanFusion(2, 64)

    def fuse(running):
        def run():
            c = channels.clone().requires_grad_()
            parts = c.unbind(1)
            fused = fusion(parts) if running else \
                torch.stack(list(parts)).mean(0)
            (fused[batch].sum() + parts[0][batch].sum() +
             parts[1][batch].sum()).backward()
        return run

    pairs.append(('mean fusion of two [U, 64] branches, fwd + bwd',
                  'running sum', fuse(True), 'stack + mean', fuse(False),
                  None))

    x_ext = torch.randn(num_items, 4097, generator=g)
    x_pow2 = x_ext[:, :4096].contiguous()
    w = torch.randn(64, 4097, generator=g)
    grad = torch.randn(num_items, 64, generator=g)
    pairs.append(('image projection weight gradient G^T X',
                  'row stride 4,097', lambda: grad.t() @ x_ext,
                  'row stride 4,096', lambda: grad.t() @ x_pow2, None))
    xb, wb, gb = x_ext.bfloat16(), w.bfloat16(), grad.bfloat16()
    pairs.append(('image projection forward X W^T', 'bf16',
                  lambda: (xb @ wb.t()).float(), 'fp32',
                  lambda: x_ext @ w.t(), None))
    pairs.append(('image projection weight gradient G^T X', 'bf16',
                  lambda: (gb.t() @ xb).float(), 'fp32',
                  lambda: grad.t() @ x_ext, None))

    rounds = []
    for r in range(args.rounds):
        row = [(median_ms(new, args.repeats), median_ms(old, args.repeats))
               for _, _, new, _, old, _ in pairs]
        rounds.append(row)
        print(f'round {r + 1}/{args.rounds}: ' + ', '.join(
            f'{a:.2f}/{b:.2f}' for a, b in row), flush=True)

    results, rows = [], []
    for j, (kernel, new_label, _, old_label, _, check) in enumerate(pairs):
        new_ms = statistics.median(r[j][0] for r in rounds)
        old_ms = statistics.median(r[j][1] for r in rounds)
        ratio = statistics.median(r[j][1] / r[j][0] for r in rounds)
        diff = check() if check is not None else None
        results.append(dict(kernel=kernel, new=new_label, old=old_label,
                            new_ms=new_ms, old_ms=old_ms, speedup=ratio,
                            max_abs_difference=diff,
                            rounds_ms=[r[j] for r in rounds]))
        rows.append([kernel, new_label, f'{new_ms:.2f}', old_label,
                     f'{old_ms:.2f}', f'{ratio:.2f}x',
                     '-' if diff is None else f'{diff:.1e}'])
    table = _common.markdown_table(
        ['kernel', 'choice', 'ms', 'against', 'ms', 'speed-up',
         'max |difference|'], rows)
    notes = (f"\n\n{args.threads} thread(s); {args.rounds} rounds, each "
             f"the median of {args.repeats} calls per side, wall clock; "
             "ms = median over the rounds, speed-up = median of the "
             "per-round ratios.")
    if not torch.backends.mkl.is_available():
        notes += ' This torch has no MKL: the CSR rows are left out.'
    return _common.report(args.name or f'bench_kernels_{args.threads}t',
                          results, table + notes + '\n',
                          threads=args.threads)


if __name__ == '__main__':
    sys.exit(main())
