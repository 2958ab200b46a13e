"""Export a detector to one self-contained ONNX file, checked and compared with torch through onnxruntime.

Output layout (the default, `layout="yolo"`): the model's own output. For edgeprune's YOLOv5, one tensor `output0`
of shape `[B, N, 5 + C]`, N = anchors × cells over the three levels, each row `(cx, cy, w, h, objectness, class
scores...)` with boxes in input pixels and scores after sigmoid — the ultralytics YOLOv5 layout. For an ultralytics
YOLOv8 / YOLO11 / RT-DETR model, the head is switched to its export forward first (models.source.export_layout), so
the file has the one `output0` that `yolo export format=onnx` writes (`[B, 4 + C, N]` for YOLOv8 / YOLO11). Any
other module keeps its outputs, flattened (`output0`, `output1`, ...; a None among them is dropped).
`layout="nms"` instead gives two tensors ready for an NMS plugin such as TensorRT's EfficientNMS_TRT
(`box_coding=0`): `boxes [B, N, 4]` as `(x1, y1, x2, y2)` and `scores [B, N, C]` (objectness × class score for
YOLOv5); it needs one of the two known layouts.

We use the TorchScript exporter (`dynamo=False`): it writes opsets 11–20 directly (TensorRT 8.2 on a TX2 wants
≤ 13), keeps weights inside the file, and is several times faster than the dynamo exporter in torch 2.13, whose
down-conversion below opset 18 is unreliable. The exported graph is then folded by onnx-graphsurgeon
(deploy.onnx_tools.fold_constants): the TorchScript exporter writes `Tensor.chunk` (C2f, C3k2) as
`Shape -> Gather -> Div -> Slice` on shapes that are static, which the fold turns into constant slices, as
ultralytics' own export does with onnxslim. TensorRT's parser and FLOP counts then see static shapes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import input_channels
from .models.source import export_layout
from .utils.files import atomic_path
from .utils.tensors import flatten_tensors

# onnxruntime vs torch on the same input: scores in [0, 1] within ATOL; box coordinates are in pixels, where a
# float32 rounding difference of a few 1e-4 px near 0 is normal (stride 32 times a logit), so they get PIXEL_ATOL.
RTOL, ATOL, PIXEL_ATOL = 1e-3, 1e-4, 1e-2


class NMSReadyOutputs(nn.Module):
    """Wraps a detector to emit `(boxes xyxy, scores)` instead of its raw rows: YOLOv5's `[B, N, 5 + C]`
    (scores = objectness × class), or with `channels_first` the anchor-free `[B, 4 + C, N]` of YOLOv8 / YOLO11."""

    def __init__(self, model: nn.Module, channels_first: bool = False) -> None:
        super().__init__()
        self.model, self.channels_first = model, channels_first

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.model(x)
        y = y.transpose(1, 2) if self.channels_first else y
        xy, wh = y[..., :2], y[..., 2:4]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
        scores = y[..., 4:] if self.channels_first else y[..., 5:] * y[..., 4:5]
        return boxes, scores


class FlatOutputs(nn.Module):
    """A model whose nested outputs (tuples, dicts, a None among them) come out as a flat tuple of tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_tensors(self.model(x)))


@dataclass
class ExportResult:
    path: Path
    opset: int
    img_size: int
    outputs: list[str]
    max_abs_diff: float  # largest |onnxruntime − torch| over all outputs on a random input
    diffs: dict[str, float] = field(default_factory=dict)  # the same per part (box pixels, scores)

    def agreement(self) -> str:
        """'boxes within 2.2e-02 px, scores within 3.1e-06 (both inside the tolerance)': what a user needs to
        read the check, with each part's unit and the tolerance it passed."""
        parts = [f"{label} within {d:.1e}" + (" px" if "boxes" in label else "") for label, d in self.diffs.items()]
        return (f"onnxruntime matches torch: {', '.join(parts)} (allowed: {PIXEL_ATOL:g} px on boxes, {ATOL:g} on "
                f"scores, plus {RTOL:.1%} of the value)") if parts else "not compared with torch"


def export_onnx(model: nn.Module, path: str | Path, img_size: int = 640, opset: int = 13, batch: int = 1,
                dynamic_batch: bool = False, layout: str = "yolo", verify: bool = True) -> ExportResult:
    """Write `model` as ONNX to `path` (atomically), run onnx.checker, and compare with torch on onnxruntime.
    `opset` 13 suits TensorRT 8.2 (JetPack 4.6); RT-DETR's grid_sample needs 16."""
    import onnx

    from deploy.onnx_tools import fold_constants

    if layout not in ("yolo", "nms"):
        raise ValueError(f"layout must be 'yolo' or 'nms', not {layout!r}")
    model = export_layout(model.eval().cpu())
    rows = getattr(model, "row_layout", None)  # "yolov5", "yolov8" (anchor-free [B, 4 + C, N]) or unknown
    x = torch.rand(batch, input_channels(model), img_size, img_size, generator=torch.Generator().manual_seed(0))
    if layout == "nms":
        if rows is None:
            raise ValueError(f"layout 'nms' needs YOLOv5 rows or the anchor-free YOLOv8 / YOLO11 output; "
                             f"{type(model).__name__}'s output is neither: export it with layout 'yolo'")
        net, outputs = NMSReadyOutputs(model, channels_first=rows == "yolov8").eval(), ["boxes", "scores"]
    else:
        with torch.no_grad():
            y = model(x)
        net = model if isinstance(y, torch.Tensor) else FlatOutputs(model).eval()
        n = len(flatten_tensors(y))
        outputs = ["output0"] if n == 1 else [f"output{i}" for i in range(n)]
    dynamic_axes = {name: {0: "batch"} for name in ["images", *outputs]} if dynamic_batch else None
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values
            torch.onnx.export(net, (x,), str(tmp), opset_version=opset, input_names=["images"],
                              output_names=outputs, dynamic_axes=dynamic_axes, dynamo=False, do_constant_folding=True)
        folded = fold_constants(str(tmp))
        onnx.save(folded, str(tmp))
        onnx.checker.check_model(folded, full_check=True)
        diffs = _compare_with_torch(net, str(tmp), x, outputs, rows) if verify else {}
    return ExportResult(Path(path), opset, img_size, outputs, max(diffs.values(), default=float("nan")), diffs)


def _columns(name: str, a: np.ndarray, rows: str | None) -> list[tuple[str, np.ndarray, float]]:
    """An output split into box coordinates in pixels and scores, each with its absolute tolerance: all of
    `boxes`; the first 4 columns of YOLOv5's `output0`, the first 4 channels of YOLOv8's. An output of unknown
    layout gets ATOL scaled by its largest value."""
    if name == "boxes":
        return [("boxes", a, PIXEL_ATOL)]
    if name == "output0" and rows == "yolov5":
        return [("output0 boxes", a[..., :4], PIXEL_ATOL), ("output0 scores", a[..., 4:], ATOL)]
    if name == "output0" and rows == "yolov8":
        return [("output0 boxes", a[:, :4], PIXEL_ATOL), ("output0 scores", a[:, 4:], ATOL)]
    if name == "scores":
        return [(name, a, ATOL)]
    return [(name, a, ATOL * max(1.0, float(np.abs(a).max(initial=0.0))))]


@torch.no_grad()
def _compare_with_torch(net: nn.Module, onnx_path: str, x: torch.Tensor, names: list[str],
                        rows: str | None) -> dict[str, float]:
    """Largest |onnxruntime − torch| of each output part; raises when a part exceeds its tolerance."""
    from deploy.onnxruntime_runner import OnnxRuntimeRunner

    expected = flatten_tensors(net(x))
    got = OnnxRuntimeRunner(onnx_path).infer({"images": x.numpy()})
    diffs = {}
    for name, e, g in zip(names, expected, got):
        e = e.numpy()
        for (label, ec, atol), (_, gc, _) in zip(_columns(name, e, rows), _columns(name, g, rows)):
            np.testing.assert_allclose(gc, ec, rtol=RTOL, atol=atol,
                                       err_msg=f"{onnx_path}: onnxruntime {label} differ from torch")
            diffs[label] = float(np.abs(gc - ec).max())
    return diffs
