r"""How one training step computes its loss on a batch of training pairs:
on the full graph, or on the neighbour-sampled subgraph of the pairs."""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_brmrs.loader import (
    PairNeighborLoader,
    flatten_draws,
    unflatten_draws,
)
from pyg_brmrs.objectives import Objective


class FullGraphSteps:
    r"""Every step runs the model on the whole graph:
    ``objective(model, data, users, pos_items)``."""
    def start_epoch(self, seed: int) -> None:
        r"""Called before every epoch with that epoch's sampling seed."""

    def __call__(self, model: torch.nn.Module, objective: Objective,
                 data: HeteroData, index: Tensor, users: Tensor,
                 pos_items: Tensor) -> Dict[str, Tensor]:
        return objective(model, data, users, pos_items)


class NeighborSteps(FullGraphSteps):
    r"""Every step runs the model on the subgraph of its pairs sampled by
    :class:`~pyg_brmrs.loader.PairNeighborLoader`: the objective's random
    items are drawn first (global ids), added to the batch's item seeds,
    and the step runs on the batch's local ids. PyG's neighbour samplers
    draw from torch's global generator, which :meth:`start_epoch` seeds.

    Args:
        data (HeteroData): The dataset (sampled on the CPU from the
            caller's tensors).
        num_neighbors (Sequence[int]): The fan-out per hop.
        edge_types (Sequence[tuple], optional): The kNN graphs to sample
            (the model's ``graph_edge_types``).
        device (torch.device): Where the batches go.
    """
    def __init__(self, data: HeteroData, num_neighbors: Sequence[int],
                 edge_types: Optional[Sequence[Tuple[str, str, str]]],
                 device: torch.device):
        self.loader = PairNeighborLoader(data, num_neighbors,
                                         edge_types=edge_types)
        self.device = device

    def start_epoch(self, seed: int) -> None:
        torch.manual_seed(seed)

    def __call__(self, model, objective, data, index, users, pos_items):
        draws = objective.draw(users)
        if draws:
            flat, layout = flatten_draws(draws)
        else:  # an objective without negatives: the pairs' nodes only
            flat, layout = None, []
        batch = self.loader(index, flat).to(self.device)
        negatives = unflatten_draws(batch.items, layout)
        return objective(model, batch.data, batch.users, batch.pos_items,
                         negatives=negatives)


def make_steps(config, data: HeteroData, model: torch.nn.Module,
               device: torch.device, distributed: bool = False):
    r"""The steps of :obj:`config.batching`: :class:`FullGraphSteps` or
    :class:`NeighborSteps` (which sample only the kNN graphs the model
    reads, its ``graph_edge_types``).

    Raises:
        ValueError: for neighbour batching with several processes (not
            supported yet), or of a model that runs on the full graph only
            (:attr:`~pyg_brmrs.nn.Recommender.supports_subgraph`).
    """
    if config.batching != 'neighbor':
        return FullGraphSteps()
    if not getattr(model, 'supports_subgraph', True):
        raise ValueError(f"TrainConfig(batching='neighbor') runs the model on "
                         f"sampled subgraphs, but "
                         f"'{model.__class__.__name__}' computes every "
                         f"representation from the whole graph: train it "
                         f"with batching='full'")
    if distributed:
        raise ValueError("TrainConfig(batching='neighbor') trains in one "
                         "process; it is not supported with distributed "
                         "training yet")
    return NeighborSteps(data, config.num_neighbors,
                         getattr(model, 'graph_edge_types', None), device)
