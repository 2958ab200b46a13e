"""Attention pruned by heads: one group per attention block, one group channel per head.

The channel graph cannot follow a 1×1 conv whose outputs a `view` cuts into heads (q, k and v of every head side by
side), so the analysis leaves those channels alone. The layout is known, though, for YOLO11's position-sensitive
attention (`C2PSA` → `PSABlock` → `Attention`, edgeprune's and ultralytics' alike): `qkv` gives, per head, `key_dim`
query, `key_dim` key and `head_dim` value channels; the values, flattened back to `heads · head_dim` channels, feed
the depthwise `pe` and the input of `proj`. Removing head *h* removes its slice of `qkv`'s outputs, its value
channels from `pe`, and the same channels from `proj`'s inputs, and lowers `num_heads`; `proj` still writes the
block's full width, so nothing outside the attention changes. A model whose forward reads the attention's width
from its input (ultralytics' `Attention.forward` does: `.view(B, C, H, W)`) breaks when a head is gone; the probe
then leaves the group out with that reason.
"""

from __future__ import annotations

from torch import nn

from .group import Group, Member
from .mha import mha_head_group, mha_reason


def _conv_bn(module: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
    return (conv, bn) if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) else None


def is_head_attention(module: nn.Module) -> bool:
    """A YOLO11-style attention: `num_heads`, `key_dim`, `head_dim`, and Conv-BN `qkv`, `pe`, `proj`."""
    if not all(isinstance(getattr(module, a, None), int) for a in ("num_heads", "key_dim", "head_dim")):
        return False
    return all(_conv_bn(getattr(module, n, None) or nn.Module()) for n in ("qkv", "pe", "proj"))


def head_group(name: str, attn: nn.Module) -> Group | None:
    """The group of `attn`'s heads (None when its layers do not have the widths its head counts imply)."""
    heads, kd, hd = attn.num_heads, attn.key_dim, attn.head_dim
    (qkv, qkv_bn), (pe, pe_bn), (proj, _) = (_conv_bn(getattr(attn, n)) for n in ("qkv", "pe", "proj"))
    per_head, values = 2 * kd + hd, heads * hd
    if qkv.out_channels != heads * per_head or pe.out_channels != values or pe.groups != values \
            or proj.in_channels != values:
        return None
    qkv_heads = [i // per_head for i in range(heads * per_head)]
    value_heads = [i // hd for i in range(values)]
    members = [Member(f"{name}.qkv.conv", qkv, "out", list(range(heads * per_head)), qkv_heads),
               Member(f"{name}.qkv.bn", qkv_bn, "out", list(range(heads * per_head)), qkv_heads),
               Member(f"{name}.pe.conv", pe, "out", list(range(values)), value_heads),
               Member(f"{name}.pe.bn", pe_bn, "out", list(range(values)), value_heads),
               Member(f"{name}.proj.conv", proj, "in", list(range(values)), value_heads)]
    return Group(f"{name}.heads", heads, members, counts=[(name, "num_heads")])


def head_groups(model: nn.Module) -> list[Group]:
    """A head group for every YOLO11-style attention and every `nn.MultiheadAttention` (edgeprune.prune.mha) of
    `model` with more than one head, in module order."""
    groups = []
    for name, m in model.named_modules():
        if is_head_attention(m) and m.num_heads > 1 and (g := head_group(name, m)) is not None:
            groups.append(g)
        elif isinstance(m, nn.MultiheadAttention) and mha_reason(m) is None:
            groups.append(mha_head_group(name, m))
    return groups


def attention_convs(model: nn.Module) -> dict[nn.Module, str]:
    """The `qkv` and `pe` convs of every YOLO11-style attention, with why the channel walk leaves them alone.

    Walking their channels through the head `view` fans out past any useful size (2.5 s each on yolo11n before
    the walk gives up); their channels are cut by whole heads instead.
    """
    found = {}
    for name, m in model.named_modules():
        if is_head_attention(m):
            why = (f"attention channels: cut by whole heads (group {name}.heads)" if m.num_heads > 1
                   else "attention channels of a single head: cut by whole heads only, and there is one")
            for part in ("qkv", "pe"):
                found[getattr(m, part).conv] = why
    return found
