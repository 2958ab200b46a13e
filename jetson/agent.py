"""The profiling agent: an HTTP JSON service that times ONNX models on this board for the host's pruning search.

    GET    /v1/device         board facts, available backends, agent version and limits
    POST   /v1/profile        JSON {"onnx": "<base64 model>", "name": "...", "options": {...}}  → 202 {"job": id}
    GET    /v1/jobs/<id>      status queued | running | done | failed | cancelled, with the result or the error
    DELETE /v1/jobs/<id>      cancel a queued job, stop a running one at its next check between runs
    GET    /v1/jobs           every job the agent remembers (id, status)

Errors are `{"error": "...", "field": name or null}` with a 4xx status (503 when busy, with `Retry-After`; 500
only for a bug); the agent keeps serving after any of them. Models are checked when submitted, so a file that is
not ONNX gets 400, not a failed job. Measurements run one at a time on one worker thread; requests are answered
meanwhile. How uploads are taken in: jetson/intake.py; memory limits: jetson/limits.py; the worker, time limits
and cancellation: jetson/worker.py. docs/jetson.md has the whole protocol with examples.

Run it from the repository root (not installed: NVIDIA's jetson-inference owns `import jetson`):

    python3 -m jetson.agent --host 0.0.0.0 --port 8765 --state-dir ~/.edgeprune-agent   # token from the env
"""

import sys

from .checks import check_onnx, protobuf_fields  # noqa: F401 (re-exported for callers of jetson.agent)
from .serve import main, serve  # noqa: F401 (serve: re-exported, the way tests and embedders start an agent)
from .server import AgentServer  # noqa: F401 (re-exported)

if __name__ == "__main__":
    sys.exit(main())
