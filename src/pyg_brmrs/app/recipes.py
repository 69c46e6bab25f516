r"""Named recipes: the model, objective and graph transform of every method
the package ships, with the recommended defaults, so that the CLI, the
examples and the benchmarks build them the same way.

.. code-block:: python

    from pyg_brmrs import recipes

    data = recipes.prepare('brmrs', data, k_item=10)      # adds the kNN graphs
    model, objective = recipes.build('brmrs', data, fusion='concat',
                                     lambda_s=0.5, num_candidates=16)

Every keyword is routed by name to the graph transform
(:class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`), the model constructor
or the objective (or its sampler); an unknown name raises a
:class:`ValueError` that lists the accepted ones. A name that several parts
accept is written with its part as a prefix (``model.embedding_dim``,
``objective.reg_weight``); otherwise it is refused as ambiguous.

A new method is one module holding its model (and objective) plus one
registration:

.. code-block:: python

    from pyg_brmrs.app.recipes import Recipe, register_recipe

    register_recipe('mymodel', Recipe(MyModel, BPRObjective, graphs=False,
                                      defaults=dict(reg_weight=1e-4),
                                      description='my baseline'))

after which ``pyg-brmrs train --model mymodel`` and
:func:`pyg_brmrs.app.experiment.train` build it like the built-in ones.
"""
import copy
import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    List,
    Optional,
    Tuple,
)

import torch
from torch_geometric.data import HeteroData

from pyg_brmrs.data.schema import ITEM_SIM, USER_SIM, Schema, canonical
from pyg_brmrs.nn import (
    BM3,
    BPRMF,
    BRMRS,
    DRAGON,
    DualGNN,
    FREEDOM,
    GRCN,
    LATTICE,
    MGCN,
    MGDN,
    MICRO,
    MIGGT,
    MMGCN,
    REARM,
    VBPR,
    ApeGNN,
    LGMRec,
    LightGCNRecommender,
    Recommender,
    SLMRec,
)
from pyg_brmrs.objectives import (
    BPRObjective,
    BRMRSObjective,
    InfoBPRObjective,
    NegativeFreeObjective,
    Objective,
    REARMObjective,
)
from pyg_brmrs.training import TrainConfig
from pyg_brmrs.transforms import HomogeneousKNNGraph
from pyg_brmrs.utils.registry import Registry


@dataclass
class Recipe:
    r"""How to build one method.

    Attributes:
        model (type): The :class:`~pyg_brmrs.nn.Recommender` class (built
            with its ``from_data``).
        objective (type): The :class:`~pyg_brmrs.objectives.Objective`
            class (built with its ``from_data``).
        graphs (bool): Whether the model uses the homogeneous kNN graphs.
        defaults (dict): Recommended values of any routed keyword.
        description (str): One line for the CLI's help.
        training (dict): The :class:`~pyg_brmrs.training.TrainConfig`
            settings the method's reference trains with where they differ
            from the defaults (*e.g.* MGCN's ``lr_decay=(0.96, 50)``),
            applied by :func:`train_config`.
    """
    model: type
    objective: type
    graphs: bool
    defaults: Dict[str, Any] = field(default_factory=dict)
    description: str = ''
    training: Dict[str, Any] = field(default_factory=dict)


#: REARM's published Baby graph settings (item k=10, user k=40,
#: alpha_item=0.2, alpha_user=0.4, image weight 0 for items, 0.2 for users).
REARM_BABY_GRAPH = dict(k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4,
                        modality_weights_item={'image': 0.0, 'text': 1.0},
                        modality_weights_user={'image': 0.2, 'text': 0.8})

#: REARM's construction of the homogeneous graphs
#: (:class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`): per-part top-k,
#: softmax co-occurrence lists padded as REARM pads them (a fixed seed, so
#: the graphs are a function of the data), the node itself in its
#: similarity lists, Baby's k and co-occurrence weights.
REARM_GRAPH: Dict[str, Any] = dict(
    k_item=10, k_user=40, alpha_item=0.2, alpha_user=0.4, topk='per_part',
    cooccurrence='softmax', normalization='sym', loop='similarity',
    padding='rearm', seed=0)

#: The model of the paper (``brmrs_paper``): each unimodal branch comes
#: from its modality alone (``id_mode='none'``: no ID embedding table;
#: ``user_mode='embedding'``: one free user embedding per modality), a fusion
#: whose score is not the sum of the branch scores, and the Eq. 1 graphs
#: with the top-k of the combined weight (overlap = Jaccard index). The
#: fusion, ``mean`` (its score holds the cross-modal terms
#: :math:`\langle \mathbf{p}^{(m)}, \mathbf{q}^{(m')} \rangle`), was chosen
#: on TikTok validation Recall@20 among ``mean``, ``gated``, ``attention``
#: and ``mlp`` (``benchmarks/README.md``).
PAPER_MODEL: Dict[str, Any] = dict(id_mode='none', user_mode='embedding',
                                   fusion='mean', topk='combined',
                                   cooccurrence='jaccard')

#: The tuned variant (``brmrs``) departs from the paper's model in five
#: settings, each chosen on TikTok validation in earlier exploration: a
#: shared ID embedding concatenated to every unimodal branch
#: (``id_mode='concat'``, so :math:`s_m = s_{\mathrm{ID}} +
#: s^{\mathrm{mod}}_m`), users' modality channels projected from the mean
#: features of their training items (``user_mode='profile'``), ``concat``
#: fusion (fused score = sum of the branch scores), per-part top-k graphs
#: (``topk='per_part'``) and REARM's co-occurrence (counts kept top-k and
#: softmax-normalised per row, ``cooccurrence='softmax'``) instead of the
#: paper's Jaccard index. The last two are the transform's defaults and the
#: first three differ from the :class:`~pyg_brmrs.nn.BRMRS` constructor's
#: (the paper's model), so the recipe states all five.
TUNED_MODEL: Dict[str, Any] = dict(id_mode='concat', user_mode='profile',
                                   fusion='concat', topk='per_part',
                                   cooccurrence='softmax')

#: The parts a recipe keyword can go to, in :func:`split_params`'s output
#: order.
PARTS = ('graph', 'model', 'objective')

_REGISTRY: Registry[Recipe] = Registry('model', 'unregister_recipe')
#: The registered recipes (name -> :class:`Recipe`; read it, change it with
#: :func:`register_recipe` and :func:`unregister_recipe`).
RECIPES: Dict[str, Recipe] = _REGISTRY.entries


def list_recipes() -> List[str]:
    r"""The registered recipe names, sorted."""
    return sorted(RECIPES)


#: Names that meant another recipe in results and run folders written
#: before :data:`RENAMED_BEFORE` (old name -> today's name of that recipe):
#: ``rearm`` was REARM's objective on the BR-MRS backbone until REARM's
#: model took the name.
RENAMED_RECIPES = {'rearm': 'rearm_objective_on_brmrs'}
#: The date (ISO) from which :data:`RENAMED_RECIPES`' old names mean the
#: recipes registered under them.
RENAMED_BEFORE = '2026-12-07T19:00:00'


def get_recipe(name: str) -> Recipe:
    r"""The :class:`Recipe` registered as :obj:`name`.

    Raises:
        ValueError: if none is (the message lists the registered names, or
            gives the new name of a renamed recipe).
    """
    if name in RENAMED_RECIPES and name not in RECIPES:
        raise ValueError(f"Model '{name}' was renamed "
                         f"'{RENAMED_RECIPES[name]}'")
    return _REGISTRY.get(name)


def _accepted(fn: Callable, skip=('self', 'data', 'num_users', 'num_items',
                                  'feature_dims', 'sampler', 'generator',
                                  'edge_index', 'kwargs', 'schema')
              ) -> List[str]:
    return [
        p.name for p in inspect.signature(fn).parameters.values()
        if p.name not in skip and p.kind not in (p.VAR_POSITIONAL,
                                                 p.VAR_KEYWORD)
    ]


def _names(recipe: Recipe) -> Dict[str, List[str]]:
    objective = _accepted(recipe.objective.__init__) + [
        p for p in _accepted(recipe.objective.from_data)
        if p not in _accepted(recipe.objective.__init__)
    ]
    return {
        'graph': _accepted(HomogeneousKNNGraph.__init__)
        if recipe.graphs else [],
        'model': _accepted(recipe.model.__init__),
        'objective': objective,
    }


def parameter_names(name: str) -> Dict[str, List[str]]:
    r"""The keywords each part of recipe :obj:`name` accepts:
    ``{'graph': [...], 'model': [...], 'objective': [...]}``."""
    return _names(get_recipe(name))


def merge_params(*layers: Dict[str, Any]) -> Dict[str, Any]:
    r"""Merges parameter dictionaries, later ones winning (*e.g.* presets,
    then the user's values)."""
    out: Dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


#: The prefix of the training settings among a recipe's parameters
#: (``train.lr``, ``train.lr_decay``): :class:`~pyg_brmrs.training.
#: TrainConfig` fields, which presets and grids set like any other
#: parameter (:func:`train_config` reads them; :func:`split_params` and
#: :func:`build` pass over them).
TRAIN_PREFIX = 'train.'


def _train_fields() -> List[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def training_params(params: Dict[str, Any]) -> Dict[str, Any]:
    r"""The training settings among :obj:`params` (keys
    ``train.<field>``), as :class:`~pyg_brmrs.training.TrainConfig`
    keywords.

    Raises:
        ValueError: for a ``train.`` key that is not a field of
            :class:`~pyg_brmrs.training.TrainConfig` (the message lists
            them).
    """
    out = {}
    for key, value in params.items():
        if isinstance(key, str) and key.startswith(TRAIN_PREFIX):
            bare = key[len(TRAIN_PREFIX):]
            if bare not in _train_fields():
                raise ValueError(f"Unknown training setting '{key}' (the "
                                 f"'{TRAIN_PREFIX}' keys are TrainConfig "
                                 f"fields: {_train_fields()})")
            out[bare] = value
    return out


def train_config(name: str, params: Optional[Dict[str, Any]] = None,
                 **settings: Any) -> TrainConfig:
    r"""The :class:`~pyg_brmrs.training.TrainConfig` of recipe
    :obj:`name`: the defaults, overridden by the recipe's
    :attr:`Recipe.training`, then by the ``train.*`` keys of :obj:`params`
    (:func:`training_params`: a preset's or a grid point's), then by
    :obj:`settings` (*e.g.* ``epochs=50, seed=1``).

    .. code-block:: python

        config = recipes.train_config('mgcn', {'train.lr': 1e-4}, seed=1)
        # TrainConfig(lr=1e-4, lr_decay=(0.96, 50), seed=1, ...)
    """
    recipe = get_recipe(name)
    return TrainConfig(**{**recipe.training,
                          **training_params(params or {}), **settings})


def _route(name: str, recipe: Recipe, names: Dict[str, List[str]],
           key: str) -> Tuple[str, str]:
    r"""The ``(part, keyword)`` of parameter :obj:`key` of a recipe."""
    if not isinstance(key, str):
        raise ValueError(f"Parameter names must be strings (got {key!r})")
    part, dot, bare = key.partition('.')
    if dot:
        if part not in PARTS:
            raise ValueError(f"Parameter '{key}' of model '{name}': the "
                             f"prefix must be one of "
                             f"{[p + '.' for p in PARTS]}")
        if bare not in names[part]:
            raise ValueError(f"Unknown parameter '{bare}' for the {part} of "
                             f"model '{name}' (it takes {names[part]})")
        return part, bare
    owners = [p for p in PARTS if key in names[p]]
    if not owners:
        raise ValueError(
            f"Unknown parameter '{key}' for model '{name}' (graph: "
            f"{names['graph']}; model: {names['model']}; objective: "
            f"{names['objective']})")
    if len(owners) > 1:
        raise ValueError(
            f"Parameter '{key}' of model '{name}' is ambiguous: the "
            f"{' and the '.join(owners)} both take it; write "
            f"{' or '.join(f'{p}.{key}' for p in owners)}")
    return owners[0], key


def _split(name: str, recipe: Recipe,
           params: Dict[str, Any]) -> Tuple[Dict, Dict, Dict]:
    names = _names(recipe)
    out: Dict[str, Dict[str, Any]] = {p: {} for p in PARTS}
    for where in (recipe.defaults, params):
        given: Dict[Tuple[str, str], str] = {}
        for key, value in where.items():
            if isinstance(key, str) and key.startswith(TRAIN_PREFIX):
                training_params({key: value})  # a TrainConfig field
                continue
            part, bare = _route(name, recipe, names, key)
            if (part, bare) in given:
                raise ValueError(
                    f"Parameters '{given[part, bare]}' and '{key}' of model "
                    f"'{name}' both set the {part}'s '{bare}'")
            given[part, bare] = key
            if where is params:
                _check_type(name, recipe, part, bare, key, value)
            out[part][bare] = value
    return out['graph'], out['model'], out['objective']


def _default_of(recipe: Recipe, part: str, keyword: str) -> Any:
    r"""The default value of :obj:`keyword` in the callable of
    :obj:`part` (``inspect.Parameter.empty`` when it has none)."""
    if part == 'graph':
        fns = [HomogeneousKNNGraph.__init__]
    elif part == 'model':
        fns = [recipe.model.__init__]
    else:
        fns = [recipe.objective.__init__, recipe.objective.from_data]
    for fn in fns:
        param = inspect.signature(fn).parameters.get(keyword)
        if param is not None:
            return param.default
    return inspect.Parameter.empty


def _check_type(name: str, recipe: Recipe, part: str, keyword: str,
                key: str, value: Any) -> None:
    r"""A number given for a keyword whose default is a number (a text
    such as ``"abc"`` from the command line is named here, not deep inside
    the model)."""
    default = _default_of(recipe, part, keyword)
    if value is None:  # "off" where a keyword takes it
        return
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Parameter '{key}' of model '{name}' must be "
                             f"a number (its default is {default!r}; got "
                             f"{value!r})")


def split_params(name: str,
                 params: Dict[str, Any]) -> Tuple[Dict, Dict, Dict]:
    r"""Routes :obj:`params` (on top of the recipe defaults) to
    ``(graph, model, objective)`` keyword dictionaries.

    A key is a keyword of one part (``fusion``), or ``<part>.<keyword>``
    (``model.embedding_dim``) to name the part explicitly, which a keyword
    that several parts accept needs. ``train.<field>`` keys are training
    settings (:func:`train_config`): checked, and left out here.

    Raises:
        ValueError: for an unknown keyword (the message lists each part's),
            an unknown prefix, an ambiguous keyword without its prefix, or
            two keys that set the same keyword.
    """
    return _split(name, get_recipe(name), params)


def register_recipe(name: str, recipe: Recipe) -> Recipe:
    r"""Registers :obj:`recipe` as :obj:`name`, after which every entry
    point (:func:`build`, :func:`pyg_brmrs.app.experiment.train`, ``pyg-brmrs
    train --model name``) builds it. Returns :obj:`recipe`.

    Raises:
        ValueError: if :obj:`name` is not a non-empty string of letters,
            digits, ``_`` and ``-`` or is registered already
            (:func:`unregister_recipe` it first), or if
            :obj:`recipe.defaults` name a keyword its parts do not accept
            (or leave one ambiguous).
        TypeError: if :obj:`recipe` is not a :class:`Recipe` or its
            :obj:`model` / :obj:`objective` have no ``from_data``.
    """
    return _REGISTRY.register(name, _checked(name, recipe),
                              where='register_recipe')


def _checked(name: str, recipe: Recipe) -> Recipe:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register_recipe: 'recipe' must be a Recipe (got "
                        f"{type(recipe).__name__})")
    for part in ('model', 'objective'):
        cls = getattr(recipe, part)
        if not isinstance(cls, type) or not callable(
                getattr(cls, 'from_data', None)):
            raise TypeError(f"register_recipe: Recipe.{part} must be a class "
                            f"with a from_data() constructor (got {cls!r})")
    _split(name, recipe, {})  # the defaults route
    try:
        TrainConfig(**recipe.training)
    except (TypeError, ValueError) as e:
        raise ValueError(f"register_recipe: Recipe.training of '{name}' is "
                         f"not a valid TrainConfig: {e}") from None
    return recipe


def unregister_recipe(name: str) -> Recipe:
    r"""Removes recipe :obj:`name` and returns it."""
    return _REGISTRY.unregister(name)


def registered_recipe(name: str, recipe: Recipe) -> ContextManager[Recipe]:
    r"""Registers :obj:`recipe` for the duration of a :obj:`with` block and
    removes it afterwards."""
    return _REGISTRY.temporarily(name, _checked(name, recipe),
                                 where='register_recipe')


#: The recipes the package ships, registered below.
_BUILTIN: Dict[str, Recipe] = {
    'bprmf': Recipe(BPRMF, BPRObjective, False, dict(reg_weight=1e-4),
                    'matrix factorisation with BPR'),
    'lightgcn': Recipe(LightGCNRecommender, BPRObjective, False,
                       dict(num_layers=2, reg_weight=1e-4),
                       'LightGCN (PyG LGConv math, CSR backend)'),
    # ApeGNN's authors' defaults (ApeGNN_HT: heat kernel, 3 hops, sum
    # pooling as their commands, BPR on one uniform negative, l2 1e-4 on
    # the batch's ego embeddings, lr 1e-3, batch 1024)
    'apegnn': Recipe(ApeGNN, BPRObjective, False, dict(reg_weight=1e-4),
                     'ApeGNN: LightGCN hops weighted per node by a learnable '
                     'heat-kernel (or PPR: kernel=ppr) diffusion time',
                     training=dict(batch_size=1024)),
    # MGDCF's authors' trainer: InfoBPR with 300 negatives from all items,
    # summed over batches of 8000, l2 1e-4 on the outputs, Adam lr 1e-2
    # decayed by 0.98 every epoch
    'mgdn': Recipe(MGDN, InfoBPRObjective, False,
                   dict(num_negatives=300, reduction='sum',
                        exclude_positives=False, reg_weight=1e-4),
                   'MGDN (MGDCF): Markov graph diffusion on the self-looped '
                   'user-item graph, InfoBPR',
                   training=dict(lr=1e-2, lr_decay=(0.98, 1),
                                 batch_size=8000)),
    # MMRec's MMGCN: BPR with its own regulariser (reg_weight from its
    # grid {0, 1e-5, ..., 0.1}); the free embeddings trained, as the paper
    # describes (train_free_embeddings=False runs the reference's frozen
    # ones)
    'mmgcn': Recipe(MMGCN, BPRObjective, False, dict(reg_weight=1e-4),
                    'MMGCN: a 3-layer GCN per modality over the user-item '
                    'graph (mean aggregation, ID-gated layers), averaged'),
    # MMRec's GRCN: BPR with its own regulariser (reg_weight from its grid
    # {1e-5 .. 0.1})
    'grcn': Recipe(GRCN, BPRObjective, False, dict(reg_weight=1e-4),
                   'GRCN: user-item edges re-weighted by per-modality '
                   'attention and node confidences, ID graph + content '
                   'graphs concatenated'),
    # MMRec's SLMRec (ssl_task FAC): in-batch softmax + FAC alignment, no
    # negatives drawn; its trainer's weight decay 1e-4 is the regulariser
    'slmrec': Recipe(SLMRec, NegativeFreeObjective, False,
                     dict(reg_weight=0.0),
                     'SLMRec: LightGCN per modality channel, concatenated '
                     'and projected; in-batch softmax + FAC self-supervised '
                     'alignment',
                     training=dict(weight_decay=1e-4)),
    # MIG-GT's authors' Baby configuration (--method mig_gt): InfoBPR with
    # one negative from all items, summed, l2 1e-5 on the outputs, the
    # unsmooth term; Adam lr 1e-2 decayed by 0.99 per epoch, batch 8000
    'miggt': Recipe(MIGGT, InfoBPRObjective, False,
                    dict(num_negatives=1, reduction='sum',
                         exclude_positives=False, reg_weight=1e-5),
                    'MIG-GT: modality-independent MGDCF receptive fields '
                    '(K per modality) + a sampled global transformer',
                    training=dict(lr=1e-2, lr_decay=(0.99, 1),
                                  batch_size=8000)),
    'vbpr': Recipe(VBPR, BPRObjective, False, dict(reg_weight=1e-4),
                   'VBPR: ID + projected content embeddings'),
    # FREEDOM has no L2 term: its modality BPR weight is the model's
    # `modality_bpr_weight` (MMRec's `reg_weight`).
    'freedom': Recipe(FREEDOM, BPRObjective, False, dict(reg_weight=0.0),
                      'FREEDOM: frozen modality kNN graph + edge pruning'),
    # MMRec's defaults of the four below (its model configs; the grids of
    # their searched settings are in benchmarks/quality.py).
    'lgmrec': Recipe(LGMRec, BPRObjective, False, dict(reg_weight=1e-6),
                     'LGMRec: LightGCN on IDs + per-modality graph '
                     'embeddings + a Gumbel-softmax hypergraph, its '
                     'hypergraph contrast (full graph only)'),
    'mgcn': Recipe(MGCN, BPRObjective, False, dict(reg_weight=1e-4),
                   'MGCN: ID-gated purifier, cosine kNN item views, '
                   'behaviour-aware fuser, view contrast; lr decay '
                   '0.96^(epoch/50)',
                   training=dict(lr_decay=(0.96, 50))),
    # DRAGON's loss is -log2(sigmoid): BPR over ln 2; its published
    # learning rate (1e-4 on Baby, Sports and Clothing).
    'dragon': Recipe(DRAGON, BPRObjective, False,
                     dict(reg_weight=1e-3, bpr_weight=1 / math.log(2)),
                     'DRAGON: per-modality user-item GCNs, weighted '
                     'concatenation, user co-occurrence graph (padding '
                     'resampled every epoch) + binary item kNN graph',
                     training=dict(lr=1e-4)),
    # DualGNN's loss is DRAGON's (-log2 sigmoid); MMRec searches lr and
    # reg_weight over {1e-1, ..., 1e-5} each: the middle of the latter.
    'dualgnn': Recipe(DualGNN, BPRObjective, False,
                      dict(reg_weight=1e-3, bpr_weight=1 / math.log(2)),
                      'DualGNN: per-modality user-item GCNs summed, '
                      'per-user modality weights, user co-occurrence graph '
                      '(padding resampled every epoch)'),
    'bm3': Recipe(BM3, NegativeFreeObjective, False, dict(reg_weight=0.1),
                  'BM3: negative-free bootstrap with dropout targets and '
                  'cross-modal alignment'),
    # MMRec's LATTICE (cf_model lightgcn): its lr decay 0.96^(epoch/50);
    # reg_weight searched over {0, 1e-5, 1e-4, 1e-3}.
    'lattice': Recipe(LATTICE, BPRObjective, False, dict(reg_weight=1e-4),
                      'LATTICE: item-item graph learned from projected '
                      'features each epoch, mixed with the frozen kNN '
                      'graph; LightGCN over D^-1(A+I) (full graph only)',
                      training=dict(lr_decay=(0.96, 50))),
    # MICRO's trainer: lr 5e-4, batch 1024, lr decay 0.96^(epoch/50), its
    # regulariser weight (regs[0]) 1e-5.
    'micro': Recipe(MICRO, BPRObjective, False, dict(reg_weight=1e-5),
                    'MICRO: per-modality item graphs learned from projected '
                    'features (LATTICE per modality), attention fusion, '
                    'contrast of each modality with the fusion (full graph '
                    'only)',
                    training=dict(lr=5e-4, batch_size=1024,
                                  lr_decay=(0.96, 50))),
    # REARM's graphs (HomogeneousKNNGraph with its padding and self loops
    # in the similarity lists, seeded) and its trainer: AdamW, lr 5e-5,
    # weight decay as the regulariser (its reg_weight, 5e-4 on Baby).
    'rearm': Recipe(REARM, BPRObjective, True,
                    dict(REARM_GRAPH, reg_weight=0.0),
                    'REARM: homogeneous propagation of [ID | visual | '
                    'textual] over user-user and item-item graphs, '
                    'attention between the item modalities, low-rank '
                    'meta-network for the shared part; BPR + InfoNCE + '
                    'orthogonality, AdamW (full graph only)',
                    training=dict(optimizer='adamw', lr=5e-5,
                                  weight_decay=5e-4)),
    # REARM's objective (not REARM) on the backbone it was measured with
    # (ID channel added, BRMRS's default before id_mode='concat' won).
    'rearm_objective_on_brmrs': Recipe(
        BRMRS, REARMObjective, True,
        dict(TUNED_MODEL, reg_weight=1e-4, id_mode='add'),
        'REARM\'s objective (BPR + InfoNCE + orthogonality) on the BR-MRS '
        'backbone; not REARM\'s model'),
    'brmrs': Recipe(BRMRS, BRMRSObjective, True,
                    dict(TUNED_MODEL, reg_weight=1e-4),
                    'BR-MRS, tuned variant (not the paper\'s model): a '
                    'shared ID embedding concatenated to every modality '
                    'branch, users\' modality channels from their items\' '
                    'features, concat fusion (fused score = sum of the '
                    'branch scores), per-part top-k graphs with REARM\'s '
                    'softmax co-occurrence; CHNS + synergy-aware BPR'),
    'brmrs_paper': Recipe(BRMRS, BRMRSObjective, True,
                          dict(PAPER_MODEL, reg_weight=1e-4),
                          'BR-MRS as the paper writes it: pure unimodal '
                          'branches (item features only, no item-ID table; '
                          'per-modality user embeddings), a non-additive '
                          'fusion, Eq. 1 graphs with the combined top-k; '
                          'CHNS + synergy-aware BPR'),
}
for _name, _recipe in _BUILTIN.items():
    register_recipe(_name, _recipe)
del _name, _recipe

#: The names of the recipes that implement BR-MRS's objective.
BRMRS_RECIPES = ('brmrs', 'brmrs_paper')


#: REARM's published graph and layer settings per Amazon dataset (the
#: BR-MRS recipes take them as they are; the REARM objective adds its own
#: loss weights).
REARM_AMAZON: Dict[str, Dict[str, Any]] = {
    'baby': dict(REARM_BABY_GRAPH, num_layers=4, num_item_layers=1,
                 num_user_layers=1),
    'sports': dict(k_item=5, k_user=25, alpha_item=0.2, alpha_user=0.9,
                   modality_weights_item={'image': 0.2, 'text': 0.8},
                   modality_weights_user={'image': 0.0, 'text': 1.0},
                   num_layers=5, num_item_layers=2, num_user_layers=2),
    'clothing': dict(k_item=10, k_user=45, alpha_item=0.1, alpha_user=0.7,
                     modality_weights_item={'image': 0.1, 'text': 0.9},
                     modality_weights_user={'image': 0.1, 'text': 0.9},
                     num_layers=4, num_item_layers=1, num_user_layers=1),
}

#: Recommended per-dataset settings (``dataset -> recipe -> keywords``) for
#: the Amazon datasets of the paper, used by ``pyg-brmrs train --preset`` and
#: ``examples/amazon_*.py``. They start from REARM's published per-dataset
#: commands (github.com/MrShouxingMa/REARM, README.md), mapped to our names:
#: ``item_knn_k -> k_item``, ``user_knn_k -> k_user``,
#: ``ii_co_weight -> alpha_item``, ``uu_co_weight -> alpha_user``,
#: ``i_mm_image_weight -> modality_weights_item = {'image': w, 'text': 1 - w}``
#: (likewise ``u_mm_image_weight -> modality_weights_user``),
#: ``num_layer -> num_layers`` (LightGCN layers on the user-item graph),
#: ``n_ii_layers -> num_item_layers``, ``n_uu_layers -> num_user_layers``
#: and, for the REARM objective only, ``cl_loss_weight -> cl_weight``,
#: ``diff_loss_weight -> orth_weight``, ``cl_tmp -> temperature``. REARM's
#: optimiser settings (AdamW, lr 5e-5, weight decay = its ``reg_weight``) are
#: *not* carried over to the BR-MRS recipes, which train with the MMRec
#: protocol of :class:`~pyg_brmrs.training.TrainConfig` (Adam, lr 1e-3,
#: batch 2048); the ``rearm`` recipe trains with them (its
#: ``Recipe.training``; :data:`REARM_PUBLISHED`).
#:
#: ``'tiktok'`` (image + audio, the DiffMM/MMSSL folder) holds the points
#: selected on **validation** Recall@20 (seed 999) by the 8-run grids of
#: ``benchmarks/quality.py equal`` where they have run (BPR-MF, VBPR,
#: LightGCN, FREEDOM, the paper's model), by the earlier 4-run grids
#: otherwise (the tuned variant, the REARM objective), with the default
#: graph settings of :class:`~pyg_brmrs.transforms.HomogeneousKNNGraph`;
#: REARM takes its Baby point (below).
DATASET_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    'tiktok': {
        'brmrs_paper': dict(num_layers=2, fusion='mean', theta=0.2),
        'brmrs': dict(num_layers=3),
        'rearm_objective_on_brmrs': dict(cl_weight=0.1, orth_weight=0.01),
        'lightgcn': dict(num_layers=2, reg_weight=1e-3),
        'freedom': dict(edge_dropout=0.8, modality_bpr_weight=0.0),
        'vbpr': dict(reg_weight=2.0),
        'bprmf': dict(reg_weight=0.5),
    },
    'baby': {
        'brmrs': dict(REARM_AMAZON['baby']),
        'rearm_objective_on_brmrs': dict(
            REARM_AMAZON['baby'], cl_weight=5e-6, orth_weight=5e-5,
            temperature=0.6),
    },
    'sports': {
        'brmrs': dict(REARM_AMAZON['sports']),
        'rearm_objective_on_brmrs': dict(
            REARM_AMAZON['sports'], cl_weight=1e-3, orth_weight=5e-4,
            temperature=1.5),
    },
    'clothing': {
        'brmrs': dict(REARM_AMAZON['clothing']),
        'rearm_objective_on_brmrs': dict(
            REARM_AMAZON['clothing'], cl_weight=1e-6, orth_weight=1e-5,
            temperature=0.03),
    },
}

#: The published Amazon points of the MMRec baselines, from their authors:
#: LGMRec's per-dataset settings in MMRec's ``configs/model/LGMRec.yaml``,
#: DRAGON's and BM3's tables of "parameters to reproduce the results" in
#: their repositories' READMEs (BM3 publishes Baby and Sports, not
#: Clothing). MGCN publishes no per-dataset point: its recipe defaults
#: (MMRec's config) apply.
PUBLISHED_AMAZON: Dict[str, Dict[str, Dict[str, Any]]] = {
    'baby': {
        'lgmrec': dict(num_hyper_layers=1, num_hyperedges=4, keep_rate=0.5,
                       alpha=0.3),
        'dragon': {'reg_weight': 1e-3, 'train.lr': 1e-4},
        'bm3': dict(num_layers=1, dropout=0.5, reg_weight=0.1),
    },
    'sports': {
        'lgmrec': dict(num_hyper_layers=1, num_hyperedges=4, keep_rate=0.4,
                       alpha=0.6),
        'dragon': {'reg_weight': 1e-3, 'train.lr': 1e-4},
        'bm3': dict(num_layers=1, dropout=0.5, reg_weight=0.01),
    },
    'clothing': {
        'lgmrec': dict(num_hyper_layers=2, num_hyperedges=64, keep_rate=0.2,
                       alpha=0.2),
        'dragon': {'reg_weight': 0.1, 'train.lr': 1e-4},
    },
}
#: REARM's published commands (its README) per Amazon dataset: the graph
#: and layer settings of :data:`REARM_AMAZON` plus ``rank``, ``s_drop ->
#: self_dropout``, ``m_drop -> cross_dropout``, ``cl_loss_weight ->
#: cl_weight``, ``diff_loss_weight -> orth_weight``, ``cl_tmp ->
#: temperature`` and ``reg_weight -> train.weight_decay`` (AdamW's).
REARM_PUBLISHED: Dict[str, Dict[str, Any]] = {
    'baby': dict(REARM_AMAZON['baby'], rank=3, self_dropout=0.4,
                 cross_dropout=0.6, cl_weight=5e-6, orth_weight=5e-5,
                 temperature=0.6, **{'train.weight_decay': 5e-4}),
    'sports': dict(REARM_AMAZON['sports'], rank=7, self_dropout=1.0,
                   cross_dropout=0.2, cl_weight=1e-3, orth_weight=5e-4,
                   temperature=1.5, **{'train.weight_decay': 0.05}),
    'clothing': dict(REARM_AMAZON['clothing'], rank=3, self_dropout=0.4,
                     cross_dropout=0.1, cl_weight=1e-6, orth_weight=1e-5,
                     temperature=0.03, **{'train.weight_decay': 1e-5}),
}
for _dataset, _point in REARM_PUBLISHED.items():
    PUBLISHED_AMAZON[_dataset]['rearm'] = _point
#: TikTok: REARM's Baby point, the audio feature in the text slot (as
#: MMRec's convention for the image + audio data).
DATASET_DEFAULTS['tiktok']['rearm'] = dict(
    REARM_PUBLISHED['baby'],
    modality_weights_item={'image': 0.0, 'audio': 1.0},
    modality_weights_user={'image': 0.2, 'audio': 0.8})
del _point

for _dataset, _points in PUBLISHED_AMAZON.items():
    DATASET_DEFAULTS[_dataset].update(copy.deepcopy(_points))

# The paper's model on Amazon takes the same graph and layer settings as the
# tuned variant (REARM's published ones); its own choices (pure branches,
# mean fusion, the combined top-k) come from the recipe.
for _dataset in ('baby', 'sports', 'clothing'):
    DATASET_DEFAULTS[_dataset]['brmrs_paper'] = dict(
        DATASET_DEFAULTS[_dataset]['brmrs'])
del _dataset, _points


def dataset_defaults(dataset: str, model: str) -> Dict[str, Any]:
    r"""The recommended keywords of recipe :obj:`model` on :obj:`dataset`
    (a key of :obj:`DATASET_DEFAULTS`, case-insensitive); an empty dict for
    a recipe without per-dataset settings. Returns a deep copy."""
    get_recipe(model)
    key = dataset.lower()
    if key not in DATASET_DEFAULTS:
        raise ValueError(f"No recommended settings for dataset '{dataset}' "
                         f"(known: {sorted(DATASET_DEFAULTS)})")
    return copy.deepcopy(DATASET_DEFAULTS[key].get(model, {}))


def prepare(name: str, data: HeteroData, schema: Optional[Schema] = None,
            **params) -> HeteroData:
    r"""Adds what recipe :obj:`name` needs to :obj:`data` (the homogeneous
    kNN graphs for the recipes that read them), using the graph
    keywords among :obj:`params` and ignoring the others. Returns the
    transformed data (PyG transforms work on a shallow copy: use the returned
    object). :obj:`schema` (a :class:`~pyg_brmrs.data.Schema`) names the
    node, edge and feature attributes of :obj:`data`; the graphs are added
    under its names."""
    recipe = get_recipe(name)
    if not recipe.graphs:
        return data
    graph, _, _ = split_params(name, params)
    return HomogeneousKNNGraph(**graph, schema=schema)(data)


def build(name: str, data: HeteroData,
          generator: Optional[torch.Generator] = None,
          schema: Optional[Schema] = None,
          **params) -> Tuple[Recommender, Objective]:
    r"""Builds ``(model, objective)`` of recipe :obj:`name` for
    :obj:`data` (names given by :obj:`schema`, a
    :class:`~pyg_brmrs.data.Schema`; the model remembers it). Graph
    keywords are accepted (and ignored) so that one parameter dictionary
    can be passed to :func:`prepare` and :func:`build`."""
    recipe = get_recipe(name)
    data = canonical(data, schema)
    if recipe.graphs and ITEM_SIM not in data.edge_types and \
            USER_SIM not in data.edge_types:
        raise ValueError(f"Model '{name}' needs the kNN graphs: call "
                         f"recipes.prepare('{name}', data, ...) first")
    _, model_kw, objective_kw = split_params(name, params)
    # A model registered by a user need not know about schemas: the
    # keyword is only passed when names other than the defaults are used.
    if schema is not None:
        model_kw['schema'] = schema
    model = recipe.model.from_data(data, **model_kw)
    objective = recipe.objective.from_data(data, generator=generator,
                                           **objective_kw)
    return model, objective
