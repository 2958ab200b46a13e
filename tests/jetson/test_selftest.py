"""The board self-test: its models (written without the onnx package) checked by onnx and onnxruntime, a run on
this machine (no board, no TensorRT: exit 2), a run on a fake TX2 (a filesystem root, stand-in nvpmodel,
tegrastats and trtexec that replay real captures), and a run on Python 3.6."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from jetson_helpers import ROOT, python36

from jetson import tinyonnx
from jetson.protobuf import onnx_inputs

FIXTURES = ROOT / "tests" / "fixtures" / "device"
TEGRA = FIXTURES / "tegrastats_tx2_l4t-r32-style_vddsys-rails_sudo.log"
LOG_10 = FIXTURES / "trtexec_trt10.16_x86-rtx6000ada_onnx-build-and-bench.log"
TIMES = FIXTURES / "trtexec_exportTimes_trt8.4-era_rtx3090_resnet50-fp32_bs32.json"
NAMES = ["board (L4T / JetPack)", "TensorRT", "CUDA from Python", "trtexec", "reference output (onnxruntime)",
         "engine via the Python API", "engine via trtexec", "EfficientNMS_TRT in the ONNX parser",
         "tegrastats sample", "power mode", "clocks"]


def test_the_models_are_valid_onnx_and_the_reference_matches_onnxruntime():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    conv = tinyonnx.conv_model()
    onnx.checker.check_model(onnx.load_from_string(conv), full_check=True)
    x = np.array(tinyonnx.conv_input(), np.float32).reshape(tinyonnx.CONV_INPUT)
    y = ort.InferenceSession(conv, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    reference = np.array(tinyonnx.conv_reference())
    assert y.shape == tuple(tinyonnx.CONV_OUTPUT) and np.abs(y.reshape(-1) - reference).max() < 1e-6
    assert 0.2 < (reference > 0).mean() < 0.8  # the Relu clips some outputs, not all: a meaningful comparison
    nms = onnx.load_from_string(tinyonnx.efficientnms_model()).graph.node[0]
    attrs = dict((a.name, onnx.helper.get_attribute_value(a)) for a in nms.attribute)
    assert nms.op_type == "EfficientNMS_TRT" and len(nms.output) == 4
    assert attrs["background_class"] == -1 and attrs["plugin_version"] == b"1" and attrs["max_output_boxes"] == 10
    assert onnx_inputs(tinyonnx.efficientnms_model()) == [("boxes", 1, [1, 100, 4]), ("scores", 1, [1, 100, 2])]


def selftest(out, *args, env=None, python=sys.executable):
    p = subprocess.run([python, "-m", "jetson.selftest", "--out", str(out)] + [str(a) for a in args],
                       cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=120, env=env)
    doc = json.loads((Path(out) / "selftest.json").read_text()) if (Path(out) / "selftest.json").exists() else None
    return p.returncode, p.stdout, doc


def test_on_this_machine_it_reports_tensorrt_and_the_board_absent(tmp_path):
    code, text, doc = selftest(tmp_path / "bundle")
    assert code == 2, text
    assert [r["check"] for r in doc["rows"]] == NAMES
    status = dict((r["check"], r["status"]) for r in doc["rows"])
    assert status["board (L4T / JetPack)"] == "absent" and status["TensorRT"] == "absent"
    assert status["engine via the Python API"] == "skipped" and status["clocks"] == "absent"
    assert all(r["fix"] for r in doc["rows"] if r["status"] != "ok")  # every row that is not ok says what to do
    assert "NOT A JETSON WITH TENSORRT" in text and "(exit 2)" in text and doc["exit_status"] == 2
    assert (tmp_path / "bundle" / "selftest.txt").read_text().startswith("#")


def fake_board(tmp_path, outputs):
    """A TX2's filesystem facts, and nvpmodel, jetson_clocks, tegrastats, trtexec stand-ins on PATH."""
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    for d in ("etc", "proc/device-tree", "sys/devices/system/cpu/cpu0/cpufreq", "sys/class/devfreq/17000000.gp10b"):
        (root / d).mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, "
                                               "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson TX2 Developer Kit\x00")
    (root / "proc/meminfo").write_text("MemTotal:        8039228 kB\nMemFree:         5912000 kB\n")
    sysfs = (("sys/devices/system/cpu/cpu0/cpufreq", "scaling_"), ("sys/class/devfreq/17000000.gp10b", ""))
    for folder, prefix in sysfs:
        for key in ("min", "max", "cur"):
            (root / folder / "{}{}_freq".format(prefix, key)).write_text("2035200\n" if key != "min" else "345600\n")
    bin_dir.mkdir()
    scripts = {
        "nvpmodel": 'echo "NV Power Mode: MAXN"\necho 0\n',
        "jetson_clocks": "exit 1\n",  # needs root on a real board: the self-test falls back to sysfs
        "tegrastats": 'for i in 1 2 3 4 5 6 7 8 9 10; do cat "{}"; sleep 0.2; done\n'.format(TEGRA),
        "trtexec": ('for a in "$@"; do case "$a" in\n'
                    '  --exportTimes=*) cp "{times}" "${{a#--exportTimes=}}";;\n'
                    '  --saveEngine=*) printf engine > "${{a#--saveEngine=}}";;\n'
                    '  --loadInputs=x:*) cp "${{a#--loadInputs=x:}}" "{seen}";;\n'
                    '  --exportOutput=*) cp "{outputs}" "${{a#--exportOutput=}}";;\n'
                    'esac; done\ncat "{log}"\n').format(times=TIMES, log=LOG_10, seen=tmp_path / "input-seen.bin",
                                                        outputs=outputs),
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH="{}:{}".format(bin_dir, os.environ.get("PATH", "")))
    return root, bin_dir / "trtexec", env


def exported(values):
    return json.dumps([{"name": "y", "dimensions": "1x4x8x8", "values": list(values)}])


def test_on_a_fake_tx2_every_row_is_read_and_the_bundle_written(tmp_path):
    pytest.importorskip("onnxruntime")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(exported(tinyonnx.conv_reference()))
    root, trtexec, env = fake_board(tmp_path, outputs)
    code, text, doc = selftest(tmp_path / "bundle", "--board-root", root, "--trtexec", trtexec,
                               "--tegrastats-s", 1, env=env)
    rows = dict((r["check"], r) for r in doc["rows"])
    assert code == 0, text
    assert rows["board (L4T / JetPack)"]["detail"].startswith("NVIDIA Jetson TX2 Developer Kit, L4T 32.7.1 = "
                                                               "JetPack 4.6.1")
    assert rows["trtexec"]["status"] == "ok" and "TensorRT 10.16.0" in rows["trtexec"]["detail"]
    assert rows["engine via trtexec"]["status"] == "ok" and "max |diff| vs onnxruntime 0" in \
        rows["engine via trtexec"]["detail"]
    assert rows["EfficientNMS_TRT in the ONNX parser"]["status"] == "ok"
    assert rows["tegrastats sample"]["status"] == "warn" and "VDD_IN" in rows["tegrastats sample"]["detail"]
    assert rows["power mode"]["detail"] == "MAXN (id 0)" and rows["clocks"]["status"] == "ok"
    assert rows["engine via the Python API"]["status"] == "skipped"
    values = tinyonnx.conv_input()  # trtexec was given the self-test's input, as raw float32
    assert (tmp_path / "input-seen.bin").read_bytes() == struct.pack("<{}f".format(len(values)), *values)
    bundle = tmp_path / "bundle"
    for name in ("nv_tegra_release.txt", "nvpmodel-q.txt", "tegrastats.log", "trtexec-help.txt",
                 "trtexec/trtexec.log", "trtexec/times.json", "selftest-conv.onnx", "selftest-efficientnms.onnx"):
        assert (bundle / name).stat().st_size > 0, name
    assert "VDD_IN 3566/3566" in (bundle / "tegrastats.log").read_text()
    assert doc["timings"]["trtexec"]["median_ms"] > 0


def test_a_wrong_engine_output_fails_the_self_test(tmp_path):
    pytest.importorskip("onnxruntime")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(exported(v + 0.01 for v in tinyonnx.conv_reference()))
    root, trtexec, env = fake_board(tmp_path, outputs)
    code, text, doc = selftest(tmp_path / "bundle", "--board-root", root, "--trtexec", trtexec,
                               "--tegrastats-s", 0.5, env=env)
    row = [r for r in doc["rows"] if r["check"] == "engine via trtexec"][0]
    assert code == 1 and row["status"] == "FAIL" and "0.01" in row["detail"] and row["fix"], text
    assert "FAILED" in text


def test_it_runs_on_python_3_6(tmp_path):
    python = python36()
    if python is None:
        pytest.skip("no Python 3.6 interpreter here (set EDGEPRUNE_PYTHON36=/path/to/python3.6 to run this)")
    code, text, doc = selftest(tmp_path / "bundle", python=python)
    assert code == 2 and doc["python"].startswith("3.6"), text
    assert [r["check"] for r in doc["rows"]] == NAMES
    assert all("the check itself failed" not in r["detail"] for r in doc["rows"]), text
