"""Groups of coupled channels ("full-link grouping"), with stable names, and exact pruning of a plan.

A *group* is a set of channels that must be removed together: the output channels of one root layer and
everything tied to them — its BatchNorm, the inputs of the layers that read them, the other branches of a
residual add, the slices of concatenations and splits they pass through. `find_groups` lists them; `apply_plan`
removes, for each named group, every channel not in its keep list, from every layer the group touches.

See docs/pruning-graph.md. Tracing and the dependency rules come from Torch-Pruning (`trace.py`, which
also fixes its split / concat offsets under torch 2.x); layer surgery is ours (`surgery.py`); root choice, naming and
which groups are safe to prune are decided in `audit.py`; the public types are in `group.py`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .audit import Analysis, analyze, check_keep
from .group import Group, Member
from .surgery import cut
from .trace import forward_problem

__all__ = ["Analysis", "Group", "Member", "analyze", "apply_plan", "find_groups", "group_widths", "keep_top"]


@contextmanager
def _one_thread():
    """Traces run on tiny inputs where threads only add overhead, and torch's two-thread kernels slow down many
    times over when another process holds a core (seen on 2-core CI machines): trace single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def find_groups(model: nn.Module, example_inputs: torch.Tensor,
                ignored_layers: list[str] | None = None) -> list[Group]:
    """Every prunable group of coupled channels, ordered by the model's module order.

    Groups touching the output channels of `model.output_layers` (when the model has them) or of `ignored_layers`
    (qualified names or prefixes) are left out, as are groups that cannot be pruned safely (see `analyze`).
    """
    with _one_thread():
        return analyze(model, example_inputs, ignored_layers).groups


def group_widths(model: nn.Module, example_inputs: torch.Tensor,
                 ignored_layers: list[str] | None = None) -> dict[str, int]:
    return {g.name: g.width for g in find_groups(model, example_inputs, ignored_layers)}


def keep_top(group: Group, scores, n: int) -> list[int]:
    """The `n` best channels of `group` by `scores` (one per group channel), respecting `group.blocks`.

    With blocks, every block keeps the same number of its own best channels, so the result may differ from `n`
    by less than one channel per block; it never goes below `group.min_keep`.
    """
    scores = [float(s) for s in scores]
    if len(scores) != group.width:
        raise ValueError(f"group {group.name}: {len(scores)} scores for {group.width} channels")
    n = max(group.min_keep, min(int(n), group.width))

    def best(chans, k):
        return sorted(sorted(chans, key=lambda c: (-scores[c], c))[:k])

    if not group.blocks:
        return best(range(group.width), n)
    in_block = {c for b in group.blocks for c in b}
    free = [c for c in range(group.width) if c not in in_block]
    size = min(len(b) for b in group.blocks)
    q = max(1, -(-group.min_keep // len(group.blocks)), min(size, round(n * size / group.width)))
    keep = [c for b in group.blocks for c in best(b, q)]
    keep += best(free, max(0, n - len(keep)))
    return sorted(keep)


def apply_plan(model: nn.Module, keep: dict[str, list[int]], example_inputs: torch.Tensor) -> nn.Module:
    """Prune `model` in place so that group `name` keeps exactly the channels `keep[name]` (group coordinates).

    Groups absent from `keep` are untouched. Raises KeyError for an unknown or unprunable group and ValueError
    for a bad keep list (out of range, duplicated, empty, or unbalanced across the group's blocks) before
    touching the model. If the pruned model no longer runs or changes its output shapes, every layer is restored
    and RuntimeError is raised. Returns the model.
    """
    with _one_thread():
        return _apply_plan(model, keep, example_inputs)


def _apply_plan(model: nn.Module, keep: dict[str, list[int]], example_inputs: torch.Tensor) -> nn.Module:
    an = analyze(model, example_inputs)
    by_name = {g.name: g for g in an.groups}
    plan: list[tuple[Group, set[int]]] = []
    for name, kept in keep.items():
        if name not in by_name:
            if name in an.excluded:
                raise KeyError(f"group {name!r} cannot be pruned: {an.excluded[name]}")
            raise KeyError(f"unknown group {name!r}; groups of this model: {', '.join(by_name) or 'none'}")
        g = by_name[name]
        check_keep(g, kept)
        plan.append((g, set(range(g.width)) - {int(k) for k in kept}))

    undo = cut(model, plan)
    problem = forward_problem(model, example_inputs, an.output_shapes)
    if problem:
        undo()
        raise RuntimeError(f"pruning groups {[g.name for g, p in plan if p]} {problem}; the model was restored")
    return model
