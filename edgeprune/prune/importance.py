"""Channel importance, aggregated over every layer of a coupled-channel group.

A group's channels live in several layers (the root conv's outputs, its batch norm, the input channels of every
consumer); each criterion scores a channel from all of them:

- `l1`, `l2`: magnitude of each member's weights along the channel (output rows of producers, input columns of
  consumers, BN scales), each member's vector divided by its mean so that wide and narrow layers weigh alike, then
  averaged over members.
- `bn`: |γ| of the group's batch norms (network slimming); groups without a batch norm fall back to `l1`.
- `fused`: the three-stage paper's fusion of global and local rank of γ:
  `α · γ / max_global γ + (1 − α) · γ / max_layer γ`.
- `taylor`: first-order Taylor estimate of the loss change when the channel goes, `(Σ w · ∂L/∂w)²` with the sum
  over every parameter of the channel in every member (Molchanov et al., 2019, group criterion); needs gradients
  from a backward pass on real data first (`accumulate_gradients`).

`score_groups` returns one score vector per group. `rankable` rescales them so that one global ranking across
groups is meaningful: magnitudes are divided by their group's mean, which leaves only the ranking *inside* a group
(the mean channel of every group weighs 1, so an allocation across groups is then decided by what each channel
saves); `bn`, `fused` and `taylor` are comparable across groups as they are (a loss change is a loss change).
"""

from __future__ import annotations

import torch
from torch import nn

from .graph import Group, Member
from .mha import mha_weight

CRITERIA = ("l1", "l2", "bn", "fused", "taylor")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _channel_view(member: Member, tensor: torch.Tensor) -> torch.Tensor | None:
    """`tensor` (a weight or its gradient) as `[width, -1]` along the member's channel dimension."""
    idx = torch.as_tensor(member.idxs, dtype=torch.long, device=tensor.device)
    if member.kind == "out" or tensor.ndim == 1:
        return tensor.index_select(0, idx).reshape(len(member.idxs), -1)
    if isinstance(member.module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return tensor.index_select(0, idx).reshape(len(member.idxs), -1)  # [in, out/g, k...]
    if isinstance(member.module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and member.module.groups > 1:
        return None  # a grouped conv's input channels are its output channels' business (already scored)
    return tensor.index_select(1, idx).transpose(0, 1).reshape(len(member.idxs), -1)


def _to_group(member: Member, values: torch.Tensor, width: int) -> torch.Tensor:
    """Per-index values of a member → per-group-channel values (a channel may sit at several indices of one
    member, e.g. the four concatenated copies in SPPF: their values are summed)."""
    out = torch.zeros(width, dtype=values.dtype)
    return out.index_add_(0, torch.as_tensor(member.group_idxs, dtype=torch.long), values)


def _weights(group: Group) -> list[tuple[Member, torch.Tensor]]:
    out = []
    for m in group.members:
        w = mha_weight(m.module) if isinstance(m.module, nn.MultiheadAttention) else getattr(m.module, "weight", None)
        if isinstance(w, nn.Parameter) and w is not None:
            out.append((m, w))
    return out


def _magnitude(group: Group, p: int) -> torch.Tensor:
    per_member = []
    for member, w in _weights(group):
        v = _channel_view(member, w.detach())
        if v is None:
            continue
        s = _to_group(member, v.abs().sum(1) if p == 1 else v.pow(2).sum(1), group.width)
        s = s if p == 1 else s.sqrt()
        per_member.append(s / s.mean().clamp_min(1e-12))
    return torch.stack(per_member).mean(0)


def _bn_gamma(group: Group) -> torch.Tensor | None:
    gammas = [_to_group(m, w.detach()[torch.as_tensor(m.idxs, dtype=torch.long)].abs(), group.width)
              for m, w in _weights(group) if isinstance(m.module, _NORMS) and m.kind == "out"]
    return torch.stack(gammas).mean(0) if gammas else None


def _taylor(group: Group) -> torch.Tensor:
    change = torch.zeros(group.width, dtype=torch.float64)
    for member, w in _weights(group):
        if w.grad is None:
            raise ValueError(f"taylor importance needs gradients: {member.name}.weight has none. Run a forward and "
                             f"backward pass on training data (loss.backward()) before scoring.")
        v = _channel_view(member, (w.detach() * w.grad.detach()))
        if v is not None:
            change += _to_group(member, v.sum(1).double(), group.width)
    return change.pow(2).float()


def accumulate_gradients(model: nn.Module, samples: list, img_size: int, batches: int = 8,
                         batch_size: int = 8) -> nn.Module:
    """Gradients of the detection loss summed over `batches` training batches (augmented, as in training), for
    `taylor`. Batch norms normalise with batch statistics but keep their running ones (a forward in train mode
    would otherwise move them toward these few batches)."""
    from ..data.dataset import build_loader
    from ..models import detection_loss

    loader = build_loader(samples, img_size, batch_size, augment=True, shuffle=True, seed=0)
    criterion = detection_loss(model, img_size)
    bns = [(m, m.momentum) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.train()
    model.zero_grad()
    try:
        for m, _ in bns:
            m.momentum = 0.0
        for i, (images, targets, _) in enumerate(loader):
            if i == batches:
                break
            criterion(model(images), targets)[0].backward()
    finally:
        for m, momentum in bns:
            m.momentum = momentum
    return model.eval()


def score_groups(groups: list[Group], criterion: str = "l1", alpha: float = 0.5) -> dict[str, torch.Tensor]:
    """Importance of every channel of every group: `{group name: float tensor [width]}`."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown importance {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if criterion in ("l1", "l2"):
        return {g.name: _magnitude(g, 1 if criterion == "l1" else 2) for g in groups}
    if criterion == "taylor":
        return {g.name: _taylor(g) for g in groups}
    gammas = {g.name: _bn_gamma(g) for g in groups}
    scores = {g.name: gammas[g.name] if gammas[g.name] is not None else _magnitude(g, 1) for g in groups}
    if criterion == "fused":
        present = [gm for gm in gammas.values() if gm is not None]
        global_max = max(float(gm.max()) for gm in present) if present else 1.0
        for name, gm in gammas.items():
            if gm is not None:
                scores[name] = alpha * gm / max(global_max, 1e-12) + (1 - alpha) * gm / gm.max().clamp_min(1e-12)
    return scores


def rankable(scores: dict[str, torch.Tensor], criterion: str) -> dict[str, torch.Tensor]:
    """Scores comparable across groups, for one global ranking."""
    if criterion in ("bn", "fused", "taylor"):
        return scores
    return {k: v / v.mean().clamp_min(1e-20) for k, v in scores.items()}
