"""trtexec: command lines per TensorRT version, parsers on real captured outputs, and `benchmark` end to end
against a stand-in trtexec script that replays those captures (the real trtexec is tested where it exists)."""

import json
import math
import os
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from deploy import trtexec
from deploy.trt_build import EngineBuildError
from deploy.trtexec_parse import (
    TrtexecFailed,
    filter_warmup,
    parse_export_profile,
    parse_export_times,
    parse_log,
    summary_stats,
    times_stats,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "device"
LOG_82 = FIXTURES / "trtexec_trt8.2.1_jetson-nano-jp4.6_yolov8n-best_summary-excerpt.log"
LOG_10 = FIXTURES / "trtexec_trt10.16_x86-rtx6000ada_onnx-build-and-bench.log"
TIMES = FIXTURES / "trtexec_exportTimes_trt8.4-era_rtx3090_resnet50-fp32_bs32.json"
PROFILE = FIXTURES / "trtexec_exportProfile_trt8.4-era_rtx3090_resnet50-fp32_bs32.json"
TEGRA = FIXTURES / "tegrastats_tx2_l4t-r32-style_vddsys-rails_sudo.log"

# Written for these tests in the layout of TensorRT 8.2 (no failed run was captured from a board).
FAILED_LOG = textwrap.dedent("""\
    &&&& RUNNING TensorRT.trtexec [TensorRT v8201] # /usr/src/tensorrt/bin/trtexec --onnx=bad.onnx --fp16
    [03/01/2024-10:00:00] [I] === Model Options ===
    [03/01/2024-10:00:01] [E] [TRT] ModelImporter.cpp:773: While parsing node number 212 [EfficientNMS_TRT]:
    [03/01/2024-10:00:01] [E] [TRT] INVALID_NODE: Plugin not found, are the plugin name, version, and namespace correct?
    [03/01/2024-10:00:01] [E] Failed to parse onnx file
    [03/01/2024-10:00:01] [E] Engine set up failed
    &&&& FAILED TensorRT.trtexec [TensorRT v8201] # /usr/src/tensorrt/bin/trtexec --onnx=bad.onnx --fp16
    """)


# ---------------------------------------------------------------- command lines by version

def test_workspace_option_by_version():
    assert trtexec.workspace_args("8.2.1", 1024) == ["--workspace=1024"]
    assert trtexec.workspace_args("8.4.1", 512) == ["--memPoolSize=workspace:512"]
    assert trtexec.workspace_args("10.3.0", 2048) == ["--memPoolSize=workspace:2048"]
    assert trtexec.workspace_args("10.3.0", None) == []


def test_precision_flags_by_version():
    assert trtexec.precision_args("8.2.1", "fp32") == []
    assert trtexec.precision_args("8.2.1", "fp16") == ["--fp16"]
    assert trtexec.precision_args("10.3", "int8") == ["--fp16", "--int8"]
    assert trtexec.precision_args("11.0", "fp32") == []
    with pytest.raises(ValueError, match="strongly typed"):
        trtexec.precision_args("11.0", "fp16")
    with pytest.raises(ValueError, match="precision"):
        trtexec.precision_args("8.6", "bf16")


def _cmd(version, model="m.onnx", **kw):
    return trtexec.command(model, version, trtexec="trtexec", **kw)


def test_command_trt82_jetson():
    cmd = _cmd("8.2.1", precision="fp16", save_engine="m.engine", timing_cache="t.cache", export_times="t.json")
    assert cmd == ["trtexec", "--onnx=m.onnx", "--fp16", "--workspace=1024", "--saveEngine=m.engine",
                   "--timingCacheFile=t.cache", "--useSpinWait", "--noDataTransfers", "--useCudaGraph",
                   "--warmUp=500", "--iterations=200", "--duration=0", "--exportTimes=t.json"]
    assert "--explicitBatch" not in cmd


def test_command_trt85_profile_and_int8():
    cmd = _cmd("8.5.2", precision="int8", calib_cache="calib.cache", export_profile="p.json", iterations=50,
               duration_s=2.5)
    assert "--memPoolSize=workspace:1024" in cmd and "--calib=calib.cache" in cmd
    assert cmd[-3:] == ["--exportProfile=p.json", "--dumpProfile", "--separateProfileRun"]
    assert "--iterations=50" in cmd and "--duration=2.5" in cmd
    assert not any(a.startswith("--workspace") for a in cmd)


def test_command_trt10_build_only_and_engine():
    build = _cmd("10.3.0", build_only=True, save_engine="m.engine")
    assert build[-1] == "--skipInference" and "--buildOnly" not in build
    assert not any(a.startswith(("--workspace", "--explicitBatch")) for a in build)
    assert _cmd("8.6.2", build_only=True)[-1] == "--buildOnly"
    run = _cmd("10.3.0", model="m.engine", precision="fp16")
    assert run[:2] == ["trtexec", "--loadEngine=m.engine"] and "--fp16" not in run
    with pytest.raises(ValueError, match="build_only"):
        _cmd("10.3.0", model="m.engine", build_only=True)


def test_dla_turns_cuda_graph_off():
    cmd = _cmd("8.5.2", dla_core=1)
    assert "--useDLACore=1" in cmd and "--allowGPUFallback" in cmd and "--useCudaGraph" not in cmd
    assert "--useCudaGraph" in _cmd("8.5.2")


def test_shapes_for_dynamic_inputs():
    cmd = _cmd("8.2.1", shapes={"images": [1, 3, 640, 640]})
    for flag in ("--minShapes", "--optShapes", "--maxShapes", "--shapes"):
        assert flag + "=images:1x3x640x640" in cmd
    assert [a for a in _cmd("8.2.1", model="m.plan", shapes={"x": [2, 3]}) if "hapes" in a] == ["--shapes=x:2x3"]


def test_trtexec_path(monkeypatch):
    monkeypatch.setenv("TRTEXEC", "/opt/trt/bin/trtexec")
    assert trtexec.trtexec_path() == "/opt/trt/bin/trtexec"
    monkeypatch.delenv("TRTEXEC")
    assert trtexec.trtexec_path().endswith("trtexec")


# ---------------------------------------------------------------- text logs

def test_trt82_nano_summary():
    text = LOG_82.read_text()
    log = parse_log(text)
    assert log.version == (8, 2, 1) and log.status == "PASSED" and log.errors == []
    gpu = summary_stats(text)
    assert gpu.median_ms == 13.6698 and gpu.mean_ms == 13.6963 and gpu.min_ms == 13.5784
    assert gpu.max_ms == 14.7576 and gpu.p99_ms == 14.6803
    assert math.isnan(gpu.p90_ms) and math.isnan(gpu.std_ms)  # 8.2 prints neither
    assert gpu.runs == 219 and gpu.info["runs_estimated"]  # 2.99948 s / 13.6963 ms (= 72.2544 qps × 3.03096 s)
    assert summary_stats(text, "latency").median_ms == 13.7999
    assert summary_stats(text, "end_to_end").median_ms == 13.8109
    assert log.throughput_qps == 72.2544 and log.total_gpu_s == 2.99948


def test_trt10_summary():
    text = LOG_10.read_text()
    log = parse_log(text)
    assert log.version == (10, 16, 0) and log.status == "PASSED"
    assert log.device == "NVIDIA RTX 6000 Ada Generation"
    assert log.runs == 55177 and log.warmup_queries == 3349
    assert any("coefficient of variance = 62.0202%" in w for w in log.warnings)
    gpu = summary_stats(log)
    assert (gpu.median_ms, gpu.p90_ms, gpu.p99_ms) == (0.0297852, 0.0378418, 0.0952148)
    assert gpu.info["percentiles"] == {"90": 0.0378418, "95": 0.0429688, "99": 0.0952148}
    assert gpu.runs == 55177 and gpu.warmup == 3349 and not gpu.info["runs_estimated"]
    assert summary_stats(log, "latency").p90_ms == 0.0480957
    with pytest.raises(ValueError, match="only up to TensorRT 8.2"):
        summary_stats(log, "end_to_end")


def test_failed_log_gives_the_error_lines():
    log = parse_log(FAILED_LOG)
    assert log.status == "FAILED" and len(log.errors) == 4
    with pytest.raises(TrtexecFailed) as e:
        summary_stats(FAILED_LOG)
    assert isinstance(e.value, EngineBuildError)
    assert "Plugin not found" in str(e.value) and e.value.log_lines[-1] == "[E] Engine set up failed"


@pytest.mark.parametrize("text", ["", "hello\nworld\n", "\x00\xff binary junk", "Latency: min = 1 ms"])
def test_garbage_is_not_a_trtexec_log(text):
    with pytest.raises(ValueError, match="not a trtexec log"):
        summary_stats(text)


def test_tegrastats_log_is_not_a_trtexec_log():
    with pytest.raises(ValueError, match="not a trtexec log"):
        parse_log(TEGRA.read_text(), name=TEGRA.name)


def test_empty_file_is_not_a_trtexec_log(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.log is not a trtexec log"):
        summary_stats(empty.read_text(), name=str(empty))


def test_truncated_logs_are_refused():
    lines = LOG_10.read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if "GPU Compute Time: min" in line)
    mid_line = "\n".join(lines[:cut] + [lines[cut][:lines[cut].index("median") + 15]])  # "median = 0.0297"
    with pytest.raises(ValueError, match="truncated"):
        summary_stats(mid_line)
    log = parse_log(mid_line)
    assert "gpu_compute" not in log.summary  # a cut number is never read as a value
    before_summary = "\n".join(lines[:100])
    with pytest.raises(ValueError, match="truncated"):
        summary_stats(before_summary)


# ---------------------------------------------------------------- JSON exports

def test_export_times_warmup_filter():
    records = parse_export_times(TIMES)
    assert len(records) == 263 and "endToEndMs" not in records[0]
    timed = filter_warmup(records, 200.0)
    assert len(timed) == 248 and min(r["startComputeMs"] for r in timed) == 208.707
    s = times_stats(TIMES, "gpu_compute", warmup_ms=200.0)
    assert s.runs == 248 and s.warmup == 15 and s.median_ms == 12.1682
    assert s.median_ms == pytest.approx(np.median([r["computeMs"] for r in timed]))
    assert s.p90_ms == pytest.approx(np.percentile([r["computeMs"] for r in timed], 90))
    assert times_stats(TIMES, warmup_ms=0).runs == 263
    assert times_stats(TIMES, "latency").median_ms == s.median_ms  # --noDataTransfers: latency = compute
    with pytest.raises(ValueError, match="endToEndMs"):
        times_stats(TIMES, "end_to_end")


def test_export_profile_layers():
    count, layers = parse_export_profile(PROFILE)
    assert count == 1 and len(layers) == 103
    by_name = {layer["name"]: layer for layer in layers}
    conv = by_name["Conv__435 + resnet50/conv1_relu/Relu"]
    assert conv["median_ms"] == 0.433152 and conv["percentage"] == 3.49323
    assert sum(layer["percentage"] for layer in layers) == pytest.approx(100.0, abs=1e-3)


def test_export_profile_before_84_has_no_median(tmp_path):
    data = json.loads(PROFILE.read_text())
    for rec in data[1:]:
        del rec["medianMs"]
    _, layers = parse_export_profile(data)
    assert layers[0]["median_ms"] is None and layers[0]["average_ms"] == 0.08704


@pytest.mark.parametrize("content", [b"", b"   \n", b"[{\"startEnqMs\": 1.0, \"endEnq", b"{\"a\": 1}", b"[1, 2]"])
def test_bad_export_files(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.json"):
        parse_export_times(str(path))
    with pytest.raises(ValueError, match="bad.json"):
        parse_export_profile(str(path))


def test_times_and_profile_are_not_confused():
    with pytest.raises(ValueError, match="exportProfile"):
        parse_export_profile(TIMES)
    with pytest.raises(ValueError, match="exportTimes"):
        parse_export_times(PROFILE)


# ---------------------------------------------------------------- benchmark against a stand-in trtexec

def _fake_trtexec(tmp_path, log, rc=0):
    """An executable that prints `log` (and the header for --help) and writes the export files it is asked for."""
    script = tmp_path / "trtexec"
    script.write_text(textwrap.dedent("""\
        #!{python}
        import shutil, sys
        args = sys.argv[1:]
        if args == ["--help"]:
            print("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --help")
            sys.exit(0)
        with open({args_file!r}, "w") as f:
            f.write("\\n".join(args))
        for a in args:
            if a.startswith("--exportTimes="):
                shutil.copy({times!r}, a.split("=", 1)[1])
            if a.startswith("--exportProfile="):
                shutil.copy({profile!r}, a.split("=", 1)[1])
        sys.stdout.write(open({log!r}).read())
        sys.exit({rc})
        """).format(python=sys.executable, args_file=str(tmp_path / "args.txt"), times=str(TIMES),
                    profile=str(PROFILE), log=str(log), rc=rc))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_benchmark_with_stand_in(tmp_path):
    fake = _fake_trtexec(tmp_path, LOG_82)
    assert trtexec.detect_version(fake) == (8, 2, 1)
    model = tmp_path / "m.engine"
    model.write_bytes(b"engine")
    log_path = tmp_path / "run.log"
    s = trtexec.benchmark(str(model), trtexec=fake, warmup_ms=200, profile=True, log_path=str(log_path))
    args = (tmp_path / "args.txt").read_text().splitlines()
    assert args[0] == "--loadEngine={}".format(model) and "--useCudaGraph" in args and "--warmUp=200" in args
    assert s.runs == 248 and s.median_ms == 12.1682 and len(s.layers) == 103
    assert s.info["tensorrt"] == "8.2.1" and s.info["summary_gpu_compute_median_ms"] == 13.6698
    assert log_path.read_text() == LOG_82.read_text()
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith("edgeprune-trtexec-")]


def test_benchmark_failure_raises_engine_build_error(tmp_path):
    log = tmp_path / "failed.log"
    log.write_text(FAILED_LOG)
    fake = _fake_trtexec(tmp_path, log, rc=1)
    onnx_path = tmp_path / "bad.onnx"
    onnx_path.write_bytes(b"x")
    with pytest.raises(EngineBuildError) as e:
        trtexec.benchmark(str(onnx_path), trtexec=fake, version="8.2.1")
    assert "Plugin not found" in str(e.value) and len(e.value.log_lines) == 4


def test_benchmark_missing_trtexec(tmp_path):
    with pytest.raises(EngineBuildError, match="cannot run"):
        trtexec.benchmark(str(tmp_path / "m.engine"), trtexec=str(tmp_path / "nope"), version="8.2.1")


@pytest.mark.skipif(not os.path.exists(trtexec.trtexec_path()),
                    reason="TensorRT is not installed: no trtexec at $TRTEXEC or /usr/src/tensorrt/bin/trtexec")
def test_real_trtexec(tmp_path):
    onnx_helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    graph = onnx_helper.make_graph([onnx_helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx_helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                                   [onnx_helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])])
    model = onnx_helper.make_model(graph, opset_imports=[onnx_helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = tmp_path / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    s = trtexec.benchmark(str(path), precision="fp16", warmup_ms=100, iterations=50, profile=True)
    assert s.runs >= 50 and 0 < s.median_ms < 100 and s.layers
