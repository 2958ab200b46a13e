"""The remote backend against real jetson agents on 127.0.0.1 (onnxruntime on the "board"), and against boards
that refuse, drop or never answer connections."""
import socket
import threading
import time

import pytest
import torch
from torch import nn

from edgeprune.latency import (
    CachedBackend,
    LatencyCache,
    MeasurementError,
    get_backend,
    measure,
    module_to_onnx,
)
from edgeprune.latency.remote import RemoteBackend
from jetson.agent import serve

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
SHAPE = (1, 3, 16, 16)
FAST = {"backend": "onnxruntime", "warmup": 1, "iterations": 5, "threads": 1, "retries": 3, "backoff_s": 0.05,
        "request_timeout_s": 5, "total_timeout_s": 60}


def small(width=8, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 4, 1))


def start_agent(tmp_path, name, **kw):
    return serve("127.0.0.1", 0, state_dir=tmp_path / name, tegrastats=str(tmp_path / "no-tegrastats"),
                 trtexec=str(tmp_path / "no-trtexec"), **kw).start()


def addr(server):
    return f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def agents(tmp_path):
    started = [start_agent(tmp_path, "a"), start_agent(tmp_path, "b")]
    yield started
    for s in started:
        try:
            s.close()
        except OSError:
            pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DropServer:
    """Accepts connections and closes them at once (a board whose agent crashes on every request), or, with
    `hang`, never answers."""

    def __init__(self, hang=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.hang, self.accepted, self.held, self.stop = hang, 0, [], False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _loop(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.hang:
                self.held.append(conn)
            else:
                conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


def test_measures_a_real_yolov5n_on_the_agent(agents):
    from edgeprune.models import create_model

    shape = (1, 3, 64, 64)
    onnx = module_to_onnx(create_model("yolov5n", num_classes=2).eval(), shape)
    backend = get_backend("remote://" + addr(agents[0]), **FAST)
    stats = backend.measure(onnx, shape)
    assert stats.runs == 5 and 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
    assert stats.info["board"] == addr(agents[0]) and stats.info["runner"] == "onnxruntime"
    assert stats.info["options"]["input_shape"] == list(shape) and stats.info["threads"] == 1
    fp = backend.fingerprint()
    assert fp["backend"] == "remote" and fp["options"]["backend"] == "onnxruntime"
    assert set(fp["boards"][0]) >= {"model", "jetpack", "tensorrt", "power_mode", "clocks_pinned"}


def test_load_is_spread_over_two_boards(agents):
    backend = RemoteBackend([addr(a) for a in agents], **FAST)
    items = [(module_to_onnx(small(seed=s), SHAPE), SHAPE) for s in range(4)]
    results = backend.measure_many(items)
    assert len(results) == 4 and all(r.runs == 5 for r in results)
    per_board = {b.address: b.jobs_submitted for b in backend.last_boards}
    assert per_board == {addr(agents[0]): 2, addr(agents[1]): 2}
    assert {r.info["board"] for r in results} == set(per_board)
    # identical boards: one fingerprint entry
    assert len(backend.fingerprint()["boards"]) == 1


def test_board_that_goes_away_mid_run_is_skipped_and_its_jobs_move(agents):
    a, b = agents

    class ClosingA(RemoteBackend):
        """Shuts agent A down the first time its jobs are polled: its queued jobs are lost with it."""
        closed = False

        def _call(self, address, method, path, body=None):
            if address == addr(a) and method == "GET" and not self.closed:
                self.closed = True
                a.close()
            return RemoteBackend._call(self, address, method, path, body)

    backend = ClosingA([addr(a), addr(b)], **FAST)
    items = [(module_to_onnx(small(seed=s), SHAPE), SHAPE) for s in range(4)]
    t0 = time.monotonic()
    results = backend.measure_many(items)
    assert time.monotonic() - t0 < 30
    assert all(r.info["board"] == addr(b) for r in results)
    board_a = backend.last_boards[0]
    assert board_a.dead and board_a.failures == 3 and "after 3 tries" in board_a.dead
    assert board_a.jobs_submitted == 2 and backend.last_boards[1].jobs_submitted == 4  # A's two jobs moved to B


def test_dropping_board_is_retried_then_skipped(agents):
    drop = DropServer()
    try:
        backend = RemoteBackend([drop.address, addr(agents[0])], **FAST)
        results = backend.measure_many([(module_to_onnx(small(seed=s), SHAPE), SHAPE) for s in range(2)])
        assert all(r.info["board"] == addr(agents[0]) for r in results)
        assert drop.accepted == 3 and backend.last_boards[0].dead
    finally:
        drop.close()


def test_no_board_left_is_a_quick_measurement_error():
    drop = DropServer()
    try:
        backend = RemoteBackend([drop.address, f"127.0.0.1:{free_port()}"], **FAST)
        t0 = time.monotonic()
        with pytest.raises(MeasurementError, match="no board left") as e:
            backend.measure(module_to_onnx(small(), SHAPE), SHAPE)
        assert time.monotonic() - t0 < 5
        assert drop.address in str(e.value) and "after 3 tries" in str(e.value)
    finally:
        drop.close()


def test_board_that_never_answers_times_out():
    hang = DropServer(hang=True)
    try:
        backend = RemoteBackend([hang.address], **dict(FAST, request_timeout_s=0.3))
        t0 = time.monotonic()
        with pytest.raises(MeasurementError, match="no board left"):
            backend.measure(module_to_onnx(small(), SHAPE), SHAPE)
        assert time.monotonic() - t0 < 5
    finally:
        hang.close()


def test_bad_model_and_wrong_token_are_clear_errors(tmp_path):
    agent = start_agent(tmp_path, "t", token="s3cret", require_token=True)
    try:
        good = module_to_onnx(small(), SHAPE)
        with pytest.raises(MeasurementError, match="token refused"):
            RemoteBackend([addr(agent)], token="wrong", **FAST).measure(good, SHAPE)
        backend = RemoteBackend([addr(agent)], token="s3cret", **FAST)
        with pytest.raises(MeasurementError, match="refused it .HTTP 400."):
            backend.measure(good, (1, 3, 16))
        assert agent.store.summaries() == []
        out = backend.measure_many([(good, SHAPE), (b"garbage", SHAPE)], return_exceptions=True)
        assert out[0].runs == 5 and isinstance(out[1], MeasurementError)
    finally:
        agent.close()


def test_token_comes_from_the_agents_variable(tmp_path, monkeypatch):
    """`edgeprune demo/search/profile --backend remote://...` take no token flag: the same variable as the agent."""
    agent = start_agent(tmp_path, "t", token="s3cret", require_token=True)
    try:
        monkeypatch.setenv("EDGEPRUNE_AGENT_TOKEN", "s3cret")
        assert RemoteBackend([addr(agent)], **FAST).measure(module_to_onnx(small(), SHAPE), SHAPE).runs == 5
    finally:
        agent.close()


def test_cached_remote_is_not_measured_twice(agents, tmp_path):
    backend = RemoteBackend([addr(agents[0])], **FAST)
    cache = LatencyCache(tmp_path / "latency.sqlite")
    first = measure(small(seed=0), SHAPE, backend, cache=cache)
    again = measure(small(seed=5), SHAPE, CachedBackend(RemoteBackend([addr(agents[0])], **FAST),
                                                        LatencyCache(tmp_path / "latency.sqlite")))
    assert again.info["cache"] == "hit" and again.median_ms == first.median_ms
    assert len(agents[0].store.summaries()) == 1


def test_spec_carries_agent_options():
    from edgeprune.latency import get_backend

    b = get_backend("remote://tx2.local:8765,tx2b:8765?backend=onnxruntime&workspace_mb=512")
    assert b.hosts == ["tx2.local:8765", "tx2b:8765"]
    assert b.options["backend"] == "onnxruntime" and b.options["precision"] == "fp32"
    assert b.options["workspace_mb"] == 512
    with pytest.raises(ValueError, match="unknown option 'speed'"):
        get_backend("remote://tx2.local:8765?speed=fast")
