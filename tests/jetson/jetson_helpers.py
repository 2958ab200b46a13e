"""Helpers the agent tests share: a tiny real ONNX model, HTTP calls on 127.0.0.1 (urllib, raw sockets), and an
agent in a subprocess whose memory can be read from /proc. Every wait here is bounded in time."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FAST = {"backend": "onnxruntime", "warmup": 1, "iterations": 5, "threads": 1, "tegrastats": False}
FINISHED = ("done", "failed", "cancelled")


def tiny_onnx(batch=1, size=32):
    """Conv(3→8, 3×3) → ReLU → Conv(8→4, 1×1) on a size×size image; `batch` (or `size`) may be a name for a
    dynamic dimension."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    weights = [numpy_helper.from_array(rng.randn(8, 3, 3, 3).astype(np.float32), "w1"),
               numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
               numpy_helper.from_array(rng.randn(4, 8, 1, 1).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Conv", ["r", "w2"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, size, size])
    graph = helper.make_graph(nodes, "tiny", [x], [y], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgeprune-test")
    model.ir_version = 7
    return model.SerializeToString()


MODEL = tiny_onnx()


def port_of(server):
    return server if isinstance(server, int) else server.server_address[1]


def call_full(server, method, path, body=None, headers=None, token=None, timeout=30):
    """(status, JSON reply, response headers); `body` is a dict (sent as JSON) or bytes (sent as they are)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        hdrs["X-Edgeprune-Token"] = token
    hdrs.update(headers or {})
    req = urllib.request.Request("http://127.0.0.1:{}{}".format(port_of(server), path), data=data, headers=hdrs,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode()), dict(e.headers)


def call(server, method, path, body=None, headers=None, token=None, timeout=30):
    """(status, JSON reply)."""
    return call_full(server, method, path, body, headers, token, timeout)[:2]


def body_of(model=MODEL, **options):
    return {"onnx": base64.b64encode(model).decode(), "name": "tiny.onnx", "options": dict(FAST, **options)}


def submit(server, model=MODEL, token=None, **options):
    return call(server, "POST", "/v1/profile", body_of(model, **options), token=token)


def wait(server, job_id, token=None, timeout=60, until=FINISHED):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, job = call(server, "GET", "/v1/jobs/" + job_id, token=token)
        assert status == 200, job
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError("job {} did not reach {} in {} s".format(job_id, until, timeout))


def profile(server, **options):
    status, reply = submit(server, **options)
    assert status == 202, reply
    return wait(server, reply["job"])


def raw_request(port, head, body=b"", timeout=10.0):
    """Send `head` (the request line and headers, without the blank line) and `body` on a fresh socket; return
    (status or None, the whole answer as text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        return read_answer(s, timeout)


def read_answer(sock, timeout=10.0):
    """(status or None, text) of what the agent answers on `sock` until it closes, within `timeout` seconds."""
    sock.settimeout(0.5)
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace")
    parts = text.split(" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None), text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SubprocessAgent(object):
    """`python3 -m jetson.agent` on a free port in its own process, so that its memory is its own."""

    def __init__(self, state_dir, *args, python=sys.executable, ready_s=60.0):
        self.port = free_port()
        cmd = [python, "-m", "jetson.agent", "--port", str(self.port), "--state-dir", str(state_dir),
               "--tegrastats", str(Path(state_dir) / "no-tegrastats"), "--trtexec", str(Path(state_dir) / "no-trtexec"),
               "--log-level", "WARNING"] + [str(a) for a in args]
        self.log = open(str(Path(state_dir).parent / "agent-{}.log".format(self.port)), "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the agent exited with {}".format(self.proc.returncode)
            try:
                if call(self.port, "GET", "/v1/device", timeout=2)[0] in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("the agent did not answer within {} s".format(ready_s))

    def status_kb(self, key):
        """VmRSS (now) or VmHWM (peak) of the agent in kB, from /proc/<pid>/status."""
        with open("/proc/{}/status".format(self.proc.pid)) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError("no {} in /proc/{}/status".format(key, self.proc.pid))

    def rss_mb(self):
        return self.status_kb("VmRSS") / 1024.0

    def peak_mb(self):
        return self.status_kb("VmHWM") / 1024.0

    def stop(self, kill=False):
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def python36():
    """A real Python 3.6 interpreter ($EDGEPRUNE_PYTHON36, else python3.6 on PATH), or None."""
    for candidate in (os.environ.get("EDGEPRUNE_PYTHON36"), shutil.which("python3.6")):
        if candidate:
            try:
                out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
            except (OSError, subprocess.SubprocessError):
                continue
            if out.returncode == 0 and out.stdout.strip() == b"(3, 6)":
                return candidate
    return None
