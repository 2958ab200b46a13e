"""Pruning plans: which channels of each coupled-channel group to keep, made from ratios and importance scores.

A plan maps group names (edgeprune.prune.graph) to the sorted channel indices kept, and is plain JSON, so a person can
read and edit it and it applies to a fresh copy of the same model definition.

Widths are rounded to hardware-friendly sizes: a group may keep a multiple of `round_to` (tensor cores want 8 for
FP16, 32 for INT8), never fewer than `min_width`, or its full width. With one global ratio, channels are ranked
across all groups; rounding and minimum widths then move the result off the request, and the channel replacement
policy (CRP, from the three-stage paper) puts it back: it takes the next-least-important rounding step from
other groups, or gives back the most important one, until the kept total is as close to the request as the
rounding steps allow.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..utils.files import atomic_write_text
from .graph import Group, apply_plan, keep_top


@dataclass
class Plan:
    keep: dict[str, list[int]]  # group name -> kept channel indices (sorted)
    widths: dict[str, int]  # every group's width before pruning (groups absent from keep stay whole)
    info: dict = field(default_factory=dict)  # how it was made: criterion, requested ratio, round_to, ...

    def kept_width(self, name: str) -> int:
        """Channels group `name` keeps (all of them when the plan leaves it alone)."""
        return len(self.keep.get(name, range(self.widths[name])))

    @property
    def kept(self) -> int:
        return sum(self.kept_width(name) for name in self.widths)

    @property
    def total(self) -> int:
        return sum(self.widths.values())

    @property
    def ratio(self) -> float:
        """Achieved channel pruning ratio over all groups: 1 − kept / total."""
        return 1.0 - self.kept / max(self.total, 1)

    def to_dict(self) -> dict:
        return {"format": "edgeprune-plan", "version": 1, "info": self.info, "widths": self.widths,
                "keep": self.keep, "ratio": self.ratio}

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict, source: str = "plan") -> Plan:
        if not isinstance(d, dict) or d.get("format") != "edgeprune-plan":
            raise ValueError(f"{source}: not an edgeprune plan (no 'format': 'edgeprune-plan')")
        widths = {str(k): int(v) for k, v in d["widths"].items()}
        keep = {str(k): sorted(int(i) for i in v) for k, v in d["keep"].items()}
        for name, idxs in keep.items():
            if name not in widths:
                raise ValueError(f"{source}: keep names group {name!r}, which is not in widths")
            if not idxs or idxs[0] < 0 or idxs[-1] >= widths[name] or len(set(idxs)) != len(idxs):
                raise ValueError(f"{source}: group {name!r} keeps {idxs[:5]}...: indices must be distinct, "
                                 f"in 0..{widths[name] - 1}, and at least one")
        return cls(keep, widths, dict(d.get("info", {})))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read plan ({e})") from None
        return cls.from_dict(d, source=str(path))


def allowed_widths(width: int, round_to: int = 8, min_width: int = 8) -> list[int]:
    """Widths a group may keep, ascending: multiples of round_to at or above min_width, and the full width."""
    floor = min(max(min_width, 1), width)
    step = max(round_to, 1)
    return sorted({w for w in range(step, width + 1, step) if w >= floor} | {width})


def nearest_width(target: float, allowed: list[int]) -> int:
    """The allowed width nearest to target; ties go to the larger (safer) width."""
    return min(allowed, key=lambda w: (abs(w - target), -w))


def group_widths_allowed(group: Group, round_to: int, min_width: int) -> list[int]:
    """allowed_widths for a group: a group split into equal blocks (grouped convs, chunk halves) rounds per block,
    so every block keeps the same number of channels."""
    blocks = max(1, len(getattr(group, "blocks", [])))
    floor = max(min_width, getattr(group, "min_keep", 1))
    return allowed_widths(group.width, round_to * blocks, floor)


def _top(group: Group, scores: torch.Tensor, k: int) -> list[int]:
    if getattr(group, "blocks", None):
        return keep_top(group, scores.tolist(), k)
    return sorted(torch.argsort(scores, descending=True, stable=True)[:k].tolist())


def plan_from_ratios(groups: list[Group], scores: dict[str, torch.Tensor], ratios: dict[str, float] | float,
                     round_to: int = 8, min_width: int = 8) -> Plan:
    """Each group loses `ratios[name]` (or one ratio for all) of its channels, the least important first."""
    keep = {}
    for g in groups:
        r = ratios if isinstance(ratios, (int, float)) else ratios.get(g.name, 0.0)
        if not 0.0 <= r < 1.0:
            raise ValueError(f"pruning ratio of {g.name} must be in [0, 1), not {r}")
        k = nearest_width(g.width * (1 - r), group_widths_allowed(g, round_to, min_width))
        keep[g.name] = _top(g, scores[g.name], k)
    info = {"mode": "per-group", "round_to": round_to, "min_width": min_width}
    return Plan(keep, {g.name: g.width for g in groups}, info)


def plan_from_widths(groups: list[Group], scores: dict[str, torch.Tensor], widths: dict[str, int],
                     info: dict | None = None) -> Plan:
    """Each group keeps its `widths[name]` most important channels (groups absent stay whole)."""
    keep = {g.name: _top(g, scores[g.name], widths.get(g.name, g.width)) for g in groups}
    return Plan(keep, {g.name: g.width for g in groups}, dict(info or {"mode": "widths"}))


def plan_global(groups: list[Group], scores: dict[str, torch.Tensor], ratio: float, round_to: int = 8,
                min_width: int = 8) -> Plan:
    """One global ratio: rank all channels together, round each group, then CRP back to the requested total.

    `scores` must be comparable across groups (importance.rankable).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"global pruning ratio must be in [0, 1), not {ratio}")
    widths = {g.name: g.width for g in groups}
    allowed = {g.name: group_widths_allowed(g, round_to, min_width) for g in groups}
    order = {n: torch.argsort(s, descending=True, stable=True) for n, s in scores.items()}
    target = sum(widths.values()) * (1 - ratio)
    counts = _global_counts(scores, ratio)
    counts = {n: nearest_width(counts[n], allowed[n]) for n in widths}
    counts = _replace_channels(counts, allowed, scores, order, target)
    keep = {g.name: _top(g, scores[g.name], counts[g.name]) for g in groups}
    info = {"mode": "global", "requested_ratio": ratio, "round_to": round_to, "min_width": min_width}
    return Plan(keep, widths, info)


def plan_warnings(plan: Plan, groups: list[Group], round_to: int = 8, min_width: int = 8) -> list[str]:
    """What a user should hear about a plan: a ratio it could not reach, groups cut to their minimum width."""
    out = []
    asked = plan.info.get("requested_ratio")
    if asked is not None and plan.ratio < asked - 0.01:
        out.append(f"asked for ratio {asked:g}, the plan reaches {plan.ratio:.3f}: that is the most pruning the "
                   f"minimum widths allow (--min-width {min_width}, rounding to {round_to})")
    floor = [g.name for g in groups if g.width > min_width and plan.kept_width(g.name) <= g.width // 4
             and plan.kept_width(g.name) <= group_widths_allowed(g, round_to, min_width)[0]]
    if floor:
        names = ", ".join(floor[:3]) + (", ..." if len(floor) > 3 else "")
        out.append(f"{len(floor)} of {len(groups)} groups lose 75 % or more and are cut to their minimum width "
                   f"({names}): such a model may not recover; check its accuracy before deploying it")
    return out


def _global_counts(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, int]:
    """Channels each group keeps when the `ratio` least important channels of the whole model are removed."""
    names = list(scores)
    flat = torch.cat([scores[n] for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    removed = torch.argsort(flat, stable=True)[: round(ratio * len(flat))]
    lost = torch.bincount(owner[removed], minlength=len(names))
    return {n: len(scores[n]) - int(lost[i]) for i, n in enumerate(names)}


def _replace_channels(counts: dict[str, int], allowed: dict[str, list[int]], scores: dict[str, torch.Tensor],
                      order: dict[str, torch.Tensor], target: float) -> dict[str, int]:
    """CRP: move whole rounding steps between groups until the kept total is nearest to target.

    Going down removes the step whose channels have the lowest mean importance; going up restores the step with
    the highest. Groups never leave their allowed widths, so none falls under its minimum.
    """
    counts = dict(counts)

    def step_mean(name: str, lo: int, hi: int) -> float:
        return float(scores[name][order[name][lo:hi]].mean())

    while True:
        kept = sum(counts.values())
        moves = []
        for n, c in counts.items():
            i = allowed[n].index(c)
            if kept > target and i > 0:
                lower = allowed[n][i - 1]
                moves.append((step_mean(n, lower, c), n, lower))
            elif kept < target and i + 1 < len(allowed[n]):
                upper = allowed[n][i + 1]
                moves.append((-step_mean(n, c, upper), n, upper))
        if not moves:
            return counts
        _, name, width = min(moves)
        new_kept = kept - counts[name] + width
        if abs(new_kept - target) >= abs(kept - target):
            return counts
        counts[name] = width


PLANS_ATTR = "pruning_plans"  # where a pruned module carries its plans (copied along by copy.deepcopy)


def plans_of(model: nn.Module) -> list[dict]:
    """The plans applied to `model` since its base was built, in order: `{"widths", "keep"}` each, what a
    checkpoint stores to rebuild the pruned architecture."""
    return list(getattr(model, PLANS_ATTR, []))


def prune_model(model: nn.Module, plan: Plan, example_inputs: torch.Tensor) -> nn.Module:
    """Apply `plan` in place and record it on the model (`plans_of`), so that checkpoints can rebuild the pruned
    architecture."""
    apply_plan(model, plan.keep, example_inputs)
    record = {"widths": {n: plan.widths[n] for n in plan.keep if n in plan.widths}, "keep": plan.keep}
    setattr(model, PLANS_ATTR, [*plans_of(model), record])
    return model


def pruned_model(model: nn.Module, plan: Plan, example_inputs: torch.Tensor) -> nn.Module:
    """A pruned copy of `model` in eval mode; `model` itself stays as it is."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        return prune_model(m, plan, example_inputs)


def ratio_for_flops(make_plan: Callable[[float], Plan], model: nn.Module, share: float, img_size: int,
                    steps: int = 14) -> tuple[float, Plan]:
    """Bisect the ratio whose plan (`make_plan(ratio)`) leaves at most `share` of the model's FLOPs."""
    from ..evaluate.complexity import count_flops
    from ..models import example_input

    f0, lo, hi = count_flops(model, img_size), 0.0, 0.95
    for _ in range(steps):
        mid = (lo + hi) / 2
        flops = count_flops(pruned_model(model, make_plan(mid), example_input(model)), img_size)
        lo, hi = (mid, hi) if flops > share * f0 else (lo, mid)
    return hi, make_plan(hi)
