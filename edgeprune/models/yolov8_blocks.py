"""Building blocks of YOLOv8 and YOLO11, with ultralytics' layer names and arithmetic, so that its weights load by
name: C2f, C3k2 (and its C3k), C2PSA (position-sensitive attention), and the anchor-free Detect head with DFL.

The blocks are written from the architecture (the channel arithmetic of ultralytics' `nn/modules`), not imported:
edgeprune trains and prunes these models without ultralytics installed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import Conv


class Bottleneck(nn.Module):
    """`k[0]` then `k[1]` conv (hidden width `c_out · e`), residual add when `shortcut` and widths allow."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, k: tuple[int, int] = (3, 3),
                 e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, k[0], 1)
        self.cv2 = Conv(hidden, c_out, k[1], 1)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """cv1 → two halves (a, b); b → m0 → m1 …; cv2(cat(a, b, m0, m1 …)). YOLOv8's CSP block."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c_out * e)
        self.cv1 = Conv(c_in, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c_out, 1)
        self.m = nn.ModuleList(self._block(shortcut) for _ in range(n))

    def _block(self, shortcut: bool) -> nn.Module:
        return Bottleneck(self.c, self.c, shortcut, k=(3, 3), e=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3k(nn.Module):
    """C3 with `k`×`k` bottlenecks: (cv1 → n bottlenecks) ‖ cv2, concatenated, then cv3."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, e: float = 0.5, k: int = 3) -> None:
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = Conv(c_in, hidden, 1, 1)
        self.cv2 = Conv(c_in, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, k=(k, k), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):
    """YOLO11's C2f: its blocks are C3k (two 3×3 bottlenecks each) with `c3k`, else plain bottlenecks (e = 0.5)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, c3k: bool = False, e: float = 0.5,
                 shortcut: bool = True) -> None:
        self.c3k = c3k
        super().__init__(c_in, c_out, n, shortcut, e)

    def _block(self, shortcut: bool) -> nn.Module:
        return C3k(self.c, self.c, 2, shortcut) if self.c3k else Bottleneck(self.c, self.c, shortcut)


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions of a map: one 1×1 conv gives q, k, v for every head
    (`key_dim` channels for q and k, `head_dim` for v), a 3×3 depthwise conv on v adds position, 1×1 `proj`."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, h * w).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        # widths from v, not from x: with heads pruned away the attention is narrower than the block around it
        y = (v @ attn.transpose(-2, -1)).reshape(b, -1, h, w) + self.pe(v.reshape(b, -1, h, w))
        return self.proj(y)


class PSABlock(nn.Module):
    """Attention then a 2× feed-forward, each with a residual add."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, num_heads=num_heads, attn_ratio=attn_ratio)
        self.ffn = nn.Sequential(Conv(c, 2 * c, 1), Conv(2 * c, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    """cv1 → halves (a, b); b through n PSA blocks (one head per 64 channels); cv2(cat(a, b))."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        assert c_in == c_out, "C2PSA keeps its width"
        self.c = int(c_in * e)
        self.cv1 = Conv(c_in, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c_in, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))
                                 for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class Concat(nn.Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.d = dim

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)


class DFL(nn.Module):
    """Distribution focal loss' integral: each side's distance is the expectation of a softmax over `c1` bins."""

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(feats: list[torch.Tensor], strides: torch.Tensor, offset: float = 0.5):
    """Cell centres (in cells) of every level, `[N, 2]`, and each one's stride, `[N, 1]`."""
    points, stride_of = [], []
    for i, x in enumerate(feats):  # no .item(): the latency table traces the model on meta tensors
        h, w = x.shape[2:]
        sy, sx = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device) + offset,
                                torch.arange(w, dtype=x.dtype, device=x.device) + offset, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_of.append(torch.ones((h * w, 1), dtype=x.dtype, device=x.device) * strides[i].to(x.dtype))
    return torch.cat(points), torch.cat(stride_of)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(left, top, right, bottom) distances from `points` → (cx, cy, w, h)."""
    lt, rb = distance.chunk(2, dim)
    x1y1, x2y2 = points - lt, points + rb
    return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)


class Detect(nn.Module):
    """Anchor-free decoupled head: per level a box branch `cv2` (→ 4 × reg_max bins) and a class branch `cv3`
    (YOLO11: depthwise-separable convs; YOLOv8, `legacy`: plain 3×3 convs).

    Training mode returns the raw maps `[B, 4·reg_max + C, H, W]` per level; eval mode the decoded `[B, 4 + C, N]`
    (boxes `cx, cy, w, h` in input pixels, class scores after sigmoid): ultralytics' export output.
    """

    def __init__(self, num_classes: int, channels: list[int], strides=(8, 16, 32), reg_max: int = 16,
                 legacy: bool = False) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = num_classes, len(channels), reg_max
        self.no = num_classes + 4 * reg_max
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32))
        c2, c3 = max(16, channels[0] // 4, 4 * reg_max), max(channels[0], min(num_classes, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in channels)
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, num_classes, 1))
                                     for x in channels)
        else:
            self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(Conv(x, x, 3, g=x), Conv(x, c3, 1)),
                                                   nn.Sequential(Conv(c3, c3, 3, g=c3), Conv(c3, c3, 1)),
                                                   nn.Conv2d(c3, num_classes, 1)) for x in channels)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self._init_biases()

    def _init_biases(self) -> None:
        """Box bins start even; class logits at ≈ 5 objects per 640² image (ultralytics' bias_init)."""
        with torch.no_grad():
            for a, b, s in zip(self.cv2, self.cv3, self.stride.tolist()):
                a[-1].bias.fill_(1.0)
                b[-1].bias.fill_(math.log(5 / self.nc / (640 / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        maps = [torch.cat((box(x), cls(x)), 1) for box, cls, x in zip(self.cv2, self.cv3, feats)]
        return maps if self.training else self.decode(maps)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        b = maps[0].shape[0]
        x = torch.cat([m.view(b, self.no, -1) for m in maps], 2)
        box, cls = x.split((4 * self.reg_max, self.nc), 1)
        points, strides = make_anchors(maps, self.stride)
        boxes = dist2bbox(self.dfl(box), points.transpose(0, 1).unsqueeze(0), dim=1) * strides.transpose(0, 1)
        return torch.cat((boxes, cls.sigmoid()), 1)
