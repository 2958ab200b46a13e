"""Profiling options, the three timing backends, one measurement, and the single worker that runs jobs in order.

Backends (each imports what it needs only when used, so a board without TensorRT still serves onnxruntime):

- `trt`: engine built with `deploy.trt_build.build_engine` (cached), timed with `deploy.trt_run.time_engine`.
- `trtexec`: NVIDIA's trtexec through `deploy.trtexec.benchmark`, on the cached engine, or the first time on the
  ONNX file with `--saveEngine` into the cache (trtexec then builds inside its own run).
- `onnxruntime`: `deploy.onnxruntime_runner` on the CPU (the fallback, and what runs on a machine without a GPU).
"""

import importlib.util
import logging
import os
import queue
import shutil
import threading
import time

from .store import EngineCache, engine_key
from .tegrastats import Sampler

log = logging.getLogger("edgeprune.agent")

BACKENDS = ("trt", "trtexec", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
OPTION_DEFAULTS = {
    "backend": "trt", "precision": None, "input_shape": None, "warmup": 10, "iterations": 100, "threads": None,
    "tegrastats": True, "layers": False, "workspace_mb": 1024, "dla_core": None, "warmup_ms": None,
}
TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"


class OptionError(ValueError):
    """Bad input from a client: the message says what is wrong, `field` names the option or body field."""

    def __init__(self, message, field=None):
        ValueError.__init__(self, message)
        self.field = field


def _int(opts, name, lo, hi, optional=False):
    v = opts[name]
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise OptionError("{} must be an integer from {} to {}, got {!r}".format(name, lo, hi, v), name)
    return v


def _bool(opts, name):
    if not isinstance(opts[name], bool):
        raise OptionError("{} must be true or false, got {!r}".format(name, opts[name]), name)
    return opts[name]


def parse_shape(value):
    """[1, 3, 640, 640] from a list of ints or text such as '1,3,640,640' or '1x3x640x640'; None stays None."""
    if value is None:
        return None
    dims = value
    if isinstance(value, str):
        try:
            dims = [int(d) for d in value.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            dims = None
    ok = isinstance(dims, (list, tuple)) and 1 <= len(dims) <= 8 and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 65536 for d in dims)
    if not ok:
        raise OptionError("input_shape must be 1 to 8 positive integers such as [1, 3, 640, 640], got {!r}"
                          .format(value), "input_shape")
    return [int(d) for d in dims]


def parse_options(raw):
    """Validated options with defaults filled in; raises OptionError naming the field."""
    if not isinstance(raw, dict):
        raise OptionError("options must be a JSON object", "options")
    for name in sorted(raw):
        if name not in OPTION_DEFAULTS:
            raise OptionError("unknown option {!r} (known: {})".format(name, ", ".join(sorted(OPTION_DEFAULTS))),
                              name)
    opts = dict(OPTION_DEFAULTS)
    opts.update(raw)
    if opts["backend"] not in BACKENDS:
        raise OptionError("unknown backend {!r}: use one of {}".format(opts["backend"], ", ".join(BACKENDS)),
                          "backend")
    cpu = opts["backend"] == "onnxruntime"
    opts["precision"] = opts["precision"] or ("fp32" if cpu else "fp16")
    if opts["precision"] not in PRECISIONS:
        raise OptionError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), opts["precision"]),
                          "precision")
    if cpu and opts["precision"] != "fp32":
        raise OptionError("onnxruntime runs the model as exported (fp32); use backend trt or trtexec for {}"
                          .format(opts["precision"]), "precision")
    if opts["layers"] and opts["backend"] != "trtexec":
        raise OptionError("a per-layer profile comes from trtexec: set backend to trtexec", "layers")
    if opts["warmup_ms"] is not None and opts["backend"] != "trtexec":
        raise OptionError("warmup_ms is trtexec's time-based warm-up; the other backends take warmup (runs)",
                          "warmup_ms")
    opts["input_shape"] = parse_shape(opts["input_shape"])
    opts.update(warmup=_int(opts, "warmup", 0, 100000), iterations=_int(opts, "iterations", 1, 1000000),
                threads=_int(opts, "threads", 1, 1024, optional=True),
                workspace_mb=_int(opts, "workspace_mb", 16, 1 << 20), dla_core=_int(opts, "dla_core", 0, 3, True),
                warmup_ms=_int(opts, "warmup_ms", 0, 600000, optional=True),
                tegrastats=_bool(opts, "tegrastats"), layers=_bool(opts, "layers"))
    return opts


def find_trtexec(path=None):
    """The executable trtexec would run: `path`, else deploy.trtexec's choice ($TRTEXEC, JetPack's, PATH)."""
    from deploy.trtexec import trtexec_path
    return shutil.which(path or trtexec_path())


def _trt_python_version():
    try:
        from deploy import trt_build
        return trt_build.tensorrt_version()
    except Exception:  # absent, or TensorRT present but broken (a library mismatch): not usable either way
        return None


def _cuda_from_python():
    """The CUDA binding deploy.trt_run would use (it tries pycuda, then cuda-python), or None."""
    for module in ("pycuda", "cuda"):
        if importlib.util.find_spec(module) is not None:
            return module
    return None


def backends(trtexec=None):
    """Which backends can run here, with versions, or why not."""
    found = {}
    try:
        import onnxruntime
        found["onnxruntime"] = {"available": True, "version": onnxruntime.__version__}
    except ImportError as e:
        found["onnxruntime"] = {"available": False, "reason": "onnxruntime is not installed ({})".format(e)}
    version, cuda = _trt_python_version(), _cuda_from_python()
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
    """What measurements share: the engine cache, the tegrastats binary and interval, the trtexec path."""

    def __init__(self, engine_dir="~/.edgeprune-agent/engines", engine_cache_mb=4096, tegrastats="tegrastats",
                 interval_ms=200, trtexec=None):
        self.engine_dir = engine_dir
        self.engine_cache_mb = engine_cache_mb
        self.tegrastats = tegrastats
        self.interval_ms = interval_ms
        self.trtexec = trtexec
        self._engines = None

    @property
    def engines(self):
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


def _random_calibration(source, opts, path):
    """INT8 needs calibration data; latency does not depend on the scales, so random inputs do (the engine is for
    timing only: its accuracy is meaningless)."""
    import numpy as np

    from deploy.onnx_info import inspect as onnx_inspect
    shape = opts["input_shape"] or onnx_inspect(source)["inputs"][0]["shape"]
    np.save(path, np.random.RandomState(0).random_sample(shape).astype(np.float32))
    return path


def _trt_engine(source, opts, env, sha256):
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
    if opts["precision"] == "int8":
        calib = _random_calibration(source, opts, env.engines.scratch_path(key + ".npy"))
    t0 = time.perf_counter()
    try:
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


def _prepare_onnxruntime(source, opts, env, sha256):
    if _is_engine(source):
        raise ValueError("{}: onnxruntime times ONNX files, not TensorRT engines".format(source))
    from deploy.onnxruntime_runner import OnnxRuntimeRunner
    runner = OnnxRuntimeRunner(source, threads=opts["threads"])
    return lambda: runner.time(shape=opts["input_shape"], warmup=opts["warmup"], runs=opts["iterations"]), None


def _prepare_trt(source, opts, env, sha256):
    engine, info = _trt_engine(source, opts, env, sha256)
    from deploy import trt_run
    return lambda: trt_run.time_engine(engine, warmup=opts["warmup"], runs=opts["iterations"],
                                       input_shape=opts["input_shape"]), info


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


def _prepare_trtexec(source, opts, env, sha256):
    """trtexec on the cached engine, or on the ONNX file with --saveEngine into the cache (a killed run leaves
    only a scratch file behind, never a half-written engine under its key)."""
    from deploy import trtexec
    exe = env.trtexec or trtexec.trtexec_path()
    version = trtexec.detect_version(exe)
    kwargs = {"trtexec": exe, "version": version, "workspace_mb": opts["workspace_mb"],
              "dla_core": opts["dla_core"], "iterations": opts["iterations"], "profile": opts["layers"]}
    if opts["warmup_ms"] is not None:
        kwargs["warmup_ms"] = opts["warmup_ms"]
    if _is_engine(source):
        shapes = _engine_shapes(source, opts["input_shape"], onnx_source=False)
        return lambda: trtexec.benchmark(source, opts["precision"], input_shape=shapes, **kwargs), {
            "cached": None, "build_s": None, "source": "given"}
    from deploy.files import file_sha256
    key = engine_key(sha256 or file_sha256(source), opts, _trt3(version))
    cached = env.engines.lookup(key)
    if cached:
        shapes = _engine_shapes(source, opts["input_shape"])
        return lambda: trtexec.benchmark(cached, opts["precision"], input_shape=shapes, **kwargs), {
            "cached": True, "build_s": None, "key": key, "tensorrt": _trt3(version)}
    scratch = env.engines.scratch_path(key + ".engine")

    def build_and_time():
        try:
            stats = trtexec.benchmark(source, opts["precision"], input_shape=opts["input_shape"],
                                      save_engine=scratch, timing_cache=env.engines.timing_cache(_trt3(version)),
                                      **kwargs)
            os.replace(scratch, env.engines.path(key))
            env.engines.added(key)
            return stats
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
    return build_and_time, {"cached": False, "build_s": None, "key": key, "tensorrt": _trt3(version),
                            "source": "built by trtexec inside the timed call (then cached)"}


_PREPARE = {"onnxruntime": _prepare_onnxruntime, "trt": _prepare_trt, "trtexec": _prepare_trtexec}


def _tegrastats_summary(sampler, stats, start, end):
    """Power and GPU load over the timed runs only (their total time ends at `end`), or over the whole
    measurement when the timed runs were shorter than one tegrastats interval."""
    if sampler is None:
        return None
    timed_s = (sum(stats.samples_ms) if stats.samples_ms else stats.runs * stats.mean_ms) / 1000.0
    summary = sampler.summary(max(start, end - timed_s), end)
    summary["window"] = "timed runs"
    if sampler.available and summary["samples"] == 0:
        summary = sampler.summary(start, end)
        summary["window"] = "whole measurement, warm-up included (timed runs shorter than the interval)"
    return summary


def measure(source, options, env, sha256=None):
    """Prepare (build or load), then time `source` (.onnx, or an engine for trt/trtexec) with tegrastats sampling
    around the timing only. Returns the result dict the agent stores and the board bench prints."""
    t0 = time.perf_counter()
    timer, engine = _PREPARE[options["backend"]](source, options, env, sha256)
    prepare_s = time.perf_counter() - t0
    sampler = Sampler(env.tegrastats, env.interval_ms).start() if options["tegrastats"] else None
    try:
        start_wall, start = time.time(), time.monotonic()
        stats = timer()
        end, end_wall = time.monotonic(), time.time()
    finally:
        if sampler is not None:
            sampler.stop()
    return {
        "latency": stats.to_dict(with_samples=True),
        "engine": engine,
        "prepare_s": prepare_s,
        "tegrastats": _tegrastats_summary(sampler, stats, start, end),
        "window": {"start": start_wall, "end": end_wall},
    }


def describe_error(e):
    """A failed job's error: the message, and TensorRT's log lines when an engine build failed."""
    error = {"message": str(e) or type(e).__name__, "type": type(e).__name__}
    lines = getattr(e, "log_lines", None)
    if lines:
        error["log"] = [str(x) for x in list(lines)[-200:]]
    return error


class Worker(object):
    """Runs jobs one at a time on one thread: two timings at once on one board would each measure the other."""

    def __init__(self, store, env, fingerprint):
        self.store = store
        self.env = env
        self.fingerprint = fingerprint  # callable: the device facts stored with each result
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="edgeprune-worker")
        self._thread.daemon = True

    def start(self):
        self._thread.start()
        return self

    def submit(self, job_id):
        self._queue.put(job_id)
        return self._queue.qsize()

    def pending(self):
        return self._queue.qsize()

    def stop(self, timeout=30.0):
        """Finish the job in progress (up to `timeout`), leave queued ones for the restart to mark failed."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self):
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            except Exception:  # never let one job stop the worker
                log.exception("job %s: unexpected error", job_id)

    def _run(self, job_id):
        record = self.store.update(job_id, status="running", started_at=time.time(), device=self.fingerprint())
        log.info("job %s: %s %s", job_id, record["options"]["backend"], record["model"].get("name"))
        try:
            result = measure(self.store.model_path(job_id), record["options"], self.env,
                             sha256=record["model"]["sha256"])
            self.store.update(job_id, status="done", finished_at=time.time(), result=result)
        except Exception as e:  # the measurement failed, or its result could not be stored
            log.warning("job %s failed: %s", job_id, e)
            self.store.update(job_id, status="failed", finished_at=time.time(), error=describe_error(e),
                              result=None)
