r"""Neighbour-sampling speed: :class:`~pyg_brmrs.loader.PairNeighborLoader`
on the pure-torch :class:`~pyg_brmrs.loader.TorchNeighborSampler` against
PyG's compiled sampler (torch-sparse or pyg-lib, when installed), batches
interleaved, median seconds per batch.

    python benchmarks/bench_sampler.py --users 20000 --items 30000 \
        --batch 2048 --fanout 10 10 --batches 15 --threads 1

Writes ``results/bench_sampler.json`` and ``.md``.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, report  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--users', type=int, default=20000)
    parser.add_argument('--items', type=int, default=30000)
    parser.add_argument('--interactions', type=float, default=10.0,
                        help='mean extra interactions per user')
    parser.add_argument('--batch', type=int, default=2048)
    parser.add_argument('--fanout', type=int, nargs='+', default=[10, 10])
    parser.add_argument('--candidates', type=int, default=17,
                        help='items drawn per pair (16 CHNS + 1 uniform)')
    parser.add_argument('--batches', type=int, default=15)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pyg_brmrs.data import make_synthetic
    from pyg_brmrs.loader import PairNeighborLoader, sampling_backend
    data = make_synthetic(args.users, args.items, feature_dim=8, seed=0,
                          mean_extra_interactions=args.interactions)
    backends = ['torch'] + (['pyg'] if sampling_backend() else [])
    loaders = {b: PairNeighborLoader(data, args.fanout, edge_types=(),
                                     backend=b) for b in backends}
    num_pairs = data['user', 'rates', 'item'].edge_index.size(1)
    times = {b: [] for b in backends}
    sizes = {b: [] for b in backends}
    g = torch.Generator().manual_seed(0)
    for n in range(args.batches + 1):
        index = torch.randint(num_pairs, (args.batch, ), generator=g)
        items = torch.randint(args.items, (args.batch, args.candidates),
                              generator=g)
        for b in backends:
            torch.manual_seed(n)
            t0 = time.perf_counter()
            batch = loaders[b](index, items)
            dt = time.perf_counter() - t0
            if n > 0:  # the first batch warms up
                times[b].append(dt)
                sizes[b].append(batch.data['user'].num_nodes +
                                batch.data['item'].num_nodes)
    results = [{'backend': b if b == 'torch' else sampling_backend(),
                'median_s': statistics.median(times[b]),
                'mean_nodes': statistics.mean(sizes[b])}
               for b in backends]
    base = results[0]['median_s']
    rows = [[r['backend'], f"{r['median_s']:.4f}", f"{r['mean_nodes']:.0f}",
             f"{r['median_s'] / base:.2f}"] for r in results]
    md = (f"{args.users} users, {args.items} items, {num_pairs} "
          f"interactions; batches of {args.batch} pairs + "
          f"{args.candidates} items each, fan-out {args.fanout}, "
          f"{args.batches} batches per sampler, interleaved.\n\n" +
          markdown_table(['sampler', 's / batch (median)', 'nodes / batch',
                          'time vs torch'], rows))
    return report('bench_sampler', results, md, threads=args.threads,
                  args=vars(args))


if __name__ == '__main__':
    sys.exit(main())
