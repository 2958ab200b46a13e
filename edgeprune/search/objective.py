"""MOOL: the multi-objective loss that trades accuracy against latency, FLOPs and params (docs/search.md).

`loss` mode (SARGap's MOOL, minimised):

    L = (1 − mAP/mAP₀) + λ_T·T/T₀ + λ_F·F/F₀ + λ_P·P/P₀  [+ 10·(T/T_target − 1) when T > T_target]

mAP is mAP@0.5 on the search's validation subset, T the latency (measured where measured, else predicted), F the
FLOPs and P the params, each relative to the base model (subscript 0). The hard target adds a steep penalty above
it (and is also given to the sampler as a constraint), so a candidate over target never beats one under it;
`max_flops` and `max_params` are hard limits of the same kind. Under a hard limit its term is a budget: what is
saved below the limit counts 1 % (`budgeted`), so the search spends the budget on accuracy instead of buying speed
nobody asked for.

`reward` mode (MnasNet's, maximised as −L): R = mAP·(T/T_target)^w with w = −0.07 below the target and
`w_over` (−1 by default: a hard-ish wall) above it.

`pareto` mode: two objectives, maximise mAP and minimise T (NSGA-II), with the params/FLOPs limits as
constraints; `choose` then picks one point of the front by target latency or speed-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Objective", "Scores", "choose", "pareto_front"]


@dataclass
class Scores:
    """What one candidate scored. `latency_ms` is the figure the objective uses (measured when available)."""

    map50: float
    map: float
    latency_ms: float
    flops: float
    params: float


@dataclass
class Objective:
    mode: str = "loss"  # loss | reward | pareto
    latency_weight: float = 1.0  # λ_T
    flops_weight: float = 0.0  # λ_F
    params_weight: float = 0.0  # λ_P
    target_latency_ms: float | None = None
    max_flops: float | None = None  # hard limits, like the latency target
    max_params: float | None = None
    reward_w: float = -0.07
    reward_w_over: float = -1.0

    def __post_init__(self) -> None:
        if self.mode not in ("loss", "reward", "pareto"):
            raise ValueError(f"objective mode must be loss, reward or pareto, not {self.mode!r}")
        if min(self.latency_weight, self.flops_weight, self.params_weight) < 0:
            raise ValueError("objective weights must be >= 0")

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.mode == "pareto" else ["minimize"]

    def values(self, s: Scores, base: Scores) -> list[float]:
        """The value(s) Optuna records for a candidate with scores `s` against the base model's `base`."""
        if self.mode == "pareto":
            return [s.map50, s.latency_ms]
        if self.mode == "reward":
            if not self.target_latency_ms:
                raise ValueError("the reward objective needs a target latency (--target-latency or --speedup)")
            t = s.latency_ms / self.target_latency_ms
            w = self.reward_w if t <= 1 else self.reward_w_over
            return [-s.map50 * t ** w]
        loss = 1 - s.map50 / max(base.map50, 1e-9)
        terms = ((self.latency_weight, s.latency_ms, base.latency_ms, self.target_latency_ms),
                 (self.flops_weight, s.flops, base.flops, self.max_flops),
                 (self.params_weight, s.params, base.params, self.max_params))
        for weight, value, ref, limit in terms:
            if weight:  # a term with no weight needs no figure (FLOPs-only searches have no latency)
                loss += weight * budgeted(value, limit) / ref
            if limit and value > limit:
                loss += 10.0 * (value / limit - 1)
        return [loss]

    def constraints(self, s: Scores) -> list[float]:
        """Optuna constraint values (feasible when all are <= 0)."""
        out = []
        if self.target_latency_ms and self.mode != "pareto":
            out.append(s.latency_ms - self.target_latency_ms)
        if self.max_flops:
            out.append(s.flops - self.max_flops)
        if self.max_params:
            out.append(s.params - self.max_params)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


BELOW_LIMIT_WORTH = 0.01  # under a hard limit, what a unit saved still earns, against one saved above it


def budgeted(value: float, limit: float | None) -> float:
    """The figure a weighted term counts: `value`, except that under a hard limit only 1 % of what is saved counts.
    A limit is a budget, not a floor: at yolov5s 2× the plain term bought a plan 45 % faster than the target at
    3 points of mAP@0.5:0.95 (benchmarks/results/peers.json); the 1 % keeps the faster of two equally accurate
    candidates first."""
    if not limit or value >= limit:
        return value
    return limit - BELOW_LIMIT_WORTH * (limit - value)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (accuracy ↑, latency ↓) that no other point dominates, by latency."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front, best = [], float("-inf")
    for i in idx:
        if points[i][0] > best:
            front.append(i)
            best = points[i][0]
    return front


def choose(points: list[tuple[float, float]], target_ms: float | None = None, speedup: float | None = None,
           base_ms: float | None = None) -> int | None:
    """The most accurate front point whose latency meets `target_ms` (or `base_ms / speedup`); None if none does.
    With neither given, the point with the best accuracy-per-latency knee (highest mAP / latency)."""
    front = pareto_front(points)
    if not front:
        return None
    if speedup:
        if not base_ms:
            raise ValueError("choosing by speed-up needs the base latency")
        target_ms = base_ms / speedup
    if target_ms is None:
        return max(front, key=lambda i: points[i][0] / max(points[i][1], 1e-9))
    ok = [i for i in front if points[i][1] <= target_ms]
    return max(ok, key=lambda i: points[i][0]) if ok else None
