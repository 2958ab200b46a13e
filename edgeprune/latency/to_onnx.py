"""A torch module as ONNX bytes in memory: what every backend is given to time."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from .shape import normalize_shape

__all__ = ["module_to_onnx"]


def module_to_onnx(module, input_shape, opset: int = 13) -> bytes:
    """ONNX bytes of a torch module at `input_shape` (TorchScript exporter, weights inside, in memory).

    A square image input goes through edgeprune.export.export_onnx (the names and layout of `edgeprune export`,
    ultralytics heads in their export layout, without the onnxruntime comparison); any other shape through
    torch.onnx.export with the outputs flattened the same way.
    """
    import tempfile

    import torch

    from edgeprune.export import FlatOutputs, export_onnx
    from edgeprune.models.source import export_layout

    shape = normalize_shape(input_shape)
    was_training = module.training
    try:
        if len(shape) == 4 and shape[2] == shape[3]:
            with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as tmp:
                path = Path(tmp) / "model.onnx"
                export_onnx(module, path, img_size=shape[2], opset=opset, batch=shape[0], verify=False)
                return path.read_bytes()
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(FlatOutputs(export_layout(module.eval())), (torch.zeros(shape),), buf,
                              opset_version=opset, input_names=["images"], dynamo=False, do_constant_folding=True)
        return buf.getvalue()
    finally:
        module.train(was_training)
