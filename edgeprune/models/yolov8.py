"""YOLOv8 and YOLO11 in plain PyTorch: the layer tables of ultralytics' yolov8.yaml and yolo11.yaml, built with
ultralytics' channel arithmetic, so that the state dict of an ultralytics model of the same size and class count
loads as it is (the layers are `model.0` … `model.22` / `model.23`, as there).

Sizes differ by depth and width multiples and a channel cap (n, s, m, l, x). Eval mode returns one tensor
`[B, 4 + C, N]` (boxes `cx, cy, w, h` in input pixels, class scores after sigmoid), what `yolo export format=onnx`
writes; training mode returns the raw maps of the three levels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .common import SPPF, Conv
from .yolov5 import make_divisible
from .yolov8_blocks import C2PSA, C2f, C3k2, Concat, Detect

# (from, repeats, module, args) per layer; channel args before the width multiple; "nc" is the class count.
YOLOV8 = [
    (-1, 1, "Conv", [64, 3, 2]), (-1, 1, "Conv", [128, 3, 2]), (-1, 3, "C2f", [128, True]),
    (-1, 1, "Conv", [256, 3, 2]), (-1, 6, "C2f", [256, True]), (-1, 1, "Conv", [512, 3, 2]),
    (-1, 6, "C2f", [512, True]), (-1, 1, "Conv", [1024, 3, 2]), (-1, 3, "C2f", [1024, True]),
    (-1, 1, "SPPF", [1024, 5]),
    (-1, 1, "Upsample", []), ([-1, 6], 1, "Concat", []), (-1, 3, "C2f", [512]),
    (-1, 1, "Upsample", []), ([-1, 4], 1, "Concat", []), (-1, 3, "C2f", [256]),
    (-1, 1, "Conv", [256, 3, 2]), ([-1, 12], 1, "Concat", []), (-1, 3, "C2f", [512]),
    (-1, 1, "Conv", [512, 3, 2]), ([-1, 9], 1, "Concat", []), (-1, 3, "C2f", [1024]),
    ([15, 18, 21], 1, "Detect", []),
]
YOLO11 = [
    (-1, 1, "Conv", [64, 3, 2]), (-1, 1, "Conv", [128, 3, 2]), (-1, 2, "C3k2", [256, False, 0.25]),
    (-1, 1, "Conv", [256, 3, 2]), (-1, 2, "C3k2", [512, False, 0.25]), (-1, 1, "Conv", [512, 3, 2]),
    (-1, 2, "C3k2", [512, True]), (-1, 1, "Conv", [1024, 3, 2]), (-1, 2, "C3k2", [1024, True]),
    (-1, 1, "SPPF", [1024, 5]), (-1, 2, "C2PSA", [1024]),
    (-1, 1, "Upsample", []), ([-1, 6], 1, "Concat", []), (-1, 2, "C3k2", [512, False]),
    (-1, 1, "Upsample", []), ([-1, 4], 1, "Concat", []), (-1, 2, "C3k2", [256, False]),
    (-1, 1, "Conv", [256, 3, 2]), ([-1, 13], 1, "Concat", []), (-1, 2, "C3k2", [512, False]),
    (-1, 1, "Conv", [512, 3, 2]), ([-1, 10], 1, "Concat", []), (-1, 2, "C3k2", [1024, True]),
    ([16, 19, 22], 1, "Detect", []),
]
TABLES = {"v8": YOLOV8, "11": YOLO11}
# depth multiple, width multiple, channel cap
SCALES = {
    "v8": {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768), "l": (1.0, 1.0, 512),
           "x": (1.0, 1.25, 512)},
    "11": {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512), "l": (1.0, 1.0, 512),
           "x": (1.0, 1.50, 512)},
}


@dataclass
class YOLOv8Config:
    """Everything needed to rebuild the architecture; stored in checkpoints instead of a pickled module."""

    version: str  # "v8" or "11"
    scale: str  # n, s, m, l, x
    num_classes: int = 80
    in_channels: int = 3
    reg_max: int = 16
    name: str = "yolov8"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "YOLOv8Config":
        return cls(**d)


def _layer(kind: str, c_in: int, args: list, n: int, ch, scale: str, version: str) -> tuple[nn.Module, int]:
    """One layer of the table and its output width (`ch`: the width multiple and cap, applied)."""
    if kind == "Conv":
        c_out = ch(args[0])
        return Conv(c_in, c_out, *args[1:]), c_out
    if kind == "SPPF":
        return SPPF(c_in, ch(args[0]), args[1]), ch(args[0])
    if kind == "C2f":
        return C2f(c_in, ch(args[0]), n, *args[1:]), ch(args[0])
    if kind == "C3k2":
        c3k = args[1] if len(args) > 1 else False
        c3k = c3k or scale in "mlx"  # ultralytics turns C3k on for the larger YOLO11 sizes
        return C3k2(c_in, ch(args[0]), n, c3k, *args[2:]), ch(args[0])
    if kind == "C2PSA":
        return C2PSA(c_in, ch(args[0]), n), ch(args[0])
    raise ValueError(f"unknown layer {kind!r} in the YOLO{version} table")


class YOLOv8(nn.Module):
    row_layout = "yolov8"  # eval output [B, 4 + C, N] (edgeprune.export and evaluate read it)

    def __init__(self, config: YOLOv8Config) -> None:
        super().__init__()
        self.config = config
        depth, width, cap = SCALES[config.version][config.scale]

        def ch(c: int) -> int:
            return make_divisible(min(c, cap) * width, 8)

        layers, widths, self.sources = [], [], []
        for i, (src, repeats, kind, args) in enumerate(TABLES[config.version]):
            n = max(round(repeats * depth), 1) if repeats > 1 else repeats
            c_in = widths[-1] if i else config.in_channels
            if kind == "Upsample":
                layer, c_out = nn.Upsample(scale_factor=2.0, mode="nearest"), c_in
            elif kind == "Concat":
                layer, c_out = Concat(1), sum(widths[j] for j in src)
            elif kind == "Detect":
                layer = Detect(config.num_classes, [widths[j] for j in src], reg_max=config.reg_max,
                               legacy=config.version == "v8")
                c_out = 0
            else:
                layer, c_out = _layer(kind, c_in, args, n, ch, config.scale, config.version)
            layers.append(layer)
            widths.append(c_out)
            self.sources.append(src)
        self.model = nn.ModuleList(layers)
        self.keep = {j for src in self.sources if isinstance(src, list) for j in src}  # outputs read later

    @property
    def head(self) -> Detect:
        return self.model[-1]

    @property
    def output_layers(self) -> list[str]:
        """Qualified names of the layers whose output channels are fixed by the task (pruning leaves them alone)."""
        last = len(self.model) - 1
        return ([f"model.{last}.cv2.{i}.2" for i in range(self.head.nl)]
                + [f"model.{last}.cv3.{i}.2" for i in range(self.head.nl)] + [f"model.{last}.dfl.conv"])

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        saved: dict[int, torch.Tensor] = {}
        for i, (layer, src) in enumerate(zip(self.model, self.sources)):
            if isinstance(src, list):
                x = layer([x if j == -1 else saved[j] for j in src])
            else:
                x = layer(x)
            if i in self.keep:
                saved[i] = x
        return x
