"""The search space of APRS: one pruning ratio per scope, on a grid.

A *scope* is a set of groups that share one ratio. With `groups` every group is its own scope (the full APRS
space); when there are too many groups for the trial budget, `blocks` (e.g. `backbone.stage3`) or `stages`
(`backbone`, `neck`) share ratios, and a JSON file can name scopes by glob patterns:

    {"early": ["backbone.stem*", "backbone.stage1*"], "late": ["backbone.stage4*", "neck.*"]}

Groups that no pattern names keep their full width. Rounding (`round_to`), minimum widths and the channel
replacement of the pruning engine apply to every candidate through `plan_from_ratios`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..prune.graph import Group
from ..prune.plan import Plan, plan_from_ratios

__all__ = ["SearchSpace", "scopes_for"]


def scopes_for(groups: list[Group], kind: str) -> dict[str, list[str]]:
    """Scope name → group names. `kind`: groups | blocks | stages | a JSON file of glob patterns."""
    names = [g.name for g in groups]
    if kind == "groups":
        return {n: [n] for n in names}
    if kind in ("blocks", "stages"):
        depth = 2 if kind == "blocks" else 1
        scopes: dict[str, list[str]] = {}
        for n in names:
            scopes.setdefault(".".join(n.split(".")[:depth]), []).append(n)
        return scopes
    path = Path(kind)
    if not path.is_file():
        raise ValueError(f"--scopes {kind!r}: use groups, blocks, stages or a JSON file of glob patterns")
    try:
        patterns = json.loads(path.read_text())
        assert isinstance(patterns, dict) and all(isinstance(v, list) for v in patterns.values())
    except (ValueError, AssertionError):
        raise ValueError(f"{path}: scopes must be a JSON object of scope name -> list of group-name patterns, "
                         'such as {"early": ["backbone.stage1*"]}') from None
    scopes, taken = {}, set()
    for scope, pats in patterns.items():
        members = [n for n in names if n not in taken and any(fnmatch.fnmatchcase(n, p) for p in pats)]
        if not members:
            raise ValueError(f"{path}: scope {scope!r} matches no group (run `edgeprune groups CKPT` for names)")
        taken.update(members)
        scopes[scope] = members
    return scopes


@dataclass
class SearchSpace:
    """Ratios on the grid 0, step, 2·step, ... ≤ max_ratio, one per scope."""

    groups: list[Group]
    scopes: dict[str, list[str]]
    step: float = 0.05
    max_ratio: float = 0.9
    round_to: int = 8
    min_width: int = 8
    _by_name: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.step <= self.max_ratio < 1:
            raise ValueError(f"need 0 < step ({self.step}) <= max_ratio ({self.max_ratio}) < 1")
        self._by_name = {g.name: g for g in self.groups}

    def grid(self) -> list[float]:
        n = int(round(self.max_ratio / self.step + 1e-9))
        return [round(i * self.step, 6) for i in range(n + 1)]

    def snap(self, ratio: float) -> float:
        """The grid point nearest to `ratio` (clipped to [0, max_ratio])."""
        return min(self.grid(), key=lambda r: abs(r - min(max(ratio, 0.0), self.max_ratio)))

    def suggest(self, trial) -> dict[str, float]:
        """Scope ratios for an Optuna trial (one float parameter per scope, on the grid)."""
        top = self.grid()[-1]
        return {s: trial.suggest_float(s, 0.0, top, step=self.step) for s in self.scopes}

    def group_ratios(self, scope_ratios: dict[str, float]) -> dict[str, float]:
        return {g: float(scope_ratios.get(s, 0.0)) for s, gs in self.scopes.items() for g in gs}

    def plan(self, scope_ratios: dict[str, float], scores: dict) -> Plan:
        plan = plan_from_ratios(self.groups, scores, self.group_ratios(scope_ratios), round_to=self.round_to,
                                min_width=self.min_width)
        plan.info.update(search_ratios=dict(scope_ratios))
        return plan

    def uniform(self, ratio: float) -> dict[str, float]:
        return {s: self.snap(ratio) for s in self.scopes}
