r"""Speed of full-ranking evaluation on Baby-shaped data.

Times the evaluation of *all* users of Amazon Baby (19,445 users, 7,050 items,
the real training / validation / test interactions) with random ``d = 64``
embeddings:

(a) the one-shot :func:`pyg_brmrs.evaluation.full_ranking_metrics` (builds its
    masks on every call),
(b) a reused :class:`pyg_brmrs.evaluation.RankingEvaluator` (masks built once,
    as the Trainer does every epoch), and
(c) for reference, our top-K followed by PyG's ``LinkPredMetricCollection``.

Median of ``--runs`` runs after one warm-up, ``torch.set_num_threads(2)``.
Writes ``benchmarks/results/bench_eval.json`` and ``.md``.

    python benchmarks/bench_eval.py [--data PATH/baby_jclaf_derived.tsv]
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (Path(os.environ['PYG_BRMRS_DATA'])
                if 'PYG_BRMRS_DATA' in os.environ else ROOT.parent / 'shared'
                / 'data') / 'amazon-baby-jclaf' / 'baby_jclaf_derived.tsv'
TARGET_S = 1.3


def timed(fn, runs):
    r"""Wall-clock seconds of :obj:`runs` calls after one warm-up, and the
    median CPU seconds (all threads of this process) per call."""
    fn()  # warm-up
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, statistics.median(cpu), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', type=Path, default=ROOT / 'benchmarks' /
                        'results' / 'bench_eval')
    args = parser.parse_args(argv)

    if not args.data.is_file():
        print(f'SKIP: {args.data} not found (the Amazon Baby interactions, '
              f'see ../shared/data/INDEX.md; or pass --data)')
        return 0
    import pandas as pd

    from pyg_brmrs.evaluation import (
        RankingEvaluator,
        full_ranking_metrics,
        topk_items,
    )
    from torch_geometric.metrics import (
        LinkPredMAP,
        LinkPredMetricCollection,
        LinkPredNDCG,
        LinkPredPrecision,
        LinkPredRecall,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    df = pd.read_csv(args.data, sep='\t')
    split = {
        name: torch.tensor(df[df.x_label == label][['userID', 'itemID']]
                           .values.T).to(device)
        for label, name in ((0, 'train'), (1, 'valid'), (2, 'test'))
    }
    num_users, num_items = int(df.userID.max()) + 1, int(df.itemID.max()) + 1
    user_emb = torch.randn(num_users, args.dim, device=device)
    item_emb = torch.randn(num_items, args.dim, device=device)
    ks = (10, 20)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    load_before = os.getloadavg()
    rows = []
    for name in ('valid', 'test'):
        train, held = split['train'], split[name]
        n_eval = held[0].unique().numel()

        def one_shot():
            out = full_ranking_metrics(user_emb, item_emb, train, held, ks,
                                       batch_size=args.batch_size)
            sync()
            return out

        t_a, cpu_a, out_a = timed(one_shot, args.runs)

        t_init, cpu_init, _ = timed(lambda: RankingEvaluator(
            train, held, num_items, ks, batch_size=args.batch_size),
            args.runs)
        evaluator = RankingEvaluator(train, held, num_items, ks,
                                     batch_size=args.batch_size)

        def reused():
            out = evaluator(user_emb, item_emb)
            sync()
            return out

        t_b, cpu_b, out_b = timed(reused, args.runs)
        assert out_a == out_b

        users = held[0].unique()
        label_index = torch.stack([torch.searchsorted(users, held[0]),
                                   held[1]])
        collection = LinkPredMetricCollection(
            [cls(k) for cls in (LinkPredRecall, LinkPredNDCG,
                                LinkPredPrecision, LinkPredMAP)
             for k in ks]).to(device)

        def pyg_path():
            collection.reset()
            pred = topk_items(user_emb, item_emb, users, max(ks),
                              train_edge_index=train,
                              batch_size=args.batch_size)
            collection.update(pred, label_index)
            out = collection.compute()
            sync()
            return out

        t_c, cpu_c, out_c = timed(pyg_path, args.runs)
        diff = abs(float(out_c['LinkPredRecall@20']) - out_a['recall@20'])
        assert diff < 1e-5, diff
        for label, times, cpu in (
                ('(a) full_ranking_metrics (one-shot)', t_a, cpu_a),
                ('(b) RankingEvaluator call (reused)', t_b, cpu_b),
                ('(c) topk_items + PyG LinkPredMetricCollection', t_c,
                 cpu_c),
                ('    RankingEvaluator build (once)', t_init, cpu_init)):
            rows.append({
                'split': name, 'method': label, 'users': n_eval,
                'median_s': statistics.median(times), 'min_s': min(times),
                'max_s': max(times), 'cpu_s': cpu, 'runs': times,
            })
    load_after = os.getloadavg()

    info = {
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'command': ' '.join(shlex.quote(a) for a in [
            'python', 'benchmarks/bench_eval.py'] + list(
                sys.argv[1:] if argv is None else argv)),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'platform': platform.platform(),
        'cpu': cpu_model(),
        'cpu_count': os.cpu_count(),
        'device': str(device) if device.type != 'cuda' else
        torch.cuda.get_device_name(device),
        'torch_threads': torch.get_num_threads(),
        'loadavg_before': load_before,
        'loadavg_after': load_after,
        'data': str(args.data.name),
        'num_users': num_users,
        'num_items': num_items,
        'dim': args.dim,
        'batch_size': args.batch_size,
        'ks': list(ks),
        'target_s': TARGET_S,
    }

    header = f"{'split':6} {'method':48} {'users':>6} {'median s':>9} " \
             f"{'min s':>7} {'max s':>7} {'CPU s':>7}"
    print(header)
    print('-' * len(header))
    for r in rows:
        print(f"{r['split']:6} {r['method']:48} {r['users']:6d} "
              f"{r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['cpu_s']:7.3f}")
    print(f"load average before/after: {load_before} / {load_after}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix('.json'), 'w') as f:
        json.dump({'info': info, 'results': rows}, f, indent=2)
    md = [
        '# Full-ranking evaluation speed (Baby-shaped)', '',
        f"Command: `{info['command']}`  ",
        f"Date: {info['date']}; {info['cpu']} ({info['cpu_count']} CPUs), "
        f"device {info['device']}, torch {info['torch']} with "
        f"{info['torch_threads']} threads, Python {info['python']}.  ",
        f"Data: real Baby interactions ({info['data']}), {num_users} users, "
        f"{num_items} items, random d={args.dim} embeddings, K={list(ks)}, "
        f"batch_size={args.batch_size}; median of {args.runs} runs after a "
        f"warm-up. Target: <= {TARGET_S} s for all users.  ",
        f"Load average (1/5/15 min) before {load_before}, after "
        f"{load_after}: the machine is shared, so wall times are noisy. "
        f"'CPU s' is the median process CPU time per call (all threads).",
        '',
        '| split | method | users | median s | min s | max s | CPU s |',
        '|---|---|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
        md.append(f"| {r['split']} | {r['method'].strip()} | {r['users']} | "
                  f"{r['median_s']:.3f} | {r['min_s']:.3f} | "
                  f"{r['max_s']:.3f} | {r['cpu_s']:.3f} |")
    with open(args.out.with_suffix('.md'), 'w') as f:
        f.write('\n'.join(md) + '\n')
    print(f"wrote {args.out.with_suffix('.json')} and .md")
    return 0


if __name__ == '__main__':
    sys.exit(main())
