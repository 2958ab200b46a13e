"""What every runner shares since issue 19: a `stop` callable asked between runs, a bound on the memory of the
inputs (and outputs) before anything is allocated, random inputs in the model's own dtype, a batch in the stats."""

import numpy as np
import pytest

from deploy import trt_build, trt_run
from deploy.stats import LatencyStats, TimingStopped, check_stop, fill_random, random_array


class StopAfter(object):
    """A stop callable that lets `n` checks pass, then gives a reason; counts the checks."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return "cancelled by the test" if self.calls > self.n else None


def test_stats_carry_a_batch():
    s = LatencyStats.from_samples([2.0, 2.0, 2.0], batch=8)
    assert s.runs_per_s == 500 and s.images_per_s == 4000 and s.fps == 4000
    assert s.to_dict()["batch"] == 8 and s.to_dict()["images_per_s"] == 4000
    plain = LatencyStats.from_samples([2.0])
    assert plain.batch is None and plain.images_per_s is None and plain.fps == 500
    assert "images_per_s" not in plain.to_dict() and plain.to_dict()["latency_unit"] == "ms per run"
    assert LatencyStats.from_dict({"median_ms": 1, "mean_ms": 1, "p90_ms": 1, "p99_ms": 1, "min_ms": 1,
                                   "max_ms": 1, "std_ms": 0, "runs": 1}).batch is None  # an older record


def test_stop_and_random_helpers():
    check_stop(None)
    check_stop(lambda: None)
    with pytest.raises(TimingStopped, match="past its time limit"):
        check_stop(lambda: "past its time limit")
    a = random_array([3, 5], np.float16)
    assert a.dtype == np.float16 and a.shape == (3, 5) and 0 <= a.min() and a.max() < 1 and a.std() > 0
    assert not fill_random(np.ones((4, 4), np.int64)).any()  # integers (ids, masks): zeros, always valid
    big = random_array([3, 1 << 20], np.float32)  # several chunks: every one filled
    assert (big.reshape(3, -1).std(axis=1) > 0.25).all()


@pytest.fixture(scope="module")
def conv_onnx():
    pytest.importorskip("onnx")
    from jetson.tinyonnx import conv_model  # the self-test's model, written without the onnx package
    return conv_model()


def test_onnxruntime_runner_stops_between_runs(conv_onnx):
    pytest.importorskip("onnxruntime")
    from deploy.onnxruntime_runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(conv_onnx, threads=1)
    stop = StopAfter(30)
    with pytest.raises(TimingStopped, match="cancelled by the test"):
        runner.time(warmup=5, runs=1000000, min_warmup_s=0, stop=stop)
    assert stop.calls == 31  # asked before each run, and nothing ran after the reason
    stats = runner.time(warmup=2, runs=5, min_warmup_s=0, stop=StopAfter(100))
    assert stats.runs == 5


def test_onnxruntime_runner_refuses_inputs_over_the_limit(conv_onnx):
    pytest.importorskip("onnxruntime")
    from deploy.onnxruntime_runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(conv_onnx, threads=1)
    feed = runner.random_feed(max_input_bytes=3 * 8 * 8 * 4)  # exactly the input's size: allowed
    assert feed["x"].dtype == np.float32 and feed["x"].shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="over the limit of"):
        runner.time(warmup=0, runs=1, max_input_bytes=3 * 8 * 8 * 4 - 1)


def test_tensorrt_runner_stops_and_refuses_large_buffers(fake_trt, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine-bytes")
    trt_build.write_json_atomic(str(engine) + ".json", {"input_shapes": {"images": [2, 3, 8, 8]}})
    io_bytes = 2 * (2 * 3 * 8 * 8 * 4)  # input and output, float32
    with pytest.raises(ValueError, match="input and output buffers"):
        trt_run.EngineRunner(engine, max_io_bytes=io_bytes - 1)
    assert fake_trt.cuda.mem == {}  # refused before any device memory was taken
    stop = StopAfter(12)
    with pytest.raises(TimingStopped):
        trt_run.time_engine(engine, warmup=2, runs=1000000, stop=stop, max_io_bytes=io_bytes)
    assert stop.calls == 13 and fake_trt.cuda.mem == {}  # 2 warm-ups + 10 timed runs, then freed
    stats = trt_run.time_engine(engine, warmup=1, runs=4, stop=StopAfter(100))
    assert stats.runs == 4
