"""Export a detector to one self-contained ONNX file, checked and compared with torch through onnxruntime.

Output layout (the default, `layout="yolo"`): one tensor `output0` of shape `[B, N, 5 + C]`, N = anchors × cells
over the three levels, each row `(cx, cy, w, h, objectness, class scores...)` with boxes in input pixels and
scores after sigmoid — the ultralytics YOLOv5 layout. `layout="nms"` instead gives two tensors ready for an NMS
plugin such as TensorRT's EfficientNMS_TRT (`box_coding=0`): `boxes [B, N, 4]` as `(x1, y1, x2, y2)` and
`scores [B, N, C]` = objectness × class score.

We use the TorchScript exporter (`dynamo=False`): it writes opsets 11–20 directly (TensorRT 8.2 on a TX2 wants
≤ 13), keeps weights inside the file, and is several times faster than the dynamo exporter in torch 2.13, whose
down-conversion below opset 18 is unreliable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .utils.files import atomic_path

# onnxruntime vs torch on the same input: scores in [0, 1] within ATOL; box coordinates are in pixels, where a
# float32 rounding difference of a few 1e-4 px near 0 is normal (stride 32 times a logit), so they get PIXEL_ATOL.
RTOL, ATOL, PIXEL_ATOL = 1e-3, 1e-4, 1e-2


class NMSReadyOutputs(nn.Module):
    """Wraps a detector to emit `(boxes xyxy, scores)` instead of the raw YOLO rows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.model(x)
        xy, wh = y[..., :2], y[..., 2:4]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
        scores = y[..., 5:] * y[..., 4:5]
        return boxes, scores


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
    """Write `model` as ONNX to `path` (atomically), run onnx.checker, and compare with torch on onnxruntime."""
    import onnx

    if layout not in ("yolo", "nms"):
        raise ValueError(f"layout must be 'yolo' or 'nms', not {layout!r}")
    model = model.eval().cpu()
    net = (NMSReadyOutputs(model) if layout == "nms" else model).eval()
    outputs = ["boxes", "scores"] if layout == "nms" else ["output0"]
    x = torch.rand(batch, model.config.in_channels, img_size, img_size, generator=torch.Generator().manual_seed(0))
    dynamic_axes = {name: {0: "batch"} for name in ["images", *outputs]} if dynamic_batch else None
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values
            torch.onnx.export(net, (x,), str(tmp), opset_version=opset, input_names=["images"],
                              output_names=outputs, dynamic_axes=dynamic_axes, dynamo=False, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(tmp), full_check=True)
        diffs = _compare_with_torch(net, str(tmp), x, outputs) if verify else {}
    return ExportResult(Path(path), opset, img_size, outputs, max(diffs.values(), default=float("nan")), diffs)


def _columns(name: str, a: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """An output split into box coordinates in pixels (all of `boxes`, the first 4 columns of `output0`) and
    scores, each with its absolute tolerance."""
    if name == "boxes":
        return [("boxes", a, PIXEL_ATOL)]
    if name == "output0":
        return [("output0 boxes", a[..., :4], PIXEL_ATOL), ("output0 scores", a[..., 4:], ATOL)]
    return [(name, a, ATOL)]


@torch.no_grad()
def _compare_with_torch(net: nn.Module, onnx_path: str, x: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Largest |onnxruntime − torch| of each output part; raises when a part exceeds its tolerance."""
    from deploy.onnxruntime_runner import OnnxRuntimeRunner

    expected = net(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = OnnxRuntimeRunner(onnx_path).infer({"images": x.numpy()})
    diffs = {}
    for name, e, g in zip(names, expected, got):
        e = e.numpy()
        for (label, ec, atol), (_, gc, _) in zip(_columns(name, e), _columns(name, g)):
            np.testing.assert_allclose(gc, ec, rtol=RTOL, atol=atol,
                                       err_msg=f"{onnx_path}: onnxruntime {label} differ from torch")
            diffs[label] = float(np.abs(gc - ec).max())
    return diffs
