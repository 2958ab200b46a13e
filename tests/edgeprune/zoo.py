"""Small test models for the pruning graph: every coupling pattern the graph must handle, each fast on a CPU.

`ZOO` maps a name to a factory returning `(model, example_input)`; `ODD` holds small single-purpose models for
split / concat corner cases and for what the graph must refuse. Detectors declare `output_layers` (the convs
whose output widths the task fixes), as `edgeprune.models` detectors do. The YOLOv5 family comes from
`edgeprune.models.create_model`; the rest are built here:

- `yolov8`: YOLOv8-style detector: C2f blocks (cv1's output cut in two by `chunk` in some blocks and `.split` in
  others, bottlenecks appended, everything concatenated), SPPF, upsample + concat neck, decoupled head (separate
  box and class conv branches per level).
- `mobilenetv2`: inverted residuals (1×1 expand, 3×3 depthwise, 1×1 project, residual add), PReLU, Linear head.
- `grouped`: ResNeXt-style blocks with groups=4 convolutions and GroupNorm, residual adds.
- `shuffle`: groups=4 convolutions with a ShuffleNet channel shuffle (view / transpose / view).
- `fanout`: residual stack, SPPF, a tensor feeding two concatenations (fan-out), a three-way concat (fan-in),
  a transposed-conv upsample, conv → flatten → Linear.
- `attention`: squeeze-excitation block, then a tiny multi-head self-attention over the flattened spatial tokens
  (LayerNorm, Linear q/k/v, per-head split with `view`, Linear projection, residual).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import create_model
from edgeprune.models.common import SPPF, Bottleneck, Conv

# ---------------------------------------------------------------------------------------------------------------
# YOLOv8-style
# ---------------------------------------------------------------------------------------------------------------


class C2f(nn.Module):
    """YOLOv8's CSP bottleneck with two convolutions: cv1 → halves (a, b); b → m0 → m1 …; cv2(cat(a, b, m0, m1 …)).

    `mode="chunk"` is ultralytics' `forward` (`cv1(x).chunk(2, 1)`), `mode="split"` its `forward_split`
    (`cv1(x).split((c, c), 1)`).
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False, mode: str = "chunk") -> None:
        super().__init__()
        self.c = c_out // 2
        self.mode = mode
        self.cv1 = Conv(c_in, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        y = list(y.chunk(2, 1) if self.mode == "chunk" else y.split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class DecoupledHead(nn.Module):
    """Per level: a box branch (Conv, Conv, Conv2d → 4·reg_max) and a class branch (Conv, Conv, Conv2d → nc).

    Returns one `[B, 4·reg_max + nc, H, W]` map per level (ultralytics' training output).
    """

    def __init__(self, num_classes: int, channels: list[int], reg_max: int = 4) -> None:
        super().__init__()
        c2 = max(16, channels[0] // 4, 4 * reg_max)
        c3 = max(channels[0], min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for c in channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, num_classes, 1)) for c in channels
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((b(x), c(x)), 1) for x, b, c in zip(feats, self.box, self.cls)]


class TinyYOLOv8(nn.Module):
    def __init__(self, num_classes: int = 2, w: int = 16) -> None:
        super().__init__()
        self.stem = Conv(3, w, 3, 2)
        self.down1 = Conv(w, 2 * w, 3, 2)
        self.c2f1 = C2f(2 * w, 2 * w, 1, shortcut=True, mode="chunk")
        self.down2 = Conv(2 * w, 4 * w, 3, 2)  # P3, stride 8
        self.c2f2 = C2f(4 * w, 4 * w, 2, shortcut=True, mode="split")
        self.down3 = Conv(4 * w, 8 * w, 3, 2)  # P4, stride 16
        self.c2f3 = C2f(8 * w, 8 * w, 1, shortcut=True, mode="chunk")
        self.sppf = SPPF(8 * w, 8 * w, 5)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td3 = C2f(8 * w + 4 * w, 4 * w, 1, shortcut=False, mode="chunk")
        self.down_n3 = Conv(4 * w, 4 * w, 3, 2)
        self.out4 = C2f(4 * w + 8 * w, 8 * w, 1, shortcut=False, mode="split")
        self.head = DecoupledHead(num_classes, [4 * w, 8 * w])

    @property
    def output_layers(self) -> list[str]:
        return [f"head.{branch}.{i}.2" for branch in ("box", "cls") for i in range(2)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.c2f2(self.down2(self.c2f1(self.down1(self.stem(x)))))
        p4 = self.sppf(self.c2f3(self.down3(p3)))
        n3 = self.td3(torch.cat((self.up(p4), p3), 1))
        n4 = self.out4(torch.cat((self.down_n3(n3), p4), 1))
        return self.head([n3, n4])


# ---------------------------------------------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------------------------------------------


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, g: int = 1, act: nn.Module | None = None):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6() if act is None else act,
        )


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, prelu: bool = False) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, hidden, 1, act=nn.PReLU(hidden) if prelu else None)
        self.dw = ConvBNAct(hidden, hidden, 3, stride, g=hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_res else y


class TinyMobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 16, 3, 2)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 2, prelu=True),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),
            InvertedResidual(32, 32, 1, 4),
        )
        self.last = ConvBNAct(32, 64, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(64, 48)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(48, num_classes)

    @property
    def output_layers(self) -> list[str]:
        return ["fc2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.last(self.blocks(self.stem(x)))).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


# ---------------------------------------------------------------------------------------------------------------
# Grouped convolutions (ResNeXt-style, GroupNorm) and channel shuffle
# ---------------------------------------------------------------------------------------------------------------


class ResNeXtBlock(nn.Module):
    def __init__(self, c: int, hidden: int, groups: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU())
        self.grouped = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=groups, bias=False),
                                     nn.GroupNorm(groups, hidden), nn.SiLU())
        self.expand = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.expand(self.grouped(self.reduce(x))))


class TinyGrouped(nn.Module):
    """Stem, two ResNeXt blocks, a grouped conv whose input comes straight from a plain conv, a 1×1 head."""

    def __init__(self, out_channels: int = 6) -> None:
        super().__init__()
        self.stem = Conv(3, 32, 3, 2)
        self.block1 = ResNeXtBlock(32, 16)
        self.block2 = ResNeXtBlock(32, 32)
        self.widen = nn.Conv2d(32, 48, 3, 2, 1, groups=4, bias=True)  # grouped, output feeds the head directly
        self.act = nn.ReLU()
        self.head = nn.Conv2d(48, out_channels, 1)

    @property
    def output_layers(self) -> list[str]:
        return ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.widen(self.block2(self.block1(self.stem(x))))))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class TinyShuffle(nn.Module):
    """Grouped 1×1 conv → channel shuffle → grouped 3×3 conv; the shuffle permutes channels."""

    def __init__(self, out_channels: int = 4) -> None:
        super().__init__()
        self.stem = Conv(3, 32, 3, 2)
        self.gconv1 = Conv(32, 32, 1, 1, g=4)
        self.gconv2 = Conv(32, 32, 3, 1, g=4)
        self.mid = Conv(32, 24, 3, 2)
        self.head = nn.Conv2d(24, out_channels, 1)

    @property
    def output_layers(self) -> list[str]:
        return ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.gconv2(channel_shuffle(self.gconv1(x), 4))
        return self.head(self.mid(x))


# ---------------------------------------------------------------------------------------------------------------
# Residual stack, SPPF, concat fan-in / fan-out, transposed conv, flatten → Linear
# ---------------------------------------------------------------------------------------------------------------


class TinyFanout(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = Conv(3, 16, 3, 2)  # 32×32
        self.res = nn.Sequential(*(Bottleneck(16, 16, True) for _ in range(3)))  # residual stack
        self.down = Conv(16, 32, 3, 2)  # 16×16
        self.sppf = SPPF(32, 32, 5)
        self.branch_a = Conv(32, 16, 1)
        self.branch_b = Conv(32, 24, 3)
        self.up = nn.ConvTranspose2d(24, 16, 2, 2)  # 16×16 → 32×32
        self.fuse_hi = Conv(16 + 16 + 16, 32, 3, 2)  # cat(stem-level res, up, res again) → 16×16: fan-in of three
        self.fuse_lo = Conv(16 + 24, 24, 1)  # cat(branch_a, branch_b): branch_b fans out to up and here
        self.final = Conv(32 + 24, 16, 3, 2)  # 8×8
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16 * 4 * 4, 32)
        self.cls = nn.Linear(32, num_classes)

    @property
    def output_layers(self) -> list[str]:
        return ["cls"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.res(self.stem(x))
        s = self.sppf(self.down(r))
        a, b = self.branch_a(s), self.branch_b(s)
        hi = self.fuse_hi(torch.cat((r, self.up(b), r * 0.5), 1))
        lo = self.fuse_lo(torch.cat((a, b), 1))
        y = self.pool(self.final(torch.cat((hi, lo), 1))).flatten(1)
        return self.cls(torch.relu(self.fc(y)))


# ---------------------------------------------------------------------------------------------------------------
# Attention: squeeze-excitation and multi-head self-attention over spatial tokens
# ---------------------------------------------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class TokenSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over the H·W tokens of a `[B, C, H, W]` map, with a residual."""

    def __init__(self, c: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(c)
        self.q = nn.Linear(c, c)
        self.k = nn.Linear(c, c)
        self.v = nn.Linear(c, c)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # [B, N, C]
        n = self.norm(t)

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, h * w, self.heads, -1).transpose(1, 2)  # [B, heads, N, C/heads]

        q, k, v = heads(self.q(n)), heads(self.k(n)), heads(self.v(n))
        att = torch.softmax(q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, h * w, c)
        t = t + self.proj(o)
        return t.transpose(1, 2).reshape(b, c, h, w)


class TinyAttention(nn.Module):
    def __init__(self, out_channels: int = 5) -> None:
        super().__init__()
        self.stem = Conv(3, 16, 3, 2)  # 32×32
        self.down1 = Conv(16, 32, 3, 2)  # 16×16
        self.se = SqueezeExcite(32)
        self.down2 = Conv(32, 48, 3, 2)  # 8×8: 64 tokens of width 48
        self.attn = TokenSelfAttention(48, heads=4)
        self.out = Conv(48, 32, 3)
        self.head = nn.Conv2d(32, out_channels, 1)

    @property
    def output_layers(self) -> list[str]:
        return ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(self.attn(self.down2(self.se(self.down1(self.stem(x)))))))


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


def _yolov5(size: str):
    def build() -> tuple[nn.Module, torch.Tensor]:
        return create_model(f"yolov5{size}", num_classes=2), torch.rand(1, 3, 64, 64)

    return build


def _make(cls, size: int = 64):
    def build() -> tuple[nn.Module, torch.Tensor]:
        return cls(), torch.rand(1, 3, size, size)

    return build


ZOO = {
    "yolov5n": _yolov5("n"),
    "yolov5s": _yolov5("s"),
    "yolov5m": _yolov5("m"),
    "yolov8": _make(TinyYOLOv8),
    "mobilenetv2": _make(TinyMobileNetV2),
    "grouped": _make(TinyGrouped),
    "shuffle": _make(TinyShuffle),
    "fanout": _make(TinyFanout),
    "attention": _make(TinyAttention),
}


# ---------------------------------------------------------------------------------------------------------------
# Odd couplings: small single-purpose models for the split / concat mapping and the audit
# ---------------------------------------------------------------------------------------------------------------


class SwapCat(nn.Module):
    """chunk pieces consumed out of order, one of them twice."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.m, self.out = Conv(3, 32, 3, 2), Conv(16, 16, 3), nn.Conv2d(48, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.out(torch.cat((b, self.m(a), a), 1))


class UnevenSplit(nn.Module):
    """split with unequal sizes held in int attributes (updated by pruning), plus the whole tensor again."""

    def __init__(self) -> None:
        super().__init__()
        self.ca, self.cb = 8, 24
        self.cv1, self.a, self.b = Conv(3, 32, 3, 2), Conv(8, 8, 3), Conv(24, 8, 3)
        self.out = nn.Conv2d(16 + 32, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        a, b = y.split((self.ca, self.cb), 1)
        return self.out(torch.cat((self.a(a), self.b(b), y), 1))


class FixedSplit(nn.Module):
    """split with sizes written in the code: cv1 cannot be pruned (the graph leaves it alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.a, self.b, self.out = Conv(3, 32, 3, 2), Conv(16, 16, 3), Conv(16, 16, 3), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((16, 16), 1)
        return self.out(torch.cat((self.a(a), self.b(b)), 1))


class Chunk4(nn.Module):
    """chunk(4), each piece through its own conv, concatenated in reverse."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.out = Conv(3, 32, 3, 2), nn.Conv2d(32, 4, 1)
        self.ms = nn.ModuleList(Conv(8, 8, 3) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([m(p) for m, p in zip(self.ms, self.cv1(x).chunk(4, 1))][::-1], 1))


class ConstCat(nn.Module):
    """A constant (no grad) tensor inside a channel concatenation, and one tensor concatenated twice."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.out = Conv(3, 16, 3, 2), nn.Conv2d(4 + 16 + 16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        z = torch.zeros(y.shape[0], 4, *y.shape[2:], dtype=y.dtype)
        return self.out(torch.cat((z, y, y * 2), 1))


class DepthMultiplier(nn.Module):
    """groups == in_channels but out = 2 × in (a depthwise conv with multiplier 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.dw, self.out = Conv(3, 8, 3, 2), nn.Conv2d(8, 16, 3, 1, 1, groups=8), nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dw(self.cv1(x)))


class FeatureOutputs(nn.Module):
    """Returns a raw feature map and pooled features, and declares no output layers."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.cv2 = Conv(3, 8, 3, 2), Conv(8, 16, 3, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.cv1(x)
        return a, self.cv2(a).mean((2, 3))


class TokenMLP(nn.Module):
    """Linear layers over [B, N, C] tokens (F.linear's internal views) with a residual back to the conv map."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1, self.fc1, self.fc2 = Conv(3, 24, 3, 4), nn.Linear(24, 48), nn.Linear(48, 24)
        self.head = nn.Conv2d(24, 4, 1)

    @property
    def output_layers(self) -> list[str]:
        return ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        b, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)
        t = t + self.fc2(torch.relu(self.fc1(t)))
        return self.head(t.transpose(1, 2).reshape(b, c, h, w))


ODD = {cls.__name__: _make(cls, 32) for cls in (SwapCat, UnevenSplit, FixedSplit, Chunk4, ConstCat, DepthMultiplier,
                                                 FeatureOutputs, TokenMLP)}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A fresh model with deterministic weights and non-trivial BatchNorm statistics, in eval mode, and an input."""
    torch.manual_seed(seed)
    model, x = (ZOO | ODD)[name]()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval(), x
