"""The agent's state on disk: one JSON file per job, the models waiting to be measured, and the engine cache.

Layout of the state dir:

    jobs/<id>.json          the job record (options, status, result or error), rewritten atomically on each change
    models/<id>.onnx        the submitted model until its job ends
    engines/<key>.engine    TensorRT engines keyed by (ONNX sha256, options that change the engine, TensorRT version)
    engines/<key>.engine.json   how it was built (deploy.trt_build's sidecar; none when trtexec built it)
    engines/timing-<trt>.cache   TensorRT's timing cache, shared by all builds of one TensorRT version

Jobs that were queued or running when the agent stopped cannot be resumed (their process is gone): `JobStore`
marks them failed with the reason when it opens the state dir again. Finished jobs are kept.
"""

import copy
import hashlib
import json
import os
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Union

from deploy.files import write_atomic, write_json_atomic

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = ("done", "failed", "cancelled")


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class JobStore(object):
    """Job records in memory and on disk; thread-safe (request threads read while the worker writes)."""

    def __init__(self, state_dir: Union[str, os.PathLike], keep_jobs: int = 5000) -> None:
        self.state_dir = os.path.abspath(os.path.expanduser(str(state_dir)))
        self.jobs_dir = os.path.join(self.state_dir, "jobs")
        self.models_dir = os.path.join(self.state_dir, "models")
        for d in (self.jobs_dir, self.models_dir):
            os.makedirs(d, exist_ok=True)
        self.keep_jobs = keep_jobs
        self._lock = threading.Lock()
        self._jobs = {}
        self.recovered = self._load()

    def _load(self):
        """Read every job file; mark the ones a previous run left unfinished as failed. Returns their ids."""
        interrupted = []
        for name in sorted(os.listdir(self.jobs_dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.jobs_dir, name)) as f:
                    record = json.load(f)
                job_id = record["id"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours, or damaged: leave the file for a person to look at
            if record.get("status") not in FINISHED:
                record["error"] = {"message": "the agent stopped before this job finished (it was {}); submit "
                                              "the model again".format(record.get("status"))}
                record.update(status="failed", finished_at=time.time())
                write_json_atomic(self._job_path(job_id), record)
                interrupted.append(job_id)
            self._jobs[job_id] = record
        for name in os.listdir(self.models_dir):  # models of jobs that will never run
            _remove(os.path.join(self.models_dir, name))
        return interrupted

    def _job_path(self, job_id):
        return os.path.join(self.jobs_dir, job_id + ".json")

    def model_path(self, job_id: str) -> str:
        return os.path.join(self.models_dir, job_id + ".onnx")

    def create(self, model_bytes: bytes, options: Dict[str, Any], name: Optional[str] = None) -> Dict[str, Any]:
        """Store the model and a queued record; returns the record."""
        job_id = uuid.uuid4().hex
        write_atomic(self.model_path(job_id), model_bytes)
        record = {
            "id": job_id, "status": "queued", "options": options,
            "model": {"name": name, "bytes": len(model_bytes), "sha256": hashlib.sha256(model_bytes).hexdigest()},
            "submitted_at": time.time(), "started_at": None, "finished_at": None,
            "result": None, "error": None, "device": None,
        }
        with self._lock:
            self._jobs[job_id] = record
            write_json_atomic(self._job_path(job_id), record)
        return copy.deepcopy(record)

    def update(self, job_id: str, **changes: Any) -> Dict[str, Any]:
        with self._lock:
            record = self._jobs[job_id]
            record.update(changes)
            write_json_atomic(self._job_path(job_id), record)
            snapshot = copy.deepcopy(record)
        if changes.get("status") in FINISHED:
            _remove(self.model_path(job_id))
            self._forget_old()
        return snapshot

    def get(self, job_id: Optional[str]) -> Optional[Dict[str, Any]]:
        if not _JOB_ID.match(job_id or ""):
            return None
        with self._lock:
            record = self._jobs.get(job_id)
            return copy.deepcopy(record) if record is not None else None

    def summaries(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [{"id": r["id"], "status": r["status"], "submitted_at": r["submitted_at"],
                     "model": r["model"].get("name")} for r in self._jobs.values()]

    def _forget_old(self):
        """Keep at most `keep_jobs` finished jobs (a search submits hundreds; a board runs for months)."""
        with self._lock:
            done = sorted((r["finished_at"] or 0, i) for i, r in self._jobs.items() if r["status"] in FINISHED)
            for _t, job_id in done[:max(0, len(done) - self.keep_jobs)]:
                del self._jobs[job_id]
                _remove(self._job_path(job_id))


def engine_key(onnx_sha256: str, options: Dict[str, Any], trt_version: str) -> str:
    """Hash of everything that changes the engine TensorRT builds from one ONNX file."""
    parts = {"onnx": onnx_sha256, "tensorrt": trt_version, "precision": options.get("precision"),
             "input_shape": options.get("input_shape"), "workspace_mb": options.get("workspace_mb"),
             "dla_core": options.get("dla_core")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


class EngineCache(object):
    """Engines on disk, least recently used ones removed beyond `max_mb`."""

    def __init__(self, folder: Union[str, os.PathLike], max_mb: int = 4096) -> None:
        self.folder = os.path.abspath(os.path.expanduser(str(folder)))
        os.makedirs(self.folder, exist_ok=True)
        self.max_bytes = int(max_mb) * 1024 * 1024

    def path(self, key: str) -> str:
        return os.path.join(self.folder, key + ".engine")

    def timing_cache(self, trt_version: str) -> str:
        return os.path.join(self.folder, "timing-{}.cache".format(re.sub(r"[^\w.]", "_", str(trt_version))))

    def lookup(self, key: str) -> Optional[str]:
        """The engine's path if cached (and marks it recently used), else None."""
        path = self.path(key)
        if not os.path.exists(path):
            return None
        os.utime(path, None)
        return path

    def scratch_path(self, name: str) -> str:
        """A private file in the cache folder for work in progress (a build's output before it is renamed)."""
        return os.path.join(self.folder, ".{}-{}".format(os.getpid(), name))

    def added(self, key: str) -> None:
        """After an engine was written under `key`: drop the least recently used others beyond the size limit."""
        engines = []
        for name in os.listdir(self.folder):
            if name.endswith(".engine") and not name.startswith("."):
                p = os.path.join(self.folder, name)
                engines.append((os.path.getmtime(p), os.path.getsize(p), p))
        total = sum(size for _t, size, _p in engines)
        for _t, size, p in sorted(engines):
            if total <= self.max_bytes:
                break
            if os.path.basename(p) != key + ".engine":
                _remove(p)
                _remove(p + ".json")  # the sidecar deploy.trt_build writes next to an engine
                total -= size
