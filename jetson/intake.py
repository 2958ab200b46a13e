"""How the agent takes requests in without letting a slow or hostile client hold what others need.

- **Connections** are capped (`max_connections`); one over the cap gets 503 with `Retry-After` at once and is
  closed, without a handler thread.
- **Deadlines per phase.** Every connection has a deadline for the phase it is in: request line and headers
  (`header_timeout_s`), the body (`body_idle_s` plus the declared size at `body_min_rate_kbs`), the answer. A
  watchdog thread shuts down the socket of a connection past its deadline, so a client sending one byte now and
  then cannot keep a thread; between two bytes the socket's own timeout (`body_idle_s`) applies.
- **Bodies are read before anything scarce is taken.** The bytes of bodies in memory at once are bounded
  (`body_buffer_mb`) and reserved as they arrive, never from the declared Content-Length, so a client that
  declares 100 MB and sends nothing holds nothing. The two decode slots (base64, ONNX parse and check) are
  taken only once a body is complete; a wait for either past `upload_wait_s` is answered 503 with `Retry-After`.
- **A client that went away gets no job**: the connection is checked for EOF before the job is created, and a
  job whose 202 answer cannot be delivered is cancelled.
"""

import io
import json
import select
import socket
import threading
import time
from typing import Any, Dict, Optional, Tuple

CHUNK = 1 << 16
RETRY_AFTER_S = 5


class ApiError(Exception):
    """An HTTP error answer: status, message, the field at fault, and `retry_after` seconds for 429/503."""

    def __init__(self, status: int, message: str, field: Optional[str] = None,
                 retry_after: Optional[float] = None) -> None:
        Exception.__init__(self, message)
        self.status, self.message, self.field, self.retry_after = status, message, field, retry_after


class ClientGone(Exception):
    """The client closed or reset the connection: there is nobody to answer."""


class IntakeLimits(object):
    """Connection and body bounds (sizes in MB, times in seconds)."""

    def __init__(self, max_body_mb: float = 512.0, body_buffer_mb: Optional[float] = None, max_connections: int = 64,
                 header_timeout_s: float = 20.0, body_idle_s: float = 15.0, body_min_rate_kbs: float = 64.0,
                 upload_wait_s: float = 10.0, upload_slots: int = 2) -> None:
        self.max_body_bytes = int(max_body_mb * 2 ** 20)
        self.body_buffer_bytes = int((body_buffer_mb or 2 * max_body_mb) * 2 ** 20)
        self.max_connections = int(max_connections)
        self.header_timeout_s = float(header_timeout_s)
        self.body_idle_s = float(body_idle_s)
        self.body_min_rate = float(body_min_rate_kbs) * 1024.0  # bytes per second
        self.upload_wait_s = float(upload_wait_s)
        self.upload_slots = int(upload_slots)

    def body_deadline_s(self, length: int) -> float:
        """Seconds a body of `length` bytes may take in all: the idle allowance plus its size at the minimum rate."""
        return self.body_idle_s + length / self.body_min_rate

    def to_dict(self) -> Dict[str, Any]:
        return {"max_body_mb": self.max_body_bytes / 2.0 ** 20, "body_buffer_mb": self.body_buffer_bytes / 2.0 ** 20,
                "max_connections": self.max_connections, "header_timeout_s": self.header_timeout_s,
                "body_idle_s": self.body_idle_s, "body_min_rate_kbs": self.body_min_rate / 1024.0,
                "upload_wait_s": self.upload_wait_s, "upload_slots": self.upload_slots}


class ByteBudget(object):
    """A pool of bytes that request bodies reserve as they arrive."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used = int(capacity), 0
        self._cond = threading.Condition()

    def take(self, n: int, timeout: float) -> bool:
        """Reserve `n` bytes, waiting up to `timeout` seconds; False when they did not become free."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.used + n > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or n > self.capacity:
                    return False
                self._cond.wait(left)
            self.used += n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._cond:
                self.used = max(0, self.used - n)
                self._cond.notify_all()


class ConnectionGuard(object):
    """At most `limit` connections at once, each with a deadline for its current phase (see the module
    docstring); one watchdog thread shuts down the sockets past their deadline."""

    def __init__(self, limit: int, tick_s: float = 0.25) -> None:
        self.limit, self.tick_s = int(limit), float(tick_s)
        self._deadlines = {}  # socket → monotonic deadline or None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.expired = 0  # connections shut down for a missed deadline (reported at /v1/device)
        self._thread = threading.Thread(target=self._watch, name="edgeprune-connection-watchdog")
        self._thread.daemon = True
        self._thread.start()

    def admit(self, sock: socket.socket, seconds: float) -> bool:
        with self._lock:
            if len(self._deadlines) >= self.limit:
                return False
            self._deadlines[sock] = time.monotonic() + seconds
            return True

    def deadline(self, sock: socket.socket, seconds: Optional[float]) -> None:
        """The current phase of `sock` must end within `seconds` (None: no deadline, the agent's own work)."""
        with self._lock:
            if sock in self._deadlines:
                self._deadlines[sock] = None if seconds is None else time.monotonic() + seconds

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._deadlines)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2.0)

    def _watch(self):
        while not self._closed.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                late = [s for s, d in self._deadlines.items() if d is not None and d < now]
                for s in late:
                    self._deadlines[s] = None  # shut down once
            for s in late:
                self.expired += 1
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def refuse_connection(sock: socket.socket, retry_after: float = RETRY_AFTER_S) -> None:
    """Answer 503 to a connection over the cap without blocking the accepting thread, then close it."""
    body = json.dumps({"error": "too many connections to this agent: retry in {} s".format(retry_after),
                       "field": None}).encode("utf-8") + b"\n"
    head = ("HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
            "Retry-After: {}\r\nConnection: close\r\n\r\n".format(len(body), retry_after)).encode("ascii")
    try:
        sock.setblocking(False)
        sock.send(head + body)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def read_body(rfile: io.BufferedReader, length: int, budget: ByteBudget, limits: IntakeLimits) -> Tuple[bytearray, int]:
    """(body as a bytearray, bytes reserved in `budget`) for a body of `length` bytes.

    ApiError 408 when the client stalls past `body_idle_s` or the whole body takes longer than its deadline,
    400 when it ends early, 503 when the body buffer stays full past `upload_wait_s`. The caller gives the
    reserved bytes back once it is done with the body; on an error they are given back here."""
    deadline = time.monotonic() + limits.body_deadline_s(length)
    body, held = bytearray(), 0
    try:
        while len(body) < length:
            if time.monotonic() > deadline:
                raise ApiError(408, "the request body took longer than {:.0f} s for {} bytes: send it faster "
                                    "than {:.0f} KB/s".format(limits.body_deadline_s(length), length,
                                                             limits.body_min_rate / 1024.0))
            want = min(CHUNK, length - len(body))
            if not budget.take(want, limits.upload_wait_s):
                raise ApiError(503, "the agent is receiving too many uploads at once: retry in {} s"
                               .format(RETRY_AFTER_S), retry_after=RETRY_AFTER_S)
            held += want
            try:
                chunk = rfile.read1(want)
            except socket.timeout:
                raise ApiError(408, "no byte of the request body for {:.0f} s".format(limits.body_idle_s))
            except OSError:
                raise ClientGone()
            if not chunk:
                raise ApiError(400, "request body ended after {} of {} bytes".format(len(body), length))
            budget.give(want - len(chunk))
            held -= want - len(chunk)
            body.extend(chunk)
        return body, held
    except BaseException:
        budget.give(held)
        raise


def client_gone(sock: socket.socket) -> bool:
    """True when the client has closed its side (EOF is waiting) or the socket is broken."""
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
