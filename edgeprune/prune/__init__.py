"""Pruning a detector as a whole: coupled-channel groups (graph), channel importance, plans and their exact
application, chains of nested cuts. docs/pruning-graph.md, docs/pruning.md.

    from edgeprune.prune import find_groups, score_groups, rankable, plan_global, pruned_model
"""

from .graph import Group, Member, apply_plan, find_groups, group_widths
from .importance import rankable, score_groups
from .plan import Plan, plan_from_ratios, plan_from_widths, plan_global, prune_model, pruned_model

__all__ = ["Group", "Member", "Plan", "apply_plan", "find_groups", "group_widths", "plan_from_ratios",
           "plan_from_widths", "plan_global", "prune_model", "pruned_model", "rankable", "score_groups"]
