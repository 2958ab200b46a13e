"""Per-node latency from onnxruntime's own profiler, and its sum per module block.

onnxruntime writes a chrome-trace JSON when a session has profiling enabled: one "Session" event `model_run` per
run and one "Node" event `<node name>_kernel_time` per executed node, with its duration in µs. `layer_times` runs
the model, drops the warm-up runs, and takes each node's median over the timed runs. Node names are those of the
*optimised* graph: a fused or layout-converted node is named after one of the nodes it replaces (a Conv fused
with its ReLU after the ReLU) or after its output tensor plus a suffix ("/backbone/stem/conv/Conv_output_0_nchwc").

`by_block` sums node times into module blocks using the names torch.onnx.export gives nodes: the node
"/backbone/stage2/cv1/conv/Conv" belongs to module "backbone.stage2.cv1.conv", so to block "backbone.stage2" at
depth 2. Nodes onnxruntime adds itself (layout reorders, no module path) go to the block "other".

The kernel times exclude the executor's overhead between nodes, so their total is a little under the latency
measured around `session.run`.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["by_block", "layer_times", "module_path"]

_KERNEL = "_kernel_time"
OTHER = "other"


def _session(onnx: bytes | str | Path, threads: int, prefix: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    source = bytes(onnx) if isinstance(onnx, (bytes, bytearray)) else str(onnx)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _profile(onnx: bytes | str | Path, input_shape: tuple[int, ...], threads: int, runs: int) -> list[dict]:
    """Run the model `runs` times with profiling on; return the trace events (the profile file is deleted)."""
    with tempfile.TemporaryDirectory(prefix="edgeprune-ort-profile-") as tmp:
        session = _session(onnx, threads, str(Path(tmp) / "profile"))
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(input_shape, dtype=np.float32)}
        for _ in range(runs):
            session.run(None, feed)
        return json.loads(Path(session.end_profiling()).read_text())


def _per_run(events: list[dict]) -> list[dict[str, float]]:
    """Node kernel times (µs) of each `model_run`, in run order, summed per node name within a run."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    out: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    starts = [start for start, _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(_KERNEL):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i >= 0 and e["ts"] <= runs[i][1]:
            out[i][e["name"][: -len(_KERNEL)]] += float(e["dur"])
    return out


def layer_times(onnx: bytes | str | Path, input_shape: tuple[int, ...], threads: int = 1, runs: int = 20,
                warmup: int = 5) -> dict[str, float]:
    """Median kernel time in **milliseconds** of every node of the optimised graph, over `runs` timed runs
    after `warmup` untimed ones, on onnxruntime's CPU provider with `threads` intra-op threads."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    timed = _per_run(_profile(onnx, tuple(input_shape), threads, warmup + runs))[warmup:]
    if not timed:
        raise RuntimeError("onnxruntime's profile holds no model_run events: cannot time the nodes")
    names = dict.fromkeys(n for run in timed for n in run)  # first-seen order = execution order
    return {n: statistics.median(run.get(n, 0.0) for run in timed) / 1000.0 for n in names}


def module_path(node_name: str) -> list[str]:
    """The module names in a torch.onnx node name: "/neck/out3/m/m.0/cv1/conv/Conv_3" → [neck, out3, m, m.0,
    cv1, conv]. Segments from the first capitalised one on are the op and suffixes onnxruntime adds."""
    if not node_name.startswith("/"):
        return []
    path = []
    for part in node_name.strip("/").split("/"):
        if not part or part[0].isupper():
            break
        path.append(part)
    return path


def by_block(times: dict[str, float], depth: int = 2) -> dict[str, float]:
    """Node times summed per block: the first `depth` module names of each node ("backbone.stage2"); nodes
    without a module path go to "other". Blocks keep the order in which their first node ran."""
    blocks: dict[str, float] = defaultdict(float)
    for name, t in times.items():
        path = module_path(name)
        blocks[".".join(path[:depth]) if path else OTHER] += t
    return dict(blocks)
