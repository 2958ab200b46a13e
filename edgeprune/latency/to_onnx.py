"""A torch module as ONNX bytes in memory: what every backend is given to time."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from .shape import normalize_shape

__all__ = ["module_to_onnx"]


def module_to_onnx(module, input_shape, opset: int = 13) -> bytes:
    """ONNX bytes of a torch module at `input_shape` (TorchScript exporter, opset 13, weights inside, in memory).

    edgeprune detectors (with `.config`) are exported by edgeprune.export.export_onnx (same names and layout as
    `edgeprune export`, without the onnxruntime comparison); other modules by torch.onnx.export directly.
    """
    import tempfile

    import torch

    shape = normalize_shape(input_shape)
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "in_channels") and len(shape) == 4 and shape[2] == shape[3]:
        from edgeprune.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(module, path, img_size=shape[2], opset=opset, batch=shape[0], verify=False)
            return path.read_bytes()
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(shape),), buf, opset_version=opset, input_names=["images"],
                              dynamo=False, do_constant_folding=True)
    finally:
        module.train(was_training)
    return buf.getvalue()
