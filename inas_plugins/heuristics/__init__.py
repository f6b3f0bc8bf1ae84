"""Query heuristics as registered plugins: ours (softmax response, MC-dropout, coreset), baal's, and
third-party ones from the ``inas_plugins.heuristics`` entry-point group.

Typical use (the active loop does this every round)::

    heuristic = create_heuristic("softmax_response")
    outputs = collect_outputs(model, pool_source, labelled_source, heuristic.needs)   # TensorSource / LoaderSource
    to_label = heuristic.select(outputs, n=2000, rng=np.random.default_rng(seed))
"""

from .outputs import NEEDS, ModelOutputs, collect_outputs
from .base import QueryHeuristic, ScoreHeuristic, check_picks, check_query_size, require, top_n
from .registry import (ENTRY_POINT_GROUP, HeuristicInfo, create_heuristic, get_heuristic_class, heuristic_names,
                       list_heuristics, plugin_errors, register_heuristic, reload_plugins,
                       unregister_heuristic)
from .softmax_response import SoftmaxResponse, SoftmaxResponseQuery, as_probabilities
from .mc_dropout import MCDropoutQuery, MCDropoutVariance, predicted_class_variance
from .coreset import CoresetQuery, k_center_greedy
from .badge import BadgeQuery
from .typiclust import TypiClustQuery
from .probcover import ProbCoverQuery
from .baal_builtin import (BALDQuery, BaalHeuristic, BatchBALDQuery, CertaintyQuery, EntropyQuery, GibbsBALDQuery,
                           GibbsEntropyQuery, MarginQuery, PointwiseBaalHeuristic, PowerBALDQuery, PowerEntropyQuery,
                           RandomQuery, RankBALDQuery, RankEntropyQuery, SeededGibbsSampling, SeededPowerSampling,
                           SeededRankBasedSampling, StochasticQuery, VarianceQuery, wrap_baal_heuristic)

# Every registered heuristic class of this package (what `inas heuristics` lists as ours and baal's).
HEURISTIC_CLASSES = (
    "SoftmaxResponseQuery", "MCDropoutQuery", "CoresetQuery", "BadgeQuery", "TypiClustQuery", "ProbCoverQuery",
    "BALDQuery", "VarianceQuery", "EntropyQuery", "MarginQuery", "CertaintyQuery", "RandomQuery", "BatchBALDQuery",
    "PowerBALDQuery", "PowerEntropyQuery", "GibbsBALDQuery", "GibbsEntropyQuery", "RankBALDQuery",
    "RankEntropyQuery",
)

__all__ = [
    "NEEDS", "ModelOutputs", "collect_outputs",
    "QueryHeuristic", "ScoreHeuristic", "check_picks", "check_query_size", "require", "top_n",
    "ENTRY_POINT_GROUP", "HeuristicInfo", "create_heuristic", "get_heuristic_class", "heuristic_names",
    "list_heuristics", "plugin_errors", "register_heuristic", "reload_plugins", "unregister_heuristic",
    "SoftmaxResponse", "SoftmaxResponseQuery", "as_probabilities",
    "MCDropoutQuery", "MCDropoutVariance", "predicted_class_variance",
    "CoresetQuery", "k_center_greedy", "BadgeQuery", "TypiClustQuery", "ProbCoverQuery",
    "BALDQuery", "VarianceQuery", "EntropyQuery", "MarginQuery", "CertaintyQuery", "RandomQuery", "BatchBALDQuery",
    "PowerBALDQuery", "PowerEntropyQuery", "GibbsBALDQuery", "GibbsEntropyQuery", "RankBALDQuery", "RankEntropyQuery",
    "BaalHeuristic", "PointwiseBaalHeuristic", "SeededGibbsSampling", "SeededPowerSampling", "SeededRankBasedSampling",
    "StochasticQuery", "wrap_baal_heuristic", "HEURISTIC_CLASSES",
]
