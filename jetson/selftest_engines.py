"""The self-test's TensorRT checks (jetson/selftest.py runs them in order): the tiny conv model built into an
engine through the Python API and through trtexec, each timed and its output compared with the reference
(onnxruntime, or the pure-Python one), and the EfficientNMS_TRT plugin accepted by the ONNX parser.

Each check takes the SelfTest and adds one row; what it needs and lacks makes the row `skipped`, with the fix.
"""

import json
import os
import struct
import time
from typing import TYPE_CHECKING, Iterable

from . import tinyonnx

if TYPE_CHECKING:
    from .selftest import SelfTest

TOLERANCE = 1e-3  # fp32 engines: TensorRT's convolution tactics differ from onnxruntime's in the last bits


def max_abs_diff(a: Iterable[float], b: Iterable[float]) -> float:
    a, b = list(a), list(b)
    if len(a) != len(b):
        return float("inf")
    return max(abs(float(x) - float(y)) for x, y in zip(a, b)) if a else 0.0


def _compare(st, values, what):
    """(status, text) of `values` against the reference output."""
    diff = max_abs_diff(values, st.reference)
    text = "max |diff| vs {} {:.2g}".format(st.reference_source, diff)
    return (st.OK if diff <= TOLERANCE else st.FAIL), text


def _python_api(st):
    """The tensorrt module and a working CUDA binding, or None (with the reason in a skipped row)."""
    if not st.facts.get("tensorrt_python"):
        return None
    if not st.facts.get("cuda_python_ok"):
        return None
    from deploy.trt_build import import_tensorrt
    return import_tensorrt()


def check_python_engine(st: "SelfTest") -> None:
    name = "engine via the Python API"
    if _python_api(st) is None:
        return st.row(name, st.SKIP, "needs TensorRT's Python bindings and CUDA from Python (rows above)",
                      "fix the tensorrt and CUDA rows first")
    from deploy import trt_build, trt_run

    engine = os.path.join(st.out, "python-api.engine")
    t0 = time.time()
    trt_build.build_engine(st.onnx_path, engine, precision="fp32", workspace_mb=256)
    build_s = time.time() - t0
    with trt_run.EngineRunner(engine) as runner:
        out = runner.infer({"x": _input_array()})["y"].reshape(-1).tolist()
        stats = runner.time(warmup=20, runs=200)
    status, compared = _compare(st, out, "the Python API engine")
    st.timings["python_api"] = {"build_s": build_s, "median_ms": stats.median_ms, "p99_ms": stats.p99_ms}
    st.row(name, status, "built in {:.1f} s, median {:.3f} ms over {} runs ({}), {}".format(
        build_s, stats.median_ms, stats.runs, stats.info.get("execute_api"), compared),
        "" if status == st.OK else "the engine's output is wrong: keep the bundle and report it")


def _input_array():
    import numpy as np
    return np.array(tinyonnx.conv_input(), dtype=np.float32).reshape(tinyonnx.CONV_INPUT)


def _trtexec_outputs(st, exe, engine):
    """The conv engine's output from trtexec itself (--loadInputs / --exportOutput), as a flat list, or None."""
    from .trtexec_run import run_stoppable

    folder = os.path.join(st.out, "trtexec")
    inputs, outputs = os.path.join(folder, "input-x.bin"), os.path.join(folder, "outputs.json")
    values = tinyonnx.conv_input()
    with open(inputs, "wb") as f:
        f.write(struct.pack("<{}f".format(len(values)), *values))
    cmd = [exe, "--loadEngine=" + engine, "--loadInputs=x:" + inputs, "--exportOutput=" + outputs,
           "--iterations=1", "--warmUp=0", "--duration=0"]
    run_stoppable(cmd, timeout_s=300, log_path=os.path.join(folder, "trtexec-outputs.log"))
    try:
        with open(outputs) as f:
            exported = json.load(f)
        return [v for o in exported if o.get("name") == "y" for v in o["values"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_trtexec_engine(st: "SelfTest") -> None:
    name = "engine via trtexec"
    exe = st.facts.get("trtexec_path")
    if not exe:
        return st.row(name, st.SKIP, "needs trtexec (row above)", "install TensorRT's samples (trtexec)")
    from .trtexec_run import benchmark

    folder = os.path.join(st.out, "trtexec")
    os.makedirs(folder, exist_ok=True)
    engine = os.path.join(st.out, "trtexec.engine")
    t0 = time.time()
    stats = benchmark(st.onnx_path, "fp32", trtexec=exe, version=st.facts.get("trtexec_version"), workspace_mb=256,
                      save_engine=engine, warmup_ms=200, iterations=200, timeout_s=900, keep_dir=folder)
    wall_s = time.time() - t0
    st.timings["trtexec"] = {"build_and_bench_s": wall_s, "median_ms": stats.median_ms, "p99_ms": stats.p99_ms}
    detail = "built and timed in {:.1f} s, median {:.3f} ms over {} queries".format(wall_s, stats.median_ms,
                                                                                  stats.runs)
    out = None
    if st.facts.get("tensorrt_python") and st.facts.get("cuda_python_ok"):
        from deploy import trt_run
        with trt_run.EngineRunner(engine) as runner:
            out = runner.infer({"x": _input_array()})["y"].reshape(-1).tolist()
    if out is None:
        out = _trtexec_outputs(st, exe, engine)
    if out is None:
        return st.row(name, st.WARN, detail + "; output not compared (trtexec's --exportOutput was not readable)",
                      "see trtexec/trtexec-outputs.log in the bundle")
    status, compared = _compare(st, out, "the trtexec engine")
    st.row(name, status, detail + ", " + compared,
           "" if status == st.OK else "the engine's output is wrong: keep the bundle and report it")


def _parse_with_python(st, path):
    """(ok, detail) of TensorRT's ONNX parser on `path`, with the plugins registered as deploy.trt_build does."""
    from deploy.trt_build import capture_logger, import_tensorrt, network_flag_names, parse_version

    trt = import_tensorrt()
    logger = capture_logger(trt)  # registers EfficientNMS_TRT & co. (init_libnvinfer_plugins)
    logger.start()
    flags = 0
    for flag in network_flag_names(parse_version(trt.__version__)):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag))
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(path, "rb") as f:
        ok = parser.parse(f.read())
    if ok:
        layers = [network.get_layer(i).name for i in range(network.num_layers)]
        return True, "the Python parser took it: {} layer(s) ({}), {} outputs".format(
            len(layers), ", ".join(layers[:3]), network.num_outputs)
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] + logger.errors
    return False, "the parser refused it: " + " | ".join(errors[:3])


def _parse_with_trtexec(st, path):
    from deploy import trtexec as dt

    from .trtexec_run import run_stoppable
    cmd = dt.command(path, st.facts["trtexec_version"], "fp32", st.facts["trtexec_path"], 256, build_only=True)
    rc, text = run_stoppable(cmd, timeout_s=600, log_path=os.path.join(st.out, "trtexec", "efficientnms.log"))
    if rc == 0 and "&&&& PASSED" in text:
        return True, "trtexec built it (--buildOnly / --skipInference)"
    errors = [line for line in text.splitlines() if "[E]" in line]
    return False, "trtexec failed (exit {}): {}".format(rc, " | ".join(errors[:3]) or "see efficientnms.log")


def check_efficientnms(st: "SelfTest") -> None:
    name = "EfficientNMS_TRT in the ONNX parser"
    path = os.path.join(st.out, "selftest-efficientnms.onnx")
    with open(path, "wb") as f:
        f.write(tinyonnx.efficientnms_model())
    if st.facts.get("tensorrt_python"):
        ok, detail = _parse_with_python(st, path)
    elif st.facts.get("trtexec_path"):
        os.makedirs(os.path.join(st.out, "trtexec"), exist_ok=True)
        ok, detail = _parse_with_trtexec(st, path)
    else:
        return st.row(name, st.SKIP, "needs TensorRT (Python bindings or trtexec)", "install TensorRT first")
    st.row(name, st.OK if ok else st.FAIL, detail,
           "" if ok else "install TensorRT's plugins (libnvinfer-plugin8 / libnvinfer-plugin10, part of JetPack); "
                         "exported YOLO models with EfficientNMS need them")
