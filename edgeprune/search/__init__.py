"""APRS with MOOL: per-scope pruning-rate search against measured latency, on Optuna (docs/search.md).

    from edgeprune.search import SearchConfig, run_search
    study, report = run_search(SearchConfig("best.pt", "data.yaml", trials=100,
                                            objective={"target_latency_ms": 12}))
"""

from .config import SearchConfig, parse_ms
from .objective import Objective, Scores, choose, pareto_front
from .space import SearchSpace, scopes_for
from .study import run_search

__all__ = ["Objective", "Scores", "SearchConfig", "SearchSpace", "choose", "pareto_front", "parse_ms", "run_search",
           "scopes_for"]
