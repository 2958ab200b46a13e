"""A hand-written detector of the kind people write for one job (a drone's camera, a SAR strip): depthwise-separable
stages with squeeze-excitation, a neck that concatenates two stages, and an anchor-free head on one level.

Nothing in it knows edgeprune: docs/own-models.md prunes, saves, reloads, exports and profiles it through the
factory `examples.my_detector:build`, and tests/docs/test_own_models.py runs those lines.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
                         nn.SiLU())


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // reduction, 1), nn.Conv2d(c // reduction, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class SeparableBlock(nn.Module):
    """3×3 depthwise, squeeze-excitation, 1×1 pointwise, residual add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw, self.se, self.pw = ConvBNAct(c, c, 3, groups=c), SqueezeExcite(c), ConvBNAct(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.se(self.dw(x)))


class MyDetector(nn.Module):
    """Input `[B, 3, H, W]` → `[B, 4 + C, H/8 · W/8]`: box `(cx, cy, w, h)` in pixels, class scores after sigmoid."""

    def __init__(self, num_classes: int = 1, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = ConvBNAct(3, w, 3, 2)
        self.stage1 = nn.Sequential(ConvBNAct(w, 2 * w, 3, 2), SeparableBlock(2 * w))  # stride 4
        self.stage2 = nn.Sequential(ConvBNAct(2 * w, 4 * w, 3, 2), SeparableBlock(4 * w))  # stride 8
        self.stage3 = nn.Sequential(ConvBNAct(4 * w, 8 * w, 3, 2), SeparableBlock(8 * w))  # stride 16
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.fuse = ConvBNAct(12 * w, 4 * w, 1)  # cross-stage concat: stride 8 with stride 16 upsampled
        self.box, self.cls = nn.Conv2d(4 * w, 4, 1), nn.Conv2d(4 * w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.stage2(self.stage1(self.stem(x)))
        p4 = self.stage3(p3)
        f = self.fuse(torch.cat([p3, self.up(p4)], 1))
        h, w = f.shape[2:]
        gy, gx = torch.meshgrid(torch.arange(h, dtype=f.dtype), torch.arange(w, dtype=f.dtype), indexing="ij")
        b = self.box(f)
        cx, cy = (gx + b[:, 0].sigmoid()) * 8, (gy + b[:, 1].sigmoid()) * 8
        wh = b[:, 2:4].exp().clamp(max=64.0) * 8
        boxes = torch.cat([cx[:, None], cy[:, None], wh], 1)
        return torch.cat([boxes, self.cls(f).sigmoid()], 1).flatten(2)


def build(num_classes: int = 1, width: int = 16) -> MyDetector:
    """The factory edgeprune calls (`--model examples.my_detector:build --model-kwargs '{"num_classes": 2}'`)."""
    return MyDetector(num_classes, width)
