"""Find the groups of a traced model, name them, and decide which are safe to prune.

A group is found by walking Torch-Pruning's dependency edges from a root layer's output channels, carrying
`(channel here, channel of the root)` pairs through the index mappings of concatenations, splits, slices and
flattens. The root of each group is the first Conv / Linear in module order whose output channels are not yet in
a group — except that a layer whose channels make up only part of a wider layer's group (a C2f bottleneck's
output, tied to the second half of cv1) waits for the wider one, so that every group covers its root whole.

A group is *excluded* (listed in `Analysis.excluded` with the reason, never pruned) when removing channels from
it could not be done exactly: its channels reach a model output or an ignored layer's outputs; they pass through
an operation whose channel mapping Torch-Pruning cannot model (a reshape that splits channels into attention
heads or shuffles them, a broadcast or reduction across channels, a split with sizes fixed in code); two root
channels land on one channel somewhere; or a layer is of an unsupported kind or runs more than once per pass.
"""

from __future__ import annotations

import operator
import warnings
from collections import defaultdict
from copy import deepcopy
from dataclasses import dataclass, field

from torch import nn

from .group import Group, Member
from .heads import attention_convs, head_groups
from .nodes import NodeAudit
from .surgery import channel_blocks, channel_sizes, cut, unsupported_reason
from .trace import OPTYPE, HybridIndex, forward_problem, trace

_DUMMY = {OPTYPE.SPLIT, OPTYPE.CONCAT, OPTYPE.ELEMENTWISE, OPTYPE.RESHAPE, OPTYPE.UNBIND, OPTYPE.EXPAND,
          OPTYPE.SLICE, OPTYPE.OUTPUT, OPTYPE.CUSTOMIZED, OPTYPE.PARAMETER}
_ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class Analysis:
    groups: list  # prunable groups (edgeprune.prune.graph.Group), in module order of their roots
    excluded: dict[str, str] = field(default_factory=dict)  # root name → why the group is not prunable
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)  # of the traced forward pass


def analyze(model: nn.Module, example_inputs, ignored_layers: list[str] | None = None,
            probe: bool = True) -> Analysis:
    """All groups of `model`: the prunable ones and, with reasons, the ones left alone.

    With `probe`, groups that pass the graph audit are also tried on a copy of the model (see `_probe`).
    """
    declared = list(getattr(model, "output_layers", None) or [])
    user = list(ignored_layers or [])
    all_names = [n for n, _ in model.named_modules()]
    for p in declared + user:
        if not p or not any(_matches(n, p) for n in all_names):
            raise ValueError(f"ignored layer {p!r} matches no module of {type(model).__name__}")

    DG = trace(model, example_inputs)
    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    out_fns = {t.grad_fn for t in DG.outputs if t.grad_fn is not None}
    output_nodes = {n for n in DG.module2node.values() if n.grad_fn in out_fns or n.type == OPTYPE.OUTPUT}
    audit = NodeAudit(DG, model)

    an = Analysis([], {}, [tuple(t.shape) for t in DG.outputs])
    candidates, rank, attention = [], {}, attention_convs(model)
    for name, m in model.named_modules():
        if not isinstance(m, _ROOT_TYPES) or m not in DG.module2node:
            continue
        hit = next((p for p in declared if _matches(name, p)), None)
        if m in attention:
            an.excluded[name] = attention[m]
        elif hit is None:
            candidates.append(m)
        else:  # never walk from a declared output layer: its group is left alone anyway, and decode steps behind
            an.excluded[name] = f"output layer {hit}"  # it (view, slices, grids) can blow index mappings up
        rank[name] = len(rank)
    chosen = _choose_roots(DG, candidates, an)
    chosen.sort(key=lambda c: order[c[0]])
    claimed: dict[tuple[int, str, int], str] = {}
    for root, raw in chosen:
        group, reasons = _build_group(DG, root, raw, audit, output_nodes, order)
        outs = [mb.name for mb in group.members if mb.kind == "out"]
        hit = [p for p in declared if any(_matches(n, p) for n in outs)]
        hit_user = [p for p in user if any(_matches(n, p) for n in outs)]
        if hit:
            reasons.insert(0, f"touches the outputs of output layer {hit[0]}")
        if hit_user:
            reasons.insert(0, f"ignored ({hit_user[0]})")
        if not reasons:
            keys = [(id(mb.module), mb.kind, i) for mb in group.members for i in mb.idxs]
            other = next((claimed[k] for k in keys if k in claimed), None)
            if other is not None:
                reasons.append(f"overlaps group {other}")
            else:
                claimed.update((k, group.name) for k in keys)
        if reasons:
            reasons = list(dict.fromkeys(reasons))
            more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
            an.excluded[group.name] = "; ".join(reasons[:3]) + more
        else:
            an.groups.append(group)
    _add_head_groups(model, an, claimed, rank, order)
    if probe and an.groups:
        _probe(model, example_inputs, an)
    an.excluded = dict(sorted(an.excluded.items(), key=lambda kv: rank[kv[0]]))
    return an


def _add_head_groups(model: nn.Module, an: Analysis, claimed: dict, rank: dict, order: dict) -> None:
    """Attention heads as groups (edgeprune.prune.heads), unless their channels are in a group already."""
    for g in head_groups(model):
        keys = [(id(mb.module), mb.kind, i) for mb in g.members for i in mb.idxs]
        other = next((claimed[k] for k in keys if k in claimed), None)
        rank[g.name] = len(rank)
        if other is not None:
            an.excluded[g.name] = f"overlaps group {other}"
            continue
        claimed.update((k, g.name) for k in keys)
        an.groups.append(g)
    an.groups.sort(key=lambda g: order[g.root.module])


def _choose_roots(DG, candidates: list[nn.Module], an: Analysis) -> list[tuple[nn.Module, dict]]:
    """Pick roots in module order, each walked once; a root that is only part of a wider group waits a pass."""
    covered: dict[nn.Module, set[int]] = {}
    chosen, deferred = [], []
    for first_pass in (True, False):
        for m in candidates if first_pass else deferred:
            if m in covered:
                continue
            try:
                raw = _collect(DG, m)
            except _TooLarge as e:
                an.excluded[DG._module2name[m]] = str(e)
                continue
            if first_pass and _waits_for_wider_root(DG, raw, m, covered):
                deferred.append(m)
                continue
            chosen.append((m, raw))
            for (node, handler), seen in raw.items():
                if isinstance(node.module, _ROOT_TYPES) and DG.is_out_channel_pruning_fn(handler):
                    covered.setdefault(node.module, set()).update(seen)
    return chosen


def _build_group(DG, root: nn.Module, raw: dict, audit, output_nodes: set, order: dict):
    """The Group walked from `root`, and every reason found not to prune it."""
    members, splits, reasons, op_reasons = [], [], [], []  # layer reasons first: they are the clearest
    for (node, handler), seen in raw.items():
        tied = sorted(i for i, roots in seen.items() if len(roots) > 1)
        if node.type in _DUMMY or not isinstance(node.module, nn.Module):
            op_reasons += [r for r in (audit.reason(node),) if r]
            if node in output_nodes:
                reasons.append("its channels reach a model output")
            if node in DG.splits:
                splits.append((node, sorted((i, min(rs)) for i, rs in seen.items())))
                if tied:
                    op_reasons.append(f"several channels meet at channel {tied[0]} of a split")
            continue
        mod, mname = node.module, DG._module2name[node.module]
        if isinstance(mod, nn.PReLU) and mod.num_parameters == 1:
            continue  # one shared slope: nothing to cut
        kind = "out" if DG.is_out_channel_pruning_fn(handler) else "in"
        if (why := unsupported_reason(mod)) is not None:
            reasons.append(f"{mname}: {why}")
        if DG.calls[mod] > 1:
            reasons.append(f"{mname} runs {DG.calls[mod]} times per forward pass")
        if tied:
            reasons.append(f"several channels of the root meet at channel {tied[0]} of {mname} ({kind})")
        if node in output_nodes and kind == "out":
            reasons.append(f"{mname} produces a model output")
        pairs = sorted(((i, r) for i, rs in seen.items() for r in rs), key=lambda p: (p[1], p[0]))
        size = channel_sizes(mod)[0 if kind == "out" else 1]
        if any(not 0 <= i < size for i, _ in pairs):
            reasons.append(f"channel mapping into {mname} ({kind}) goes out of range")
        members.append(Member(mname, mod, kind, [i for i, _ in pairs], [r for _, r in pairs]))
    members.sort(key=lambda mb: (mb.module is not root or mb.kind != "out", order[mb.module], mb.kind != "out"))
    reasons += op_reasons
    blocks, min_keep, why = _blocks(DG, members, splits)
    if why:
        reasons.append(why)
    group = Group(DG._module2name[root], channel_sizes(root)[0], members, blocks, min_keep,
                  [(DG.splits[n], p) for n, p in splits])
    return group, reasons


def _probe(model: nn.Module, example_inputs, an: Analysis) -> None:
    """Drop groups whose pruning breaks the forward pass although the graph allowed it.

    The model's code can tie widths together where autograd cannot see it, e.g. an attention block that
    reshapes its output with the channel count it read from its input's shape. On a copy, one channel is removed
    from every group (one per block) and the copy is run; on failure the groups are bisected to find the culprits.
    """
    plans = {}
    for g in an.groups:
        blocks = g.blocks or [list(range(g.width))]
        if min(len(b) for b in blocks) >= 2 and g.width - len(blocks) >= g.min_keep:
            plans[g.name] = (g, {b[-1] for b in blocks})

    def broken(names: list[str]) -> str | None:
        copy = deepcopy(model)
        try:
            cut(copy, [plans[n] for n in names])
        except Exception as e:  # noqa: BLE001 - reported as the reason
            return f"cannot be cut ({type(e).__name__}: {e})"
        return forward_problem(copy, example_inputs, an.output_shapes)

    def culprits(names: list[str], problem: str) -> dict[str, str]:
        if len(names) == 1:
            return {names[0]: problem}
        half = len(names) // 2
        found = {}
        for part in (names[:half], names[half:]):
            if (p := broken(part)) is not None:
                found.update(culprits(part, p))
        return found or {n: f"pruning it together with {len(names) - 1} other groups {problem}" for n in names}

    try:
        problem = broken(list(plans))
    except Exception as e:  # noqa: BLE001 - e.g. a model that cannot be deep-copied: skip the probe, say so
        warnings.warn(f"edgeprune.prune.graph: could not probe groups on a copy of the model ({e}); "
                      "apply_plan still checks the pruned model and restores it on failure", stacklevel=3)
        return
    if problem is None:
        return
    bad = culprits(list(plans), problem)
    for name, why in bad.items():
        an.excluded[name] = f"pruning it {why}" if not why.startswith("pruning") else why
    an.groups = [g for g in an.groups if g.name not in bad]


def check_keep(group, kept) -> None:
    """Raise ValueError unless `kept` is a valid keep list for `group`."""
    try:
        ks = [operator.index(k) for k in kept]
    except TypeError as e:
        raise ValueError(f"group {group.name}: keep indices must be integers ({e})") from None
    if len(ks) < group.min_keep:
        raise ValueError(f"group {group.name}: keeps {len(ks)} channels, fewer than its minimum {group.min_keep}"
                         + (" (two per group of a grouped conv)" if group.min_keep > 1 else ""))
    bad = sorted({k for k in ks if not 0 <= k < group.width})
    if bad:
        raise ValueError(f"group {group.name}: indices {bad[:8]} out of range 0..{group.width - 1}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"group {group.name}: keep list has duplicate indices")
    if group.blocks:
        counts = [len(set(b) & set(ks)) for b in group.blocks]
        if len(set(counts)) != 1:
            raise ValueError(f"group {group.name}: must keep the same number of channels in each of its "
                             f"{len(group.blocks)} blocks (grouped conv / GroupNorm / chunk), got {counts}")


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


class _TooLarge(Exception):
    pass


def _collect(DG, module: nn.Module, limit: int = 1_000_000) -> dict:
    """Walk the dependency edges from `module`'s output channels: (node, handler) → {channel: {root channels}}."""
    node = DG.module2node[module]
    fn = DG.get_pruner_of_module(module).prune_out_channels
    width = channel_sizes(module)[0]
    total = width
    seen = {(node, fn): {i: {i} for i in range(width)}}
    stack = [(node, fn, [HybridIndex(i, i) for i in range(width)])]
    while stack:
        n, f, idxs = stack.pop()
        for dep in n.dependencies:
            if dep.trigger != f:
                continue
            new = idxs
            for mapping in dep.index_mapping:
                if mapping is not None:
                    new = mapping(new)
            if not new:
                continue
            d = seen.setdefault((dep.target, dep.handler), {})
            fresh = []
            for h in new:
                roots = d.setdefault(int(h.idx), set())
                if h.root_idx not in roots:
                    roots.add(h.root_idx)
                    fresh.append(h)
            if fresh:
                total += len(fresh)
                if total > limit:
                    raise _TooLarge(f"its channel mapping grows past {limit} entries (a flatten or reshape that "
                                    "Torch-Pruning maps as a huge fan-out)")
                stack.append((dep.target, dep.handler, fresh))
    return seen


def _waits_for_wider_root(DG, raw: dict, root: nn.Module, covered: dict) -> bool:
    """True when another Conv/Linear in the group has only part of its outputs in it (it should be the root)."""
    for (node, handler), seen in raw.items():
        m = node.module
        if (m is not root and isinstance(m, _ROOT_TYPES) and m not in covered
                and DG.is_out_channel_pruning_fn(handler) and len(seen) < channel_sizes(m)[0]):
            return True
    return False


def _blocks(DG, members, splits) -> tuple[list[list[int]], int, str | None]:
    """The group's equal-count blocks (group coordinates) and fewest channels it may keep, or why the blocks cannot
    be expressed as one partition.

    A grouped conv must keep two outputs per group: with one it would become depthwise, which ties its inputs to
    its outputs and would merge groups after pruning (group names must survive pruning).
    """
    parts, min_keep = [], 1
    for mb in members:
        b = channel_blocks(mb.module, mb.kind)
        if b > 1:
            per = channel_sizes(mb.module)[0 if mb.kind == "out" else 1] // b
            part = defaultdict(set)
            for i, r in zip(mb.idxs, mb.group_idxs):
                part[i // per].add(r)
            parts.append((mb.name, part))
            if mb.kind == "out" and isinstance(mb.module, nn.modules.conv._ConvNd) and per >= 2:
                min_keep = max(min_keep, 2 * len([s for s in part.values() if s]))
    for node, pairs in splits:
        info = DG.splits[node]
        off = info.offsets
        if info.func == "chunk":
            shared = [list(range(len(off) - 1))]
        else:
            by_attr = defaultdict(list)
            for p, a in enumerate(info.attrs):
                by_attr[a].append(p)
            shared = [ps for ps in by_attr.values() if len(ps) > 1]
        have = {i for i, _ in pairs}
        for ps in shared:
            if any(i not in have for p in ps for i in range(off[p], off[p + 1])):
                return [], 1, f"the input of a {info.func} in {info.module or 'the model'} is shared with other groups"
            part = {p: {r for i, r in pairs if off[p] <= i < off[p + 1]} for p in ps}
            parts.append((f"{info.func} in {info.module or 'the model'}", part))
    uniq = []
    for where, part in parts:
        blocks = sorted(sorted(s) for s in part.values() if s)
        flat = [r for blk in blocks for r in blk]
        if len(flat) != len(set(flat)):
            return [], 1, f"a channel of the group falls in two blocks of {where}"
        if len(blocks) > 1 and blocks not in uniq:
            uniq.append(blocks)
    if not uniq:
        return [], min_keep, None
    uniq.sort(key=len, reverse=True)
    finest = uniq[0]
    where_of = {r: k for k, blk in enumerate(finest) for r in blk}
    for coarse in uniq[1:]:  # a coarser partition is implied when each of its blocks is the same number of fine ones
        counts = []
        for blk in coarse:
            fine = {where_of.get(r) for r in blk}
            if None in fine or sum(len(finest[k]) for k in fine) != len(blk):
                return [], 1, "conflicting block constraints (grouped convs / GroupNorm / chunk) on the same channels"
            counts.append(len(fine))
        if len(set(counts)) != 1:
            return [], 1, "conflicting block constraints (grouped convs / GroupNorm / chunk) on the same channels"
    return finest, min_keep, None
