"""Starting the agent: `serve()` (tests, embedding) and the command line of `python3 -m jetson.agent`."""

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Union

from deploy.protocol import TOKEN_ENV

from . import __version__, board
from .backends import MeasureEnv, backends
from .intake import IntakeLimits
from .jobs import measure
from .limits import Limits
from .server import AgentServer
from .store import JobStore
from .worker import Worker

log = logging.getLogger("edgeprune.agent")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _token_policy(host, token, require_token):
    """Whether a token is required: off loopback always (refused without one), on loopback when asked; a token
    given but not required is announced loudly, since it would otherwise be ignored in silence."""
    if require_token is None:
        require_token = not is_loopback(host)
    if require_token and not token:
        raise ValueError("the agent on {} needs a token: pass --token or set {} (or listen on 127.0.0.1)"
                         .format(host, TOKEN_ENV))
    if token and not require_token:
        log.warning("A TOKEN IS SET BUT NOT REQUIRED: the agent listens on loopback (%s) and accepts requests "
                    "without it. Pass --require-token (require_token=True) to enforce it.", host)
    return require_token


def serve(host: str = "127.0.0.1", port: int = 8765, state_dir: Union[str, os.PathLike] = "~/.edgeprune-agent",
          token: Optional[str] = None, require_token: Optional[bool] = None, max_body_mb: float = 512,
          tegrastats: str = "tegrastats", tegrastats_interval_ms: int = 200, trtexec: Optional[str] = None,
          engine_cache_mb: int = 4096, keep_jobs: int = 5000, board_root: str = "/", limits: Optional[Limits] = None,
          intake: Optional[IntakeLimits] = None, measure: Callable[..., Dict[str, Any]] = measure) -> AgentServer:
    """Open the state dir, start the worker and bind the server (port 0: any free port). Returns the server:
    `.serve_forever()` in this thread, or `.start()` for a background thread; `.close()` when done.

    A token is required unless the agent listens on loopback only (`require_token` overrides); listening
    elsewhere without one is refused. `limits` (jetson.limits.Limits: memory, time limits, queue) defaults to
    this board's; `intake` (jetson.intake.IntakeLimits: connections, body deadlines) to `max_body_mb` and the
    documented defaults. `measure` is the job (jetson.jobs.measure); a benchmark of the host's pipeline gives a
    stand-in whose measurement is a fixed sleep (benchmarks/bench_boards.py)."""
    require_token = _token_policy(host, token, require_token)
    limits = limits or Limits.for_board(board_root)
    intake = intake or IntakeLimits(max_body_mb=max_body_mb)
    store = JobStore(state_dir, keep_jobs=keep_jobs)
    if store.recovered:
        log.warning("%d job(s) were unfinished when the agent last stopped: marked failed", len(store.recovered))
    env = MeasureEnv(os.path.join(store.state_dir, "engines"), engine_cache_mb, tegrastats, tegrastats_interval_ms,
                     trtexec, limits)
    static = board.static_facts(board_root)
    worker = Worker(store, env, lambda: board.fingerprint(static, board.dynamic_facts(board_root)), measure,
                    limits.max_queued).start()
    try:
        return AgentServer((host, port), store, worker, token, require_token, board_root, static,
                           backends(trtexec), limits, intake)
    except BaseException:
        worker.stop()
        raise


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _parser():
    p = argparse.ArgumentParser(prog="python3 -m jetson.agent", description="the edgeprune profiling agent "
                                                                            "(docs/jetson.md)")
    a = p.add_argument
    a("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    a("--port", type=int, default=8765, help="0: any free port (logged)")
    a("--state-dir", default="~/.edgeprune-agent", help="jobs, results and the engine cache")
    a("--token", default=os.environ.get(TOKEN_ENV), help="shared secret (default: ${})".format(TOKEN_ENV))
    a("--require-token", action="store_true", help="require the token on loopback too")
    a("--max-body-mb", type=float, default=512, help="largest request accepted (413 above)")
    a("--body-buffer-mb", type=float, default=None, help="request bodies in memory at once (default 2x max body)")
    a("--max-connections", type=int, default=64, help="connections at once (503 above)")
    a("--header-timeout-s", type=float, default=20.0, help="time for a request line and headers")
    a("--body-idle-s", type=float, default=15.0, help="longest wait for one byte of a body (408 after)")
    a("--body-min-rate-kbs", type=float, default=64.0, help="slowest upload accepted, in KB/s (408 below)")
    a("--upload-wait-s", type=float, default=10.0, help="wait for an upload slot before 503")
    a("--max-input-mb", type=float, default=None, help="a model's inputs (default: 1/32 of the board's memory)")
    a("--max-tensor-mb", type=float, default=None, help="one inferred tensor (default: 1/16 of the memory)")
    a("--max-workspace-mb", type=int, default=None, help="largest workspace_mb (default: the board's memory)")
    a("--job-time-limit-s", type=float, default=1800.0, help="a job's time limit unless it asks for less or more")
    a("--max-job-time-limit-s", type=float, default=7200.0, help="largest time_limit_s a request may ask for")
    a("--max-queued", type=int, default=64, help="jobs waiting at once (429 above)")
    a("--tegrastats", default="tegrastats", help="tegrastats binary")
    a("--tegrastats-interval-ms", type=int, default=200)
    a("--trtexec", default=None, help="trtexec binary (default: PATH, then /usr/src/tensorrt/bin)")
    a("--engine-cache-mb", type=int, default=4096, help="engines kept on disk, least recent dropped")
    a("--keep-jobs", type=int, default=5000, help="finished jobs remembered")
    a("--log-level", default="INFO")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    limits = Limits.for_board(max_input_mb=a.max_input_mb, max_tensor_mb=a.max_tensor_mb,
                              max_workspace_mb=a.max_workspace_mb, job_time_limit_s=a.job_time_limit_s,
                              max_job_time_limit_s=a.max_job_time_limit_s, max_queued=a.max_queued)
    intake = IntakeLimits(a.max_body_mb, a.body_buffer_mb, a.max_connections, a.header_timeout_s, a.body_idle_s,
                          a.body_min_rate_kbs, a.upload_wait_s)
    try:
        server = serve(a.host, a.port, a.state_dir, a.token, True if a.require_token else None,
                       tegrastats=a.tegrastats, tegrastats_interval_ms=a.tegrastats_interval_ms, trtexec=a.trtexec,
                       engine_cache_mb=a.engine_cache_mb, keep_jobs=a.keep_jobs, limits=limits, intake=intake)
    except (ValueError, OSError) as e:
        print("edgeprune agent: {}".format(e), file=sys.stderr)
        return 2
    ready = sorted(k for k, v in server.backends.items() if v["available"])
    log.info("edgeprune agent %s on %s:%d (%s), state in %s, backends: %s", __version__, a.host,
             server.server_address[1], "token required" if server.require_token else "loopback, no token",
             server.store.state_dir, ", ".join(ready) or "none")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close()
    return 0
