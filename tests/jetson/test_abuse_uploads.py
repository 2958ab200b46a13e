"""The agent under abusive clients on 127.0.0.1: slow and stalled uploads, idle and trickling connections, a
client that gives up, malformed HTTP. Every loop and wait is bounded in count and time; each test would fail on
the agent before issue 19 (uploads waited behind two stalled bodies, '²' as a length gave 500, ...)."""

import json
import socket
import threading
import time

import pytest

from jetson.agent import serve
from jetson.intake import IntakeLimits
from jetson.limits import Limits

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from jetson_helpers import body_of, call, call_full, raw_request, read_answer, submit, wait  # noqa: E402

HEAD = "POST /v1/profile HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json"


def start(tmp_path, max_connections=16, header_timeout_s=3.0, upload_wait_s=2.0):
    intake = IntakeLimits(max_body_mb=8, max_connections=max_connections, header_timeout_s=header_timeout_s,
                          body_idle_s=2.0, body_min_rate_kbs=64.0, upload_wait_s=upload_wait_s)
    return serve("127.0.0.1", 0, state_dir=tmp_path / "state", tegrastats=str(tmp_path / "no-tegrastats"),
                 trtexec=str(tmp_path / "no-trtexec"), limits=Limits(total_mb=8192), intake=intake).start()


@pytest.fixture
def agent(tmp_path):
    server = start(tmp_path)
    yield server
    server.close()


def open_upload(port, declared=100000):
    """A POST that declares `declared` bytes and sends one."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall((HEAD + "\r\nContent-Length: {}\r\n\r\n".format(declared)).encode() + b"{")
    return s


def trickle(sockets, stop, every_s=0.5, limit_s=12.0):
    """One byte per `every_s` on each socket until `stop` or `limit_s` (a socket the agent closed is dropped)."""
    deadline = time.monotonic() + limit_s
    alive = list(sockets)
    while alive and not stop.is_set() and time.monotonic() < deadline:
        for s in list(alive):
            try:
                s.send(b" ")
            except OSError:
                alive.remove(s)
        stop.wait(every_s)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("{} within {} s".format(what, timeout))


def test_a_good_upload_is_answered_while_three_slow_uploads_hang(agent):
    port = agent.server_address[1]
    slow = [open_upload(port) for _ in range(3)]  # two trickle one byte per 0.5 s, one sends nothing more
    stop = threading.Event()
    dripper = threading.Thread(target=trickle, args=(slow[:2], stop))
    dripper.start()
    try:
        time.sleep(0.3)  # the three are in the agent, reading their bodies
        t0 = time.monotonic()
        status, reply = submit(agent)
        answered_s = time.monotonic() - t0
        assert status == 202, reply
        assert answered_s < 3.0, "a good upload waited {:.1f} s behind slow ones".format(answered_s)
        assert wait(agent, reply["job"], timeout=30)["status"] == "done"
        # the stalled one hits the 2 s idle timeout, the tricklers the total deadline (2 s + 100 kB at 64 kB/s)
        answers = [read_answer(s, timeout=10) for s in slow]
    finally:
        stop.set()
        dripper.join(15)
        for s in slow:
            s.close()
    assert [a[0] for a in answers] == [408, 408, 408], answers
    assert "took longer than" in answers[0][1] and "no byte" in answers[2][1]
    assert len(agent.store.summaries()) == 1  # no job for the slow ones


def test_a_client_that_gave_up_gets_no_job(agent):
    agent.upload_slots.acquire()  # both decode slots busy: the upload below waits for one
    agent.upload_slots.acquire()
    released = False
    try:
        body = json.dumps(body_of()).encode()
        s = socket.create_connection(("127.0.0.1", agent.server_address[1]), timeout=10)
        s.sendall((HEAD + "\r\nContent-Length: {}\r\n\r\n".format(len(body))).encode() + body)
        time.sleep(0.3)
        s.close()  # it gives up while its upload waits
        time.sleep(0.2)
        agent.upload_slots.release()
        agent.upload_slots.release()
        released = True
        wait_for(lambda: agent.guard.open == 0, 10, "the abandoned request ended")
    finally:
        if not released:
            agent.upload_slots.release()
            agent.upload_slots.release()
    assert agent.store.summaries() == []
    assert submit(agent)[0] == 202  # and the agent serves the next one


def test_busy_upload_slots_give_503_with_retry_after(agent):
    agent.upload_slots.acquire()
    agent.upload_slots.acquire()
    try:
        t0 = time.monotonic()
        status, reply, headers = call_full(agent, "POST", "/v1/profile", body_of())
        waited = time.monotonic() - t0
    finally:
        agent.upload_slots.release()
        agent.upload_slots.release()
    assert status == 503 and int(headers["Retry-After"]) > 0, reply
    assert 1.5 < waited < 6.0
    assert agent.store.summaries() == []


def test_connections_are_capped_and_idle_ones_time_out(tmp_path):
    server = start(tmp_path, max_connections=4, header_timeout_s=2.0)
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    try:
        wait_for(lambda: server.guard.open == 4, 5, "four connections admitted")
        t0 = time.monotonic()
        status, text = raw_request(port, "GET /v1/device HTTP/1.0", timeout=5)
        assert status == 503 and "Retry-After: " in text and time.monotonic() - t0 < 2.0
        closed = [read_answer(s, timeout=6) for s in idle]  # each is closed after the header timeout
        assert all(text == "" or status == 408 for status, text in closed), closed
        wait_for(lambda: server.guard.open == 0, 5, "the idle connections released")
        assert call(server, "GET", "/v1/device")[0] == 200
    finally:
        for s in idle:
            s.close()
        server.close()


def test_headers_sent_one_line_at_a_time_are_cut_at_the_header_deadline(agent):
    s = socket.create_connection(("127.0.0.1", agent.server_address[1]), timeout=10)
    t0, cut_after = time.monotonic(), None
    try:
        s.sendall(b"GET /v1/device HTTP/1.0\r\n")
        for k in range(20):  # one header line per 0.5 s: never idle for 2 s, but past the 3 s header deadline
            time.sleep(0.5)
            try:
                s.sendall("X-Slow-{}: 1\r\n".format(k).encode())
                s.settimeout(0.01)
                if s.recv(1) == b"":
                    cut_after = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except OSError:
                cut_after = time.monotonic() - t0
                break
    finally:
        s.close()
    assert cut_after is not None and cut_after < 5.0, cut_after


@pytest.mark.parametrize("case,headers,body,status", [
    ("superscript two as the length", "Content-Length: \xb2", b"", 400),
    ("negative length", "Content-Length: -5", b"", 400),
    ("length in exponent form", "Content-Length: 1e3", b"", 400),
    ("two different lengths", "Content-Length: 2\r\nContent-Length: 3", b"{}", 400),
    ("chunked and a length", "Transfer-Encoding: chunked\r\nContent-Length: 2", b"{}", 400),
    ("chunked without a length", "Transfer-Encoding: chunked", b"0\r\n\r\n", 411),
    ("no length", "X-Nothing: 1", b"", 411),
    ("JSON nested 100000 deep", "Content-Length: {n}", b'{"options": ' + b"[" * 100000 + b"]" * 100000 + b"}",
     400),
    ("an array nested inside the options", "Content-Length: {n}", b'{"options": {"warmup": [[[[1]]]]}}', 400),
])
def test_malformed_requests_get_400_not_500(agent, case, headers, body, status):
    got, text = raw_request(agent.server_address[1], HEAD + "\r\n" + headers.format(n=len(body)), body)
    assert got == status, text
    assert '"error"' in text and "internal error" not in text
    assert submit(agent)[0] == 202  # the agent keeps serving
