"""Latency backends, the persistent latency cache, and `measure()` (docs/latency.md).

    from edgeprune.latency import get_backend, measure, LatencyCache
    stats = measure(model, (1, 3, 640, 640), backend="ort", cache=LatencyCache("runs/latency.sqlite"))
"""

from __future__ import annotations

from pathlib import Path

from deploy.stats import LatencyStats

from .base import (
    LatencyBackend,
    MeasurementError,
    fingerprint_json,
    normalize_shape,
)
from .cache import CachedBackend, LatencyCache, onnx_structure_hash
from .to_onnx import module_to_onnx

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
    "timing_options",
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


def timing_options(spec: str, threads: int | None = None, runs: int | None = None,
                   warmup: int | None = None) -> dict:
    """`get_backend` options for how a measurement is timed, in each backend's own words: threads mean something
    to onnxruntime only, and a remote agent counts `iterations` where the local backends count `runs`."""
    opts = {} if warmup is None else {"warmup": warmup}
    spec = str(spec)
    if spec in ("ort", "onnxruntime"):
        opts["threads"] = threads or None
    if runs is not None:
        opts["iterations" if spec.startswith("remote://") else "runs"] = runs
    return opts


def _load_onnx(model) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass an ONNX file, ONNX bytes or a torch module")
    return path.read_bytes()


def measure(model, input_shape, backend: LatencyBackend | str = "ort",
            cache: LatencyCache | None = None, opset: int = 13) -> LatencyStats:
    """Latency of `model` (nn.Module, ONNX bytes, or a path to an .onnx file) at `input_shape`.

    A torch module goes to the backend's `measure_module`: exported to ONNX at `opset` first, or timed as it is by
    a backend that times modules (torch-cuda), the export then only the cache key. With `cache`, a structure
    measured before on the same setup is not measured again.
    """
    shape = normalize_shape(input_shape)
    b = get_backend(backend) if isinstance(backend, str) else backend
    if cache is not None and not isinstance(b, CachedBackend):
        b = CachedBackend(b, cache)
    if not isinstance(model, (bytes, bytearray, str, Path)):
        if hasattr(b, "measure_module"):  # every LatencyBackend; a duck-typed one gets the ONNX export
            return b.measure_module(model, shape, opset=opset)
        return b.measure(module_to_onnx(model, shape, opset), shape)
    onnx = _load_onnx(model)
    return b.measure(onnx, shape)
