r"""Full-ranking evaluation in the protocol of MMRec.

:class:`RankingEvaluator` / :func:`full_ranking_metrics` give the metrics,
:class:`ShardedEvaluator` the same split over the processes of a
distributed run; :func:`topk_items` the recommendations; :class:`RankingPlan`,
:func:`mask_edge_index`, :func:`ranked_items` and :func:`metrics_from_hits`
are the pieces they are built from, public so that other analyses
(:mod:`pyg_brmrs.analysis`) rank exactly the same way.
"""
from .ranking import *  # noqa: F401,F403 (the public names)
from .ranking import __all__ as _ranking_all
from .sharded import ShardedEvaluator

__all__ = list(_ranking_all) + ['ShardedEvaluator']
