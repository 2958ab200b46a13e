"""Prune in steps with teacher assistants (TAKD): teacher → assistant → ... → student.

Distilling a tiny student straight from a large teacher suffers from the capacity gap; pruning in k steps, each
intermediate model recovered by distilling from the one before, bridges it. `step_plans` splits one final plan
into k nested plans whose widths shrink linearly from the group's width to the plan's (rounded like the plan);
every step keeps all the channels the later steps keep, so the last step's widths and channels are exactly the
final plan's. `prune_in_steps` applies them one after another, calling `recover(student, teacher, step)` after
each cut (edgeprune finetune with --teacher, in `edgeprune prune --steps K --assistant-kd`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..models import example_input
from .graph import Group
from .plan import Plan, group_widths_allowed, nearest_width, prune_model

__all__ = ["prune_in_steps", "step_plans"]


def step_plans(plan: Plan, groups: list[Group], scores: dict[str, torch.Tensor], steps: int, round_to: int = 8,
               min_width: int = 8) -> list[Plan]:
    """k plans, each in the coordinates of the model the previous one left (the first: the base model)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    absolute: list[dict[str, list[int]]] = [{} for _ in range(steps)]
    for g in groups:
        final = sorted(plan.keep.get(g.name, range(g.width)))
        if g.blocks:  # grouped channels must stay balanced per block: cut them in the last step only
            for i in range(steps):
                absolute[i][g.name] = final if i == steps - 1 else list(range(g.width))
            continue
        rest = [c for c in torch.argsort(scores[g.name], descending=True, stable=True).tolist() if c not in final]
        allowed = [w for w in group_widths_allowed(g, round_to, min_width) if w >= len(final)] or [len(final)]
        for i in range(steps):
            target = len(final) + (g.width - len(final)) * (steps - 1 - i) / steps
            n = len(final) if i == steps - 1 else nearest_width(target, allowed)
            absolute[i][g.name] = sorted(final + rest[: n - len(final)])
    plans, prev = [], {g.name: list(range(g.width)) for g in groups}
    for i, keep in enumerate(absolute):
        rel = {name: [prev[name].index(c) for c in idxs] for name, idxs in keep.items()}
        plans.append(Plan(rel, {name: len(prev[name]) for name in keep}, {**plan.info, "step": i + 1, "steps": steps}))
        prev = keep
    return plans


def prune_in_steps(model: nn.Module, plans: list[Plan],
                   recover: Callable[[nn.Module, nn.Module, int], nn.Module] | None = None) -> list[nn.Module]:
    """Apply `plans` in order to copies of `model`; after each cut `recover(student, teacher, step)` (the teacher
    is the model before the cut: the base for step 1, the previous assistant after) returns the recovered
    student. Returns the models of every step, the last being the final student."""
    models, teacher = [], model
    for i, plan in enumerate(plans, start=1):
        student = copy.deepcopy(teacher).eval()
        with torch.no_grad():
            prune_model(student, plan, example_input(student))
        if recover is not None:
            student = recover(student, teacher, i)
        models.append(student)
        teacher = student
    return models
