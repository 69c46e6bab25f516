r"""Parity of the baselines ported from their authors' own repositories
(not MMRec) with that code, on the shared TikTok split.

The authors' model and loss code is imported from a checkout *outside*
this repository (``--repo DIR``) and run under its own interpreter
(``--python``: an environment with its dependencies, e.g. dgl, plus
torch_geometric so that the split and the metrics are the package's);
nothing of it is copied here. The authors' training scripts are loops over
their model and loss with a fixed number of epochs and test metrics logged
as they go; this script runs the same loop (their optimiser, learning-rate
schedule, batch size, initialisation, loss and regulariser, each named in
:data:`POINTS`) with the package's protocol around it: validation Recall@20
after every epoch, early stopping after 20 epochs without improvement, test
metrics at the best validation epoch, the same evaluator as the package's
runs. Ours runs the package's recipe at the same point through
``quality.py run`` (tag ``parity_<model>``).

    # the reference: one process per seed, each finished seed kept
    python benchmarks/parity_authors.py reference --model mgdn \
        --repo ~/Torch-MGDCF --python ~/dgl-env/bin/python
    # ours at the same point
    python benchmarks/parity_authors.py ours --model mgdn --threads 1
    # the table -> results/parity_authors.md
    python benchmarks/parity_authors.py table

Parity as in ``parity_mmrec.py``: our three-seed mean of test Recall@20
and NDCG@20 within 5 % of the reference's, or within two of our seed
standard deviations, whichever is wider.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_tiktok, machine_info  # noqa: E402
from parity_mmrec import mean_std, pending_row  # noqa: E402

SEEDS = [999, 1000, 1001]
PATIENCE = 20
MAX_EPOCHS = 1000

#: Every model's parity point: the authors' repository, the settings of
#: their training script (their defaults, which are their published
#: commands), and our recipe's parameters at that point (the recipe's
#: defaults are the same settings).
POINTS: Dict[str, Dict] = {
    'mgdn': dict(
        repo='CrawlScript/Torch-MGDCF',
        reference={'embedding_size': 64, 'lr': 1e-2, 'l2_coef': 1e-4,
                   'lr_decay': 0.98, 'k': 4, 'alpha': 0.1, 'beta': 0.9,
                   'x_drop_rate': 0.3, 'edge_drop_rate': 0.5,
                   'z_drop_rate': 0.1, 'num_negs': 300,
                   'batch_size': 8000},
        ours={}),
    # ApeGNN_HT as run.sh runs it (--pool sum --e 1e-7) with the parser's
    # defaults (dim 64, l2 1e-4, lr 1e-3, batch 1024, 3 hops, rns, no
    # dropouts; cuda off here)
    'apegnn': dict(
        repo='THUDM/ApeGNN',
        reference={'dim': 64, 'l2': 1e-4, 'lr': 1e-3, 'batch_size': 1024,
                   'context_hops': 3, 'pool': 'sum', 'e': 1e-7,
                   'mess_dropout': False, 'mess_dropout_rate': 0.1,
                   'edge_dropout': False, 'edge_dropout_rate': 0.1,
                   'ns': 'rns', 'K': 1, 'n_negs': 64, 'heatkernel': False,
                   't_u': 2, 't_i': 2, 'cuda': False},
        ours={'kernel': 'heat', 'num_layers': 3}),
    # MIG-GT's Baby configuration (the recipe's defaults)
    'miggt': dict(
        repo='CrawlScript/MIG-GT',
        reference={'lr': 1e-2, 'lr_decay': 0.99, 'lr_decay_min': 0.0,
                   'l2_coef': 1e-5, 'batch_size': 8000, 'num_negs': 1,
                   'embedding_size': 64, 'feat_hidden_units': 512,
                   'k_e': 4, 'k_t': 2, 'k_v': 1, 'alpha': 0.1, 'beta': 0.9,
                   'input_feat_drop_rate': 0.3, 'feat_drop_rate': 0.3,
                   'user_x_drop_rate': 0.3, 'item_x_drop_rate': 0.3,
                   'edge_drop_rate': 0.2, 'z_drop_rate': 0.2,
                   'use_rp': True, 'bn': True, 'use_item_emb': False,
                   'num_clusters': 5, 'num_samples': 10},
        ours={}),
    # MICRO's parser defaults (its README's command)
    'micro': dict(
        repo='CRIPAC-DIG/MICRO',
        reference={'lr': 5e-4, 'batch_size': 1024, 'regs': '[1e-5,1e-5,1e-2]',
                   'embed_size': 64, 'weight_size': '[64,64]', 'topk': 10,
                   'lambda_coeff': 0.9, 'cf_model': 'lightgcn', 'layers': 1,
                   'mess_dropout': '[0.1, 0.1]', 'sparse': 1,
                   'loss_ratio': 0.03, 'norm_type': 'sym'},
        ours={}),
}


# ----------------------------------------------------------------------
# The reference loops (run in the child process, under --python).
def mgdn_reference(data, settings: Dict, seed: int) -> Callable:
    r"""``main_mgdcf.py`` of Torch-MGDCF: embeddings ``randn / sqrt(d)``
    (numpy), their ``MGDCF`` layer on their homogeneous graph (self loops,
    both directions, duplicates merged), Adam on the embeddings only, their
    InfoBPR (negatives from all items) summed over a batch plus
    ``l2_coef`` times their L2 of the full outputs, the learning rate
    multiplied by ``lr_decay`` after every epoch, shuffled batches of
    ``batch_size`` training pairs (the last one partial). Returns one
    epoch's step and the scorer."""
    import numpy as np
    import torch
    from torch_mgdcf.layers.mgdcf import MGDCF
    from torch_mgdcf.losses import compute_info_bpr_loss, compute_l2_loss
    from torch_mgdcf.utils import create_tensor_dataloader

    s = settings
    store = data['user', 'rates', 'item']
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    edges = store.edge_index.t().numpy()
    g = MGDCF.build_homo_graph(edges, num_users=num_users,
                               num_items=num_items)
    dim = s['embedding_size']
    embeddings = torch.tensor(
        np.random.randn(g.num_nodes(), dim) / np.sqrt(dim),
        dtype=torch.float32, requires_grad=True)
    model = MGDCF(k=s['k'], alpha=s['alpha'], beta=s['beta'],
                  x_drop_rate=s['x_drop_rate'],
                  edge_drop_rate=s['edge_drop_rate'],
                  z_drop_rate=s['z_drop_rate'])
    loader = create_tensor_dataloader(torch.tensor(edges),
                                      batch_size=s['batch_size'],
                                      shuffle=True)
    optimizer = torch.optim.Adam([embeddings], lr=s['lr'])

    def forward():
        h = model(g, embeddings)
        return h[:num_users], h[num_users:]

    def epoch():
        model.train()
        for batch in loader:
            user_h, item_h = forward()
            loss = compute_info_bpr_loss(user_h, item_h, batch,
                                         num_negs=s['num_negs'],
                                         reduction='none').sum() + \
                compute_l2_loss([user_h, item_h]) * s['l2_coef']
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for group in optimizer.param_groups:
            group['lr'] = group['lr'] * s['lr_decay']

    @torch.no_grad()
    def embed():
        model.eval()
        return forward()

    return epoch, embed


def apegnn_reference(data, settings: Dict, seed: int) -> Callable:
    r"""``main.py`` of THUDM/ApeGNN with ``--gnn ApeGNN_HT`` (their
    ``run.sh``: ``--pool sum --e 1e-7``, the parser's defaults otherwise):
    their graph (``build_sparse_graph``: both directions, D^-1/2 A D^-1/2,
    the degrees for the diffusion times), their ``HeatKernel`` model and
    its BPR + L2 loss, Adam, the training pairs shuffled every epoch in
    batches of ``batch_size`` (the last partial batch skipped, as theirs),
    one negative per pair drawn by their ``get_feed_dict`` rule (uniform
    over the items the user has no training interaction with); scores
    ``model.generate()`` (pooled, no dropout)."""
    import argparse
    import random

    import numpy as np
    import torch
    from ApeGNN_HT import HeatKernel
    from utils import data_loader

    store = data['user', 'rates', 'item']
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    train_cf = store.edge_index.t().numpy().astype(np.int64)
    data_loader.n_users, data_loader.n_items = num_users, num_items
    norm_mat, deg, _ = data_loader.build_sparse_graph(train_cf)
    train_set = {}
    for u, i in train_cf:
        train_set.setdefault(int(u), set()).add(int(i))
    args = argparse.Namespace(**settings)
    model = HeatKernel({'n_users': num_users, 'n_items': num_items}, args,
                       norm_mat, deg)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    pairs = torch.from_numpy(train_cf)

    def negatives(users):
        out = []
        for u in users.tolist():
            while True:
                j = random.choice(range(num_items))
                if j not in train_set[u]:
                    break
            out.append([j])
        return torch.LongTensor(out)

    def epoch():
        model.train()
        index = np.arange(len(pairs))
        np.random.shuffle(index)
        shuffled = pairs[index]
        start = 0
        while start + args.batch_size <= len(shuffled):
            batch = shuffled[start:start + args.batch_size]
            loss, _, _ = model({'users': batch[:, 0],
                                'pos_items': batch[:, 1],
                                'neg_items': negatives(batch[:, 0])})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            start += args.batch_size

    @torch.no_grad()
    def embed():
        model.eval()
        return model.generate()

    return epoch, embed


def miggt_reference(data, settings: Dict, seed: int) -> Callable:
    r"""``main.py --method mig_gt`` of CrawlScript/MIG-GT with its Baby
    configuration (``load_masked_mm_mgdcf_default_config('baby')``; there
    is none for TikTok): MMRec's mapping (image as ``v_feat``, audio as
    ``t_feat``), ``v_feat`` randomly projected to ``t_feat``'s width
    (``use_rp``), their sorted homogeneous graph, user and item embeddings
    ``randn / sqrt(d)`` (numpy), their ``MIGGT`` layer, Adam over the
    embeddings and the layer, their InfoBPR (``num_negs`` from all items)
    summed plus ``l2_coef`` times the L2 of the full outputs plus the
    unsmooth term, the learning rate times ``lr_decay`` after every epoch
    while it stays above ``lr_decay_min``, shuffled batches of
    ``batch_size``."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from mig_gt.layers.mgdcf import MGDCF
    from mig_gt.layers.mirf_gt import MIGGT
    from mig_gt.layers.sign import random_project
    from mig_gt.losses import compute_info_bpr_loss, compute_l2_loss
    from mig_gt.utils.data_loader_utils import create_tensors_dataloader

    c = settings
    store = data['user', 'rates', 'item']
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    edges = store.edge_index.t().numpy()
    v_feat = data['item'].x_image.float()
    t_feat = data['item'].x_audio.float()
    if c['use_rp']:
        v_feat = random_project(v_feat, t_feat.size(-1))
    g = MGDCF.build_sorted_homo_graph(edges, num_users=num_users,
                                      num_items=num_items)
    dim = c['embedding_size']
    user_emb = torch.tensor(np.random.randn(num_users, dim) / np.sqrt(dim),
                            dtype=torch.float32, requires_grad=True)
    item_emb = torch.tensor(np.random.randn(num_items, dim) / np.sqrt(dim),
                            dtype=torch.float32, requires_grad=True)
    hidden = c['feat_hidden_units']
    model = MIGGT(
        k_e=c['k_e'], k_t=c['k_t'], k_v=c['k_v'], alpha=c['alpha'],
        beta=c['beta'], input_feat_drop_rate=c['input_feat_drop_rate'],
        feat_drop_rate=c['feat_drop_rate'],
        user_x_drop_rate=c['user_x_drop_rate'],
        item_x_drop_rate=c['item_x_drop_rate'],
        edge_drop_rate=c['edge_drop_rate'], z_drop_rate=c['z_drop_rate'],
        user_in_channels=dim, item_v_in_channels=v_feat.size(-1),
        item_v_hidden_channels_list=[hidden, dim],
        item_t_in_channels=t_feat.size(-1),
        item_t_hidden_channels_list=[hidden, dim], bn=c['bn'],
        num_clusters=c['num_clusters'], num_samples=c['num_samples'])
    loader = create_tensors_dataloader(torch.arange(len(edges)),
                                       torch.tensor(edges),
                                       batch_size=c['batch_size'],
                                       shuffle=True)
    optimizer = torch.optim.Adam([user_emb, item_emb] +
                                 list(model.parameters()), lr=c['lr'])

    def forward(return_all=False):
        out = model(g, user_emb, v_feat, t_feat,
                    item_embeddings=item_emb if c['use_item_emb'] else None,
                    return_all=return_all)
        h = out[0] if return_all else out
        return h[:num_users], h[num_users:], out

    def epoch():
        model.train()
        for _, batch in loader:
            with g.local_scope():
                user_h, item_h, out = forward(return_all=True)
                z_memory_h = out[-1]
                loss = compute_info_bpr_loss(
                    user_h, item_h, batch, num_negs=c['num_negs'],
                    reduction='none').sum() + \
                    compute_l2_loss([user_h, item_h]) * c['l2_coef']
                pos_user_h = user_h[batch[:, 0]]
                pos_z = z_memory_h[batch[:, 1] + num_users]
                logits = (pos_user_h.unsqueeze(1) @
                          pos_z.permute(0, 2, 1)).squeeze(1)
                loss = loss + F.cross_entropy(
                    logits, torch.zeros(batch.size(0), dtype=torch.long),
                    reduction='none').sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        for group in optimizer.param_groups:
            lr = group['lr'] * c['lr_decay']
            if lr >= c['lr_decay_min']:
                group['lr'] = lr

    @torch.no_grad()
    def embed():
        model.eval()
        user_h, item_h, _ = forward()
        return user_h, item_h

    return epoch, embed


def micro_reference(data, settings: Dict, seed: int) -> Callable:
    r"""``codes/main.py`` of CRIPAC-DIG/MICRO with its parser's defaults
    (its README's command, ``cf_model`` lightgcn): the split written in its
    layout (``<tmp>/tiktok/5-core/{train,val,test}.json``) and read by its
    ``Data`` (adjacency, sampler: one positive and one negative per user,
    users drawn without replacement, ``n_train // batch_size + 1`` batches
    per epoch), its ``MICRO`` model on the image and audio features (audio
    in the text slot), its ``Trainer.bpr_loss`` plus ``loss_ratio`` times
    the two contrastive terms, Adam with its ``0.96 ** (epoch / 50)``
    schedule, the item graphs rebuilt at the first batch of every epoch.
    MICRO moves tensors with ``.cuda()``; on this CPU run ``.cuda()`` is
    the identity."""
    import json as _json
    import tempfile
    import types

    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    store = data['user', 'rates', 'item']
    root = Path(tempfile.mkdtemp(prefix='micro_'))
    folder = root / 'tiktok' / '5-core'
    folder.mkdir(parents=True)
    for name, key in (('train', 'edge_index'), ('val', 'val_edge_index'),
                      ('test', 'test_edge_index')):
        lists: Dict[str, List[int]] = {}
        for u, i in store[key].t().tolist():
            lists.setdefault(str(u), []).append(i)
        (folder / f'{name}.json').write_text(_json.dumps(lists))
    sys.argv = ['main.py', '--dataset', 'tiktok', '--data_path',
                f'{root}/', *[x for k, v in settings.items()
                              for x in (f'--{k}', str(v))]]
    from main import Trainer
    from Models import MICRO
    from utility.load_data import Data
    from utility.parser import parse_args

    args = parse_args()
    gen = Data(path=args.data_path + args.dataset,
               batch_size=args.batch_size)
    _, norm_adj, _ = gen.get_adj_mat()
    adj = Trainer.sparse_mx_to_torch_sparse_tensor(None, norm_adj).float()
    image = data['item'].x_image.numpy()
    audio = data['item'].x_audio.numpy()
    model = MICRO(gen.n_users, gen.n_items, args.embed_size,
                  eval(args.weight_size), eval(args.mess_dropout), image,
                  audio)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda e: 0.96 ** (e / 50))
    loss_self = types.SimpleNamespace(batch_size=args.batch_size,
                                      decay=eval(args.regs)[0])

    def epoch():
        build = True
        for _ in range(gen.n_train // args.batch_size + 1):
            model.train()
            optimizer.zero_grad()
            users, pos, neg = gen.sample()
            ua, ia, image_emb, text_emb, fusion = model(
                adj, build_item_graph=build)
            build = False
            mf, emb, reg = Trainer.bpr_loss(loss_self, ua[users], ia[pos],
                                            ia[neg])
            contrastive = (model.batched_contrastive_loss(image_emb, fusion)
                           + model.batched_contrastive_loss(text_emb,
                                                            fusion))
            loss = mf + emb + reg + contrastive * args.loss_ratio
            loss.backward()
            optimizer.step()
        scheduler.step()

    @torch.no_grad()
    def embed():
        model.eval()
        ua, ia, *_ = model(adj, build_item_graph=True)
        return ua, ia

    return epoch, embed


REFERENCES = {'mgdn': mgdn_reference, 'apegnn': apegnn_reference,
              'miggt': miggt_reference, 'micro': micro_reference}


def child(args) -> int:
    r"""One seed of the reference (under the reference's interpreter)."""
    import random

    import numpy as np
    import torch

    from pyg_brmrs.evaluation import RankingEvaluator

    sys.path.insert(0, str(args.repo))
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    data = load_tiktok()
    store = data['user', 'rates', 'item']
    num_items = data['item'].num_nodes
    valid = RankingEvaluator(store.edge_index, store.val_edge_index,
                             num_items)
    test = RankingEvaluator(store.edge_index, store.test_edge_index,
                            num_items)
    settings = POINTS[args.model]['reference']
    epoch, embed = REFERENCES[args.model](data, settings, args.seed)
    best, best_epoch, history = None, -1, []
    start = time.time()
    for e in range(args.max_epochs):
        t = time.time()
        epoch()
        train_time = time.time() - t
        user, item = embed()
        v = valid(user, item)
        history.append({'epoch': e, 'valid_recall@20': v['recall@20'],
                        'train_time': train_time})
        print(f"epoch {e}: valid R@20 {v['recall@20']:.4f} "
              f'({train_time:.1f}s)', flush=True)
        if best is None or v['recall@20'] > best['valid']['recall@20']:
            best = {'valid': v, 'test': test(user, item)}
            best_epoch = e
        elif e - best_epoch >= PATIENCE:
            break
    out = {'seed': args.seed, 'best_epoch': best_epoch,
           'epochs_run': len(history), 'valid': best['valid'],
           'test': best['test'], 'history': history,
           'wall_time': time.time() - start, 'settings': settings}
    args.out.write_text(json.dumps(out, indent=1))
    return 0


# ----------------------------------------------------------------------
def repo_commit(repo: Path) -> str:
    r"""The checkout's commit (its ``COMMIT`` file for an exported tree)."""
    if (repo / 'COMMIT').is_file():
        return (repo / 'COMMIT').read_text().strip()
    try:
        return subprocess.run(['git', '-C', str(repo), 'rev-parse', 'HEAD'],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def reference(args) -> int:
    r"""The reference at the point, one child process per seed; a stopped
    run resumes at its first unfinished seed."""
    point = POINTS[args.model]
    partial = RESULTS / 'parity' / 'partial'
    partial.mkdir(parents=True, exist_ok=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    src = Path(__file__).resolve().parents[1] / 'src'
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join([str(src), str(args.repo)]))
    runs = []
    for seed in SEEDS:
        done = partial / f'{args.model}_authors_seed{seed}.json'
        if done.is_file() and not args.force and json.loads(
                done.read_text())['settings'] == point['reference']:
            print(f'{args.model} seed {seed}: reuse {done}', flush=True)
            runs.append(json.loads(done.read_text()))
            continue
        log = args.logs / f'{args.model}_authors_seed{seed}.log'
        with open(log, 'w') as f:
            rc = subprocess.run(
                [str(args.python), __file__, '_child', '--model',
                 args.model, '--repo', str(args.repo), '--seed', str(seed),
                 '--threads', str(args.threads), '--out', str(done)],
                stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc != 0 or not done.is_file():
            print(f'{args.model} seed {seed}: rc {rc}; log {log}')
            print(log.read_text()[-3000:])
            return 1
        run = json.loads(done.read_text())
        print(f"{args.model} seed {seed}: best epoch {run['best_epoch']}/"
              f"{run['epochs_run']}, test R@20 {run['test']['recall@20']:.4f}"
              f" N@20 {run['test']['ndcg@20']:.4f} "
              f"({run['wall_time']:.0f}s)", flush=True)
        runs.append(run)
    out = {
        'model': args.model, 'repo': point['repo'],
        'commit': repo_commit(args.repo), 'settings': point['reference'],
        'seeds': SEEDS, 'runs': [{k: v for k, v in r.items()
                                  if k != 'history'} for r in runs],
        'wall_time': sum(r['wall_time'] for r in runs),
        'threads': args.threads,
        'machine': machine_info('cpu', threads=args.threads),
    }
    path = RESULTS / 'parity' / f'{args.model}_authors.json'
    path.write_text(json.dumps(out, indent=1))
    print(f'wrote {path}')
    return 0


def ours(args, extra: List[str]) -> int:
    import quality
    return quality.main([
        'run', '--dataset', 'tiktok', '--model', args.model,
        '--tag', f'parity_{args.model}',
        '--params', json.dumps(POINTS[args.model]['ours']),
        '--seeds', *map(str, SEEDS), *extra])


def table(args) -> int:
    rows = ['| model | authors\' code | seeds | reference R@20 | ours R@20 | '
            'ref N@20 | ours N@20 | R@20 gap | N@20 gap | parity |',
            '|---|---|---|---|---|---|---|---|---|---|']
    notes = []
    for model, point in POINTS.items():
        ref_file = RESULTS / 'parity' / f'{model}_authors.json'
        ours_file = RESULTS / 'quality' / 'tiktok' / f'parity_{model}' / \
            'summary.json'
        if not ref_file.is_file() or not ours_file.is_file():
            rows.append(pending_row(model, ref_file, ours_file, '_authors'))
            continue
        ref = json.loads(ref_file.read_text())
        ours_ = json.loads(ours_file.read_text())
        cells, gaps, ok = [], [], True
        for metric in ('recall@20', 'ndcg@20'):
            r_mean, r_std = mean_std([r['test'][metric] for r in ref['runs']])
            o_mean, o_std = ours_['mean'][metric], ours_['std'][metric]
            ok = ok and abs(o_mean - r_mean) <= max(0.05 * r_mean,
                                                    2 * o_std)
            cells.append((f'{r_mean:.4f} ± {r_std:.4f}',
                          f'{o_mean:.4f} ± {o_std:.4f}'))
            gaps.append(f'{100 * (o_mean / r_mean - 1):+.1f} %')
        rows.append(f"| {model} | {point['repo']}@{ref['commit'][:10]} | "
                    f"{'/'.join(map(str, ref['seeds']))} | {cells[0][0]} | "
                    f"{cells[0][1]} | {cells[1][0]} | {cells[1][1]} | "
                    f"{gaps[0]} | {gaps[1]} | "
                    f"{'within' if ok else 'outside'} |")
        epochs = '/'.join(str(r['epochs_run']) for r in ref['runs'])
        notes.append(f"- `{model}`: reference settings "
                     f"`{json.dumps(ref['settings'])}` "
                     f"({ref['wall_time'] / 60:.0f} min, {ref['threads']} "
                     f"thread(s), epochs {epochs}); "
                     f"ours `{ours_['machine']['command']}`")
    text = '\n'.join([
        "# Parity with the authors' own code, TikTok", '',
        "The authors' model and loss code, imported from their repository "
        'and trained by their script\'s loop (optimiser, schedule, batch, '
        'initialisation, loss, regulariser), with the package\'s protocol '
        'around it: validation Recall@20 every epoch, early stopping after '
        f'{PATIENCE} epochs, test at the best validation epoch, the '
        "package's evaluator; ours is the package's recipe at the same "
        'point. Test Recall@20 / NDCG@20, mean ± std over seeds '
        f"{'/'.join(map(str, SEEDS))}. Parity: our mean within 5 % of the "
        "reference's or within two of our seed standard deviations, "
        'whichever is wider.', '', *rows, '', '## Commands', '', *notes])
    out = RESULTS / 'parity_authors.md'
    out.write_text(text + '\n')
    print(text)
    print(f'\nwrote {out}')
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('reference', help="the authors' code at the point")
    r.add_argument('--model', choices=sorted(POINTS), required=True)
    r.add_argument('--repo', type=Path, required=True,
                   help="the checkout of the authors' repository")
    r.add_argument('--python', type=Path, default=Path(sys.executable),
                   help='the interpreter of an environment with its '
                   'dependencies and torch_geometric')
    r.add_argument('--threads', type=int, default=1)
    r.add_argument('--logs', type=Path, default=Path('/tmp/authors_logs'))
    r.add_argument('--force', action='store_true',
                   help='rerun seeds whose result is kept')
    c = sub.add_parser('_child')
    c.add_argument('--model', choices=sorted(POINTS), required=True)
    c.add_argument('--repo', type=Path, required=True)
    c.add_argument('--seed', type=int, required=True)
    c.add_argument('--threads', type=int, default=1)
    c.add_argument('--out', type=Path, required=True)
    c.add_argument('--max-epochs', type=int, default=MAX_EPOCHS)
    o = sub.add_parser('ours', help='ours at the point (a quality run, tag '
                       'parity_<model>; quality.py run options pass through)')
    o.add_argument('--model', choices=sorted(POINTS), required=True)
    sub.add_parser('table', help='the parity table')
    args, extra = p.parse_known_args(argv)
    if args.cmd == 'ours':
        return ours(args, extra)
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return {'reference': reference, '_child': child,
            'table': table}[args.cmd](args)


if __name__ == '__main__':
    sys.exit(main())
