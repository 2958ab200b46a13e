"""Score one candidate plan: prune a copy, recalibrate batch norms, mAP on a fixed subset, size, latency.

Latency comes from the predictor for every candidate (fast) and from the backend (a real measurement, cached by
structure) for the candidates the policy asks for: `all`, `none`, or `pareto` (those whose predicted point,
less the predictor's error margin, is not dominated by a candidate measured earlier).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..evaluate.accuracy import evaluate
from ..evaluate.complexity import count_flops, count_params
from ..latency.base import MeasurementError
from ..models import example_input
from ..prune.plan import Plan, pruned_model
from .objective import Scores, pareto_front

__all__ = ["Candidate", "Evaluator", "recalibrate_bn", "with_ms"]


@dataclass
class Candidate:
    scores: Scores
    plan: Plan
    predicted_ms: float | None = None
    measured_ms: float | None = None
    widths: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)  # the pruned, BN-recalibrated copy

    def attrs(self) -> dict:
        """JSON-able facts for the trial's user attributes."""
        s = self.scores
        return {"map50": s.map50, "map": s.map, "latency_ms": s.latency_ms, "flops": s.flops, "params": s.params,
                "predicted_ms": self.predicted_ms, "measured_ms": self.measured_ms, "widths": self.widths,
                "seconds": self.seconds}


def with_ms(cand: Candidate, measured_ms: float, seconds: float = 0.0) -> Candidate:
    """`cand` (changed in place) with its measured latency, which the objective then uses."""
    cand.measured_ms, cand.scores.latency_ms = float(measured_ms), float(measured_ms)
    cand.seconds += seconds
    return cand


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader, batches: int) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on `batches` training batches (cumulative
    average), so that a pruned copy is judged on its own statistics rather than the dense model's."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return model.eval()
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i, (images, _, _) in enumerate(loader):
            if i >= batches:
                break
            model(images)
    finally:
        for m, mom in saved:
            m.momentum = mom
    return model.eval()


class Evaluator:
    """Scores candidates of one base model. `predictor` and `backend` may be None (FLOPs-only searches)."""

    def __init__(self, base: nn.Module, groups, importance, space, bn_loader, val_loader, img_size: int,
                 predictor=None, backend=None, measure: str = "pareto", bn_batches: int = 4,
                 conf_thres: float = 0.01, margin: float = 0.05) -> None:
        if measure not in ("all", "pareto", "none"):
            raise ValueError(f"measure policy must be all, pareto or none, not {measure!r}")
        if measure != "none" and backend is None:
            raise ValueError(f"measure={measure!r} needs a latency backend")
        self.base, self.groups, self.importance, self.space = base.eval(), groups, importance, space
        self.bn_loader, self.val_loader, self.img_size = bn_loader, val_loader, img_size
        self.predictor, self.backend, self.measure_policy = predictor, backend, measure
        self.bn_batches, self.conf_thres, self.margin = bn_batches, conf_thres, margin
        self.shape = (1, 3, img_size, img_size)

    def prune(self, scope_ratios: dict[str, float]) -> tuple[nn.Module, Plan]:
        plan = self.space.plan(scope_ratios, self.importance)
        return pruned_model(self.base, plan, example_input(self.base)), plan

    def screen(self, scope_ratios: dict[str, float]) -> Candidate:
        """Everything but the measurement: prune, recalibrate, mAP on the subset, size, predicted latency."""
        t0 = time.perf_counter()
        model, plan = self.prune(scope_ratios)
        recalibrate_bn(model, self.bn_loader, self.bn_batches)
        m = evaluate(model, self.val_loader, conf_thres=self.conf_thres, max_det=100)
        predicted = self.predictor.predict(model) if self.predictor is not None else None
        scores = Scores(map50=float(m["map50"]), map=float(m["map"]),
                        latency_ms=float(predicted) if predicted is not None else float("nan"),
                        flops=float(count_flops(model, self.img_size)), params=float(count_params(model)))
        widths = {g.name: len(plan.keep[g.name]) for g in self.groups}
        return Candidate(scores, plan, predicted, None, widths, time.perf_counter() - t0, model)

    def evaluate(self, scope_ratios: dict[str, float], measured_front: list[tuple[float, float]] | None = None,
                 predict_only: bool = False) -> Candidate:
        """Score the candidate. `measured_front`: (mAP@0.5, measured ms) of candidates measured so far, for the
        `pareto` policy. `predict_only`: never measure when the predictor can answer (sensitivity)."""
        cand = self.screen(scope_ratios)
        if not (predict_only and cand.predicted_ms is not None) and self.should_measure(cand, measured_front or []):
            t0 = time.perf_counter()
            with_ms(cand, self.measure(cand.model), time.perf_counter() - t0)
        return cand

    def measure(self, model: nn.Module) -> float:
        from ..latency import measure

        return measure(model, self.shape, self.backend).median_ms

    def measurement(self, models: list[nn.Module]) -> Callable[[], list[float | MeasurementError]]:
        """The measurement of `models` as a call that touches only the backend (their ONNX is exported here, now),
        so that it may run on another thread while this one screens the next round. It returns the median ms of
        each, measured together (`measure_many`: a pool of boards in parallel), a MeasurementError for each that
        failed. A backend that times modules (torch-cuda) measures them in turn."""
        from ..latency import module_to_onnx

        if models and not self.backend.times_modules:
            items = [(module_to_onnx(m, self.shape), self.shape) for m in models]

            def run() -> list[float | MeasurementError]:
                try:
                    stats = self.backend.measure_many(items)
                except MeasurementError as e:  # `.results`: every result or error, in order
                    stats = getattr(e, "results", None) or [e] * len(items)
                return [s if isinstance(s, MeasurementError) else s.median_ms for s in stats]
            return run
        return lambda: [self._measured_or_error(m) for m in models]

    def _measured_or_error(self, model: nn.Module) -> float | MeasurementError:
        try:
            return self.measure(model)
        except MeasurementError as e:
            return e

    def should_measure(self, cand: Candidate, front: list[tuple[float, float]]) -> bool:
        return self._should_measure(cand.scores.map50, cand.predicted_ms, front)

    def _should_measure(self, map50: float, predicted: float | None, front: list[tuple[float, float]]) -> bool:
        if self.backend is None or self.measure_policy == "none":
            return False
        if self.measure_policy == "all" or predicted is None:
            return True
        optimistic = (map50, predicted * (1 - self.margin))  # the predictor may be this much too slow
        return len(front) in pareto_front(front + [optimistic])
