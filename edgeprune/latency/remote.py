"""A client of the jetson agent (docs/jetson.md): `remote://host:port[,host2:port2,...]`, urllib only.

measure_many submits every model first, spreading them over the boards (the board with the fewest jobs in flight
gets the next one, ties in round-robin order), then polls `GET /v1/jobs/<id>` with a growing interval until each
job is done or failed. A board that cannot be reached (refused, reset, timed out, 5xx) is retried with exponential
backoff (`backoff_s`, 2×, 4×, ... for `retries` tries in all); after that it is skipped for the rest of the call and
its unfinished jobs are resubmitted to the other boards. With no board left, or past `total_timeout_s`, every
unfinished measurement fails with a MeasurementError that names the boards and why: the caller never hangs.

A busy board (429: queue full; 503 with Retry-After) is asked again after the time it names, not counted as failing.
Jobs carry `time_limit_s` when set (a job past it fails TimeLimitExceeded: not retried). Jobs the call no longer
needs are cancelled on their board (DELETE /v1/jobs/<id>) when the call ends by timeout, with no board left, by
an exception (KeyboardInterrupt too) or by `cancel()` from another thread (a pruned search trial), and when a job
moves to another board.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from deploy.protocol import TOKEN_ENV, default_precision
from deploy.stats import LatencyStats

from .base import LatencyBackend, MeasurementError, Shape, all_measured, normalize_shape

# Board facts that make two figures comparable (jetson.board.fingerprint without the hostname: identical boards
# in a farm share cached figures).
DEVICE_FACTS = ("model", "l4t", "jetpack", "tensorrt", "cuda")
STOPPED = "agent stopped before this job finished"


class BoardDown(Exception):
    """The board did not answer (connection refused/reset, timeout, 5xx)."""


class Rejected(Exception):
    """The board answered 4xx: the request (model, options, token) is wrong, retrying will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Busy(Exception):
    """The board is up but cannot take the job now (429, or 503 with Retry-After): ask again after `retry_after`."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Agent options a spec may carry after "?", e.g. remote://tx2:8765?backend=trtexec&precision=int8, and their types.
SPEC_OPTIONS = {"backend": str, "precision": str, "workspace_mb": int, "dla_core": int, "time_limit_s": float}


def spec_options(spec: str) -> dict:
    """The options in a spec's query: "remote://h:p?backend=onnxruntime" → {"backend": "onnxruntime"}."""
    from urllib.parse import parse_qsl

    _, _, query = spec.partition("?")
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SPEC_OPTIONS:
            raise ValueError(f"unknown option {key!r} in {spec!r}: use {', '.join(SPEC_OPTIONS)}")
        options[key] = SPEC_OPTIONS[key](value)
    return options


def parse_hosts(spec: str) -> list[str]:
    """["host:port", ...] from "remote://host:port,host2:port2[?options]" (or without the scheme)."""
    body = spec.removeprefix("remote://").partition("?")[0]
    hosts = [h.strip().rstrip("/") for h in body.split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"no board in {spec!r}: use remote://host:port[,host2:port2]")
    for h in hosts:
        host, _, port = h.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"board {h!r} in {spec!r} is not host:port (e.g. remote://tx2.local:8765)")
    return hosts


@dataclass
class Board:
    address: str
    failures: int = 0        # consecutive failed requests
    retry_at: float = 0.0    # monotonic time before which the board is left alone (backoff)
    dead: str | None = None  # why it is skipped for the rest of the call
    in_flight: int = 0
    jobs_submitted: int = 0
    errors: list[str] = field(default_factory=list)


class RemoteBackend(LatencyBackend):
    name = "remote"
    off_host = True  # the boards measure; the host screens the next round meanwhile (search/rounds.py)
    parallel = property(lambda self: len(self.hosts))  # one model per board at a time

    def __init__(self, hosts: str | list[str], token: str | None = None, backend: str = "trt",
                 precision: str | None = None, warmup: int = 10, iterations: int = 100, threads: int | None = None,
                 workspace_mb: int | None = None, dla_core: int | None = None, tegrastats: bool = False,
                 time_limit_s: float | None = None,
                 request_timeout_s: float = 30.0, total_timeout_s: float = 3600.0, retries: int = 3,
                 backoff_s: float = 0.5, poll_s: float = 0.05, max_poll_s: float = 2.0, max_resubmits: int = 2) -> None:
        self.hosts = parse_hosts(hosts) if isinstance(hosts, str) else [h for h in hosts]
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.options = {"backend": backend, "precision": precision or default_precision(backend),
                        "warmup": int(warmup), "iterations": int(iterations), "tegrastats": bool(tegrastats)}
        if threads is not None:
            self.options["threads"] = int(threads)
        if workspace_mb is not None:
            self.options["workspace_mb"] = int(workspace_mb)
        if dla_core is not None:
            self.options["dla_core"] = int(dla_core)
        if time_limit_s is not None:  # the agent's own default (30 min) applies otherwise
            self.options["time_limit_s"] = float(time_limit_s)
        self._cancel = threading.Event()
        self.request_timeout_s, self.total_timeout_s = float(request_timeout_s), float(total_timeout_s)
        self.retries, self.backoff_s = max(1, int(retries)), float(backoff_s)
        self.poll_s, self.max_poll_s, self.max_resubmits = float(poll_s), float(max_poll_s), int(max_resubmits)
        self._fingerprint: dict | None = None
        self.last_boards: list[Board] = []  # the boards' state after the last call (jobs per board, errors)

    # --- HTTP -------------------------------------------------------------------------------------------------
    def _call(self, address: str, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["X-Edgeprune-Token"] = self.token
        req = urllib.request.Request(f"http://{address}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout_s) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read().decode("utf-8")).get("error") or str(e)
            except Exception:  # noqa: BLE001 - a non-JSON error page: keep the HTTP reason
                message = str(e)
            retry_after = (e.headers or {}).get("Retry-After")
            if e.code == 429 or (e.code == 503 and retry_after):
                raise Busy(_seconds(retry_after), f"HTTP {e.code}: {message}") from None
            if e.code >= 500:
                raise BoardDown(f"HTTP {e.code}: {message}") from None
            raise Rejected(e.code, message) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise BoardDown(f"{type(reason).__name__}: {reason}") from None

    def cancel(self) -> None:
        """Stop the measure_many call in progress (from another thread): its jobs are cancelled on their boards and
        its unfinished measurements fail with reason "cancelled". A call that starts later is not affected."""
        self._cancel.set()

    def _forget(self, board: Board, job_id: str) -> None:
        """DELETE a job the call no longer needs, best effort (a finished or unknown job answers 409/404)."""
        if board.dead:
            return
        try:
            self._call(board.address, "DELETE", f"/v1/jobs/{job_id}")
        except (BoardDown, Rejected, Busy):
            pass

    def _fail(self, board: Board, error: str) -> None:
        board.failures += 1
        board.errors.append(error)
        if board.failures >= self.retries:
            board.dead = f"{error} (after {board.failures} tries)"
        else:
            board.retry_at = time.monotonic() + self.backoff_s * 2 ** (board.failures - 1)

    # --- fingerprint ------------------------------------------------------------------------------------------
    def device_facts(self, address: str) -> dict:
        info = self._call(address, "GET", "/v1/device")
        b = info.get("board") or {}
        mode = b.get("power_mode") or {}
        facts = {k: b.get(k) for k in DEVICE_FACTS}
        facts.update(power_mode=mode.get("name") if isinstance(mode, dict) else mode,
                     clocks_pinned=(b.get("clocks") or {}).get("pinned") if isinstance(b.get("clocks"), dict) else None)
        backend = (info.get("backends") or {}).get(self.options["backend"]) or {}
        if backend.get("version"):
            facts["backend_version"] = backend["version"]
        return facts

    def fingerprint(self) -> dict:
        """The boards' facts (/v1/device: model, L4T, JetPack, TensorRT, CUDA, power mode, clocks pinned) and the
        options. Boards that differ are all listed; a board that does not answer is left out."""
        if self._fingerprint is None:
            facts, errors = [], []
            for address in self.hosts:
                try:
                    f = self.device_facts(address)
                except (BoardDown, Rejected) as e:
                    errors.append(f"{address}: {e}")
                    continue
                if f not in facts:
                    facts.append(f)
            if not facts:
                raise MeasurementError("no board answered GET /v1/device: " + "; ".join(errors), "remote",
                                       "no board")
            facts.sort(key=lambda f: json.dumps(f, sort_keys=True, default=str))
            opts = {k: v for k, v in self.options.items()
                    if k not in ("warmup", "iterations", "tegrastats", "time_limit_s")}
            self._fingerprint = {"backend": "remote", "boards": facts, "options": opts}
        return self._fingerprint

    # --- measuring --------------------------------------------------------------------------------------------
    def measure(self, onnx: bytes, input_shape: Shape) -> LatencyStats:
        return self.measure_many([(onnx, input_shape)])[0]

    def measure_many(self, items: list[tuple[bytes, Shape]], return_exceptions: bool = False) -> list:
        """Results in the order of `items`. A measurement that failed raises MeasurementError (the first one;
        `.results` holds every result or error) unless `return_exceptions`, which puts the errors in the list."""
        results = self._run([(bytes(o), normalize_shape(s)) for o, s in items])
        return results if return_exceptions else all_measured(results)

    def _pick(self, boards: list[Board], now: float, turn: int) -> Board | None:
        ready = [b for b in boards if not b.dead and b.retry_at <= now]
        if not ready:
            return None
        n = len(boards)
        return min(ready, key=lambda b: (b.in_flight, (boards.index(b) - turn) % n))

    def _run(self, items: list[tuple[bytes, Shape]]) -> list:
        self._cancel.clear()
        run = _Run(self, items)
        self.last_boards = run.boards
        try:
            while (run.pending or run.jobs) and not run.ended():
                run.submit_pending()
                run.sleep(run.poll_jobs())
        finally:
            run.forget_unfinished()  # jobs still on a board when the call ends (timeout, error, cancel)
        return run.results

    def _stats(self, rec: dict, board: Board) -> LatencyStats:
        result = rec.get("result") or {}
        stats = LatencyStats.from_dict(result["latency"])
        stats.info.update(backend="remote", board=board.address, job=rec.get("id"), device=rec.get("device"),
                          options=rec.get("options"), engine=result.get("engine"),
                          tegrastats=result.get("tegrastats"))
        return stats


def _seconds(retry_after: str | None) -> float:
    """Seconds from a Retry-After header (a number; an HTTP date or junk: 5 s)."""
    try:
        return min(max(float(retry_after), 0.0), 60.0)
    except (TypeError, ValueError):
        return 5.0


class _Run:
    """The state of one measure_many call: what waits to be submitted, what runs where, the results."""

    def __init__(self, backend: RemoteBackend, items: list[tuple[bytes, Shape]]) -> None:
        self.backend, self.items = backend, items
        self.boards = [Board(a) for a in backend.hosts]
        self.results: list = [None] * len(items)
        self.pending = list(range(len(items)))          # to submit
        self.jobs: dict[int, tuple[Board, str]] = {}    # submitted: index -> (board, job id)
        self.resubmits = [0] * len(items)
        self.bodies: dict[int, dict] = {}
        self.deadline = time.monotonic() + backend.total_timeout_s
        self.poll, self.turn = backend.poll_s, 0

    def give_up(self, i: int, message: str, reason: str) -> None:
        what = f"model #{i} ({len(self.items[i][0])} bytes, input {list(self.items[i][1])})"
        self.results[i] = MeasurementError(f"remote measurement of {what} failed: {message}", what, reason)

    def give_up_all(self, message: str, reason: str) -> None:
        for i in self.pending + list(self.jobs):
            self.give_up(i, message, reason)
        self.pending = []

    def requeue(self, i: int, why: str) -> None:
        board, job_id = self.jobs.pop(i)
        board.in_flight -= 1
        self.backend._forget(board, job_id)  # it may still be running there: free the board
        self.resubmits[i] += 1
        if self.resubmits[i] > self.backend.max_resubmits:
            self.give_up(i, f"resubmitted {self.backend.max_resubmits} times; last: {why}", why)
        else:
            self.pending.append(i)

    def ended(self) -> bool:
        """Give up every unfinished measurement when cancelled, out of boards or out of time."""
        if self.backend._cancel.is_set():
            self.give_up_all("cancelled (RemoteBackend.cancel())", "cancelled")
        elif not any(b.dead is None for b in self.boards):
            gone = "; ".join(f"{b.address}: {b.dead}" for b in self.boards)
            self.give_up_all(f"no board left ({gone})", "no board")
        elif time.monotonic() > self.deadline:
            self.give_up_all(f"not finished within total_timeout_s={self.backend.total_timeout_s:g} s", "timeout")
        else:
            return False
        return True

    def forget_unfinished(self) -> None:
        for board, job_id in self.jobs.values():
            self.backend._forget(board, job_id)
            board.in_flight -= 1
        self.jobs.clear()

    def body(self, i: int) -> dict:
        if i not in self.bodies:
            onnx, shape = self.items[i]
            self.bodies[i] = {"onnx": base64.b64encode(onnx).decode("ascii"), "name": f"candidate-{i}.onnx",
                              "options": dict(self.backend.options, input_shape=list(shape))}
        return self.bodies[i]

    def submit_pending(self) -> None:
        """Submit everything that waits, each to the least busy reachable board."""
        b = self.backend
        for i in list(self.pending):
            board = b._pick(self.boards, time.monotonic(), self.turn)
            if board is None:
                return
            self.turn += 1
            try:
                reply = b._call(board.address, "POST", "/v1/profile", self.body(i))
            except Busy as e:  # its queue is full: that board waits, the next model may go elsewhere
                board.retry_at = time.monotonic() + e.retry_after
                continue
            except BoardDown as e:
                b._fail(board, str(e))
                continue
            except Rejected as e:
                if e.status in (401, 403):  # wrong token on this board: the others may still take it
                    board.dead = f"token refused (HTTP {e.status}: {e})"
                    continue
                self.pending.remove(i)
                self.give_up(i, f"{board.address} refused it (HTTP {e.status}): {e}", str(e))
                continue
            board.failures = 0
            board.in_flight += 1
            board.jobs_submitted += 1
            self.pending.remove(i)
            self.jobs[i] = (board, reply["job"])

    def poll_jobs(self) -> bool:
        """One GET per job in flight; True when something finished or moved."""
        progressed = False
        for i, (board, job_id) in list(self.jobs.items()):
            if board.dead:
                self.requeue(i, f"{board.address} went away: {board.dead}")
                progressed = True
                continue
            if board.retry_at > time.monotonic():
                continue
            try:
                rec = self.backend._call(board.address, "GET", f"/v1/jobs/{job_id}")
            except (BoardDown, Busy) as e:
                self.backend._fail(board, str(e))
                continue
            except Rejected as e:  # 404: the agent lost the job (state dir wiped): submit again
                self.requeue(i, f"{board.address} answered {e.status} for job {job_id}: {e}")
                progressed = True
                continue
            board.failures = 0
            progressed = self._finished(i, board, job_id, rec) or progressed
        return progressed

    def _finished(self, i: int, board: Board, job_id: str, rec: dict) -> bool:
        status = rec.get("status")
        if status not in ("done", "failed", "cancelled"):
            return False
        if status == "done":
            board.in_flight -= 1
            del self.jobs[i]
            self.results[i] = self.backend._stats(rec, board)
            self.bodies.pop(i, None)
            return True
        err = rec.get("error") or {}
        msg = err.get("message") or str(err)
        if status == "failed" and STOPPED in msg:
            self.requeue(i, f"{board.address}: {msg}")
            return True
        board.in_flight -= 1
        del self.jobs[i]
        log = "\n".join((err.get("log") or [])[-10:]) if isinstance(err.get("log"), list) else ""
        kind = f" ({err['type']})" if err.get("type") in ("TimeLimitExceeded", "Cancelled") else ""
        self.give_up(i, f"{board.address} job {job_id}{kind}: {msg}" + (f"\n{log}" if log else ""), msg)
        return True

    def sleep(self, progressed: bool) -> None:
        if not (self.pending or self.jobs):
            return
        b = self.backend
        self.poll = b.poll_s if progressed else min(self.poll * 1.5, b.max_poll_s)
        now = time.monotonic()
        wake = min([self.poll] + [max(0.0, x.retry_at - now) for x in self.boards if not x.dead and x.retry_at > now])
        b._cancel.wait(max(0.005, min(wake, max(0.0, self.deadline - time.monotonic()) + 0.005)))
