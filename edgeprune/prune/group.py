"""The public types of the pruning graph: a `Group` of coupled channels and the `Member`s it touches."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = ["Group", "Member"]


@dataclass
class Member:
    """One place a group's channels live."""

    name: str  # qualified module name, e.g. "backbone.stage2.1.cv1.conv"
    module: nn.Module
    kind: str  # "out": output channels of a Conv/Linear, or the channels of a BN/GN/LN/PReLU/depthwise conv;
    #            "in": input channels of a Conv/Linear
    idxs: list[int]  # channel indices in this module, aligned with group_idxs
    group_idxs: list[int] | None = None  # group channel of each entry of idxs (None: idxs[k] is group channel k)

    def __post_init__(self) -> None:
        if self.group_idxs is None:
            self.group_idxs = list(range(len(self.idxs)))


@dataclass
class Group:
    """Coupled channels named by their root layer (the first layer, in module order, whose outputs they are)."""

    name: str
    width: int
    members: list[Member]  # members[0]: the root layer's "out" member (idxs == group_idxs == range(width); a head
    #                       group's root, its qkv conv or nn.MultiheadAttention, has several per head: prune.heads)
    # Sets of group channels that must each keep the same number of channels (grouped convolutions, GroupNorm,
    # chunk halves). Empty when any subset of channels may be kept.
    blocks: list[list[int]] = field(default_factory=list)
    min_keep: int = 1  # fewest channels a plan may keep (2 per group of a grouped conv whose outputs these are)
    _splits: list = field(default_factory=list, repr=False, compare=False)  # (SplitInfo, [(idx, group idx)])
    # (module name, attribute) that holds how many group channels there are, set to the kept count when cut
    # (an attention's `num_heads`: a head group, edgeprune.prune.heads)
    counts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def root(self) -> Member:
        return self.members[0]
