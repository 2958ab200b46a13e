"""Build a TensorRT engine from ONNX with the TensorRT Python API, on TensorRT 8.2 (JetPack 4.6) to 10.x.

One hand-written build path serves every version; the few calls that changed are chosen by small pure functions
of the version (`network_flag_names`, `workspace_api`), which tests cover without TensorRT:

- 8.2 and 8.3 need the EXPLICIT_BATCH network flag and `config.max_workspace_size`;
- 8.4 adds `config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)` (and deprecates the attribute);
- 10 removes `max_workspace_size` and `build_engine`, and ignores EXPLICIT_BATCH (always explicit);
- `build_serialized_network`, timing caches and DLA settings exist unchanged from 8.0 on.

Why not Polygraphy's `EngineFromNetwork`: the Polygraphy on PyPI (0.48 and later) imports `tensorrt>=8.5`, so it
cannot run on a TX2 (TensorRT 8.2), and the error lines of a failed build must come from our own `trt.ILogger`
(TensorRT keeps the first logger a process gives it; a second one silently gets nothing). Polygraphy's INT8
`Calibrator` is used where it works (see calibrator.py).

The engine is written atomically with a JSON sidecar `<engine>.json` describing how it was built.
"""

import json
import os
import socket
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .cuda import device_name
from .files import file_sha256, write_atomic, write_json_atomic  # noqa: F401 (re-exported)
from .protocol import PRECISIONS
from .trt_versions import parse_version, version_from_tag, version_string  # noqa: F401 (re-exported)

_BUILD_LOCK = threading.Lock()
_LOGGER = None  # the one capturing trt.ILogger of this process (TensorRT keeps the first logger it sees)


class EngineBuildError(RuntimeError):
    """TensorRT (or trtexec) could not build or run an engine; `log_lines` holds its error lines."""

    def __init__(self, message: str, log_lines: Optional[Iterable[str]] = None) -> None:
        self.log_lines = list(log_lines or [])
        if self.log_lines:
            message = "{}\n  {}".format(message, "\n  ".join(self.log_lines[-20:]))
        RuntimeError.__init__(self, message)


# ---------------------------------------------------------------- versions and version-dependent choices (pure)

def network_flag_names(version: Union[str, int, Tuple[int, ...]]) -> List[str]:
    """Flags for `builder.create_network`: EXPLICIT_BATCH before 10 (ONNX needs it), none from 10 on."""
    return ["EXPLICIT_BATCH"] if parse_version(version)[0] < 10 else []


def workspace_api(version: Union[str, int, Tuple[int, ...]]) -> str:
    """'max_workspace_size' (attribute, ≤ 8.3) or 'set_memory_pool_limit' (8.4 on; the only one in 10)."""
    return "max_workspace_size" if parse_version(version)[:2] < (8, 4) else "set_memory_pool_limit"


def precision_flag_names(precision: str) -> List[str]:
    """BuilderFlag names for a precision. INT8 keeps FP16 on so that layers without INT8 kernels run in FP16."""
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}
    if precision not in flags:
        raise ValueError("precision must be one of {}, not {!r}".format(", ".join(PRECISIONS), precision))
    return flags[precision]


def tensorrt_version() -> Optional[str]:
    """The installed TensorRT Python package's version string, or None when it is not installed."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt.__version__


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ImportError("TensorRT is not installed: the Python package `tensorrt` cannot be imported ({}). "
                          "On a Jetson it comes with JetPack (python3-libnvinfer); elsewhere "
                          "`pip install tensorrt`.".format(e))
    return trt


# ---------------------------------------------------------------- logging

def capture_logger(trt: Any) -> Any:
    """The process-wide logger that records TensorRT's error (and warning) lines between `start()` calls."""
    global _LOGGER
    if _LOGGER is not None:
        return _LOGGER

    class CaptureLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors, self.warnings = [], []

        def start(self) -> None:
            self.errors, self.warnings = [], []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= 1:
                self.errors.append("[E] " + str(msg))
            elif level == 2:
                self.warnings.append("[W] " + str(msg))

    _LOGGER = CaptureLogger()
    trt.init_libnvinfer_plugins(_LOGGER, "")  # registers EfficientNMS_TRT & co. for the ONNX parser and runtime
    return _LOGGER


def sidecar_path(engine_path: Union[str, os.PathLike]) -> str:
    return str(engine_path) + ".json"


def read_sidecar(engine_path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The build description next to an engine, or {} when there is none."""
    try:
        with open(sidecar_path(engine_path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- the build

def _parse_onnx(trt, builder, logger, onnx_path, version):
    flags = 0
    for name in network_flag_names(version):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(str(onnx_path), "rb") as f:
        ok = parser.parse(f.read())
    if not ok:
        lines = ["[E] " + str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError("TensorRT {} cannot parse {}".format(trt.__version__, onnx_path),
                               lines + logger.errors)
    return network, parser


def _set_workspace(trt, config, version, workspace_mb):
    nbytes = int(workspace_mb) << 20
    if workspace_api(version) == "max_workspace_size":
        config.max_workspace_size = nbytes
    else:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)


def _input_shapes(trt, builder, network, config, input_shape):
    """Concrete input shapes; a dynamic input gets a one-shape optimization profile from `input_shape`."""
    shapes, profile = {}, None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if any(d < 0 for d in dims):
            if input_shape is None or i > 0:
                raise ValueError("input {!r} has dynamic shape {}: pass input_shape such as (1, 3, 640, 640)"
                                 .format(tensor.name, dims))
            dims = [int(d) for d in input_shape]
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, dims, dims, dims)
        elif i == 0 and input_shape is not None and list(input_shape) != dims:
            raise ValueError("input {!r} is static {} but input_shape is {}: re-export the ONNX at that size or "
                             "with a dynamic batch".format(tensor.name, dims, list(input_shape)))
        shapes[tensor.name] = dims
    if profile is not None:
        config.add_optimization_profile(profile)
    return shapes, profile


def _set_precision(trt, builder, config, precision, calibrator, profile):
    for name in precision_flag_names(precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if calibrator is not None:
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)


def _set_dla(trt, builder, config, dla_core):
    if dla_core is None:
        return
    if builder.num_DLA_cores <= int(dla_core):
        raise ValueError("dla_core={} but this device has {} DLA core(s)".format(dla_core, builder.num_DLA_cores))
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU instead of failing


def _load_timing_cache(config, timing_cache):
    data = b""
    if timing_cache and os.path.isfile(str(timing_cache)):
        with open(str(timing_cache), "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a cache from another device is not reused
    return bool(data)


def _device_name():
    return device_name()


def build_engine(onnx_path: Union[str, os.PathLike], engine_path: Union[str, os.PathLike], precision: str = "fp16",
                 workspace_mb: int = 1024, input_shape: Optional[Sequence[int]] = None,
                 calib_source: Optional[Union[str, os.PathLike]] = None,
                 calib_cache: Optional[Union[str, os.PathLike]] = None,
                 timing_cache: Optional[Union[str, os.PathLike]] = None,
                 dla_core: Optional[int] = None) -> Dict[str, Any]:
    """Build `onnx_path` into `engine_path`; return the sidecar dict (also written to `<engine>.json`).

    precision: fp32 | fp16 | int8 (INT8 with FP16 fallback; needs `calib_source` — a folder of images or an
    .npy batch — or an existing `calib_cache`). input_shape: required when the ONNX input is dynamic.
    timing_cache: a file loaded when present and saved after the build. dla_core: run on that DLA core with GPU
    fallback. Raises EngineBuildError (with TensorRT's error lines) when TensorRT fails.
    """
    precision_flag_names(precision)
    if not os.path.isfile(str(onnx_path)):
        raise ValueError("{} does not exist: export an ONNX model first (`edgeprune export`)".format(onnx_path))
    if dla_core is not None and precision == "fp32":
        raise ValueError("DLA runs FP16 or INT8 only: use precision='fp16' or 'int8' with dla_core")
    if precision == "int8" and calib_source is None and not (calib_cache and os.path.isfile(str(calib_cache))):
        raise ValueError("precision='int8' needs calib_source (a folder of images or an .npy batch) or an "
                         "existing calib_cache file")
    trt = import_tensorrt()
    version = parse_version(trt.__version__)
    with _BUILD_LOCK:
        logger = capture_logger(trt)
        logger.start()
        t0 = time.time()
        serialized, shapes, cache_hit = _build(trt, version, logger, onnx_path, precision, workspace_mb,
                                               input_shape, calib_source, calib_cache, timing_cache, dla_core)
        seconds = time.time() - t0
        write_atomic(engine_path, serialized)
    info = {
        "engine": os.path.basename(str(engine_path)),
        "onnx": os.path.abspath(str(onnx_path)),
        "onnx_sha256": file_sha256(onnx_path),
        "tensorrt": trt.__version__,
        "device": _device_name(),
        "host": socket.gethostname(),
        "precision": precision,
        "input_shapes": shapes,
        "workspace_mb": int(workspace_mb),
        "dla_core": dla_core,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "timing_cache_hit": cache_hit,
        "calib_source": str(calib_source) if calib_source else None,
        "calib_cache": str(calib_cache) if calib_cache else None,
        "build_seconds": round(seconds, 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "warnings": logger.warnings[-20:],
    }
    write_json_atomic(sidecar_path(engine_path), info)
    return info


def _build(trt, version, logger, onnx_path, precision, workspace_mb, input_shape, calib_source, calib_cache,
           timing_cache, dla_core):
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, onnx_path, version)  # parser owns the weights: keep it
    config = builder.create_builder_config()
    _set_workspace(trt, config, version, workspace_mb)
    shapes, profile = _input_shapes(trt, builder, network, config, input_shape)
    calibrator = None
    if precision == "int8":
        from .calibrator import make_calibrator

        name = network.get_input(0).name
        calibrator = make_calibrator(trt, version, name, shapes[name], calib_source, calib_cache)
    _set_precision(trt, builder, config, precision, calibrator, profile)
    _set_dla(trt, builder, config, dla_core)
    cache_hit = _load_timing_cache(config, timing_cache) if timing_cache else False
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT {} could not build an engine from {}".format(trt.__version__, onnx_path),
                               logger.errors)
    if timing_cache:
        write_atomic(timing_cache, config.get_timing_cache().serialize())
    return serialized, shapes, cache_hit
