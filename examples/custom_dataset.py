r"""Your own data: from a pandas DataFrame with string ids and per-item feature
arrays to BR-MRS top-10 recommendations with the original ids.

    python examples/custom_dataset.py

Steps:

1. An interaction log ``(user, item)`` with arbitrary ids (here strings such
   as ``"user_0007"`` / ``"sku_00042"``; generated at random in this script)
   and one feature matrix per modality whose rows follow the items in
   **sorted id order** (here random arrays; use your image / text / audio
   embeddings).
2. :func:`pyg_brmrs.data.mmrec_split` assigns train / valid / test labels per
   user with MMRec's rule (skip it if your log already has a split column).
3. :func:`pyg_brmrs.data.from_interactions` with ``reindex=True`` maps the
   ids to ``0..n-1`` (kept in ``data['user'].raw_id`` /
   ``data['item'].raw_id``) and validates everything.
4. :func:`pyg_brmrs.app.recipes.prepare` / :func:`~pyg_brmrs.app.recipes.build` and
   :class:`~pyg_brmrs.training.Trainer` train BR-MRS (briefly here).
5. :func:`pyg_brmrs.evaluation.topk_items` ranks all items for a user with
   the fused branch, training items masked, and the dense ids are mapped
   back to the original ones.

With random features the modality branches have nothing to learn from; the
point is the data path. Any number (>= 2) of modalities works the same way.
"""
import argparse
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from pyg_brmrs.app import recipes
from pyg_brmrs.data import from_interactions, mmrec_split
from pyg_brmrs.evaluation import topk_items
from pyg_brmrs.training import TrainConfig, Trainer


def make_log(num_users: int, num_items: int, seed: int = 0) -> pd.DataFrame:
    r"""A random interaction log with string ids (popular items are more
    likely; every user has at least 5 interactions)."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.5, num_items) + 1.0
    popularity /= popularity.sum()
    rows = []
    for u in range(num_users):
        n = min(num_items, 5 + rng.poisson(8))
        items = rng.choice(num_items, size=n, replace=False, p=popularity)
        rows += [(f'user_{u:04d}', f'sku_{i:05d}') for i in items]
    return pd.DataFrame(rows, columns=['user', 'item'])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--users', type=int, default=300)
    parser.add_argument('--items', type=int, default=200)
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    # 1. The interaction log and the item features. Feature row k belongs
    #    to the k-th smallest item id, so build them indexed by item id.
    log = make_log(args.users, args.items)
    item_ids = np.sort(log['item'].unique())
    rng = np.random.default_rng(1)
    features = {
        'image': pd.DataFrame(rng.normal(size=(len(item_ids), 64)),
                              index=item_ids),
        'text': pd.DataFrame(rng.normal(size=(len(item_ids), 32)),
                             index=item_ids),
    }
    # If your features come in another item order, align them first:
    features = {m: f.loc[item_ids].to_numpy(np.float32)
                for m, f in features.items()}

    # 2. MMRec's per-user split: 0 = train, 1 = valid, 2 = test.
    log['x_label'] = mmrec_split(log, user_col='user', seed=999)

    # 3. The HeteroData (ids re-indexed, originals kept in .raw_id).
    data = from_interactions(log, features=features, reindex=True,
                             user_col='user', item_col='item')
    print(f"{len(log)} interactions of {data['user'].num_nodes} users on "
          f"{data['item'].num_nodes} items; modalities "
          f"{sorted(features)}")

    # 4. Train BR-MRS (small graphs for a small dataset).
    data = recipes.prepare('brmrs', data, k_item=5, k_user=10)
    model, objective = recipes.build('brmrs', data, fusion='concat')
    config = TrainConfig(epochs=args.epochs, batch_size=512,
                         device=args.device, seed=0)
    result = Trainer(model, objective, data, config).fit()
    print(f"trained {result.epochs_run} epochs; test Recall@20 "
          f"{result.test['recall@20']:.4f} (best validation epoch "
          f"{result.best_epoch})")

    # 5. Top-10 for one user, by original id.
    user_ids = list(data['user'].raw_id)       # dense id -> original id
    item_raw = list(data['item'].raw_id)
    user = 'user_0007'
    u = user_ids.index(user)
    out = model.embed(data)                    # fused branch ranks
    train = data['user', 'rates', 'item'].edge_index
    top = topk_items(out.user_emb, out.item_emb, torch.tensor([u]), 10,
                     train_edge_index=train)[0]
    seen = sorted(log.loc[(log.user == user) & (log.x_label == 0), 'item'])
    print(f"{user} bought (train): {', '.join(seen)}")
    print(f"top-10 for {user}: "
          f"{', '.join(item_raw[i] for i in top.tolist() if i >= 0)}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
