"""What a request can make the agent do: memory bombs (huge input shapes, declared or requested), jobs that would
hold the worker for hours (cancel, time limit, queue limit), external-data paths, tokens on loopback. Loopback
only; every loop and wait is bounded."""

import base64
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from jetson.agent import serve
from jetson.checks import _check_without_onnx
from jetson.intake import IntakeLimits
from jetson.limits import Limits
from jetson.options import OptionError
from jetson.serve import _parser

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from jetson_helpers import MODEL, SubprocessAgent, call, call_full, profile, submit, tiny_onnx, wait  # noqa: E402

LONG = {"iterations": 1000000, "warmup": 0}  # about 20 s of a tiny model: far longer than any test waits


def start(tmp_path, **limits):
    return serve("127.0.0.1", 0, state_dir=tmp_path / "state", tegrastats=str(tmp_path / "no-tegrastats"),
                 trtexec=str(tmp_path / "no-trtexec"), limits=Limits(total_mb=8192, **limits),
                 intake=IntakeLimits(max_body_mb=8)).start()


@pytest.fixture
def agent(tmp_path):
    server = start(tmp_path, max_queued=2)
    yield server
    server.close()


def test_limits_follow_the_board_memory():
    tx2 = Limits(total_mb=8192)
    assert (tx2.max_input_mb, tx2.max_tensor_mb, tx2.max_workspace_mb) == (256, 512, 8192)
    nano = Limits(total_mb=4096)
    assert (nano.max_input_mb, nano.max_tensor_mb) == (128, 256)
    assert Limits(total_mb=8192, max_input_mb=10).max_input_mb == 10
    assert Limits(total_mb=None).to_dict()["memory_total_mb"] is None  # unknown: assumed 8 GB, and said so


BOMBS = [  # (case, model, input_shape, the limit named in the answer)
    ("dynamic input at 6000x6000", tiny_onnx(batch=1, size="S"), [1, 3, 6000, 6000], "--max-input-mb"),
    ("dynamic batch of 4500", tiny_onnx(batch="N"), [4500, 3, 32, 32], "--max-tensor-mb"),
    ("input within, activations not", tiny_onnx(batch=1, size="S"), [1, 3, 2200, 2200], "--max-tensor-mb"),
    ("declared 6000x6000 in the model", tiny_onnx(size=6000), None, "--max-input-mb"),
]


def test_memory_bombs_are_refused_and_the_agent_stays_small(tmp_path):
    with SubprocessAgent(tmp_path / "state", "--max-input-mb", 64, "--max-tensor-mb", 128) as board:
        assert profile(board.port)["status"] == "done"  # onnx and onnxruntime imported: the baseline
        before = board.peak_mb()
        for case, model, shape, limit in BOMBS:
            status, reply = submit(board.port, model=model, input_shape=shape)
            assert status == 400 and reply["field"] == "input_shape", (case, reply)
            assert limit in reply["error"] and "MB" in reply["error"], (case, reply)
        grew = board.peak_mb() - before
        assert profile(board.port)["status"] == "done"
    assert grew < 256, "the agent's peak memory grew by {:.0f} MB".format(grew)


def test_the_protobuf_level_check_bounds_inputs_without_onnx():
    limits = Limits(total_mb=8192, max_input_mb=64)
    dynamic = tiny_onnx(batch=1, size="S")
    _check_without_onnx(dynamic, [1, 3, 64, 64], limits)
    for shape, field in (([1, 3, 6000, 6000], "input_shape"), (None, "input_shape"), ([2, 3, 64, 64], "input_shape")):
        with pytest.raises(OptionError) as e:
            _check_without_onnx(dynamic, shape, limits)
        assert e.value.field == field
    with pytest.raises(OptionError, match="--max-input-mb"):
        _check_without_onnx(tiny_onnx(size=6000), None, limits)


def test_random_inputs_take_the_input_size_not_twice_it(tmp_path):
    """numpy's RandomState draws float64: a whole-array draw of a float32 input took 3x its size at the peak."""
    import tracemalloc

    from deploy.calibrator import write_random_npy
    from deploy.stats import random_array

    def peak_bytes(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_array = peak_bytes(lambda: random_array([4, 3, 512, 512], np.float32))  # 12 MB
    peak_file = peak_bytes(lambda: write_random_npy(tmp_path / "calib.npy", [8, 3, 512, 512]))  # 24 MB, mapped
    assert peak_array < 12.6e6 + 8.5e6, peak_array  # the array and one 8 MB float64 chunk
    assert peak_file < 9e6, peak_file
    data = np.load(str(tmp_path / "calib.npy"), mmap_mode="r")
    assert data.shape == (8, 3, 512, 512) and data.dtype == np.float32 and 0 <= float(data.min()) < 0.01
    with pytest.raises(ValueError, match="over the limit"):
        write_random_npy(tmp_path / "bomb.npy", [64, 3, 6000, 6000], max_bytes=256 * 2 ** 20)
    assert not (tmp_path / "bomb.npy").exists()


def test_a_million_iteration_job_is_cancelled_and_the_next_starts_at_once(agent):
    status, reply = submit(agent, **LONG)
    assert status == 202
    long_id = reply["job"]
    wait(agent, long_id, timeout=20, until=("running",))
    time.sleep(0.5)
    status, reply = call(agent, "DELETE", "/v1/jobs/" + long_id)
    assert status == 202 and reply["status"] == "running", reply
    t0 = time.monotonic()
    cancelled = wait(agent, long_id, timeout=10)
    assert cancelled["status"] == "cancelled" and time.monotonic() - t0 < 3.0
    assert cancelled["error"]["type"] == "Cancelled" and "DELETE" in cancelled["error"]["message"]
    nxt = profile(agent)
    assert nxt["status"] == "done"
    assert nxt["started_at"] - cancelled["finished_at"] < 3.0
    assert call(agent, "DELETE", "/v1/jobs/" + long_id)[0] == 409  # nothing left to cancel
    assert call(agent, "DELETE", "/v1/jobs/" + nxt["id"])[0] == 409
    assert call(agent, "DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef")[0] == 404
    assert call(agent, "DELETE", "/v1/device")[0] == 404


def test_a_queued_job_is_cancelled_before_it_runs(agent):
    running = submit(agent, **LONG)[1]["job"]
    queued = submit(agent)[1]["job"]
    wait(agent, running, timeout=20, until=("running",))
    status, reply = call(agent, "DELETE", "/v1/jobs/" + queued)
    assert status == 200 and reply["status"] == "cancelled"
    job = call(agent, "GET", "/v1/jobs/" + queued)[1]
    assert job["status"] == "cancelled" and job["started_at"] is None
    assert call(agent, "DELETE", "/v1/jobs/" + running)[0] == 202
    assert wait(agent, running, timeout=10)["status"] == "cancelled"
    assert call(agent, "GET", "/v1/device")[1]["agent"]["queued"] == 0


def test_a_job_past_its_time_limit_is_stopped(agent):
    t0 = time.monotonic()
    job = profile(agent, time_limit_s=1.0, **LONG)
    assert job["status"] == "failed" and job["error"]["type"] == "TimeLimitExceeded", job["error"]
    assert "time limit of 1 s" in job["error"]["message"]
    assert job["finished_at"] - job["started_at"] < 3.0 and time.monotonic() - t0 < 10
    assert job["options"]["time_limit_s"] == 1.0
    assert profile(agent)["options"]["time_limit_s"] == 1800.0  # the agent's default
    for bad in (0, -1, "10", True, 7201):
        status, reply = submit(agent, time_limit_s=bad)
        assert status == 400 and reply["field"] == "time_limit_s", bad
    assert submit(agent, workspace_mb=8193)[1]["field"] == "workspace_mb"  # over this "8 GB board"'s memory


def test_a_full_queue_answers_429(agent):
    running = submit(agent, **LONG)[1]["job"]
    wait(agent, running, timeout=20, until=("running",))
    queued = [submit(agent)[1]["job"] for _ in range(2)]  # max_queued=2
    status, reply, headers = call_full(agent, "POST", "/v1/profile",
                                       {"onnx": base64.b64encode(MODEL).decode(),
                                        "options": {"backend": "onnxruntime"}})
    assert status == 429 and int(headers["Retry-After"]) > 0, reply
    assert len(agent.store.summaries()) == 3
    for job_id in queued + [running]:
        assert call(agent, "DELETE", "/v1/jobs/" + job_id)[0] in (200, 202)
    assert wait(agent, running, timeout=10)["status"] == "cancelled"
    assert submit(agent)[0] == 202


def external_model(location, where):
    """The tiny model with one tensor's data in the external file `location` (an initializer or a Constant)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(MODEL)
    if where == "initializer":
        t = model.graph.initializer[1]
    else:
        t = helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])
        model.graph.node.append(helper.make_node("Constant", [], ["unused"], value=t))
        t = model.graph.node[-1].attribute[0].t
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", location
    return model.SerializeToString()


def test_external_data_paths_reveal_nothing_about_the_agents_files(agent, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.bin").write_bytes(b"\0" * 64)
    answers = set()
    for where in ("initializer", "attribute"):
        for location in ("exists.bin", "missing.bin", "../" + tmp_path.name + "/exists.bin", "/etc/passwd"):
            status, reply = submit(agent, model=external_model(location, where))
            assert status == 400 and reply["field"] == "onnx", (where, location, reply)
            answers.add(reply["error"])
    assert len(answers) == 1, answers  # the same answer whether the file exists or not
    assert "separate .data file" in answers.pop()


def test_a_token_on_loopback_is_enforced_only_when_required(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edgeprune.agent"):
        lax = serve("127.0.0.1", 0, state_dir=tmp_path / "a", token="s3cret").start()
    try:
        assert any("NOT REQUIRED" in r.getMessage() and "--require-token" in r.getMessage() for r in caplog.records)
        assert call(lax, "GET", "/v1/device")[0] == 200
        assert call(lax, "GET", "/v1/device")[1]["agent"]["token_required"] is False
    finally:
        lax.close()
    assert _parser().parse_args(["--require-token"]).require_token is True
    with SubprocessAgent(tmp_path / "b", "--token", "s3cret", "--require-token") as strict:
        assert call(strict.port, "GET", "/v1/device")[0] == 401
        assert call(strict.port, "DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef")[0] == 401
        assert call(strict.port, "GET", "/v1/device", token="s3cret")[0] == 200


def test_closing_the_agent_stops_a_running_job_at_once(tmp_path):
    from jetson.store import JobStore

    server = start(tmp_path)
    running = submit(server, **LONG)[1]["job"]
    wait(server, running, timeout=20, until=("running",))
    t0 = time.monotonic()
    server.close()  # before: it waited up to 30 s for the job to finish
    assert time.monotonic() - t0 < 5
    record = JobStore(tmp_path / "state").get(running)
    assert record["status"] == "failed" and "the agent stopped before this job finished" in \
        record["error"]["message"] and record["error"]["type"] == "AgentStopped"


def test_a_running_trtexec_is_killed_by_a_cancel(tmp_path):
    log = Path(__file__).resolve().parents[1] / "fixtures" / "device" / \
        "trtexec_trt10.16_x86-rtx6000ada_onnx-build-and-bench.log"
    exe = tmp_path / "trtexec"
    started = tmp_path / "started"
    exe.write_text("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --help ] && exec cat \"{log}\"; done\n"
                   "touch \"{started}\"\nexec sleep 30\n".format(log=log, started=started))
    exe.chmod(0o755)
    server = serve("127.0.0.1", 0, state_dir=tmp_path / "state", trtexec=str(exe), limits=Limits(total_mb=8192),
                   tegrastats=str(tmp_path / "no-tegrastats")).start()
    try:
        status, reply = submit(server, backend="trtexec", precision="fp16")
        assert status == 202, reply
        job = reply["job"]
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the fake trtexec never started"
        t0 = time.monotonic()
        assert call(server, "DELETE", "/v1/jobs/" + job)[0] == 202
        record = wait(server, job, timeout=10)
        assert record["status"] == "cancelled" and "trtexec was killed" in record["error"]["message"]
        assert time.monotonic() - t0 < 3
    finally:
        server.close()
    assert not [p for p in (tmp_path / "state" / "engines").iterdir() if p.name.startswith(".")]  # no scratch left
