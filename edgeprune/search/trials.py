"""What a study holds so far: trial counts, the base model's scores, the measured points, the latency target.
Read by the workers (study.py) and by the report alike."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from .context import SearchContext
from .objective import Scores

__all__ = ["base_scores", "counts", "measured_front", "resolve_target"]


def counts(study: optuna.Study) -> dict[TrialState, int]:
    out = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state] += 1
    return out


def base_scores(study: optuna.Study) -> Scores:
    return Scores(**study.user_attrs["base"])


def resolve_target(ctx: SearchContext, study: optuna.Study) -> None:
    """`--speedup X` becomes a latency target: the base model's latency as measured on this backend, over X."""
    if ctx.cfg.speedup:
        ctx.objective.target_latency_ms = base_scores(study).latency_ms / ctx.cfg.speedup


def measured_front(study: optuna.Study) -> list[tuple[float, float]]:
    """(mAP@0.5, measured ms) of every measured point: base, uniform baseline and completed trials."""
    pts = [(p["map50"], p["latency_ms"]) for p in [study.user_attrs.get("base", {})]
           + study.user_attrs.get("uniform", []) if p]
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("measured_ms") is not None:
            pts.append((t.user_attrs["map50"], t.user_attrs["measured_ms"]))
    return pts
