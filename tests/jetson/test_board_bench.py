"""benchmarks/board_bench.py on this machine: onnxruntime timing of the host's YOLOv5n exported at 64 px, power
columns unknown (no tegrastats here), and the power / energy arithmetic on a real Nano tegrastats capture."""

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jetson.jobs import backends, parse_options
from jetson.tegrastats import parse_file, summarize

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "board_bench.py"
NANO = ROOT / "tests" / "fixtures" / "device" / "tegrastats_jetson-nano-4gb_jp4-r32_pom5v.log"


def load_script():
    spec = importlib.util.spec_from_file_location("board_bench", str(SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def yolov5n(tmp_path_factory):
    pytest.importorskip("torch")
    from edgeprune.export import export_onnx
    from edgeprune.models import create_model

    path = tmp_path_factory.mktemp("models") / "yolov5n-64.onnx"
    export_onnx(create_model("yolov5n", num_classes=1), path, img_size=64, verify=False)
    return path


def run_script(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT)] + [str(a) for a in args], cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


def test_times_a_detector_here_and_writes_the_table_as_csv_and_json(yolov5n, tmp_path):
    out = tmp_path / "results" / "bench"
    p = run_script(yolov5n, "--warmup", 2, "--iterations", 10, "--threads", 1, "--tegrastats",
                   tmp_path / "no-tegrastats", "--out", out, cwd=tmp_path)  # run from elsewhere than the checkout
    assert p.returncode == 0, p.stderr
    header, _rule, row = p.stdout.splitlines()[:3]
    assert header.split()[:6] == ["model", "runner", "precision", "median_ms", "p99_ms", "fps"]
    assert row.startswith("yolov5n-64.onnx") and row.count("unknown") >= 3  # power, energy, GPU temperature
    with open(str(out) + ".csv") as f:
        (got,) = list(csv.DictReader(f))
    assert float(got["median_ms"]) > 0 and float(got["fps"]) == pytest.approx(1000 / float(got["median_ms"]))
    assert got["power_w"] == "" and got["energy_mj"] == "" and got["precision"] == "fp32"
    if not (backends()["trt"]["available"] or backends()["trtexec"]["available"]):
        assert got["runner"] == "onnxruntime"  # what --runner auto falls back to
    with open(str(out) + ".json") as f:
        doc = json.load(f)
    assert doc["rows"][0]["model"] == "yolov5n-64.onnx" and doc["rows"][0]["power_w"] is None
    run = doc["runs"][0]
    assert run["result"]["latency"]["runs"] == 10 and len(run["result"]["latency"]["samples_ms"]) == 10
    assert run["result"]["tegrastats"]["available"] is False and "python" in doc["board"]
    assert not list(out.parent.glob(".*"))  # atomic writes leave no temporary files


def test_bad_models_become_error_rows_and_a_nonzero_exit(yolov5n, tmp_path):
    (tmp_path / "notes.onnx").write_text("not a model")
    (tmp_path / "yolov5n.engine").write_bytes(b"\x00" * 64)
    p = run_script(tmp_path / "missing.onnx", tmp_path / "notes.onnx", tmp_path / "yolov5n.engine", yolov5n,
                   "--runner", "onnxruntime", "--no-tegrastats", "--iterations", 3, "--warmup", 0,
                   "--out", tmp_path / "bench", cwd=tmp_path)
    assert p.returncode == 1
    with open(str(tmp_path / "bench.csv")) as f:
        rows = dict((r["model"], r) for r in csv.DictReader(f))
    assert "no such file" in rows["missing.onnx"]["error"]
    assert "ONNX" in rows["notes.onnx"]["error"] or "onnx" in rows["notes.onnx"]["error"]
    assert "not TensorRT engines" in rows["yolov5n.engine"]["error"]
    assert rows["yolov5n-64.onnx"]["error"] == "" and float(rows["yolov5n-64.onnx"]["median_ms"]) > 0


def test_bad_options_are_refused_before_any_work(tmp_path):
    p = run_script(tmp_path / "m.onnx", "--runner", "onnxruntime", "--precision", "fp16", "--out", tmp_path / "b",
                   cwd=tmp_path)
    assert p.returncode == 2 and "fp32" in p.stderr and not (tmp_path / "b.csv").exists()


def test_power_energy_and_gpu_temperature_from_a_nano_capture():
    bench = load_script()
    samples, _ = parse_file(NANO)
    tegra = summarize(samples)
    result = {"latency": {"median_ms": 25.0, "p99_ms": 31.0}, "tegrastats": tegra}
    options = parse_options({"backend": "trt", "precision": "fp16"})
    row = bench.table_row("yolov5n.onnx", options, result, {"power_mode": "MAXN", "clocks_pinned": True})
    assert row["power_w"] == pytest.approx(tegra["total_power_mw"] / 1000)
    assert row["energy_mj"] == pytest.approx(row["power_w"] * 25.0)  # W × ms = mJ per frame
    assert row["fps"] == pytest.approx(40.0) and row["gpu_temp_c"] == max(s.temps["GPU"] for s in samples)
    assert (row["precision"], row["power_mode"], row["clocks_pinned"]) == ("fp16", "MAXN", True)
    table = bench.format_table([row])
    assert "MAXN" in table and "yes" in table and "{:.2f}".format(row["energy_mj"]) in table
    engine_row = bench.table_row("yolov5n.engine", options, result, {}, zones={"GPU-therm": 51.5})
    assert engine_row["precision"] == "engine" and engine_row["power_mode"] is None
    assert bench.gpu_temperature({}, {"GPU-therm": 51.5, "CPU-therm": 60.0}) == 51.5


def test_an_implicit_batch_run_counts_its_images_per_second_and_energy_per_image():
    bench = load_script()
    result = {"latency": {"median_ms": 32.0, "p99_ms": 40.0, "batch": 16}, "tegrastats": {"total_power_mw": 10000}}
    row = bench.table_row("mnist16.engine", parse_options({"backend": "trtexec"}), result, {})
    assert row["fps"] == pytest.approx(500.0)  # 16 images per 32 ms run, not 1000 / 32
    assert row["energy_mj"] == pytest.approx(10.0 * 32.0 / 16)
