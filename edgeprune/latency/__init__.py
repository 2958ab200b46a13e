"""Latency backends, the persistent latency cache, and `measure()` (docs/latency.md).

    from edgeprune.latency import get_backend, measure, LatencyCache
    stats = measure(model, (1, 3, 640, 640), backend="ort", cache=LatencyCache("runs/latency.sqlite"))
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from deploy.stats import LatencyStats

from .base import (
    LatencyBackend,
    MeasurementError,
    fingerprint_json,
    normalize_shape,
)
from .cache import CachedBackend, LatencyCache, onnx_structure_hash

__all__ = [
    "CachedBackend",
    "LatencyBackend",
    "LatencyCache",
    "LatencyStats",
    "MeasurementError",
    "fingerprint_json",
    "get_backend",
    "measure",
    "module_to_onnx",
    "onnx_structure_hash",
]


def get_backend(spec: str = "ort", **options) -> LatencyBackend:
    """A backend by name: "ort" / "onnxruntime" (threads, warmup, runs, max_cv, max_attempts, min_warmup_s),
    "torch-cuda" (cuda_graph, warmup, runs, device, precision), "tensorrt" (precision, workspace_mb,
    engine_cache_dir, warmup, runs, dla_core), "remote://host:port[,host2:port2][?backend=trt&precision=fp16]"
    (token, backend, precision, warmup, iterations, threads, request_timeout_s, total_timeout_s, retries,
    backoff_s, ...)."""
    if isinstance(spec, LatencyBackend):
        return spec
    s = str(spec).strip()
    if s in ("ort", "onnxruntime"):
        from .ort import OrtBackend
        return OrtBackend(**options)
    if s in ("torch-cuda", "torch_cuda", "cuda"):
        from .torch_cuda import TorchCudaBackend
        return TorchCudaBackend(**options)
    if s in ("tensorrt", "trt"):
        from .tensorrt import TensorRTBackend
        return TensorRTBackend(**options)
    if s.startswith("remote://"):
        from .remote import RemoteBackend, spec_options
        return RemoteBackend(s, **{**options, **spec_options(s)})
    raise ValueError(f"unknown latency backend {spec!r}: use ort, torch-cuda, tensorrt or remote://host:port")


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


def _load_onnx(model) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass an ONNX file, ONNX bytes or a torch module")
    return path.read_bytes()


def measure(model, input_shape, backend: LatencyBackend | str = "ort",
            cache: LatencyCache | None = None) -> LatencyStats:
    """Latency of `model` (nn.Module, ONNX bytes, or a path to an .onnx file) at `input_shape`.

    A torch module is exported to ONNX first (module_to_onnx); a backend that times modules itself (torch-cuda)
    gets the module and uses the export only as the cache key. With `cache`, a structure measured before on the
    same setup is not measured again.
    """
    shape = normalize_shape(input_shape)
    b = get_backend(backend) if isinstance(backend, str) else backend
    if cache is not None and not isinstance(b, CachedBackend):
        b = CachedBackend(b, cache)
    inner = b.backend if isinstance(b, CachedBackend) else b
    is_module = not isinstance(model, (bytes, bytearray, str, Path))
    if is_module and hasattr(inner, "measure_module"):
        return b.measure_module(model, shape)
    onnx = module_to_onnx(model, shape) if is_module else _load_onnx(model)
    return b.measure(onnx, shape)
