"""trtexec command lines for TensorRT 8.2 … 11 and a benchmark that runs one and returns LatencyStats.

What changes by version (the `*_args` functions are pure and take the version):
- workspace: `--workspace=N` (MiB) up to 8.3; `--memPoolSize=workspace:N` from 8.4 (a bare number is MiB in 8.4
  through 10.x, so no suffix is written); `--workspace` is an error on 10.
- build only: `--buildOnly` up to 8.x, `--skipInference` on 10.
- precision: `--fp16`, `--int8` (with `--fp16` so layers without INT8 kernels fall back to FP16, not FP32); 11
  builds strongly typed networks only, so a precision other than the ONNX's own is refused there.
- `--explicitBatch` is never written: trtexec 8.x parses ONNX with an explicit batch anyway, and 10 rejects it.
- the benchmark recipe: `--useSpinWait --noDataTransfers --useCudaGraph` (CUDA graphs from 8.0, not with DLA),
  `--warmUp`, `--iterations`, `--duration`, `--exportTimes`, and with a profile `--exportProfile --dumpProfile
  --separateProfileRun` (the per-layer profiler slows the timed run, so it runs separately).
"""

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .files import write_atomic
from .stats import LatencyStats
from .trt_build import EngineBuildError, parse_version, tensorrt_version, version_string
from .trtexec_parse import TrtexecFailed, parse_export_profile, parse_log, summary_stats, times_stats, version_from_tag

DEFAULT_PATH = "/usr/src/tensorrt/bin/trtexec"
_HEADER = re.compile(r"&&&& RUNNING TensorRT\.trtexec \[TensorRT v(\d+)\]")


def trtexec_path() -> str:
    """$TRTEXEC, else JetPack's /usr/src/tensorrt/bin/trtexec, else `trtexec` on PATH."""
    if os.environ.get("TRTEXEC"):
        return os.environ["TRTEXEC"]
    if os.path.exists(DEFAULT_PATH):
        return DEFAULT_PATH
    return shutil.which("trtexec") or DEFAULT_PATH


# ---------------------------------------------------------------- command lines (pure)

def workspace_args(version: Union[str, int, Tuple[int, ...]], workspace_mb: Optional[int]) -> List[str]:
    if workspace_mb is None:
        return []
    if parse_version(version)[:2] < (8, 4):
        return ["--workspace={}".format(int(workspace_mb))]  # 8.2's default is only 16 MiB: always set it
    return ["--memPoolSize=workspace:{}".format(int(workspace_mb))]


def precision_args(version: Union[str, int, Tuple[int, ...]], precision: str) -> List[str]:
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError("precision must be fp32, fp16 or int8, not {!r}".format(precision))
    if parse_version(version)[0] >= 11:
        if precision != "fp32":
            raise ValueError("TensorRT {} builds strongly typed networks: --fp16/--int8 are gone; convert the "
                             "ONNX to {} instead and benchmark it with precision='fp32'"
                             .format(version_string(version), precision))
        return []
    return {"fp32": [], "fp16": ["--fp16"], "int8": ["--fp16", "--int8"]}[precision]


def build_only_args(version: Union[str, int, Tuple[int, ...]]) -> List[str]:
    return ["--buildOnly"] if parse_version(version)[0] < 10 else ["--skipInference"]


def dla_args(dla_core: Optional[int]) -> List[str]:
    return [] if dla_core is None else ["--useDLACore={}".format(int(dla_core)), "--allowGPUFallback"]


def shape_args(shapes: Optional[Dict[str, Sequence[int]]], building: bool) -> List[str]:
    """`--shapes` for inference; when building from ONNX also min = opt = max of the optimization profile."""
    if not shapes:
        return []
    spec = ",".join("{}:{}".format(name, "x".join(str(int(d)) for d in dims)) for name, dims in shapes.items())
    flags = ["--minShapes", "--optShapes", "--maxShapes", "--shapes"] if building else ["--shapes"]
    return ["{}={}".format(f, spec) for f in flags]


def benchmark_args(version: Union[str, int, Tuple[int, ...]], warmup_ms: float = 500, iterations: int = 200,
                   duration_s: float = 0, export_times: Optional[Union[str, os.PathLike]] = None,
                   export_profile: Optional[Union[str, os.PathLike]] = None, dla_core: Optional[int] = None,
                   cuda_graph: bool = True) -> List[str]:
    v = parse_version(version)
    args = ["--useSpinWait", "--noDataTransfers"]
    if cuda_graph and dla_core is None and v[0] >= 8:
        args.append("--useCudaGraph")
    args += ["--warmUp={}".format(int(warmup_ms)), "--iterations={}".format(int(iterations)),
             "--duration={:g}".format(duration_s)]
    if export_times:
        args.append("--exportTimes={}".format(export_times))
    if export_profile:
        args += ["--exportProfile={}".format(export_profile), "--dumpProfile", "--separateProfileRun"]
    return args


def command(model: Union[str, os.PathLike], version: Union[str, int, Tuple[int, ...]], precision: str = "fp16",
            trtexec: Optional[str] = None, workspace_mb: Optional[int] = 1024,
            shapes: Optional[Dict[str, Sequence[int]]] = None, save_engine: Optional[Union[str, os.PathLike]] = None,
            timing_cache: Optional[Union[str, os.PathLike]] = None,
            calib_cache: Optional[Union[str, os.PathLike]] = None, dla_core: Optional[int] = None,
            build_only: bool = False, **bench: Any) -> List[str]:
    """The trtexec argv for `model` (.onnx: build, optionally save; anything else: --loadEngine) on `version`.

    `bench` goes to benchmark_args (warmup_ms, iterations, duration_s, export_times, export_profile, cuda_graph).
    """
    model = str(model)
    building = model.lower().endswith(".onnx")
    cmd = [trtexec or trtexec_path()]
    if building:
        cmd.append("--onnx={}".format(model))
        cmd += precision_args(version, precision) + workspace_args(version, workspace_mb)
        if precision == "int8" and calib_cache:
            cmd.append("--calib={}".format(calib_cache))
        if save_engine:
            cmd.append("--saveEngine={}".format(save_engine))
        if timing_cache:
            cmd.append("--timingCacheFile={}".format(timing_cache))
    else:
        if build_only:
            raise ValueError("build_only needs an .onnx model, not the engine {}".format(model))
        cmd.append("--loadEngine={}".format(model))
    cmd += dla_args(dla_core) + shape_args(shapes, building)
    cmd += build_only_args(version) if build_only else benchmark_args(version, dla_core=dla_core, **bench)
    return cmd


# ---------------------------------------------------------------- running

def _resolve(defines, name):
    """A macro's value, following one indirection (10.x: NV_TENSORRT_MAJOR → TRT_MAJOR_ENTERPRISE → 10)."""
    value = defines.get(name)
    return defines.get(value, value)


def _nvinfer_header_version():
    for path in ("/usr/include/aarch64-linux-gnu/NvInferVersion.h", "/usr/include/x86_64-linux-gnu/NvInferVersion.h",
                 "/usr/include/NvInferVersion.h", "/usr/local/tensorrt/include/NvInferVersion.h"):
        try:
            with open(path) as f:
                defines = dict(re.findall(r"#define\s+(\w+)\s+(\w+)", f.read()))
        except OSError:
            continue
        parts = [_resolve(defines, "NV_TENSORRT_" + p) for p in ("MAJOR", "MINOR", "PATCH")]
        if all(p and p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    return None


def detect_version(trtexec: Optional[str] = None, timeout_s: float = 60) -> Tuple[int, ...]:
    """TensorRT version of `trtexec` from its `[TensorRT vNNNN]` header, else NvInferVersion.h, else Python's."""
    trtexec = trtexec or trtexec_path()
    try:
        out = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=timeout_s).stdout.decode("utf-8", "replace")
        m = _HEADER.search(out)
        if m:
            return version_from_tag(m.group(1))
    except (OSError, subprocess.TimeoutExpired):
        pass
    found = _nvinfer_header_version() or (parse_version(tensorrt_version()) if tensorrt_version() else None)
    if found is None:
        raise ValueError("cannot tell the TensorRT version of {}: pass version='8.2.1' (for example)"
                         .format(trtexec))
    return found


def run(cmd: List[str], timeout_s: float = 1800) -> Tuple[int, str]:
    """(returncode, combined stdout+stderr text); EngineBuildError when trtexec is missing or times out."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    except OSError as e:
        raise EngineBuildError("cannot run {} ({}): install TensorRT or set $TRTEXEC".format(cmd[0], e))
    except subprocess.TimeoutExpired as e:
        tail = (e.output or b"").decode("utf-8", "replace").splitlines()[-10:]
        raise EngineBuildError("trtexec ran past {} s and was stopped".format(timeout_s), tail)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def _static_shape_check(onnx_path, input_shape):
    """{name: shape} for --shapes when the ONNX input is dynamic; None when it is static and already matches."""
    from .onnx_info import inspect

    first = inspect(onnx_path)["inputs"][0]
    dims = first["shape"]
    if all(isinstance(d, int) and d > 0 for d in dims):
        if list(dims) != list(input_shape):
            raise ValueError("{} has the static input shape {}, not {}: export it at that size or with a dynamic "
                             "batch".format(onnx_path, dims, list(input_shape)))
        return None  # trtexec 8.x refuses --shapes on a static model
    return {first["name"]: list(input_shape)}


def benchmark(onnx_or_engine: Union[str, os.PathLike], precision: str = "fp16", trtexec: Optional[str] = None,
              version: Optional[Union[str, int, Tuple[int, ...]]] = None, workspace_mb: Optional[int] = 1024,
              input_shape: Optional[Union[Sequence[int], Dict[str, Sequence[int]]]] = None,
              save_engine: Optional[Union[str, os.PathLike]] = None,
              timing_cache: Optional[Union[str, os.PathLike]] = None,
              calib_cache: Optional[Union[str, os.PathLike]] = None, dla_core: Optional[int] = None,
              warmup_ms: float = 500, iterations: int = 200, duration_s: float = 0, profile: bool = False,
              metric: str = "gpu_compute", timeout_s: float = 1800,
              log_path: Optional[Union[str, os.PathLike]] = None) -> LatencyStats:
    """Run trtexec's benchmark recipe on an ONNX file or an engine and return LatencyStats.

    The statistics come from the per-query --exportTimes records after trtexec's warm-up (so p90 and std exist on
    every version); info["summary"] keeps trtexec's own text summary, info["command"] the argv. With
    profile=True, `layers` holds the per-layer profile. input_shape (for the first input) is needed when the
    input is dynamic; an engine needs a dict {name: shape} instead. A failed run raises EngineBuildError.
    """
    trtexec = trtexec or trtexec_path()
    version = parse_version(version) if version else detect_version(trtexec)
    shapes = input_shape if isinstance(input_shape, dict) else None
    if input_shape is not None and shapes is None:
        if not str(onnx_or_engine).lower().endswith(".onnx"):
            raise ValueError("for an engine pass input_shape as {input name: shape}")
        shapes = _static_shape_check(onnx_or_engine, input_shape)
    tmp = tempfile.mkdtemp(prefix="edgeprune-trtexec-")
    try:
        times = os.path.join(tmp, "times.json")
        prof = os.path.join(tmp, "profile.json") if profile else None
        cmd = command(onnx_or_engine, version, precision, trtexec, workspace_mb, shapes, save_engine, timing_cache,
                      calib_cache, dla_core, warmup_ms=warmup_ms, iterations=iterations, duration_s=duration_s,
                      export_times=times, export_profile=prof)
        rc, text = run(cmd, timeout_s)
        if log_path:
            write_atomic(log_path, text.encode("utf-8"))
        return _results(text, rc, cmd, times, prof, metric, warmup_ms, precision, version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _results(text, rc, cmd, times, prof, metric, warmup_ms, precision, version):
    log = parse_log(text, name="output of " + " ".join(cmd[:2]))
    if log.status == "FAILED" or rc != 0:
        raise TrtexecFailed("trtexec failed (exit code {}): {}".format(rc, " ".join(cmd)),
                            log.errors or text.splitlines()[-10:])
    summary = summary_stats(log, "gpu_compute", name="trtexec output")
    if not os.path.isfile(times):
        raise EngineBuildError("trtexec passed but wrote no --exportTimes file ({})".format(times))
    stats = times_stats(times, metric, warmup_ms)
    stats.batch = log.batch  # implicit batch (--batch=N): every time is per batch of N images
    stats.info.update({"tensorrt": version_string(log.version or version), "device": log.device,
                       "precision": precision, "command": cmd, "summary": log.summary,
                       "summary_gpu_compute_median_ms": summary.median_ms, "throughput_qps": log.throughput_qps})
    if prof and os.path.isfile(prof):
        count, stats.layers = parse_export_profile(prof)
        stats.info["profile_runs"] = count
    return stats
