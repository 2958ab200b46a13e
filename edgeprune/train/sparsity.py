"""Sparsity training on BatchNorm scale factors (γ), so that pruning the smallest channels later costs little.

`Sparsifier(model, method, lam)` adds the subgradient of a penalty on every BatchNorm2d's γ after
`loss.backward()` (and after gradient clipping, which must not shrink it):

- `bn-l1` — network slimming: `λ·Σ|γ|`, gradient `λ·sign(γ)`. The same absolute push everywhere: layers whose γ
  are small reach zero long before layers whose γ are large move at all.
- `l1rr` — reweighted L1 (L1RR): `λ_l·Σ w_i·|γ_i|` with `w_i = 1/(|γ_i|/m_l + ε)` refreshed every `refresh`
  steps (Candès et al.: small γ are pushed harder, large ones spared), `m_l = mean|γ_l|`. Self-adaptive strength
  `λ_l = λ·m_l`: the push is scaled to each layer's own γ magnitude, so every layer sparsifies at the same
  relative rate (our reading of L1RR's per-layer λ; docs/sparsity.md). Dynamic λ: a linear ramp over the first
  `warmup` share of training, then constant.
- `heatmap` — element-level, heatmap-guided (three-stage pruning): each γ's weight is its rank heat inside its
  layer (`1` for the smallest, `0` for the largest), times `λ·m_l`; every layer pushes the same share of its
  channels toward zero, so sparsity ends up even across layers.

`feature_attention_loss` (L1RR's feature attention) keeps the target features while sparsifying: attention maps
`A = normalize(Σ_c F_c²)` of the neck's outputs, of the model in training against the dense model it started
from, compared inside the ground-truth boxes.

Diagnostics: `layer_sparsity` (share of channels under a threshold per layer), `evenness` (1 − Gini of those
shares: 1 when every layer is equally sparse) and `plot_gamma` (per-layer γ histograms).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["METHODS", "HeadInputs", "Sparsifier", "attention_map", "bn_layers", "box_mask", "evenness",
           "feature_attention_loss", "layer_sparsity", "plot_gamma"]

METHODS = ("none", "bn-l1", "l1rr", "heatmap")


def bn_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.affine]


class Sparsifier:
    def __init__(self, model: nn.Module, method: str = "bn-l1", lam: float = 1e-3, refresh: int = 100,
                 eps: float = 0.1, warmup: float = 0.1) -> None:
        if method not in METHODS[1:]:
            raise ValueError(f"sparsity method must be one of {', '.join(METHODS[1:])}, not {method!r}")
        if lam < 0:
            raise ValueError(f"sparsity lambda must be >= 0, not {lam}")
        self.method, self.lam, self.refresh, self.eps, self.warmup = method, float(lam), int(refresh), eps, warmup
        self.layers = bn_layers(model)
        self.weights: dict[str, torch.Tensor] = {}  # l1rr / heatmap per-channel weights, refreshed every `refresh`

    def strength(self, step: int, total: int) -> float:
        """λ at this step: constant for bn-l1; a linear ramp over the first `warmup` share for l1rr and heatmap."""
        if self.method == "bn-l1" or self.warmup <= 0 or total <= 0:
            return self.lam
        return self.lam * min(1.0, (step + 1) / max(1.0, self.warmup * total))

    @torch.no_grad()
    def _refresh(self) -> None:
        for name, bn in self.layers:
            g = bn.weight.detach().abs()
            m = g.mean().clamp_min(1e-12)
            if self.method == "l1rr":
                self.weights[name] = m / (g / m + self.eps)  # λ_l·w_i / λ = m_l / (|γ_i|/m_l + ε)
            else:  # heatmap: rank heat inside the layer, 1 for the smallest γ, 0 for the largest
                ranks = torch.argsort(torch.argsort(g)).float()
                self.weights[name] = m * (1 - ranks / max(len(g) - 1, 1))

    @torch.no_grad()
    def apply(self, step: int, total: int) -> None:
        """Add the penalty's subgradient to the γ gradients (call after backward and clipping)."""
        lam = self.strength(step, total)
        if lam == 0:
            return
        if self.method != "bn-l1" and (not self.weights or step % self.refresh == 0):
            self._refresh()
        for name, bn in self.layers:
            if bn.weight.grad is None:
                bn.weight.grad = torch.zeros_like(bn.weight)
            push = torch.sign(bn.weight)
            if self.method != "bn-l1":
                push = push * self.weights[name].to(push)
            bn.weight.grad.add_(lam * push)

    def penalty(self) -> float:
        """The current value of the (unweighted) L1 term Σ|γ|, for logs."""
        return float(sum(bn.weight.detach().abs().sum() for _, bn in self.layers))

    def state_dict(self) -> dict:
        return {"weights": {k: v.clone() for k, v in self.weights.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.weights = {k: v.clone() for k, v in (state or {}).get("weights", {}).items()}


def layer_sparsity(model: nn.Module, threshold: float = 0.01, relative: bool = False) -> dict[str, float]:
    """Share of each BatchNorm layer's channels with |γ| under `threshold` (or under threshold × the layer's max
    |γ| when `relative`)."""
    out = {}
    for name, bn in bn_layers(model):
        g = bn.weight.detach().abs()
        t = threshold * float(g.max()) if relative else threshold
        out[name] = float((g < t).float().mean())
    return out


def evenness(shares: dict[str, float] | list[float]) -> float:
    """1 − Gini coefficient of per-layer sparse shares: 1 when all layers are equally sparse, toward 0 when one
    layer holds all of it. 1 as well when nothing is sparse."""
    x = sorted(shares.values() if isinstance(shares, dict) else shares)
    n, total = len(x), sum(x)
    if n == 0 or total == 0:
        return 1.0
    gini = sum((2 * (i + 1) - n - 1) * v for i, v in enumerate(x)) / (n * total)
    return 1.0 - gini


def plot_gamma(model: nn.Module, path: str | Path, threshold: float = 0.01, max_layers: int = 64) -> Path:
    """Per-layer histograms of log10 |γ|, one panel per BatchNorm, four a row; red: `threshold` × the layer's
    largest |γ| (the line `sparsity.json` counts under). 10 inches wide at 100 dpi with 10-pt text, so that a page
    showing it at up to 1000 px keeps the text legible (the demo report folds it under its own γ summary)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = bn_layers(model)[:max_layers]
    from matplotlib.ticker import MaxNLocator

    cols = 4
    rows = max(1, math.ceil(len(layers) / cols))
    height = 1.7 * rows + 0.5
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, height), squeeze=False)
    for ax, (name, bn) in zip(axes.flat, layers):
        g = bn.weight.detach().abs().clamp_min(1e-6).log10().numpy()
        line = math.log10(max(threshold * 10 ** float(g.max()), 1e-6))
        lo, hi = min(float(g.min()), line) - 0.2, max(float(g.max()), line + 1.0) + 0.2
        ax.hist(g, bins=np.linspace(lo, hi, 30), color="tab:blue")
        ax.axvline(line, color="tab:red", lw=0.8)
        ax.set_title(name.replace(".bn", ""), fontsize=10)
        ax.tick_params(labelsize=10)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(f"log10 |γ| per BatchNorm layer (red: {threshold:g} × the layer's largest)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------------------------------------------------------
# feature attention: keep the target features while sparsifying (L1RR)
# ---------------------------------------------------------------------------------------------------------------
def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """`A = normalize(Σ_c F_c²)`: spatial attention of a `[B, C, H, W]` feature, L2-normalised per image."""
    a = feature.pow(2).sum(1).flatten(1)
    return (a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)).view(feature.shape[0], *feature.shape[2:])


def box_mask(targets: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """`[B, H, W]` mask of the cells covered by ground-truth boxes (targets `[M, 6]`, normalised cx, cy, w, h)."""
    mask = torch.zeros(batch, h, w)
    for img, _, cx, cy, bw, bh in targets.tolist():
        x0, x1 = int((cx - bw / 2) * w), int(-(-(cx + bw / 2) * w // 1))
        y0, y1 = int((cy - bh / 2) * h), int(-(-(cy + bh / 2) * h // 1))
        mask[int(img), max(y0, 0):max(min(y1, h), y0 + 1), max(x0, 0):max(min(x1, w), x0 + 1)] = 1.0
    return mask


def feature_attention_loss(student: list[torch.Tensor], dense: list[torch.Tensor], targets: torch.Tensor
                           ) -> torch.Tensor:
    """Σ over levels of the squared difference between the attention maps of the model in training and of the
    dense model it started from, inside the ground-truth boxes (mean over the covered cells). Zero when the
    sparsified model attends to the targets exactly as the dense one did."""
    loss = student[0].new_zeros(())
    for s, d in zip(student, dense):
        b, _, h, w = s.shape
        m = box_mask(targets, b, h, w).to(s)
        if m.sum() == 0:
            continue
        diff = (attention_map(s) - attention_map(d.detach())).pow(2)
        loss = loss + (diff * m).sum() / m.sum()
    return loss


class HeadInputs:
    """Captures the feature maps a model's Detect head receives (the neck's outputs), on every forward."""

    def __init__(self, model: nn.Module) -> None:
        self.features: list[torch.Tensor] = []
        self._handle = model.head.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.features = list(args[0])

    def remove(self) -> None:
        self._handle.remove()
