"""Per-scope sensitivity, and the first trials it seeds.

Each scope is pruned alone at a few ratios; the accuracy drop and the latency (or FLOPs) gain against the base
model say how cheap the scope is to prune. Seeds then prune cheap scopes hard and costly ones lightly, at a few
levels of aggressiveness, so that a 100-trial search over 60 groups starts near the front instead of at random.
"""

from __future__ import annotations

from tqdm import tqdm

from .objective import Scores
from .space import SearchSpace

__all__ = ["measure_sensitivity", "seed_trials"]


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
