"""TensorRT on a local GPU through deploy: `deploy.trt_build.build_engine` then `deploy.trt_run.time_engine`.

Protocol: the ONNX bytes go to a temporary file, the engine is built (or reused from `engine_cache_dir`, keyed by
the ONNX sha256, precision, input shape, workspace and TensorRT version; a timing cache there makes rebuilds of
similar pruned models fast), then timed by deploy.trt_run: inputs on the GPU once, `warmup` untimed executions,
`runs` samples of one execute between two CUDA events. INT8 engines are calibrated on random inputs: a valid
latency, a meaningless accuracy. TensorRT and the CUDA bindings are imported only when measuring.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from deploy.stats import LatencyStats

from .base import LatencyBackend, MeasurementError, Shape, normalize_shape


class TensorRTBackend(LatencyBackend):
    name = "tensorrt"

    def __init__(self, precision: str = "fp16", workspace_mb: int = 1024, engine_cache_dir: str | Path | None = None,
                 warmup: int = 10, runs: int = 100, dla_core: int | None = None) -> None:
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"tensorrt precision must be fp32, fp16 or int8, not {precision!r}")
        self.precision, self.workspace_mb, self.dla_core = precision, int(workspace_mb), dla_core
        self.engine_cache_dir = Path(engine_cache_dir).expanduser() if engine_cache_dir else None
        self.warmup, self.runs = int(warmup), int(runs)

    @staticmethod
    def _trt():
        try:
            from deploy import trt_build
            return trt_build.import_tensorrt()
        except Exception as e:
            raise MeasurementError(f"the tensorrt backend needs TensorRT's Python bindings and a CUDA GPU: {e}. "
                                   "Use the ort backend, or remote:// to a Jetson running the agent.",
                                   "tensorrt", "TensorRT missing") from e

    def fingerprint(self) -> dict:
        trt = self._trt()
        from deploy.trt_run import device_name

        try:
            device = device_name()
        except Exception as e:
            raise MeasurementError(f"no CUDA device for TensorRT: {e}", "tensorrt", str(e)) from e
        return {"backend": "tensorrt", "device": device, "tensorrt": trt.__version__, "precision": self.precision,
                "workspace_mb": self.workspace_mb, "dla_core": self.dla_core}

    def measure(self, onnx: bytes, input_shape: Shape) -> LatencyStats:
        trt = self._trt()
        from deploy.trt_build import EngineBuildError, build_engine
        from deploy.trt_run import time_engine

        shape = normalize_shape(input_shape)
        sha = hashlib.sha256(onnx).hexdigest()
        key = hashlib.sha256(repr((sha, self.precision, shape, self.workspace_mb, self.dla_core,
                                   trt.__version__)).encode()).hexdigest()[:32]
        with tempfile.TemporaryDirectory(prefix="edgeprune-trt-") as tmp:
            onnx_path = os.path.join(tmp, "model.onnx")
            with open(onnx_path, "wb") as f:
                f.write(onnx)
            cache_dir = self.engine_cache_dir or Path(tmp)
            cache_dir.mkdir(parents=True, exist_ok=True)
            engine = cache_dir / f"{key}.engine"
            calib = None
            if self.precision == "int8":
                import numpy as np
                calib = os.path.join(tmp, "calib.npy")
                np.save(calib, np.random.RandomState(0).random_sample(shape).astype(np.float32))
            cached = engine.is_file()
            try:
                if not cached:
                    build_engine(onnx_path, str(engine), precision=self.precision, workspace_mb=self.workspace_mb,
                                 input_shape=shape, calib_source=calib, dla_core=self.dla_core,
                                 timing_cache=str(cache_dir / f"timing-{trt.__version__}.cache"))
                stats = time_engine(str(engine), warmup=self.warmup, runs=self.runs, input_shape=shape)
            except EngineBuildError as e:
                raise MeasurementError(f"TensorRT could not build the engine ({self.precision}, {shape}): {e}",
                                       "tensorrt", str(e)) from e
            except (ValueError, RuntimeError) as e:
                raise MeasurementError(f"TensorRT could not time the model at {shape}: {e}", "tensorrt",
                                       str(e)) from e
        stats.info.update(backend="tensorrt", precision=self.precision, engine_cached=cached)
        return stats
