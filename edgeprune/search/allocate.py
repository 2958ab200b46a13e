"""Latency-budgeted channel allocation (HALP, NetAdapt): the channels to remove so that a model meets a latency
budget on the target while losing the least importance.

A greedy knapsack over all groups. A *move* lowers one group to its next allowed width (multiples of the channel
block the target's kernels want, so every width it picks is a fast one); its cost is the importance of the
channels it removes, its gain the milliseconds the target's calibrated lookup table predicts it saves. The move
with the lowest importance per millisecond goes first, until the predicted latency meets the budget.

Predictions come from the table without pruning a model per move: a `UnitMap` says how the channel counts of
every latency unit (edgeprune.latency.layers) follow the groups' widths. It is learnt once per model by pruning
each group alone by a few channels and watching which units change, so it holds for any architecture the
pruning graph handles (concatenations, residual adds, grouped convolutions), not only YOLOv5's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..latency.layers import Unit, decompose
from ..prune.graph import Group, apply_plan, keep_top
from ..prune.plan import group_widths_allowed

__all__ = ["Allocation", "UnitMap", "allocate"]


@dataclass
class UnitMap:
    """The model's latency units at its widths, and how each unit's (cin, cout) moves per channel a group loses."""

    units: list[Unit]
    widths: dict[str, int]  # group name -> width the units were traced at
    slopes: dict[str, list[tuple[int, float, float]]]  # group -> [(unit index, Δcin, Δcout) per channel removed]

    @classmethod
    def learn(cls, model: nn.Module, groups: list[Group], input_shape: tuple[int, ...],
              example: torch.Tensor) -> UnitMap:
        """Prune a copy of `model` once per group (one channel per block, the group's weakest) and compare its
        units with the model's: one trace per group, no arithmetic (decompose runs on the meta device)."""
        base = decompose(model, input_shape)
        slopes: dict[str, list[tuple[int, float, float]]] = {}
        for g in groups:
            keep = keep_top(g, list(range(g.width, 0, -1)), g.width - max(1, len(g.blocks)))
            removed = g.width - len(keep)
            if removed <= 0:
                slopes[g.name] = []
                continue
            m = copy.deepcopy(model).eval()
            with torch.no_grad():
                apply_plan(m, {g.name: keep}, example)
            units = decompose(m, input_shape)
            if len(units) != len(base):
                raise RuntimeError(f"pruning group {g.name} changed the model's units ({len(base)} -> {len(units)});"
                                   " the latency allocation needs a model whose layers stay when channels go")
            slopes[g.name] = [(i, (b.cin - u.cin) / removed, (b.cout - u.cout) / removed)
                              for i, (b, u) in enumerate(zip(base, units)) if (b.cin, b.cout) != (u.cin, u.cout)]
        return cls(base, {g.name: g.width for g in groups}, slopes)

    def units_at(self, widths: dict[str, int]) -> list[Unit]:
        """The units of the model pruned to `widths` (groups absent keep their width)."""
        delta = [[0.0, 0.0] for _ in self.units]
        for name, w in widths.items():
            lost = self.widths.get(name, w) - w
            for i, dcin, dcout in self.slopes.get(name, []) if lost else []:
                delta[i][0] += dcin * lost
                delta[i][1] += dcout * lost
        return [u if d == [0.0, 0.0] else u.with_channels(max(1, round(u.cin - d[0])), max(1, round(u.cout - d[1])))
                for u, d in zip(self.units, delta)]

    def neighbours(self) -> dict[str, set[str]]:
        """Groups whose moves change the same units (a move's gain depends only on the units it touches)."""
        touched: dict[int, set[str]] = {}
        for name, rows in self.slopes.items():
            for i, _, _ in rows:
                touched.setdefault(i, set()).add(name)
        return {name: set().union(*(touched[i] for i, _, _ in rows)) if rows else {name}
                for name, rows in self.slopes.items()}


@dataclass
class Allocation:
    widths: dict[str, int]  # group -> channels to keep
    predicted_ms: float
    start_ms: float
    target_ms: float
    moves: list[tuple[str, int, float, float]] = field(default_factory=list)  # (group, new width, cost, ms saved)

    @property
    def reached(self) -> bool:
        return self.predicted_ms <= self.target_ms

    @property
    def reason(self) -> str:
        if self.reached:
            return ""
        return (f"the table predicts {self.predicted_ms:.2f} ms at the smallest allowed widths, above the "
                f"{self.target_ms:.2f} ms asked: lower --min-width, or accept a slower target")


def allocate(groups: list[Group], scores: dict[str, torch.Tensor], unit_map: UnitMap, predictor,
             target_ms: float, round_to: int = 8, min_width: int = 8) -> Allocation:
    """Widths that meet `target_ms` (predicted by `predictor`, a LatencyPredictor) losing the least importance.

    `scores` must be comparable across groups (importance.rankable): a move's cost is the sum of the scores of the
    channels it removes (the lowest the group keeps), its gain the predicted ms saved. Moves that save nothing
    are never taken (the next width down that does save is offered instead); ties go to the group first in model
    order.
    """
    allowed = {g.name: group_widths_allowed(g, round_to, min_width) for g in groups}
    ranked = {g.name: torch.sort(scores[g.name].float(), descending=True).values for g in groups}
    widths = {g.name: g.width for g in groups}
    for name, w in widths.items():  # start on an allowed width (a group's full width always is one)
        widths[name] = max([a for a in allowed[name] if a <= w] or [w])
    now = predictor.predict(unit_map.units_at(widths))
    alloc = Allocation(dict(widths), now, predictor.predict(unit_map.units), target_ms)
    near = unit_map.neighbours()
    order = {g.name: i for i, g in enumerate(groups)}

    def move(name: str) -> tuple[float, int, float, float]:
        """The group's next width down that saves time (a width off the runtime's fast path can be slower than
        a wider one: such a step is jumped over, not refused)."""
        for w in reversed([a for a in allowed[name] if a < widths[name]]):
            saved = now - predictor.predict(unit_map.units_at({**widths, name: w}))
            if saved > 1e-9:
                cost = float(ranked[name][w:widths[name]].sum())
                return cost / saved, w, cost, saved
        return math.inf, widths[name], 0.0, 0.0

    best = {name: move(name) for name in widths}
    while now > target_ms:
        name = min(best, key=lambda n: (best[n][0], order[n]))
        ratio, w, cost, _ = best[name]
        if math.isinf(ratio):
            break
        widths[name] = w
        after = predictor.predict(unit_map.units_at(widths))
        alloc.moves.append((name, w, cost, now - after))
        now = after
        for n in near.get(name, {name}) | {name}:  # the prediction is a sum over units: other gains stay
            best[n] = move(n)
    alloc.widths, alloc.predicted_ms = widths, now
    return alloc
