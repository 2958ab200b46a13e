"""The agent's HTTP server: `AgentServer` and its request handler (the protocol is in jetson/agent.py's docstring
and docs/jetson.md); jetson/serve.py starts it."""

import hmac
import json
import logging
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import __version__, board
from .checks import check_onnx, decode_model
from .intake import (
    RETRY_AFTER_S,
    ApiError,
    ByteBudget,
    ClientGone,
    ConnectionGuard,
    IntakeLimits,
    client_gone,
    read_body,
    refuse_connection,
)
from .options import OptionError, parse_options
from .store import FINISHED, JobStore
from .worker import QueueFull, Worker

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["AgentHandler", "AgentServer", "parse_json_body"]
log = logging.getLogger("edgeprune.agent")
BODY_KEYS = ("onnx", "name", "options")
ANSWER_S = 30.0  # seconds a client may take to read an answer
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() accepts '²', which int() refuses


def parse_json_body(body: Union[bytes, bytearray]) -> Dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "request body is not JSON: {}".format(e))
    except RecursionError:
        raise ApiError(400, "request body is JSON nested too deeply")
    if not isinstance(doc, dict):
        raise ApiError(400, "request body must be a JSON object")
    return doc


class AgentHandler(BaseHTTPRequestHandler):
    server_version = "edgeprune-agent/" + __version__

    def setup(self) -> None:
        self.timeout = self.server.intake.body_idle_s  # the socket timeout: the longest wait for one byte
        BaseHTTPRequestHandler.setup(self)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def do_DELETE(self) -> None:
        self._handle(self._delete)

    def _handle(self, route):
        self._body_read, self._created, headers = self.command != "POST", None, {}
        self.server.guard.deadline(self.connection, None)
        try:
            self._check_token()
            status, body = route(urlsplit(self.path).path.rstrip("/"))
        except ClientGone:
            self.close_connection = True
            return
        except ApiError as e:
            status, body = e.status, {"error": e.message, "field": e.field}
            if e.retry_after:
                headers["Retry-After"] = str(int(e.retry_after))
        except OptionError as e:
            status, body = 400, {"error": str(e), "field": e.field}
        except Exception as e:
            log.exception("request %s %s", self.command, self.path)
            status, body = 500, {"error": "internal error in the agent: {}: {}".format(type(e).__name__, e),
                                 "field": None}
        self._answer(status, body, headers)

    def _answer(self, status, body, headers):
        self.server.guard.deadline(self.connection, ANSWER_S)
        try:
            self._send(status, body, headers)
        except OSError:  # the client went away before the answer: nothing to tell it
            self.close_connection = True
            if self._created:
                self.server.worker.cancel(self._created, "the client disconnected before it got the job id")
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

    def _job_id(self, path):
        job_id = path[len("/v1/jobs/"):]
        job = self.server.store.get(job_id)
        if job is None:
            raise ApiError(404, "unknown job id {!r}".format(job_id), "id")
        return job_id, job

    def _get(self, path):
        if path == "/v1/device":
            return 200, self.server.device_info()
        if path == "/v1/jobs":
            return 200, {"jobs": self.server.store.summaries()}
        if path.startswith("/v1/jobs/"):
            return 200, self._job_id(path)[1]
        raise ApiError(404, "no endpoint {} (see docs/jetson.md)".format(path))

    def _delete(self, path):
        if not path.startswith("/v1/jobs/"):
            raise ApiError(404, "no endpoint DELETE {} (see docs/jetson.md)".format(path))
        job_id, _job = self._job_id(path)
        outcome = self.server.worker.cancel(job_id, "cancelled by DELETE /v1/jobs/{} from {}".format(
            job_id, self.client_address[0]))
        if outcome == "cancelled":
            return 200, {"job": job_id, "status": "cancelled"}
        if outcome == "cancelling":
            return 202, {"job": job_id, "status": "running", "cancel": "requested: the job stops at its next "
                                                                       "check between two runs"}
        status = self.server.store.get(job_id)["status"]
        if status in FINISHED:
            raise ApiError(409, "job {} is already {}: nothing to cancel".format(job_id, status), "id")
        raise ApiError(409, "job {} is being queued: retry the DELETE".format(job_id), "id", RETRY_AFTER_S)

    def _post(self, path):
        if path != "/v1/profile":
            raise ApiError(404, "no endpoint POST {} (see docs/jetson.md)".format(path))
        server = self.server
        if server.worker.pending() >= server.worker.max_queued:  # before the upload: the client keeps its bytes
            raise ApiError(429, "{} jobs are waiting (this agent's --max-queued): retry later".format(
                server.worker.pending()), None, RETRY_AFTER_S)
        length = self._content_length()
        server.guard.deadline(self.connection, server.intake.body_deadline_s(length) + 1.0)
        body, held = read_body(self.rfile, length, server.budget, server.intake)
        self._body_read = True
        server.guard.deadline(self.connection, None)
        try:
            if not server.upload_slots.acquire(timeout=server.intake.upload_wait_s):
                raise ApiError(503, "the agent is checking other uploads: retry in {} s".format(RETRY_AFTER_S),
                               None, RETRY_AFTER_S)
            try:
                doc = parse_json_body(body)
                body.clear()  # the body's bytes are the document's size again: free them now
                server.budget.give(held)
                held = 0
                return self._submit(doc)
            finally:
                server.upload_slots.release()
        finally:
            server.budget.give(held)

    def _content_length(self):
        raw = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411 if not raw else 400, "send the body with a Content-Length, not a Transfer-Encoding",
                           "Content-Length")
        if not raw:
            raise ApiError(411, "Content-Length is required", "Content-Length")
        if len(set(v.strip() for v in raw)) > 1 or not _DIGITS.fullmatch(raw[0].strip()):
            raise ApiError(400, "bad Content-Length {!r}".format(", ".join(raw)), "Content-Length")
        length, limit = int(raw[0].strip()), self.server.intake.max_body_bytes
        if length > limit:
            raise ApiError(413, "request body of {:.1f} MB is over this agent's limit of {:.0f} MB "
                                "(--max-body-mb)".format(length / 2.0 ** 20, limit / 2.0 ** 20), "onnx")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "send Content-Type: application/json with the model as base64 in 'onnx'",
                           "Content-Type")
        return length

    def _submit(self, doc):
        unknown = sorted(set(doc) - set(BODY_KEYS))
        if unknown:
            raise ApiError(400, "unknown body field {!r} (known: {})".format(unknown[0], ", ".join(BODY_KEYS)),
                           unknown[0])
        server = self.server
        options = parse_options(doc.get("options") or {}, server.limits)
        name = doc.get("name") if isinstance(doc.get("name"), str) else None
        backend = server.backends[options["backend"]]
        if not backend["available"]:
            raise ApiError(400, "backend {} is not available on this board: {}".format(
                options["backend"], backend["reason"]), "backend")
        model = decode_model(doc.pop("onnx", None))  # drop the base64 text early: it is the model's size again
        check_onnx(model, options, server.limits)
        if client_gone(self.connection):  # it gave up while we read and checked: no job for nobody
            raise ClientGone()
        try:
            server.worker.reserve()
        except QueueFull as e:
            raise ApiError(429, str(e), None, RETRY_AFTER_S)
        try:
            record = server.store.create(model, options, name=name)
        except BaseException:
            server.worker.unreserve()
            raise
        position = server.worker.submit(record["id"])
        self._created = record["id"]
        return 202, {"job": record["id"], "status": "queued", "position": position,
                     "url": "/v1/jobs/" + record["id"]}

    def _send(self, status, body, headers=None):
        data = (json.dumps(body, default=str) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in sorted((headers or {}).items()):
            self.send_header(key, value)
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
    """The HTTP server: the store, the worker, the token, the limits, and the guard on connections."""

    def __init__(self, address: Tuple[str, int], store: JobStore, worker: Worker, token: Optional[str],
                 require_token: bool, board_root: str, static_facts: Dict[str, Any],
                 backends_found: Dict[str, Dict[str, Any]], limits: "Limits", intake: IntakeLimits) -> None:
        _ThreadingHTTPServer.__init__(self, address, AgentHandler)
        self.store, self.worker = store, worker
        self.token, self.require_token = token, require_token
        self.limits, self.intake = limits, intake
        self.guard = ConnectionGuard(intake.max_connections)
        self.budget = ByteBudget(intake.body_buffer_bytes)
        self.upload_slots = threading.BoundedSemaphore(intake.upload_slots)
        self.board_root, self.static_facts = board_root, static_facts
        self.backends = backends_found
        self.started_at = time.time()
        self._thread = None

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self.guard.admit(request, self.intake.header_timeout_s):
            refuse_connection(request)  # over the cap: answered and closed here, no thread started
            return
        _ThreadingHTTPServer.process_request(self, request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        self.guard.release(request)
        _ThreadingHTTPServer.shutdown_request(self, request)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return "http://{}:{}".format("127.0.0.1" if host == "0.0.0.0" else host, port)

    def device_info(self) -> Dict[str, Any]:
        return {
            "agent": {"version": __version__, "protocol": "v1", "started_at": self.started_at,
                      "queued": self.worker.pending(), "running": self.worker.running(),
                      "max_body_mb": self.intake.max_body_bytes / 2.0 ** 20, "token_required": self.require_token,
                      "limits": self.limits.to_dict(), "intake": self.intake.to_dict(),
                      "connections": self.guard.open, "connections_timed_out": self.guard.expired},
            "board": dict(self.static_facts, **board.dynamic_facts(self.board_root)),
            "backends": self.backends,
        }

    def start(self) -> "AgentServer":
        """Serve on a background thread (tests, embedding); `close()` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="edgeprune-agent-http")
        self._thread.daemon = True
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.worker.stop()
        self.guard.close()
        self.server_close()
