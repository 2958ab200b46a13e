"""Remove channels from single layers, exactly: `shrink(module, out_keep, in_keep)`.

Torch-Pruning's own layer functions are not used for this: its grouped-convolution input pruning keeps the first
`len(keep) // groups` indices whatever was asked, and pruning one group at a time through a dependency graph
leaves split / concat sizes stale for the next group. Here every layer is cut once, with the union of what all
groups remove from it, in the channel coordinates of the unpruned model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .mha import shrink_mha

SUPPORTED = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
             nn.modules.instancenorm._InstanceNorm, nn.PReLU)


def unsupported_reason(module: nn.Module) -> str | None:
    """Why channels of `module` cannot be removed here (None when they can)."""
    if isinstance(module, nn.MultiheadAttention):
        return "nn.MultiheadAttention ties its embedding width to q, k, v and out_proj (its heads are cut instead)"
    if not isinstance(module, SUPPORTED):
        return f"{type(module).__name__} layers are not supported"
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
        if module.transposed:
            return "grouped transposed convolutions are not supported"
        if module.groups == module.out_channels and module.in_channels != module.out_channels:
            return "depthwise convolution with in_channels != out_channels"
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
        return "LayerNorm over more than one dimension"
    if isinstance(module, nn.PReLU) and module.num_parameters == 1:
        return None  # one shared slope: nothing to cut
    return None


def is_depthwise(m: nn.Module) -> bool:
    return (isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and m.groups == m.out_channels
            and m.in_channels == m.out_channels)


def channel_blocks(module: nn.Module, kind: str) -> int:
    """How many equal contiguous blocks the channels of `module` on side `kind` form (grouped conv, GroupNorm)."""
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and not is_depthwise(module):
        return module.groups
    if isinstance(module, nn.GroupNorm):
        return module.num_groups
    return 1


def channel_sizes(m: nn.Module) -> tuple[int, int]:
    """(output channels, input channels) of a supported layer; normalisation layers and PReLU have one count."""
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.out_channels, m.in_channels
    if isinstance(m, nn.Linear):
        return m.out_features, m.in_features
    if isinstance(m, nn.MultiheadAttention):  # "out": the q|k|v rows, edgeprune.prune.mha
        return 3 * m.num_heads * m.head_dim, m.embed_dim
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, m.num_channels
    if isinstance(m, nn.LayerNorm):
        return m.normalized_shape[-1], m.normalized_shape[-1]
    if isinstance(m, nn.PReLU):
        return m.num_parameters, m.num_parameters
    if hasattr(m, "num_features"):
        return m.num_features, m.num_features
    return 0, 0


_SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                "num_channels", "normalized_shape", "num_parameters")


def cut(model: nn.Module, plan) -> Callable[[], None]:
    """Remove channels group by group and return an `undo()` that restores every touched layer and attribute.

    `plan` is a list of `(group, pruned group channels)`; layers are looked up by name in `model`, so a plan made
    on one copy cuts another. Each layer is cut once with the union of what all groups remove from it.
    """
    out_cut: dict[str, set[int]] = {}
    in_cut: dict[str, set[int]] = {}
    split_cut: dict[int, tuple[object, set[int]]] = {}
    for g, pruned in plan:
        if not pruned:
            continue
        for mem in g.members:
            c = {i for i, r in zip(mem.idxs, mem.group_idxs) if r in pruned}
            (out_cut if mem.kind == "out" else in_cut).setdefault(mem.name, set()).update(c)
        for info, pairs in g._splits:
            split_cut.setdefault(id(info), (info, set()))[1].update(i for i, r in pairs if r in pruned)

    saved = []
    try:
        for name in dict.fromkeys([*out_cut, *in_cut]):
            m = model.get_submodule(name)
            attrs = {a: getattr(m, a) for a in _SHAPE_ATTRS if hasattr(m, a)}
            attrs["__class__"] = type(m)  # shrink may change a layer's class (a head-pruned attention)
            saved.append((m, dict(m._parameters), dict(m._buffers), attrs))
            n_out, n_in = channel_sizes(m)
            out_keep = sorted(set(range(n_out)) - out_cut[name]) if name in out_cut else None
            in_keep = sorted(set(range(n_in)) - in_cut[name]) if name in in_cut else None
            shrink(m, out_keep, in_keep)
        for g, pruned in plan:  # counts the model's code reads (an attention's num_heads)
            for module_name, attr in g.counts if pruned else ():
                owner = model.get_submodule(module_name)
                saved.append((owner, None, None, {attr: getattr(owner, attr)}))
                setattr(owner, attr, g.width - len(pruned))
        for info, c in split_cut.values():  # fixed-size splits read their sizes from int attributes
            if info.func == "chunk":
                continue
            owner = model.get_submodule(info.module) if info.module else model
            for p, attr in enumerate(info.attrs):
                lo, hi = info.offsets[p], info.offsets[p + 1]
                saved.append((owner, None, None, {attr: getattr(owner, attr)}))
                setattr(owner, attr, hi - lo - sum(1 for i in c if lo <= i < hi))
    except BaseException:
        _restore(saved)
        raise
    return lambda: _restore(saved)


def _restore(saved) -> None:
    for m, params, buffers, attrs in reversed(saved):
        if params is not None:
            m._parameters.clear()
            m._parameters.update(params)
            m._buffers.clear()
            m._buffers.update(buffers)
        for a, v in attrs.items():
            setattr(m, a, v)


def _param(old: torch.Tensor, new: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(new.detach().clone().contiguous(), requires_grad=old.requires_grad)


def _idx(keep: list[int], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(keep, dtype=torch.long, device=like.device)


def shrink(m: nn.Module, out_keep: list[int] | None, in_keep: list[int] | None) -> None:
    """Keep output channels `out_keep` and input channels `in_keep` (sorted; None = all) of `m`, in place."""
    if isinstance(m, nn.modules.conv._ConvNd):
        _shrink_conv(m, out_keep, in_keep)
    elif isinstance(m, nn.MultiheadAttention):
        if in_keep is not None:
            raise ValueError("an attention's input (embedding) channels are not cut, only its heads")
        if out_keep is not None:
            shrink_mha(m, out_keep)
    elif isinstance(m, nn.Linear):
        w = m.weight
        if out_keep is not None:
            w = w[_idx(out_keep, w)]
            if m.bias is not None:
                m.bias = _param(m.bias, m.bias[_idx(out_keep, w)])
            m.out_features = len(out_keep)
        if in_keep is not None:
            w = w[:, _idx(in_keep, w)]
            m.in_features = len(in_keep)
        m.weight = _param(m.weight, w)
    else:  # normalisation layers and PReLU: one channel dimension; "in" and "out" are the same channels
        keep = out_keep if out_keep is not None else in_keep
        if keep is None:
            return
        _shrink_norm(m, keep)


def _shrink_norm(m: nn.Module, keep: list[int]) -> None:
    if isinstance(m, nn.PReLU):
        if m.num_parameters > 1:
            m.weight = _param(m.weight, m.weight[_idx(keep, m.weight)])
            m.num_parameters = len(keep)
        return
    for pname in ("weight", "bias"):
        p = getattr(m, pname, None)
        if isinstance(p, nn.Parameter):
            setattr(m, pname, _param(p, p[_idx(keep, p)]))
    for bname in ("running_mean", "running_var"):
        b = getattr(m, bname, None)
        if isinstance(b, torch.Tensor):
            setattr(m, bname, b[_idx(keep, b)].clone())
    if isinstance(m, nn.GroupNorm):
        m.num_channels = len(keep)
    elif isinstance(m, nn.LayerNorm):
        m.normalized_shape = (len(keep),)
    else:
        m.num_features = len(keep)


def _shrink_conv(m: nn.modules.conv._ConvNd, out_keep: list[int] | None, in_keep: list[int] | None) -> None:
    w = m.weight  # [out, in/g, k...], transposed: [in, out/g, k...]
    if is_depthwise(m):
        keep = out_keep if out_keep is not None else in_keep
        if keep is None:
            return
        m.weight = _param(w, w[_idx(keep, w)])
        if m.bias is not None:
            m.bias = _param(m.bias, m.bias[_idx(keep, w)])
        m.in_channels = m.out_channels = m.groups = len(keep)
        return
    if m.transposed:  # groups == 1 (grouped transposed convs are refused by unsupported_reason)
        if out_keep is not None:
            w = w[:, _idx(out_keep, w)]
        if in_keep is not None:
            w = w[_idx(in_keep, w)]
    else:
        g = m.groups
        if out_keep is not None:
            if g > 1:
                counts = [sum(1 for o in out_keep if o // (m.out_channels // g) == gi) for gi in range(g)]
                if len(set(counts)) != 1:
                    raise ValueError(f"grouped conv: unequal output channels per group {counts}")
            w = w[_idx(out_keep, w)]
        if in_keep is not None:
            if g == 1:
                w = w[:, _idx(in_keep, w)]
            else:  # each output channel sees only its group's inputs: cut per group, in local coordinates
                cin_g, cout_g = m.in_channels // g, m.out_channels // g
                outs = out_keep if out_keep is not None else list(range(m.out_channels))
                local = [[i - gi * cin_g for i in in_keep if gi * cin_g <= i < (gi + 1) * cin_g] for gi in range(g)]
                if len({len(x) for x in local}) != 1:
                    raise ValueError(f"grouped conv: unequal input channels per group {[len(x) for x in local]}")
                rows = [w[r:r + 1, _idx(local[o // cout_g], w)] for r, o in enumerate(outs)]
                w = torch.cat(rows, 0)
    if out_keep is not None:
        if m.bias is not None:
            m.bias = _param(m.bias, m.bias[_idx(out_keep, m.bias)])
        m.out_channels = len(out_keep)
    if in_keep is not None:
        m.in_channels = len(in_keep)
    m.weight = _param(m.weight, w)
