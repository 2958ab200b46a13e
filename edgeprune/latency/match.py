"""Tune one knob until a model's *measured* latency hits a target, and measure finalists back to back.

A fair comparison of pruning methods puts them at equal measured latency, not equal FLOPs: the pruning ratio of a
uniform cut, the width of a narrower model, or the input size are each turned until the backend says the model is
within `tol` (3 % by default) of the target. `match_latency` bisects the knob between two bounds (latency must move
one way with it, either way round) and says plainly when the target lies outside what the bounds give, or when the
knob is too coarse to land within the tolerance (widths rounded to 8, input sizes to 32). A knob whose latency is
not monotonic gets a coarse scan first (`scan` evenly spaced points), and the bisection runs in the first interval
from `lo` where the latency crosses the target: Torch-Pruning's uniform ratio is one (its pruner skips whole groups
once a high ratio would cut them below `round_to`, so 0.9 removes fewer FLOPs than 0.7).

`interleaved` then measures the chosen models in turns, several passes, and keeps each one's lowest median: a
machine whose speed drifts over minutes biases all models alike, and one slow pass does not decide a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Match", "interleaved", "match_latency"]


@dataclass
class Match:
    knob: float
    latency_ms: float
    target_ms: float
    model: Any
    reached: bool
    reason: str = ""
    history: list[tuple[float, float]] = field(default_factory=list)  # (knob, measured ms) in the order tried

    @property
    def error(self) -> float:
        """Measured / target − 1 (+0.02: 2 % slower than the target)."""
        return self.latency_ms / self.target_ms - 1.0

    def to_dict(self) -> dict:
        return {"knob": self.knob, "latency_ms": self.latency_ms, "target_ms": self.target_ms,
                "error": self.error, "reached": self.reached, "reason": self.reason, "history": self.history}


def match_latency(build: Callable[[float], Any], measure: Callable[[Any], float], target_ms: float, lo: float,
                  hi: float, tol: float = 0.03, steps: int = 12, snap: Callable[[float], float] | None = None,
                  scan: int = 0) -> Match:
    """The knob in [lo, hi] whose model (`build(knob)`) measures within `tol` of `target_ms` (`measure(model)`).

    `snap` rounds a knob to the values it can take (e.g. input sizes to multiples of 32); bisection stops when two
    neighbouring values bracket the target. `scan` > 0 probes that many evenly spaced knobs between the bounds
    first and bisects the first interval (from `lo`) where the latency crosses the target. The returned Match
    holds the closest model tried; `reached` is False with a `reason` when no knob in range lands within the
    tolerance.
    """
    snap = snap or (lambda k: k)
    tried: dict[float, tuple[float, Any]] = {}

    def probe(k: float) -> float:
        k = snap(k)
        if k not in tried:
            model = build(k)
            tried[k] = (float(measure(model)), model)
        return tried[k][0]

    def result(reached: bool, reason: str = "") -> Match:
        k = min(tried, key=lambda k: abs(tried[k][0] / target_ms - 1.0))
        return Match(k, tried[k][0], target_ms, tried[k][1], reached, reason,
                     [(kk, ms) for kk, (ms, _) in tried.items()])

    def close(k: float) -> bool:  # k: a knob already tried (snapped)
        return abs(tried[k][0] / target_ms - 1.0) <= tol

    points = list(dict.fromkeys(snap(lo + (hi - lo) * i / (scan + 1)) for i in range(scan + 2)))
    for k in points:
        probe(k)
        if close(k):
            return result(True)
    above = [tried[k][0] > target_ms for k in points]
    crossing = next((i for i in range(len(points) - 1) if above[i] != above[i + 1]), None)
    if crossing is None:
        times = [tried[k][0] for k in points]
        shape = "" if times in (sorted(times), sorted(times, reverse=True)) else (
            "; latency is not monotonic in the knob: " + ", ".join(f"{k:g} → {t:.2f}" for k, t in zip(points, times)))
        return result(False, f"target {target_ms:.2f} ms is out of reach: the knob's range {points[0]:g}.."
                             f"{points[-1]:g} gives {min(times):.2f}..{max(times):.2f} ms{shape}")
    a, b = points[crossing], points[crossing + 1]
    a, b = (a, b) if above[crossing] else (b, a)  # latency(a) above the target, latency(b) below
    for _ in range(steps):
        mid = snap((a + b) / 2)
        if mid in (a, b):
            return result(False, f"no knob value between {a:g} ({tried[a][0]:.2f} ms) and {b:g} "
                                 f"({tried[b][0]:.2f} ms) lands within {tol:.0%} of {target_ms:.2f} ms: "
                                 f"the knob is too coarse here")
        if probe(mid) > target_ms:
            a = mid
        else:
            b = mid
        if close(mid):
            return result(True)
    return result(False, f"not within {tol:.0%} after {steps} bisection steps (measurements too noisy?)")


def interleaved(measure: Callable[[Any], float], models: dict[str, Any], passes: int = 3) -> dict[str, dict]:
    """Each model measured once per pass, in turns: {name: {"ms": lowest median, "passes": [every median]}}."""
    out: dict[str, dict] = {name: {"passes": []} for name in models}
    for _ in range(passes):
        for name, model in models.items():
            out[name]["passes"].append(float(measure(model)))
    for row in out.values():
        row["ms"] = min(row["passes"])
    return out
