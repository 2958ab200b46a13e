"""The remote backend and the agent's job controls (issue 19): the per-job time limit, a busy board (429), and jobs
cancelled on the board when the host no longer needs them (cancel(), timeout, an exception). Real agents on
127.0.0.1 timing the self-test's tiny ONNX model with onnxruntime; every wait is bounded."""
import threading
import time

import pytest

from edgeprune.latency import MeasurementError
from edgeprune.latency.remote import RemoteBackend
from jetson.agent import serve
from jetson.limits import Limits
from jetson.tinyonnx import CONV_INPUT, conv_model

pytest.importorskip("onnxruntime")
SHAPE = tuple(CONV_INPUT)
MODEL = conv_model()
FAST = {"backend": "onnxruntime", "warmup": 1, "iterations": 5, "threads": 1, "retries": 3, "backoff_s": 0.05,
        "request_timeout_s": 5, "total_timeout_s": 60}
LONG = dict(FAST, iterations=1000000, warmup=0)  # about 20 s on this model: longer than any test waits


@pytest.fixture
def agent(tmp_path):
    server = serve("127.0.0.1", 0, state_dir=tmp_path / "state", tegrastats=str(tmp_path / "no-tegrastats"),
                   trtexec=str(tmp_path / "no-trtexec"), limits=Limits(total_mb=8192, max_queued=1)).start()
    yield server
    server.close()


def addr(server):
    return f"127.0.0.1:{server.server_address[1]}"


def statuses(server):
    return sorted(j["status"] for j in server.store.summaries())


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_time_limit_is_sent_and_not_retried(agent):
    backend = RemoteBackend([addr(agent)], time_limit_s=1.0, **LONG)
    t0 = time.monotonic()
    with pytest.raises(MeasurementError, match="TimeLimitExceeded"):
        backend.measure(MODEL, SHAPE)
    assert time.monotonic() - t0 < 10
    jobs = agent.store.summaries()
    assert len(jobs) == 1 and jobs[0]["status"] == "failed"  # not resubmitted
    assert agent.store.get(jobs[0]["id"])["options"]["time_limit_s"] == 1.0
    assert "time_limit_s" not in backend.fingerprint()["options"]  # it does not change the figure


def test_cancel_from_another_thread_cancels_the_jobs_on_the_board(agent):
    backend = RemoteBackend([addr(agent)], **LONG)
    out = []
    worker = threading.Thread(target=lambda: out.append(backend.measure_many([(MODEL, SHAPE)] * 2,
                                                                             return_exceptions=True)))
    worker.start()
    assert wait_until(lambda: statuses(agent) == ["queued", "running"])
    t0 = time.monotonic()
    backend.cancel()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - t0 < 5
    assert all(isinstance(r, MeasurementError) and r.reason == "cancelled" for r in out[0])
    assert wait_until(lambda: statuses(agent) == ["cancelled", "cancelled"], 10), statuses(agent)
    backend.options["iterations"] = 5
    assert backend.measure(MODEL, SHAPE).runs == 5  # the next call is not cancelled


def test_a_call_past_its_total_timeout_cancels_its_job(agent):
    backend = RemoteBackend([addr(agent)], **dict(LONG, total_timeout_s=1.5))
    with pytest.raises(MeasurementError, match="total_timeout_s"):
        backend.measure(MODEL, SHAPE)
    assert wait_until(lambda: statuses(agent) == ["cancelled"], 10), statuses(agent)


def test_an_exception_in_the_call_cancels_its_jobs(agent):
    class Interrupted(RemoteBackend):
        raised = False

        def _call(self, address, method, path, body=None):
            if method == "GET" and not self.raised:
                self.raised = True
                raise KeyboardInterrupt
            return RemoteBackend._call(self, address, method, path, body)

    with pytest.raises(KeyboardInterrupt):
        Interrupted([addr(agent)], **LONG).measure(MODEL, SHAPE)
    assert wait_until(lambda: statuses(agent) == ["cancelled"], 10), statuses(agent)


def test_a_full_queue_is_waited_for_not_counted_as_a_failure(agent):
    from edgeprune.latency.remote import Busy

    class Counting(RemoteBackend):
        busy = 0

        def _call(self, address, method, path, body=None):
            try:
                return RemoteBackend._call(self, address, method, path, body)
            except Busy:
                self.busy += 1
                raise

    backend = Counting([addr(agent)], **FAST)
    results = backend.measure_many([(MODEL, SHAPE)] * 4)  # one runs, one waits (max_queued=1), the rest: 429
    assert [r.runs for r in results] == [5, 5, 5, 5] and backend.busy >= 1
    board = backend.last_boards[0]
    assert board.dead is None and board.jobs_submitted == 4 and board.errors == []
    assert statuses(agent) == ["done"] * 4
