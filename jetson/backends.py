"""The three timing backends: which ones work here, what measurements share, and each one's prepare step.

Each imports what it needs only when used, so a board without TensorRT still serves onnxruntime:

- `trt`: engine built with `deploy.trt_build.build_engine` (cached), timed with `deploy.trt_run.time_engine`.
- `trtexec`: NVIDIA's trtexec (jetson/trtexec_run.py, deploy.trtexec's recipe), on the cached engine, or the
  first time on the ONNX file with `--saveEngine` into the cache (trtexec then builds inside its own run).
- `onnxruntime`: `deploy.onnxruntime_runner` on the CPU (the fallback, and what runs on a machine without a GPU).

A prepare step returns (timer, engine info); the timer takes no argument and returns LatencyStats. `stop` is the
job's JobControl (or None): the runners ask it between runs, trtexec is killed by it, and the trt backend asks it
before and after an engine build (which itself cannot be interrupted).
"""

import importlib.util
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

from deploy.stats import LatencyStats, check_stop

from .store import EngineCache, engine_key

if TYPE_CHECKING:
    from .limits import Limits

TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"


def find_trtexec(path: Optional[str] = None) -> Optional[str]:
    """The executable trtexec would run: `path`, else deploy.trtexec's choice ($TRTEXEC, JetPack's, PATH)."""
    from deploy.trtexec import trtexec_path
    return shutil.which(path or trtexec_path())


def trt_python_version() -> Optional[str]:
    try:
        from deploy import trt_build
        return trt_build.tensorrt_version()
    except Exception:  # absent, or TensorRT present but broken (a library mismatch): not usable either way
        return None


def cuda_from_python() -> Optional[str]:
    """The CUDA binding deploy.trt_run would use (it tries pycuda, then cuda-python), or None."""
    for module in ("pycuda", "cuda"):
        if importlib.util.find_spec(module) is not None:
            return module
    return None


def backends(trtexec: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """Which backends can run here, with versions, or why not."""
    found = {}
    try:
        import onnxruntime
        found["onnxruntime"] = {"available": True, "version": onnxruntime.__version__}
    except ImportError as e:
        found["onnxruntime"] = {"available": False, "reason": "onnxruntime is not installed ({})".format(e)}
    version, cuda = trt_python_version(), cuda_from_python()
    if not version:
        found["trt"] = {"available": False, "reason": "the TensorRT Python bindings are not importable"}
    elif not cuda:
        found["trt"] = {"available": False, "reason": "TensorRT {} is here but neither pycuda (JetPack 4) nor "
                                                      "cuda-python (JetPack 5/6) is installed".format(version)}
    else:
        found["trt"] = {"available": True, "version": version, "cuda": cuda}
    path = find_trtexec(trtexec)
    found["trtexec"] = ({"available": True, "path": path} if path else
                        {"available": False, "reason": "no executable trtexec at {}".format(
                            trtexec or TRTEXEC_DEFAULT)})
    return found


class MeasureEnv(object):
    """What measurements share: the engine cache, the tegrastats binary and interval, the trtexec path, and the
    memory limits (jetson.limits.Limits; this machine's by default)."""

    def __init__(self, engine_dir: Union[str, os.PathLike] = "~/.edgeprune-agent/engines", engine_cache_mb: int = 4096,
                 tegrastats: str = "tegrastats", interval_ms: int = 200, trtexec: Optional[str] = None,
                 limits: Optional["Limits"] = None) -> None:
        from .limits import Limits

        self.engine_dir = engine_dir
        self.engine_cache_mb = engine_cache_mb
        self.tegrastats = tegrastats
        self.interval_ms = interval_ms
        self.trtexec = trtexec
        self.limits = limits or Limits.for_board()
        self._engines = None

    @property
    def engines(self) -> EngineCache:
        """The engine cache, created on first use (onnxruntime measurements never touch it)."""
        if self._engines is None:
            self._engines = EngineCache(self.engine_dir, self.engine_cache_mb)
        return self._engines


def _is_engine(path):
    return not path.lower().endswith(".onnx")


def _trt3(version):
    """'8.2.1' from '8.2.1.8' or (8, 2, 1): the trt and trtexec backends share the engines of one TensorRT."""
    from deploy.trt_build import parse_version, version_string
    return version_string(parse_version(version)[:3])


def _random_calibration(source, opts, path, max_bytes):
    """INT8 needs calibration data; latency does not depend on the scales, so random inputs do (the engine is for
    timing only: its accuracy is meaningless). Written through a memory map, refused beyond `max_bytes`."""
    from deploy.calibrator import write_random_npy
    from deploy.onnx_info import inspect as onnx_inspect

    shape = opts["input_shape"] or onnx_inspect(source)["inputs"][0]["shape"]
    return write_random_npy(path, shape, max_bytes=max_bytes)


def _trt_engine(source, opts, env, sha256, stop):
    """(engine path, info) for the trt backend: the given engine, a cached one, or one built now and cached."""
    if _is_engine(source):
        return source, {"cached": None, "build_s": None, "source": "given"}
    from deploy import trt_build
    version = _trt3(trt_build.import_tensorrt().__version__)  # a clear ImportError where TensorRT is missing
    key = engine_key(sha256 or trt_build.file_sha256(source), opts, version)
    cached = env.engines.lookup(key)
    if cached:
        return cached, {"cached": True, "build_s": None, "key": key, "tensorrt": version}
    calib = None
    check_stop(stop)
    t0 = time.perf_counter()
    try:
        if opts["precision"] == "int8":
            calib = env.engines.scratch_path(key + ".npy")
            _random_calibration(source, opts, calib, env.limits.max_input_bytes)
        sidecar = trt_build.build_engine(source, env.engines.path(key), precision=opts["precision"],
                                         workspace_mb=opts["workspace_mb"], input_shape=opts["input_shape"],
                                         calib_source=calib, timing_cache=env.engines.timing_cache(version),
                                         dla_core=opts["dla_core"])
    finally:
        if calib and os.path.exists(calib):
            os.unlink(calib)
    env.engines.added(key)
    info = {"cached": False, "build_s": time.perf_counter() - t0, "key": key, "tensorrt": version,
            "warnings": sidecar.get("warnings")}
    if calib:
        info["calibration"] = "random inputs: an engine for timing only"
    return env.engines.path(key), info


def prepare_onnxruntime(source: str, opts: Dict[str, Any], env: MeasureEnv, sha256: Optional[str],
                        stop: Optional[Callable[[], Optional[str]]] = None
                        ) -> Tuple[Callable[[], LatencyStats], Optional[Dict[str, Any]]]:
    if _is_engine(source):
        raise ValueError("{}: onnxruntime times ONNX files, not TensorRT engines".format(source))
    from deploy.onnxruntime_runner import OnnxRuntimeRunner
    runner = OnnxRuntimeRunner(source, threads=opts["threads"])
    return lambda: runner.time(shape=opts["input_shape"], warmup=opts["warmup"], runs=opts["iterations"], stop=stop,
                               max_input_bytes=env.limits.max_input_bytes), None


def prepare_trt(source: str, opts: Dict[str, Any], env: MeasureEnv, sha256: Optional[str],
                stop: Optional[Callable[[], Optional[str]]] = None
                ) -> Tuple[Callable[[], LatencyStats], Optional[Dict[str, Any]]]:
    engine, info = _trt_engine(source, opts, env, sha256, stop)
    check_stop(stop)  # a job cancelled or out of time during the build stops here, before any timing
    from deploy import trt_run
    return lambda: trt_run.time_engine(engine, warmup=opts["warmup"], runs=opts["iterations"],
                                       input_shape=opts["input_shape"], stop=stop,
                                       max_io_bytes=env.limits.max_io_bytes), info


def _engine_shapes(model, input_shape, onnx_source=True):
    """trtexec wants {input name: shape} for an engine, and only when the input is dynamic."""
    if input_shape is None:
        return None
    if onnx_source:
        from deploy.onnx_info import inspect as onnx_inspect
        first = onnx_inspect(model)["inputs"][0]
        dynamic = not all(isinstance(d, int) and d > 0 for d in first["shape"])
        return {first["name"]: list(input_shape)} if dynamic else None
    from deploy.trt_build import read_sidecar
    names = list(read_sidecar(model).get("input_shapes") or {})
    if not names:
        raise ValueError("{} has no sidecar naming its input: leave input_shape out for an engine built at a "
                         "fixed shape".format(model))
    return {names[0]: list(input_shape)}


def prepare_trtexec(source: str, opts: Dict[str, Any], env: MeasureEnv, sha256: Optional[str],
                    stop: Optional[Callable[[], Optional[str]]] = None
                    ) -> Tuple[Callable[[], LatencyStats], Optional[Dict[str, Any]]]:
    """trtexec on the cached engine, or on the ONNX file with --saveEngine into the cache (a killed run leaves
    only a scratch file behind, never a half-written engine under its key)."""
    from deploy import trtexec

    from .trtexec_run import benchmark
    exe = env.trtexec or trtexec.trtexec_path()
    version = trtexec.detect_version(exe)
    kwargs = {"trtexec": exe, "version": version, "workspace_mb": opts["workspace_mb"], "stop": stop,
              "dla_core": opts["dla_core"], "iterations": opts["iterations"], "profile": opts["layers"]}
    if opts["warmup_ms"] is not None:
        kwargs["warmup_ms"] = opts["warmup_ms"]
    if _is_engine(source):
        shapes = _engine_shapes(source, opts["input_shape"], onnx_source=False)
        return lambda: benchmark(source, opts["precision"], input_shape=shapes, **kwargs), {
            "cached": None, "build_s": None, "source": "given"}
    from deploy.files import file_sha256
    key = engine_key(sha256 or file_sha256(source), opts, _trt3(version))
    cached = env.engines.lookup(key)
    if cached:
        shapes = _engine_shapes(source, opts["input_shape"])
        return lambda: benchmark(cached, opts["precision"], input_shape=shapes, **kwargs), {
            "cached": True, "build_s": None, "key": key, "tensorrt": _trt3(version)}
    scratch = env.engines.scratch_path(key + ".engine")

    def build_and_time() -> LatencyStats:
        try:
            stats = benchmark(source, opts["precision"], input_shape=opts["input_shape"], save_engine=scratch,
                              timing_cache=env.engines.timing_cache(_trt3(version)), **kwargs)
            os.replace(scratch, env.engines.path(key))
            env.engines.added(key)
            return stats
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
    return build_and_time, {"cached": False, "build_s": None, "key": key, "tensorrt": _trt3(version),
                            "source": "built by trtexec inside the timed call (then cached)"}


PREPARE = {"onnxruntime": prepare_onnxruntime, "trt": prepare_trt, "trtexec": prepare_trtexec}
