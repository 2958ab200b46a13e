"""trtexec's benchmark as deploy.trtexec.benchmark runs it, but stoppable: the process is polled and killed as soon
as the job's `stop` callable gives a reason (a cancel, the time limit), and the exported files can be kept.

deploy.trtexec.benchmark runs trtexec with subprocess.run (only a timeout stops it); this mirrors its steps
(`command`, the static-shape check, `_results`) with a Popen loop instead. Output goes to a file, not a pipe,
so a chatty trtexec never blocks on a full pipe while we poll.
"""

import os
import shutil
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from deploy import trtexec as dt
from deploy.stats import LatencyStats, TimingStopped
from deploy.trt_build import EngineBuildError, parse_version

POLL_S = 0.1


def _kill(proc):
    proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def run_stoppable(cmd: List[str], stop: Optional[Callable[[], Optional[str]]] = None, timeout_s: float = 1800,
                  log_path: Optional[str] = None) -> Tuple[int, str]:
    """(returncode, output text) of `cmd`; TimingStopped (the process killed) when `stop()` gives a reason,
    EngineBuildError when it cannot start or runs past `timeout_s`."""
    tmp = None
    if log_path is None:
        fd, tmp = tempfile.mkstemp(prefix="edgeprune-trtexec-", suffix=".log")
        os.close(fd)
    path = log_path or tmp
    try:
        with open(path, "wb") as out:
            try:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            except OSError as e:
                raise EngineBuildError("cannot run {} ({}): install TensorRT or set $TRTEXEC".format(cmd[0], e))
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None:
                reason = stop() if stop is not None else None
                if reason or time.monotonic() > deadline:
                    _kill(proc)
                    if reason:
                        raise TimingStopped("{} (trtexec was killed)".format(reason))
                    raise EngineBuildError("trtexec ran past {} s and was stopped".format(timeout_s))
                time.sleep(POLL_S)
        with open(path, "rb") as f:
            return proc.returncode, f.read().decode("utf-8", "replace")
    finally:
        if tmp:
            os.unlink(tmp)


def benchmark(onnx_or_engine: Union[str, os.PathLike], precision: str = "fp16", trtexec: Optional[str] = None,
              version: Optional[Union[str, int, Tuple[int, ...]]] = None, workspace_mb: Optional[int] = 1024,
              input_shape: Optional[Union[Sequence[int], Dict[str, Sequence[int]]]] = None,
              save_engine: Optional[Union[str, os.PathLike]] = None,
              timing_cache: Optional[Union[str, os.PathLike]] = None, dla_core: Optional[int] = None,
              warmup_ms: float = 500, iterations: int = 200, profile: bool = False, metric: str = "gpu_compute",
              timeout_s: float = 1800, stop: Optional[Callable[[], Optional[str]]] = None,
              keep_dir: Optional[str] = None) -> LatencyStats:
    """deploy.trtexec.benchmark with `stop` (see the module docstring). With `keep_dir`, trtexec's log,
    --exportTimes and --exportProfile files stay there (trtexec.log, times.json, profile.json)."""
    trtexec = trtexec or dt.trtexec_path()
    version = parse_version(version) if version else dt.detect_version(trtexec)
    shapes = input_shape if isinstance(input_shape, dict) else None
    if input_shape is not None and shapes is None:
        if not str(onnx_or_engine).lower().endswith(".onnx"):
            raise ValueError("for an engine pass input_shape as {input name: shape}")
        shapes = dt._static_shape_check(onnx_or_engine, input_shape)
    folder = keep_dir or tempfile.mkdtemp(prefix="edgeprune-trtexec-")
    try:
        times = os.path.join(folder, "times.json")
        prof = os.path.join(folder, "profile.json") if profile else None
        cmd = dt.command(onnx_or_engine, version, precision, trtexec, workspace_mb, shapes, save_engine,
                         timing_cache, None, dla_core, warmup_ms=warmup_ms, iterations=iterations, duration_s=0,
                         export_times=times, export_profile=prof)
        log_path = os.path.join(folder, "trtexec.log") if keep_dir else None
        rc, text = run_stoppable(cmd, stop, timeout_s, log_path)
        return dt._results(text, rc, cmd, times, prof, metric, warmup_ms, precision, version)
    finally:
        if not keep_dir:
            shutil.rmtree(folder, ignore_errors=True)
