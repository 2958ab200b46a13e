"""The single worker that runs jobs in submission order, with a queue limit, a time limit per job and cancellation.

One measurement at a time: two timings at once on one board would each measure the other.

- **Queue limit**: at most `max_queued` jobs wait (the running one not counted); `reserve()` raises QueueFull
  beyond it, which the agent answers with 429 and `Retry-After`.
- **Time limit**: a job's clock starts when it starts running; past `time_limit_s` it is stopped and recorded
  `failed` with error type `TimeLimitExceeded`.
- **Cancel** (`DELETE /v1/jobs/<id>`): a queued job leaves the queue at once; a running one is asked to stop and
  is recorded `cancelled` (error type `Cancelled`) when it does.

Stopping is cooperative: the runners ask `JobControl` between two runs (deploy's `stop` argument), and a trtexec
run is killed (jetson/trtexec_run.py). A TensorRT engine build through the Python API cannot be interrupted:
a job cancelled or out of time during one stops as soon as the build returns, before any timing.
"""

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from deploy.stats import TimingStopped

if TYPE_CHECKING:
    from .backends import MeasureEnv
    from .store import JobStore

log = logging.getLogger("edgeprune.agent")
STOPPED = "the agent stopped before this job finished"  # the host's remote backend resubmits on this text


class QueueFull(Exception):
    def __init__(self, queued: int, limit: int) -> None:
        Exception.__init__(self, "{} jobs are waiting, this agent's limit (--max-queued {}): retry later"
                           .format(queued, limit))
        self.queued, self.limit = queued, limit


class JobControl(object):
    """The `stop` callable of one running job: None while it may go on, else the reason to stop."""

    def __init__(self, job_id: str, time_limit_s: float) -> None:
        self.job_id = job_id
        self.time_limit_s = float(time_limit_s)
        self.deadline = time.monotonic() + self.time_limit_s
        self.reason, self.status, self.error_type = None, None, None

    def cancel(self, reason: str, status: str = "cancelled", error_type: str = "Cancelled") -> None:
        if self.reason is None:
            self.reason, self.status, self.error_type = reason, status, error_type

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def __call__(self) -> Optional[str]:
        if self.reason:
            return self.reason
        if time.monotonic() >= self.deadline:
            self.cancel("the job ran past its time limit of {:g} s (option time_limit_s)".format(self.time_limit_s),
                        "failed", "TimeLimitExceeded")
            return self.reason
        return None


def describe_error(e: BaseException) -> Dict[str, Any]:
    """A failed job's error: the message, and TensorRT's log lines when an engine build failed."""
    error = {"message": str(e) or type(e).__name__, "type": type(e).__name__}
    lines = getattr(e, "log_lines", None)
    if lines:
        error["log"] = [str(x) for x in list(lines)[-200:]]
    return error


class Worker(object):
    """Runs jobs one at a time on one thread (module docstring). `measure` is jetson.jobs.measure."""

    def __init__(self, store: "JobStore", env: "MeasureEnv", fingerprint: Callable[[], Dict[str, Any]],
                 measure: Callable[..., Dict[str, Any]], max_queued: int = 64) -> None:
        self.store, self.env, self.measure = store, env, measure
        self.fingerprint = fingerprint  # callable: the device facts stored with each result
        self.max_queued = int(max_queued)
        self._cond = threading.Condition()
        self._queue = collections.deque()
        self._reserved = 0
        self._running = None  # JobControl of the job in progress
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="edgeprune-worker")
        self._thread.daemon = True

    def start(self) -> "Worker":
        self._thread.start()
        return self

    def reserve(self) -> None:
        """Hold a place in the queue for a job about to be created; QueueFull when there is none."""
        with self._cond:
            if len(self._queue) + self._reserved >= self.max_queued:
                raise QueueFull(len(self._queue), self.max_queued)
            self._reserved += 1

    def unreserve(self) -> None:
        with self._cond:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, job_id: str) -> int:
        """Queue a job whose place was reserved; returns the number of jobs waiting, this one included."""
        with self._cond:
            self._reserved = max(0, self._reserved - 1)
            self._queue.append(job_id)
            self._cond.notify_all()
            return len(self._queue)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def running(self) -> Optional[str]:
        with self._cond:
            return self._running.job_id if self._running else None

    def cancel(self, job_id: str, reason: str) -> Optional[str]:
        """'cancelled' (it was queued), 'cancelling' (it is running and will stop), or None (neither)."""
        with self._cond:
            if job_id in self._queue:
                self._queue.remove(job_id)
            elif self._running is not None and self._running.job_id == job_id:
                self._running.cancel(reason)
                return "cancelling"
            else:
                return None
        self.store.update(job_id, status="cancelled", finished_at=time.time(),
                          error={"message": reason, "type": "Cancelled"}, result=None)
        return "cancelled"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the job in progress at its next check (recorded failed: the host resubmits it) and leave queued
        ones for the restart to mark failed."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            if self._running is not None:
                self._running.cancel(STOPPED + " (it was running): submit the model again", "failed",
                                     "AgentStopped")
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next(self):
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            job_id = self._queue.popleft()
            record = self.store.get(job_id)
            limit = (record or {}).get("options", {}).get("time_limit_s") or self.env.limits.job_time_limit_s
            self._running = JobControl(job_id, limit)
            return self._running

    def _loop(self):
        while True:
            control = self._next()
            if control is None:
                return
            try:
                self._run(control)
            except Exception:  # never let one job stop the worker
                log.exception("job %s: unexpected error", control.job_id)
            finally:
                with self._cond:
                    self._running = None

    def _run(self, control):
        job_id = control.job_id
        record = self.store.update(job_id, status="running", started_at=time.time(), device=self.fingerprint())
        log.info("job %s: %s %s", job_id, record["options"]["backend"], record["model"].get("name"))
        try:
            result = self.measure(self.store.model_path(job_id), record["options"], self.env,
                                  sha256=record["model"]["sha256"], stop=control)
            self.store.update(job_id, status="done", finished_at=time.time(), result=result)
        except TimingStopped as e:
            control()  # a trtexec run killed at the deadline: make sure the reason is recorded
            log.info("job %s stopped: %s", job_id, e)
            self.store.update(job_id, status=control.status or "failed", finished_at=time.time(), result=None,
                              error={"message": str(e), "type": control.error_type or "TimingStopped"})
        except Exception as e:  # the measurement failed, or its result could not be stored
            log.warning("job %s failed: %s", job_id, e)
            self.store.update(job_id, status="failed", finished_at=time.time(), error=describe_error(e),
                              result=None)
