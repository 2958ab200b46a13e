"""The search's first trials: the allocated seed, and the seeds per-scope sensitivity makes.

The allocated seed is the demo's cut (edgeprune.search.allocate, which won the peer benchmark: docs/search.md):
the channels of least Taylor importance per millisecond the latency table saves, down to the target, written as
the search's scope ratios. Then each scope is pruned alone at a few ratios; the accuracy drop and the latency (or
FLOPs) gain against the base model say how cheap the scope is to prune. Seeds then prune cheap scopes hard and
costly ones lightly, at a few levels of aggressiveness, so that a 100-trial search over 60 groups starts near the
front instead of at random.
"""

from __future__ import annotations

from torch import nn
from tqdm import tqdm

from ..models import example_input
from ..prune.graph import Group
from ..prune.importance import accumulate_gradients, score_groups
from .allocate import UnitMap, allocate
from .objective import Scores
from .space import SearchSpace

__all__ = ["allocated_seed", "measure_sensitivity", "seed_trials"]


def allocated_seed(model: nn.Module, groups: list[Group], space: SearchSpace, samples: list, predictor,
                   target_ms: float, base_ms: float, img_size: int, batches: int = 8) -> dict[str, float]:
    """Scope ratios of one Taylor-allocated cut to `target_ms` (measured ms; the table's prediction is rescaled by
    the base's measured / predicted latency, as progressive pruning does). A scope of several groups gets the
    share of their channels the allocation removes, on the grid, so the seed is exact only with `--scopes groups`."""
    if target_ms >= base_ms:  # the base meets the target already
        return {scope: 0.0 for scope in space.scopes}
    accumulate_gradients(model, samples, img_size, batches)
    try:
        scores = score_groups(groups, "taylor")
    finally:
        model.zero_grad(set_to_none=True)
    umap = UnitMap.learn(model, groups, (1, 3, img_size, img_size), example_input(model))
    aim = target_ms * predictor.predict(umap.units) / base_ms
    round_to = max(space.round_to, getattr(predictor, "align", 0) or 1)
    widths = allocate(groups, scores, umap, predictor, aim, round_to, space.min_width).widths
    width = {g.name: g.width for g in groups}
    return {scope: space.snap(1 - sum(widths[n] for n in names) / sum(width[n] for n in names))
            for scope, names in space.scopes.items()}


def measure_sensitivity(evaluator, space: SearchSpace, base: Scores, ratios: tuple[float, ...] = (0.5,),
                        progress: bool = True) -> dict[str, list[dict]]:
    """scope → [{ratio, map50, drop, latency_ms, gain, flops_gain}] with each scope alone pruned by each ratio.

    `drop` is the loss of mAP@0.5 (points of 1.0), `gain` the share of the base latency saved (predicted when the
    evaluator has a predictor; the FLOPs share otherwise)."""
    out: dict[str, list[dict]] = {}
    jobs = [(s, space.snap(r)) for s in space.scopes for r in ratios]
    for scope, r in tqdm(jobs, desc="sensitivity", disable=not progress, leave=False):
        cand = evaluator.evaluate({scope: r}, predict_only=True)
        s = cand.scores
        lat = cand.predicted_ms if cand.predicted_ms is not None else s.latency_ms
        gain = 1 - lat / base.latency_ms if lat == lat and base.latency_ms == base.latency_ms else None
        out.setdefault(scope, []).append({
            "ratio": r, "map50": s.map50, "drop": base.map50 - s.map50, "latency_ms": lat,
            "gain": gain, "flops_gain": 1 - s.flops / base.flops})
    return out


def seed_trials(space: SearchSpace, sensitivity: dict[str, list[dict]],
                levels: tuple[float, ...] = (0.3, 0.5, 0.7)) -> list[dict[str, float]]:
    """Scope ratios for the first trials: at each level, cheap scopes (most gain per point of mAP lost) get
    up to twice the level and costly ones down to nothing, ranked linearly; plus the uniform plan at the level."""
    def cost(rows: list[dict]) -> float:
        r = max(rows, key=lambda x: x["ratio"])
        gain = r["gain"] if r["gain"] is not None else r["flops_gain"]
        return max(r["drop"], 0.0) / max(gain, 1e-3)

    ranked = sorted(space.scopes, key=lambda s: cost(sensitivity[s]) if s in sensitivity else 0.0)
    n = max(len(ranked) - 1, 1)
    seeds = []
    for level in levels:
        guided = {s: space.snap(level * 2 * (1 - i / n)) for i, s in enumerate(ranked)}
        seeds += [guided, space.uniform(level)]
    unique = []
    for s in seeds:
        if s not in unique:
            unique.append(s)
    return unique
