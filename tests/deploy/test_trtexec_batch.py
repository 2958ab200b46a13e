"""trtexec with an implicit batch (`--batch=N`, TensorRT ≤ 8.x engines): per-image throughput, per-batch latency.

The fixture is a real TensorRT 8.4.0 run on a Jetson Xavier AGX (tests/fixtures/device/SOURCES.md, row 10:
OE4T/meta-tegra pull request #952). Before issue 19 the parser ignored the batch, so the result's FPS
(1000 / median) was 16x below trtexec's own throughput."""

from pathlib import Path

import pytest

from deploy.stats import LatencyStats
from deploy.trtexec_parse import command_batch, parse_log, summary_stats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "device"
IMPLICIT = FIXTURES / "trtexec_trt8.4.0_jetson-xavier-agx_mnist16-implicit-batch16_summary-excerpt.log"
EXPLICIT = FIXTURES / "trtexec_trt10.16_x86-rtx6000ada_onnx-build-and-bench.log"


def test_the_batch_comes_from_the_echoed_command_line():
    log = parse_log(IMPLICIT.read_text())
    assert log.version == (8, 4, 0) and log.status == "PASSED"
    assert log.command == "trtexec --loadEngine=mnist16.trt --batch=16"
    assert log.batch == 16 and log.batch_line is None  # the excerpt has no `Batch:` line: the command says it
    assert log.throughput_qps == 41087.7


def test_implicit_batch_stats_are_labelled_per_batch_and_per_image():
    stats = summary_stats(IMPLICIT.read_text())
    assert stats.median_ms == 0.388443 and stats.batch == 16  # GPU compute time of one batch of 16
    assert stats.latency_unit == "ms per batch of 16 images"
    info = stats.info
    assert info["implicit_batch"] is True and info["throughput_unit"].startswith("images/s")
    assert info["throughput_batches_per_s"] == pytest.approx(41087.7 / 16)
    # the figures agree once the batch is known: 16 x 1000 / 0.388 ms ≈ trtexec's 41087.7 images/s
    assert stats.fps == pytest.approx(16 * 1000 / 0.388443)
    assert stats.fps == pytest.approx(info["throughput_qps"], rel=0.02)
    assert stats.runs_per_s == pytest.approx(info["throughput_batches_per_s"], rel=0.02)
    # runs are batches: Total GPU Compute Time / mean = 2.99202 s / 0.388221 ms (flagged as an estimate)
    assert stats.runs == 7707 and info["runs_estimated"] is True
    assert stats.runs == pytest.approx(41087.7 * 3.00119 / 16, rel=0.01)
    back = LatencyStats.from_dict(stats.to_dict())
    assert back.batch == 16 and back.fps == pytest.approx(stats.fps)
    assert stats.to_dict()["latency_unit"] == "ms per batch of 16 images"


def test_an_explicit_batch_log_says_queries():
    log = parse_log(EXPLICIT.read_text())
    assert log.batch_line == "Explicit" and log.batch is None
    stats = summary_stats(log)
    assert stats.batch is None and stats.info["implicit_batch"] is False
    assert stats.info["throughput_unit"].startswith("queries/s") and stats.latency_unit == "ms per run"
    assert stats.runs == 55177 and stats.warmup == 3349  # counts are queries, not divided
    assert stats.fps == pytest.approx(1000 / stats.median_ms)


def test_batch_line_and_command_forms():
    """The `Batch: N` line in the form TensorRT 8.x's samples/common/sampleOptions.cpp prints it (operator<< of
    InferenceOptions: the number with an implicit batch, `Explicit` otherwise), and trtexec's `--batch=N`."""
    assert command_batch("/usr/src/tensorrt/bin/trtexec --deploy=m.prototxt --batch=8 --int8") == 8
    assert command_batch("trtexec --onnx=m.onnx --maxBatch=8") is None and command_batch(None) is None
    assert command_batch("trtexec --batchSize=8") is None
    header = "&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --loadEngine=m.plan --batch=4\n"
    log = parse_log(header + "[03/01/2024-10:00:00] [I] === Inference Options ===\n"
                             "[03/01/2024-10:00:00] [I] Batch: 8\n")
    assert log.batch_line == 8 and log.batch == 8  # the line trtexec ran with wins over the command
    log = parse_log(header + "[03/01/2024-10:00:00] [I] Batch: Explicit\n")
    assert log.batch is None
