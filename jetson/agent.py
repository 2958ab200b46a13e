"""The profiling agent: an HTTP JSON service that times ONNX models on this board for the host's pruning search.

    GET  /v1/device         board facts, available backends, agent version and limits
    POST /v1/profile        JSON {"onnx": "<base64 model>", "name": "...", "options": {...}}  → 202 {"job": id}
    GET  /v1/jobs/<id>      status queued | running | done | failed, with the result or the error
    GET  /v1/jobs           every job the agent remembers (id, status)

Errors are `{"error": "...", "field": name or null}` with a 4xx status (5xx only for a bug); the agent keeps
serving after any of them. Models are checked when submitted, so a file that is not ONNX gets 400, not a failed
job. Measurements run one at a time on one worker thread; requests are answered meanwhile. docs/jetson.md has the
whole protocol with examples.

Run it from the repository root (not installed: NVIDIA's jetson-inference owns `import jetson`):

    python3 -m jetson.agent --host 0.0.0.0 --port 8765 --state-dir ~/.edgeprune-agent   # token from the env
"""

import argparse
import base64
import binascii
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

from . import __version__, board
from .jobs import MeasureEnv, OptionError, Worker, backends, parse_options
from .store import JobStore

log = logging.getLogger("edgeprune.agent")
TOKEN_ENV = "EDGEPRUNE_AGENT_TOKEN"
BODY_KEYS = ("onnx", "name", "options")


class ApiError(Exception):
    def __init__(self, status, message, field=None):
        Exception.__init__(self, message)
        self.status, self.message, self.field = status, message, field


def decode_model(value):
    if not isinstance(value, str) or not value:
        raise OptionError("onnx must be the model file as base64 text", "onnx")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise OptionError("onnx is not valid base64 ({})".format(e), "onnx")


def _varint(data, i):
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return value, i


def protobuf_fields(data):
    """Top-level field numbers of a protobuf message; ValueError when the bytes are not one (or are cut short)."""
    i, fields = 0, set()
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if field == 0 or wire not in (0, 1, 2, 5):
            raise ValueError("not a protobuf message (field {}, wire type {})".format(field, wire))
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            i += length
        else:
            i += 8 if wire == 1 else 4
        if i > len(data):
            raise ValueError("cut short inside field {}".format(field))
        fields.add(field)
    return fields


def _check_without_onnx(data):
    """Where the onnx package is missing (TensorRT-only boards): the bytes must be a whole ModelProto with
    ir_version (1), graph (7) and opset_import (8)."""
    try:
        missing = {1, 7, 8} - protobuf_fields(data)
    except ValueError as e:
        raise OptionError("the model is not a readable ONNX file ({}); is it truncated?".format(e), "onnx")
    if missing:
        raise OptionError("the model lacks ModelProto fields {} (graph, opset): is it truncated?"
                          .format(sorted(missing)), "onnx")


def _check_shape(model, shape):
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if not inputs:
        return
    dims = [d.dim_value if d.dim_value > 0 else None for d in inputs[0].type.tensor_type.shape.dim]
    shown = [d if d else "?" for d in dims]
    if shape is None:
        if None in dims:
            raise OptionError("input {!r} has dynamic shape {}: pass input_shape such as [1, 3, 640, 640]"
                              .format(inputs[0].name, shown), "input_shape")
        return
    if len(shape) != len(dims) or any(d and d != s for d, s in zip(dims, shape)):
        raise OptionError("input_shape {} does not fit the model's input {!r} {}".format(shape, inputs[0].name,
                                                                                       shown), "input_shape")


def check_onnx(data, options):
    """Reject at submission what cannot run: bytes that are not ONNX, a truncated file, weights kept in a separate
    file, an input shape that does not fit the model."""
    try:
        import onnx
    except ImportError:
        return _check_without_onnx(data)
    from deploy.onnx_info import load
    try:
        model = load(data)
    except ValueError as e:
        raise OptionError(str(e), "onnx")
    if not model.graph.node or not model.graph.output or not model.opset_import:
        raise OptionError("the model has no nodes, outputs or opset: is the file truncated?", "onnx")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise OptionError("the model keeps its weights in a separate .data file: export it as one file "
                          "(torch.onnx.export(..., external_data=False) or `edgeprune export`)", "onnx")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError, and protobuf errors on odd graphs
        raise OptionError("the model fails onnx.checker: {}".format(str(e).strip().splitlines()[0]), "onnx")
    _check_shape(model, options["input_shape"])


class AgentHandler(BaseHTTPRequestHandler):
    server_version = "edgeprune-agent/" + __version__
    timeout = 120  # seconds a client may stall mid-request before its connection is dropped

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        self._handle(self._get)

    def do_POST(self):
        self._handle(self._post)

    def _handle(self, route):
        self._body_read = self.command != "POST"
        try:
            self._check_token()
            status, body = route(urlsplit(self.path).path.rstrip("/"))
        except ApiError as e:
            status, body = e.status, {"error": e.message, "field": e.field}
        except OptionError as e:
            status, body = 400, {"error": str(e), "field": e.field}
        except Exception as e:
            log.exception("request %s %s", self.command, self.path)
            status, body = 500, {"error": "internal error in the agent: {}: {}".format(type(e).__name__, e),
                                 "field": None}
        try:
            self._send(status, body)
        except OSError:  # the client went away before the answer: nothing to tell it
            self.close_connection = True
            return
        if not self._body_read:
            self._discard_unread_body()

    def _check_token(self):
        if not self.server.require_token:
            return
        given = self.headers.get("X-Edgeprune-Token") or ""
        auth = self.headers.get("Authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[len("bearer "):].strip()
        if not given or not hmac.compare_digest(given.encode("utf-8"), self.server.token.encode("utf-8")):
            raise ApiError(401, "missing or wrong token: send X-Edgeprune-Token or Authorization: Bearer",
                           "X-Edgeprune-Token")

    def _get(self, path):
        if path == "/v1/device":
            return 200, self.server.device_info()
        if path == "/v1/jobs":
            return 200, {"jobs": self.server.store.summaries()}
        if path.startswith("/v1/jobs/"):
            job = self.server.store.get(path[len("/v1/jobs/"):])
            if job is None:
                raise ApiError(404, "unknown job id {!r}".format(path[len("/v1/jobs/"):]), "id")
            return 200, job
        raise ApiError(404, "no endpoint {} (see docs/jetson.md)".format(path))

    def _post(self, path):
        if path != "/v1/profile":
            raise ApiError(404, "no endpoint POST {} (see docs/jetson.md)".format(path))
        with self.server.upload_slots:  # a few uploads at once: a TX2 has 8 GB for all of them and the timing
            return self._submit()

    def _submit(self):
        doc = self._read_json()
        unknown = sorted(set(doc) - set(BODY_KEYS))
        if unknown:
            raise ApiError(400, "unknown body field {!r} (known: {})".format(unknown[0], ", ".join(BODY_KEYS)),
                           unknown[0])
        options = parse_options(doc.get("options") or {})
        name = doc.get("name") if isinstance(doc.get("name"), str) else None
        backend = self.server.backends[options["backend"]]
        if not backend["available"]:
            raise ApiError(400, "backend {} is not available on this board: {}".format(
                options["backend"], backend["reason"]), "backend")
        model = decode_model(doc.pop("onnx", None))  # drop the base64 text early: it is the model's size again
        check_onnx(model, options)
        record = self.server.store.create(model, options, name=name)
        position = self.server.worker.submit(record["id"])
        return 202, {"job": record["id"], "status": "queued", "position": position,
                     "url": "/v1/jobs/" + record["id"]}

    def _read_json(self):
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise ApiError(411, "Content-Length is required", "Content-Length")
        length = int(raw) if raw.strip().isdigit() else -1
        if length < 0:
            raise ApiError(400, "bad Content-Length {!r}".format(raw), "Content-Length")
        limit = self.server.max_body_bytes
        if length > limit:
            raise ApiError(413, "request body of {:.1f} MB is over this agent's limit of {:.0f} MB "
                                "(--max-body-mb)".format(length / 2.0 ** 20, limit / 2.0 ** 20), "onnx")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "send Content-Type: application/json with the model as base64 in 'onnx'",
                           "Content-Type")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            raise ApiError(400, "request body ended after {} of {} bytes".format(len(body), length))
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "request body is not JSON: {}".format(e))
        if not isinstance(doc, dict):
            raise ApiError(400, "request body must be a JSON object")
        return doc

    def _send(self, status, body):
        data = (json.dumps(body, default=str) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)

    def _discard_unread_body(self):
        """A refused body may still be on its way: stop writing, then drop (not store) what arrives for a moment,
        so that the client reads our error instead of a connection reset."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.connection.recv(1 << 16):
                pass
        except OSError:
            pass


class _ThreadingHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    """http.server.ThreadingHTTPServer is Python 3.7+; this is the same on 3.6."""
    daemon_threads = True
    request_queue_size = 64  # the listen backlog (5 by default): many search workers may connect at once


class AgentServer(_ThreadingHTTPServer):
    def __init__(self, address, store, worker, token, require_token, max_body_mb, board_root, static_facts,
                 trtexec):
        _ThreadingHTTPServer.__init__(self, address, AgentHandler)
        self.store, self.worker = store, worker
        self.token, self.require_token = token, require_token
        self.max_body_bytes = int(max_body_mb * 2 ** 20)
        self.upload_slots = threading.BoundedSemaphore(2)
        self.board_root, self.static_facts = board_root, static_facts
        self.backends = backends(trtexec)
        self.started_at = time.time()
        self._thread = None

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "http://{}:{}".format("127.0.0.1" if host == "0.0.0.0" else host, port)

    def device_info(self):
        return {
            "agent": {"version": __version__, "protocol": "v1", "started_at": self.started_at,
                      "queued": self.worker.pending(), "max_body_mb": self.max_body_bytes / 2.0 ** 20,
                      "token_required": self.require_token},
            "board": dict(self.static_facts, **board.dynamic_facts(self.board_root)),
            "backends": self.backends,
        }

    def start(self):
        """Serve on a background thread (tests, embedding); `close()` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="edgeprune-agent-http")
        self._thread.daemon = True
        self._thread.start()
        return self

    def close(self):
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.worker.stop()
        self.server_close()


def is_loopback(host):
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def serve(host="127.0.0.1", port=8765, state_dir="~/.edgeprune-agent", token=None, require_token=None,
          max_body_mb=512, tegrastats="tegrastats", tegrastats_interval_ms=200, trtexec=None, engine_cache_mb=4096,
          keep_jobs=5000, board_root="/"):
    """Open the state dir, start the worker and bind the server (port 0: any free port). Returns the server:
    `.serve_forever()` in this thread, or `.start()` for a background thread; `.close()` when done.

    A token is required unless the agent listens on loopback only (`require_token` overrides); listening
    elsewhere without one is refused."""
    if require_token is None:
        require_token = not is_loopback(host)
    if require_token and not token:
        raise ValueError("the agent on {} needs a token: pass --token or set {} (or listen on 127.0.0.1)"
                         .format(host, TOKEN_ENV))
    store = JobStore(state_dir, keep_jobs=keep_jobs)
    if store.recovered:
        log.warning("%d job(s) were unfinished when the agent last stopped: marked failed", len(store.recovered))
    env = MeasureEnv(os.path.join(store.state_dir, "engines"), engine_cache_mb, tegrastats, tegrastats_interval_ms,
                     trtexec)
    static = board.static_facts(board_root)
    worker = Worker(store, env, lambda: board.fingerprint(static, board.dynamic_facts(board_root))).start()
    try:
        return AgentServer((host, port), store, worker, token, require_token, max_body_mb, board_root, static,
                           trtexec)
    except BaseException:
        worker.stop()
        raise


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m jetson.agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--state-dir", default="~/.edgeprune-agent", help="jobs, results and the engine cache")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="shared secret (default: ${})".format(TOKEN_ENV))
    p.add_argument("--max-body-mb", type=float, default=512, help="largest request accepted (413 above)")
    p.add_argument("--tegrastats", default="tegrastats", help="tegrastats binary")
    p.add_argument("--tegrastats-interval-ms", type=int, default=200)
    p.add_argument("--trtexec", default=None, help="trtexec binary (default: PATH, then /usr/src/tensorrt/bin)")
    p.add_argument("--engine-cache-mb", type=int, default=4096, help="engines kept on disk, least recent dropped")
    p.add_argument("--keep-jobs", type=int, default=5000, help="finished jobs remembered")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = serve(a.host, a.port, a.state_dir, a.token, max_body_mb=a.max_body_mb, tegrastats=a.tegrastats,
                       tegrastats_interval_ms=a.tegrastats_interval_ms, trtexec=a.trtexec,
                       engine_cache_mb=a.engine_cache_mb, keep_jobs=a.keep_jobs)
    except (ValueError, OSError) as e:
        print("edgeprune agent: {}".format(e), file=sys.stderr)
        return 2
    ready = sorted(k for k, v in server.backends.items() if v["available"])
    log.info("edgeprune agent %s on %s:%d (%s), state in %s, backends: %s", __version__, a.host, a.port,
             "token required" if server.require_token else "loopback, no token", server.store.state_dir,
             ", ".join(ready) or "none")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
