r"""Scale benchmark: graph build, one training epoch and full-ranking
evaluation of BR-MRS (the paper's recipe ``brmrs_paper``) on synthetic
catalogues of ``n`` users and ``n`` items, with time and peak memory.

Data (``make_data``): every user has 1 + Poisson(7) training items drawn
from a log-normal popularity (sigma 1), one validation and one test item;
two modalities (``image``, ``text``) of 64-d clustered features (1,000
Gaussian centres, as in ``bench_ann.py``).

Phases, each measured by the CPU time of the process
(``time.process_time``: on a loaded machine the wall time mostly measures
the other jobs; with one thread CPU time is what an idle machine's wall
time would be; the wall times are in the JSON) and by the peak RSS of the
process during the phase (``VmHWM`` after a reset through ``/proc/self/clear_refs``;
``+MB`` = peak minus the RSS at the start of the phase):

* ``graph``: ``HomogeneousKNNGraph(knn="faiss", topk="combined",
  cooccurrence="jaccard")`` with the transform's k (item 10, user 40) and
  alphas, both graphs;
* ``epoch``: ``--steps`` training steps (batch 2048, after one warm-up
  step) of the ``brmrs_paper`` recipe (64-d, 2 layers, CHNS with 16
  candidates), **extrapolated** to the ceil(E / 2048) steps of one epoch;
* ``eval``: full-ranking validation (all items, training items masked,
  ``max_scores`` = 2**27 as in the trainer) of ``--eval-users`` users
  (all when fewer), **extrapolated** linearly to all users.

Usage::

    python benchmarks/bench_scale.py --sizes 100000 300000 1000000
    python benchmarks/bench_scale.py --sizes 100000 --threads 1
    python benchmarks/bench_scale.py --memory-model   # the 10M / 100M table
    # full-graph vs neighbour-sampled steps (needs torch-sparse or pyg-lib):
    python benchmarks/bench_scale.py --compare-batching --sizes 1000000 \
        --random-graphs --steps 3 --threads 1 --batch-sizes 2048 256
    # peak memory of the chunked scorers against the chunk size:
    python benchmarks/bench_scale.py --chunks --n 1000000

**Chunked scorers** (``--chunks``): peak memory of the full-ranking
evaluation (:class:`~pyg_brmrs.evaluation.RankingEvaluator`,
``max_scores``) and of the CHNS candidate scoring
(:class:`~pyg_brmrs.sampling.CrossModalHardNegativeSampler`,
``max_gather``) against their chunk size, at ``--n`` users x ``--n`` items
of the same catalogue (training pairs only; random 64-d embeddings, since
the cost does not depend on their values), each configuration in a fresh
process; ``+MB`` is the memory the scorer itself needs, times are CPU
seconds: evaluation ranks the validation pairs of ``--eval-users`` sampled
users against all items (users in batches of 4096, items in blocks so that
at most ``max_scores`` scores exist at once); CHNS scores ``--chns-batch``
users with ``--candidates`` candidates each in the two modality branches,
gathering at most ``max_gather`` candidate rows at once (``none``: the
whole batch).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

EVAL_MAX_SCORES = 1 << 27
CUDA = [False]  # whether the worker runs on a GPU


def rss(field: str = 'VmRSS') -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float('nan')


def reset_peak() -> None:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def clock() -> float:
    r"""CPU seconds of this process on the CPU, wall seconds on a GPU."""
    return time.perf_counter() if CUDA[0] else time.process_time()


def mb(r: dict, phase: str) -> str:
    out = f"{r[phase + '_peak_mb']:.0f}"
    if phase + '_gpu_peak_mb' in r:
        out += f" / GPU {r[phase + '_gpu_peak_mb']:.0f}"
    return out


class Phase:
    def __init__(self, out, name):
        self.out, self.name = out, name

    def __enter__(self):
        reset_peak()
        if CUDA[0]:
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.base = rss()
        self.t = time.perf_counter()
        self.cpu = clock()
        return self

    def __exit__(self, *exc):
        if CUDA[0]:
            import torch
            torch.cuda.synchronize()
            self.out[f'{self.name}_gpu_peak_mb'] = \
                torch.cuda.max_memory_allocated() / 2**20
        self.out[f'{self.name}_wall_s'] = time.perf_counter() - self.t
        self.out[f'{self.name}_s'] = clock() - self.cpu
        peak = rss('VmHWM')
        self.out[f'{self.name}_peak_mb'] = peak
        self.out[f'{self.name}_extra_mb'] = peak - self.base


def make_interactions(n: int, seed: int = 0):
    r"""The catalogue's interactions: :obj:`n` users and items, every user
    with 1 + Poisson(7) training items drawn from a log-normal popularity
    (sigma 1), one validation and one test item (dropped where it is a
    training item). A :class:`HeteroData` without features."""
    import numpy as np
    import torch
    from torch_geometric.data import HeteroData
    rng = np.random.default_rng(seed)
    pop = rng.lognormal(0.0, 1.0, n)
    pop /= pop.sum()
    deg = 1 + rng.poisson(7, n)
    users = np.repeat(np.arange(n), deg)
    items = rng.choice(n, size=users.size, p=pop)
    key = np.unique(users.astype(np.int64) * n + items)
    held = rng.integers(0, n, (2, n))
    data = HeteroData()
    data['user'].num_nodes = n
    data['item'].num_nodes = n
    store = data['user', 'rates', 'item']
    store.edge_index = torch.from_numpy(np.stack([key // n, key % n]))
    for split, row in (('val', 0), ('test', 1)):
        hk = np.arange(n, dtype=np.int64) * n + held[row]
        keep = ~np.isin(hk, key)  # held-out pairs never in training
        store[f'{split}_edge_index'] = torch.from_numpy(
            np.stack([np.arange(n)[keep], held[row][keep]]))
    return data


def make_data(n: int, dim: int = 64, seed: int = 0):
    r""":func:`make_interactions` with two modalities (``image``, ``text``)
    of :obj:`dim`-d clustered features."""
    from bench_ann import clustered
    data = make_interactions(n, seed)
    for t, m in enumerate(('image', 'text')):
        data['item'][f'x_{m}'] = clustered(n, dim, seed=seed + 1 + t)
    return data


def random_knn_graphs(data, k_item: int = 10, k_user: int = 40,
                      seed: int = 0) -> None:
    r"""Puts kNN graphs of the transform's sizes into :obj:`data`: every
    node receives :obj:`k` edges from uniformly drawn other nodes, weight
    :math:`1/k`. A stand-in where only the sizes matter (memory and time
    of training, not which neighbours), without the faiss build."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for t, k in (('item', k_item), ('user', k_user)):
        n = int(data[t].num_nodes)
        dst = torch.arange(n).repeat_interleave(k)
        src = (dst + torch.randint(1, n, (n * k, ), generator=g)) % n
        store = data[t, 'similar', t]
        store.edge_index = torch.stack([src, dst])
        store.edge_weight = torch.full((n * k, ), 1.0 / k)


def worker(spec):
    import torch
    torch.set_num_threads(spec['threads'])
    from pyg_brmrs.app import recipes
    from pyg_brmrs.evaluation import RankingEvaluator
    from pyg_brmrs.training import Trainer, TrainConfig
    n = spec['n']
    device = spec.get('device', 'cpu')
    CUDA[0] = device.startswith('cuda')
    out = dict(n=n, device=device)
    with Phase(out, 'data'):
        data = make_data(n).to(device)
    store = data['user', 'rates', 'item']
    out['train_edges'] = int(store.edge_index.size(1))
    name = spec.get('model', 'brmrs_paper')
    batching = spec.get('batching', 'full')
    bs = spec.get('batch_size', 2048)
    params = dict(knn='faiss', num_layers=2)
    if spec.get('knn_kwargs'):
        params['knn_kwargs'] = spec['knn_kwargs']
    if name == 'lightgcn':
        params = dict(num_layers=2)
    elif spec.get('random_graphs'):
        with Phase(out, 'graph'):
            random_knn_graphs(data)
    else:
        with Phase(out, 'graph'):
            data = recipes.prepare(name, data, **params)
    for key, t in (('item', ('item', 'similar', 'item')),
                   ('user', ('user', 'similar', 'user'))):
        if t in data.edge_types:
            out[f'{key}_graph_edges'] = int(data[t].edge_index.size(1))
    if spec.get('graph_only'):
        return out

    torch.manual_seed(0)
    with Phase(out, 'model'):
        model, objective = recipes.build(name, data, **params)
        loader = None
        if batching == 'neighbor':
            from pyg_brmrs.loader import (
                PairNeighborLoader,
                flatten_draws,
                unflatten_draws,
            )
            loader = PairNeighborLoader(  # as the Trainer builds it
                data, spec['num_neighbors'],
                edge_types=model.graph_edge_types)
    trainer = Trainer(model, objective, data,
                      TrainConfig(device=device, batch_size=bs,
                                  num_threads=spec['threads'],
                                  distributed=False))
    gen = torch.Generator().manual_seed(0)
    steps = spec['steps']
    seen = dict(users=0, items=0)
    edge_index = store.edge_index
    batches = torch.randperm(edge_index.size(1), generator=gen)[
        :(steps + 1) * bs].to(device).split(bs)

    def step(idx):
        users = edge_index[0, idx]
        if loader is None:
            terms = objective(model, data, users, edge_index[1, idx])
        else:  # as Trainer(batching='neighbor') steps
            flat, layout = flatten_draws(objective.draw(users))
            b = loader(idx, flat).to(device)
            seen['users'] += b.data['user'].num_nodes
            seen['items'] += b.data['item'].num_nodes
            terms = objective(model, b.data, b.users, b.pos_items,
                              negatives=unflatten_draws(b.items, layout))
        trainer.optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        trainer.optimizer.step()

    model.train()
    step(batches[0])  # warm-up (caches, allocator)
    with Phase(out, 'steps'):
        for idx in batches[1:]:
            step(idx)
    out['step_s'] = out['steps_s'] / steps
    if loader is not None:  # the mean batch, counting the warm-up step's
        out['batch_users'] = seen['users'] / (steps + 1)
        out['batch_items'] = seen['items'] / (steps + 1)
    out['batch_size'] = bs
    out['steps_per_epoch'] = math.ceil(out['train_edges'] / bs)
    out['epoch_s'] = out['step_s'] * out['steps_per_epoch']
    if not spec.get('eval', True):
        return out

    val = store.val_edge_index
    users = val[0].unique()
    k = min(spec['eval_users'], users.numel())
    chosen = users[torch.randperm(users.numel(), generator=gen)[:k]]
    mask = torch.zeros(n, dtype=torch.bool, device=val.device)
    mask[chosen.to(val.device)] = True
    sub = val[:, mask[val[0]]]
    with Phase(out, 'eval'):
        emb = model.embed(data)
        t = clock()
        evaluator = RankingEvaluator(edge_index, sub, n, ks=(10, 20),
                                     max_scores=EVAL_MAX_SCORES)
        evaluator(emb.user_emb, emb.item_emb)
        if CUDA[0]:
            torch.cuda.synchronize()
        rank_s = clock() - t
    out['eval_users'] = k
    out['eval_embed_s'] = out['eval_s'] - rank_s
    out['eval_full_s'] = out['eval_embed_s'] + rank_s * users.numel() / k
    return out


def catalogue(n: int, seed: int = 0):
    r"""The training pairs ``[2, E]`` and the validation pairs of
    ``bench_scale``'s catalogue (:func:`bench_scale.make_interactions`)."""
    store = make_interactions(n, seed)['user', 'rates', 'item']
    return store.edge_index, store.val_edge_index


def chunks_worker(spec):
    import torch
    torch.set_num_threads(spec['threads'])
    n = spec['n']
    train, val = catalogue(n)
    gen = torch.Generator().manual_seed(0)
    out = dict(n=n, kind=spec['kind'], chunk=spec['chunk'])
    if spec['kind'] == 'eval':
        from pyg_brmrs.evaluation import RankingEvaluator
        users = val[0]
        k = min(spec['eval_users'], users.numel())
        chosen = users[torch.randperm(users.numel(), generator=gen)[:k]]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[chosen] = True
        sub = val[:, mask[val[0]]]
        user_emb = torch.randn(n, 64, generator=gen)
        item_emb = torch.randn(n, 64, generator=gen)
        evaluator = RankingEvaluator(train, sub, n, ks=(10, 20),
                                     max_scores=spec['chunk'])
        base = rss()
        reset_peak()
        t = time.process_time()
        res = evaluator(user_emb, item_emb)
        out['s'] = time.process_time() - t
        out['users'] = k
        out['recall@20'] = res['recall@20']
    else:
        from pyg_brmrs.sampling import CrossModalHardNegativeSampler
        sampler = CrossModalHardNegativeSampler(
            train, n, num_candidates=spec['candidates'], num_users=n,
            generator=gen, max_gather=spec['chunk'])
        names = ('image', 'text')  # the objective's 'cross' branches
        user_emb = {b: torch.randn(n, 64, generator=gen) for b in names}
        item_emb = {b: torch.randn(n, 64, generator=gen) for b in names}
        users = train[0, torch.randint(train.size(1), (spec['batch'], ),
                                       generator=gen)]
        base = rss()
        reset_peak()
        t = time.process_time()
        sampler(users, user_emb, item_emb)
        out['s'] = time.process_time() - t
        out['batch'] = spec['batch']
        out['candidates'] = spec['candidates']
    out['extra_mb'] = rss('VmHWM') - base
    return out


def compare_chunks(args) -> int:
    r"""``--chunks``: peak memory of the two chunked scorers against their
    chunk size (see the module description), each in a fresh process."""
    results, rows = [], []
    specs = [dict(kind='eval', chunk=m, eval_users=args.eval_users)
             for m in args.max_scores]
    specs += [dict(kind='chns', chunk=None if g == 'none' else int(g),
                   batch=args.chns_batch, candidates=args.candidates)
              for g in args.max_gather]
    for spec in specs:
        spec.update(n=args.n, threads=args.threads, chunks=True)
        print(f"  {spec['kind']} chunk={spec['chunk']} ...", flush=True)
        r = _common.run_worker(__file__, spec)
        r.update(kind=spec['kind'], chunk=spec['chunk'])
        results.append(r)
        chunk = 'whole batch' if spec['chunk'] is None else \
            f"{spec['chunk']:,}"
        if 'error' in r:
            rows.append([spec['kind'], chunk, r['error'], '', '', ''])
            continue
        if spec['kind'] == 'eval':
            what = f"{r['users']:,} users x {args.n:,} items"
            bound = spec['chunk'] * 4 / 2**20
        else:
            what = (f"{r['batch']:,} users x {r['candidates']} candidates "
                    f"x 2 branches")
            bound = (r['batch'] * r['candidates'] if spec['chunk'] is None
                     else spec['chunk']) * 64 * 4 / 2**20
        rows.append(['evaluation (max_scores)' if spec['kind'] == 'eval'
                     else 'CHNS scoring (max_gather)', chunk, what,
                     f"{r['s']:.1f}", f"{r['extra_mb']:.0f}",
                     f'{bound:.1f}'])
    table = _common.markdown_table(
        ['scorer', 'chunk', 'work', 'CPU s', 'peak +MB',
         'chunk buffer MB (scores or gathered rows x 64 x 4 B)'], rows)
    notes = (f'\n\n{args.n:,} users x {args.n:,} items (synthetic, '
             f'bench_scale catalogue), d = 64, {args.threads} thread(s). '
             'peak +MB = peak RSS during the call minus the RSS before '
             'it (embeddings, masks and the sampler\'s index are allocated '
             'before). The last column is the size of the largest '
             'buffer the chunk allows: one score block for the '
             'evaluation, one gather of candidate rows for CHNS.\n')
    return _common.report(args.name or 'bench_chunks', results,
                          table + notes,
                          threads=args.threads)


def launch(spec):
    print(f"  n={spec['n']:,} ...", flush=True)
    res = _common.run_worker(__file__, spec)
    if 'error' in res:
        return dict(res, n=spec['n'])
    print('   ', {k: round(v, 2) if isinstance(v, float) else v
                  for k, v in res.items()}, flush=True)
    return res


# --------------------------------------------------------------------------
# Memory model
# --------------------------------------------------------------------------
def memory_model(nodes: int, d: int = 64, layers: int = 2, modalities: int = 2,
                 feat: int = 64, deg: float = 8.0, k_item: int = 10,
                 k_user: int = 40) -> dict:
    r"""GB of one training process of ``brmrs_paper`` with ``nodes / 2``
    users and items (float32, int64 indices), by part. See
    benchmarks/README.md for the derivation."""
    u = i = nodes / 2
    gb = 1e-9
    channels = modalities + 1  # unimodal branches + the fused one
    params = (u * modalities * d + modalities * feat * d) * 4
    optim = 3 * params  # grad + Adam's two moments
    feats = i * modalities * feat * 4
    # Propagation: every layer's output of every channel is kept for the
    # backward pass, for users and items, plus the mean:
    acts = (layers + 2) * modalities * (u + i) * d * 4
    fused = 2 * (u + i) * d * channels * 4 / channels  # fused tables
    e_ui = deg * u
    edges = 2 * e_ui + k_item * i + k_user * u  # directed, both graphs
    graphs = edges * (8 + 4) * 2  # CSR index + weight, cached transpose
    eval_ = EVAL_MAX_SCORES * 4 + u * 20 * 12
    total = params + optim + feats + acts + fused + graphs + eval_
    return {k: v * gb for k, v in dict(
        parameters=params, grad_adam=optim, features=feats,
        activations=acts + fused, graphs=graphs, evaluation=eval_,
        total=total).items()}


def compare_batching(args) -> int:
    r"""Full-graph vs neighbour-sampled training steps per size, model and
    batch size: step time (extrapolated to an epoch), peak memory and the
    mean size of a sampled batch."""
    fanout = [int(v) for v in args.num_neighbors.split(',')]
    results, rows = [], []
    for n in args.sizes:
        for model in args.models:
            for bs in args.batch_sizes:
                for batching in ('full', 'neighbor'):
                    print(f'  {model} {batching} batch {bs}', flush=True)
                    r = launch(dict(n=n, threads=args.threads,
                                    device=args.device, steps=args.steps,
                                    model=model, batching=batching,
                                    batch_size=bs, num_neighbors=fanout,
                                    eval=False,
                                    random_graphs=args.random_graphs,
                                    knn_kwargs=args.knn_kwargs))
                    r.update(model=model, batching=batching, batch_size=bs)
                    results.append(r)
                    label = batching if batching == 'full' else \
                        f'neighbor {args.num_neighbors}'
                    if 'error' in r:
                        rows.append([f'{n:,}', model, label, bs, r['error'],
                                     '', '', '', '', ''])
                        continue
                    nodes = ''
                    if 'batch_users' in r:
                        nodes = (f"{r['batch_users']:,.0f} / "
                                 f"{r['batch_items']:,.0f} "
                                 f"({100 * r['batch_users'] / n:.0f} % / "
                                 f"{100 * r['batch_items'] / n:.0f} %)")
                    rows.append([
                        f'{n:,}', model, label, bs, f"{r['step_s']:.3f}",
                        f"{r['epoch_s']:.0f}", nodes,
                        f"{r['model_peak_mb']:.0f}", mb(r, 'steps'),
                        f"{r['steps_extra_mb']:.0f}"])
    table = _common.markdown_table(
        ['users = items', 'model', 'batching', 'batch', 's / step',
         'epoch s (extrapolated)', 'batch users / items (share of all)',
         'build peak MB', 'train peak MB', 'train +MB'], rows)
    graphs = ('random kNN graphs of the transform\'s sizes (item k=10, '
              'user k=40; `--random-graphs`: only their size matters here)'
              if args.random_graphs else 'faiss kNN graphs')
    notes = (
        f'\n\nSynthetic catalogue (`make_data`), {graphs}; '
        f'{args.steps} measured steps after one warm-up step, '
        f'{args.threads} thread(s), {args.device}; times are CPU seconds of '
        'the process (wall in the JSON); epoch = s / step x ceil(pairs / '
        'batch). "build peak" is the peak RSS after building the model, '
        'objective and (neighbour mode) the loader with its copy of the '
        'graph; "train peak" the peak RSS during the steps (data, graphs, '
        'model, optimizer state included) and "train +MB" that peak minus '
        'the RSS before the steps. A neighbour batch\'s item seeds are the '
        'pair\'s positive item, its CHNS candidates and its uniform '
        'negative (LightGCN: positive and negative), and every hop samples '
        'every edge type the model reads. Evaluation is full-graph and '
        'chunked in both modes (see bench_scale.md).\n')
    return _common.report(args.name or 'bench_scale_batching', results,
                          table + notes, threads=args.threads,
                          num_neighbors=fanout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--worker')
    parser.add_argument('--sizes', type=int, nargs='*',
                        default=[100000, 300000, 1000000])
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--eval-users', type=int, default=20000)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--graph-only', type=int, nargs='*', default=[],
                        help='sizes for which only data + graph are run')
    parser.add_argument('--knn-kwargs', type=json.loads, default=None,
                        help='JSON knn_kwargs of HomogeneousKNNGraph '
                        '(default: the transform\'s faiss defaults)')
    parser.add_argument('--memory-model', action='store_true')
    parser.add_argument('--compare-batching', action='store_true',
                        help='training steps only, full-graph vs '
                        'neighbour-sampled, for --models')
    parser.add_argument('--models', nargs='+',
                        default=['lightgcn', 'brmrs_paper'])
    parser.add_argument('--num-neighbors', default='10,10')
    parser.add_argument('--batch-sizes', type=int, nargs='+',
                        default=[2048],
                        help='training batch sizes for --compare-batching')
    parser.add_argument('--random-graphs', action='store_true',
                        help='random kNN graphs of the transform\'s sizes '
                        'instead of the faiss build')
    parser.add_argument('--chunks', action='store_true',
                        help='peak memory of the chunked evaluation and CHNS '
                        'scoring against the chunk size at --n users')
    parser.add_argument('--n', type=int, default=1_000_000,
                        help='users = items of --chunks')
    parser.add_argument('--max-scores', type=int, nargs='+',
                        default=[1 << 22, 1 << 24, 1 << 26, 1 << 28])
    parser.add_argument('--chns-batch', type=int, default=16384)
    parser.add_argument('--candidates', type=int, default=256)
    parser.add_argument('--max-gather', nargs='+',
                        default=['none', str(1 << 16), str(1 << 18),
                                 str(1 << 20)])
    parser.add_argument('--name', default=None)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        run = chunks_worker if spec.get('chunks') else worker
        print('RESULT ' + json.dumps(run(spec)))
        return 0
    if args.compare_batching:
        return compare_batching(args)
    if args.chunks:
        return compare_chunks(args)
    args.name = args.name or 'bench_scale'
    if args.memory_model:
        rows = []
        for nodes in (10**6, 10**7, 10**8):
            m = memory_model(nodes)
            rows.append([f'{nodes:.0e}'] + [f'{v:.1f}' for v in m.values()])
        print(_common.markdown_table(
            ['nodes', 'params', 'grad+Adam', 'features', 'activations',
             'graphs', 'eval', 'total GB'], rows))
        return 0

    results = []
    for n in args.sizes:
        results.append(launch(dict(n=n, threads=args.threads,
                                   device=args.device,
                                   steps=args.steps,
                                   eval_users=args.eval_users,
                                   graph_only=n in args.graph_only,
                                   random_graphs=args.random_graphs,
                                   knn_kwargs=args.knn_kwargs)))
    rows = []
    for r in results:
        if 'error' in r:
            rows.append([f"{r['n']:,}", r['error']] + [''] * 7)
            continue
        has_train = 'epoch_s' in r
        rows.append([
            f"{r['n']:,}", f"{r['train_edges']:,}",
            f"{r['graph_s']:.1f}", mb(r, 'graph'),
            f"{r['epoch_s']:.0f} ({r['step_s']:.2f}/step)" if has_train
            else 'not run',
            mb(r, 'steps') if has_train else '',
            f"{r['eval_full_s']:.0f} ({r['eval_users']:,} users)"
            if has_train else 'not run',
            mb(r, 'eval') if has_train else ''])
    table = _common.markdown_table(
        ['users = items', 'train pairs', 'graph s', 'graph peak MB',
         'epoch s (extrapolated)', 'train peak MB', 'eval s (extrapolated)',
         'eval peak MB'], rows)
    graphs = (
        'random kNN graphs of the transform\'s sizes (`--random-graphs`: '
        'the graph columns time the stand-in, not a build)'
        if args.random_graphs else 'faiss IVF-Flat, knn_kwargs ' + (
            json.dumps(args.knn_kwargs) if args.knn_kwargs else 'defaults'))
    notes = (
        f'\n\nGraphs: {graphs}. '
        f'{args.device}, {args.threads} CPU thread(s) (on a GPU times '
        'are wall seconds and peak MB = RSS / GPU allocated); on the CPU '
        'times are CPU seconds of the benchmark process (a shared machine '
        'inflates wall times; they are in the JSON). Epoch = '
        f'{args.steps} measured steps x steps per epoch; eval = embedding '
        'once + ranking time of the sampled users x all users / sampled. '
        'Peak MB = peak RSS of the benchmark process during the phase '
        '(the data and, after the graph phase, the graphs included).\n')
    return _common.report(args.name, results, table + notes,
                          threads=args.threads)


if __name__ == '__main__':
    sys.exit(main())
