"""YOLOv5 (v6.0 layout) in plain PyTorch: CSP-Darknet backbone with SPPF, PAN neck, anchor-based Detect head.

Sizes differ only by depth and width multiples (n, s, m, l, x), as in ultralytics. Modules are named by what they
are (`backbone.stage3.c3`, `neck.out4`, `head.m.0`) rather than by a YAML index, so that pruning plans read well.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .common import C3, SPPF, Conv

# Anchors in pixels for strides 8, 16, 32 (the YOLOv5 defaults, fitted on COCO).
DEFAULT_ANCHORS = (
    (10, 13, 16, 30, 33, 23),
    (30, 61, 62, 45, 59, 119),
    (116, 90, 156, 198, 373, 326),
)
STRIDES = (8, 16, 32)


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


@dataclass
class YOLOv5Config:
    """Everything needed to rebuild the architecture; stored in checkpoints instead of a pickled module."""

    depth_multiple: float
    width_multiple: float
    num_classes: int = 80
    in_channels: int = 3
    anchors: tuple = DEFAULT_ANCHORS
    name: str = "yolov5"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["anchors"] = [list(a) for a in self.anchors]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "YOLOv5Config":
        d = dict(d)
        d["anchors"] = tuple(tuple(a) for a in d.get("anchors", DEFAULT_ANCHORS))
        return cls(**d)


class Backbone(nn.Module):
    """CSP-Darknet53 with SPPF; returns the P3, P4, P5 feature maps (strides 8, 16, 32)."""

    def __init__(self, in_channels: int, ch: callable, n: callable) -> None:
        super().__init__()
        self.stem = Conv(in_channels, ch(64), 6, 2, 2)
        self.stage1 = nn.Sequential(Conv(ch(64), ch(128), 3, 2), C3(ch(128), ch(128), n(3)))
        self.stage2 = nn.Sequential(Conv(ch(128), ch(256), 3, 2), C3(ch(256), ch(256), n(6)))
        self.stage3 = nn.Sequential(Conv(ch(256), ch(512), 3, 2), C3(ch(512), ch(512), n(9)))
        self.stage4 = nn.Sequential(
            Conv(ch(512), ch(1024), 3, 2), C3(ch(1024), ch(1024), n(3)), SPPF(ch(1024), ch(1024), 5)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.stage2(self.stage1(self.stem(x)))
        p4 = self.stage3(p3)
        p5 = self.stage4(p4)
        return p3, p4, p5


class PAN(nn.Module):
    """Top-down then bottom-up path aggregation, as in YOLOv5's head section."""

    def __init__(self, ch: callable, n: callable) -> None:
        super().__init__()
        self.lateral5 = Conv(ch(1024), ch(512), 1, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C3(ch(512) * 2, ch(512), n(3), shortcut=False)
        self.lateral4 = Conv(ch(512), ch(256), 1, 1)
        self.out3 = C3(ch(256) * 2, ch(256), n(3), shortcut=False)
        self.down3 = Conv(ch(256), ch(256), 3, 2)
        self.out4 = C3(ch(256) * 2, ch(512), n(3), shortcut=False)
        self.down4 = Conv(ch(512), ch(512), 3, 2)
        self.out5 = C3(ch(512) * 2, ch(1024), n(3), shortcut=False)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        l5 = self.lateral5(p5)
        l4 = self.lateral4(self.td4(torch.cat((self.up(l5), p4), 1)))
        n3 = self.out3(torch.cat((self.up(l4), p3), 1))
        n4 = self.out4(torch.cat((self.down3(n3), l4), 1))
        n5 = self.out5(torch.cat((self.down4(n4), l5), 1))
        return [n3, n4, n5]


class Detect(nn.Module):
    """One 1×1 conv per level predicting `anchors × (5 + classes)` channels.

    Training mode returns the raw maps, one `[B, A, H, W, 5 + C]` tensor per level. Eval mode returns decoded
    predictions `[B, N, 5 + C]`: `(cx, cy, w, h)` in input pixels, then objectness and class scores after sigmoid.
    """

    def __init__(self, num_classes: int, anchors: tuple, channels: list[int]) -> None:
        super().__init__()
        self.nc = num_classes
        self.no = num_classes + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.register_buffer("stride", torch.tensor(STRIDES, dtype=torch.float32))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in channels)
        self._init_biases()

    def _init_biases(self) -> None:
        """Prior objectness ≈ 8 objects per 640² image and class prior 0.6/nc (YOLOv5's init; speeds up training)."""
        for conv, s in zip(self.m, STRIDES):
            b = conv.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:] += math.log(0.6 / (self.nc - 0.99)) if self.nc > 1 else math.log(0.6 / 0.4)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        maps = []
        for conv, x in zip(self.m, feats):
            b, _, h, w = x.shape
            maps.append(conv(x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return maps if self.training else self.decode(maps)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, p in enumerate(maps):
            b, _, h, w, _ = p.shape
            ys, xs = torch.meshgrid(
                torch.arange(h, device=p.device, dtype=p.dtype),
                torch.arange(w, device=p.device, dtype=p.dtype),
                indexing="ij",
            )
            grid = torch.stack((xs, ys), -1).view(1, 1, h, w, 2)
            anchor_grid = self.anchors[i].view(1, self.na, 1, 1, 2).to(p.dtype)
            y = p.sigmoid()
            xy = (y[..., :2] * 2 - 0.5 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(b, -1, self.no))
        return torch.cat(out, 1)


class YOLOv5(nn.Module):
    row_layout = "yolov5"  # eval output [B, N, 5 + C] (edgeprune.export and evaluate read it)

    def __init__(self, config: YOLOv5Config) -> None:
        super().__init__()
        self.config = config

        def ch(c: int) -> int:
            return make_divisible(c * config.width_multiple, 8)

        def n(k: int) -> int:
            return max(round(k * config.depth_multiple), 1)

        self.backbone = Backbone(config.in_channels, ch, n)
        self.neck = PAN(ch, n)
        self.head = Detect(config.num_classes, config.anchors, [ch(256), ch(512), ch(1024)])

    @property
    def output_layers(self) -> list[str]:
        """Qualified names of the layers whose output channels are fixed by the task (pruning leaves them alone)."""
        return [f"head.m.{i}" for i in range(self.head.nl)]

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        return self.head(self.neck(self.backbone(x)))
