r"""Training with MMRec's protocol: :class:`Trainer` (the loop),
:class:`TrainConfig` / :class:`TrainResult` (what it is asked and what it
returns), :mod:`~pyg_brmrs.training.state` (checkpoints, random
generators, resume), :mod:`~pyg_brmrs.training.batching` (full-graph or
neighbour-sampled steps) and :mod:`~pyg_brmrs.training.ddp` (data-parallel
training).

.. code-block:: python

    from pyg_brmrs.training import Checkpoints, Trainer, TrainConfig

    model = BRMRS.from_data(data)
    objective = BRMRSObjective.from_data(data)
    trainer = Trainer(model, objective, data, TrainConfig(epochs=100),
                      checkpoints=Checkpoints('runs/x'))
    result = trainer.fit()
    result.test          # {'recall@20': ..., 'ndcg@20': ...}
"""
from .config import RESUMABLE, TrainConfig, TrainResult, environment_info
from .optim import make_adam
from .state import Checkpoints, seed_everything, state_dict_problem
from .trainer import Trainer

__all__ = [
    'Trainer',
    'TrainConfig',
    'TrainResult',
    'Checkpoints',
    'RESUMABLE',
    'make_adam',
    'seed_everything',
    'state_dict_problem',
    'environment_info',
]
