"""Parse trtexec's output: the text log (TensorRT 8.2 … 10.x), `--exportTimes` and `--exportProfile` JSON.

Text summary, by version (`=== Performance summary ===`):
- 8.2: `Latency`, `End-to-End Host Latency` (gone in 8.4), `Enqueue Time`, `H2D Latency`, `GPU Compute Time`,
  `D2H Latency`, each `min, max, mean, median, percentile(99%)`;
- 8.4: the same without `End-to-End Host Latency`;
- 8.5 / 8.6 / 10.x: three percentiles `percentile(90%)`, `(95%)`, `(99%)`.
Every `percentile(P%)` item is read, so other `--percentile` choices parse too. A value a version does not print
is NaN (p90 and std from an 8.2 summary), never a guess. A statistic is accepted only from a complete
`key = value ms` item, so a line cut mid-number is rejected, and the log must end with `&&&& PASSED`.

Implicit batch (`--batch=N`: TensorRT ≤ 8.x engines of UFF/Caffe models and old implicit-batch plans): one query is
one batch of N images, every latency is per batch, but trtexec counts images elsewhere: `Throughput` is
`N × queries / walltime` (images/s) and `Timing trace has M queries` / `Warmup completed W queries` print
M and W multiplied by N (TensorRT 8.2's samples/common/sampleReporting.cpp, printEpilog and printPerformanceReport).
The batch is read from the `Batch: N` line of the inference options (`Batch: Explicit` otherwise;
samples/common/sampleOptions.cpp) or from `--batch=N` in the command line that the `&&&&` lines echo. The
statistics then carry `batch=N`, runs count batches, and the info says which figure is per image and which per
batch (`throughput_unit`, `latency_unit`).

`--exportTimes` records (one per query): `startEnqMs endEnqMs startH2dMs … startComputeMs endComputeMs …
h2dMs computeMs d2hMs latencyMs`, plus `endToEndMs` up to 8.2. Up to 8.4 the file also holds the warm-up queries
(8.5 on leaves them out); trtexec itself counts a query as warm-up when its compute started before the warm-up
duration (`startComputeMs < warmUp`, times since the start of inference), and `filter_warmup` applies that same
rule, which leaves an 8.5+ file unchanged.

`--exportProfile`: `[{"count": N}, {"name", "timeMs", "averageMs", "medianMs" (8.4 on), "percentage"}, …]`;
`timeMs` is the total over the N profiled runs. Layer dicts here: name, average_ms, median_ms (None before 8.4),
total_ms, percentage.
"""

import json
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .stats import LatencyStats
from .trt_build import EngineBuildError, version_from_tag

NAN = float("nan")
_STATUS = re.compile(r"^&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\](?: \[b\d+\])? # (.*)$")
_PREFIX = re.compile(r"^(?:\[[^\]]*\] )?\[([IWEVF])\] ?")  # [timestamp] [I] message
_BATCH_ARG = re.compile(r"(?:^|\s)--batch[= ](\d+)(?:\s|$)")
_ITEM = re.compile(r"^\s*(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*"
                   r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*ms\s*$")
METRICS = {  # our key → the summary line's label
    "latency": "Latency",
    "end_to_end": "End-to-End Host Latency",
    "enqueue": "Enqueue Time",
    "h2d": "H2D Latency",
    "gpu_compute": "GPU Compute Time",
    "d2h": "D2H Latency",
}
TIME_KEYS = {"latency": "latencyMs", "gpu_compute": "computeMs", "h2d": "h2dMs", "d2h": "d2hMs",
             "end_to_end": "endToEndMs"}


class TrtexecFailed(EngineBuildError):
    """trtexec reported FAILED; `log_lines` holds its `[E]` lines."""


class TrtexecLog(object):
    """What a trtexec log says. `summary`: metric → {min, max, mean, median, percentiles: {q: ms}}."""

    def __init__(self) -> None:
        self.version = None  # (major, minor, patch) from the &&&& header
        self.status = None  # "PASSED", "FAILED", or None (still running / cut off)
        self.command = None
        self.errors, self.warnings = [], []
        self.summary = {}
        self.throughput_qps = None
        self.runs = None  # "Timing trace has N queries"
        self.warmup_queries = None
        self.total_gpu_s = self.total_host_s = None
        self.device = None
        self.has_summary = False
        self.batch_line = None  # the `Batch:` line of the inference options: an int, "Explicit", or None
        self.batch = None  # images per query with an implicit batch (--batch=N), None for an explicit batch


def command_batch(command: Optional[str]) -> Optional[int]:
    """N from `--batch=N` in a trtexec command line, else None."""
    m = _BATCH_ARG.search(command or "")
    return int(m.group(1)) if m else None


def _implicit_batch(log):
    """The batch trtexec ran: its `Batch: N` line, else `--batch=N` in the echoed command; None when explicit."""
    if isinstance(log.batch_line, int):
        return log.batch_line
    if log.batch_line == "Explicit":
        return None
    return command_batch(log.command)


def _read_text(source):
    if isinstance(source, bytes):
        return source.decode("utf-8", "replace")
    return source


def _parse_items(rest):
    """{'min': .., 'median': .., 'percentiles': {99.0: ..}} from `min = 1 ms, …`; None if any item is broken."""
    out = {"percentiles": {}}
    for item in rest.split(","):
        m = _ITEM.match(item)
        if not m:
            return None
        if m.group(2) is not None:
            out["percentiles"][float(m.group(2))] = float(m.group(3))
        else:
            out[m.group(1)] = float(m.group(3))
    return out if all(k in out for k in ("min", "max", "mean", "median")) else None


def _summary_line(log, msg):
    label, _, rest = msg.partition(": ")
    for key, name in METRICS.items():
        if label == name:
            items = _parse_items(rest)
            if items is not None:
                log.summary[key] = items
            return
    m = re.match(r"^Throughput: ([\d.eE+-]+) qps$", msg)
    if m:
        log.throughput_qps = float(m.group(1))
    m = re.match(r"^Total (GPU Compute Time|Host Walltime): ([\d.eE+-]+) s$", msg)
    if m:
        setattr(log, "total_gpu_s" if m.group(1).startswith("GPU") else "total_host_s", float(m.group(2)))


def _info_line(log, msg):
    if msg.startswith("=== Performance summary ==="):
        log.has_summary = True
    elif log.has_summary:
        _summary_line(log, msg)
    m = re.match(r"^Batch: (\d+|Explicit)$", msg)
    if m and not log.has_summary:
        log.batch_line = int(m.group(1)) if m.group(1).isdigit() else m.group(1)
    m = re.match(r"^Timing trace has (\d+) queries", msg)
    if m:
        log.runs = int(m.group(1))
    m = re.match(r"^Warmup completed (\d+) queries", msg)
    if m:
        log.warmup_queries = int(m.group(1))
    m = re.match(r"^(?:Selected )?Device: (.+)$", msg)
    if m and not m.group(1).strip().isdigit():
        log.device = m.group(1).strip()


def parse_log(source: Union[str, bytes], name: str = "trtexec output") -> TrtexecLog:
    """A TrtexecLog from trtexec's stdout (str or bytes); ValueError when the text is not a trtexec log."""
    text = _read_text(source) or ""
    log, seen = TrtexecLog(), False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = _STATUS.match(line)
        if m:
            seen = True
            log.version = version_from_tag(m.group(2))
            log.command = m.group(3)
            if m.group(1) != "RUNNING":
                log.status = m.group(1)
            continue
        m = _PREFIX.match(line)
        if not m:
            continue
        level, msg = m.group(1), line[m.end():].strip()
        if level in "EF":
            log.errors.append("[E] " + msg)
        elif level == "W":
            log.warnings.append("[W] " + msg)
        elif level == "I":
            _info_line(log, msg)
    log.batch = _implicit_batch(log)
    if not seen and not log.has_summary:
        raise ValueError("{} is not a trtexec log: it has no '&&&& RUNNING/PASSED/FAILED TensorRT.trtexec' line "
                         "and no '=== Performance summary ==='".format(name))
    return log


def summary_stats(source: Union[TrtexecLog, str, bytes], metric: str = "gpu_compute",
                  name: str = "trtexec output") -> LatencyStats:
    """LatencyStats of one summary metric (gpu_compute, latency, end_to_end, enqueue, h2d, d2h) of a log.

    Raises TrtexecFailed for a failed run, ValueError for a log that is cut off or lacks the metric.
    """
    log = source if isinstance(source, TrtexecLog) else parse_log(source, name)
    if log.status == "FAILED":
        raise TrtexecFailed("trtexec failed ({})".format(name), log.errors or ["(trtexec printed no [E] line)"])
    if log.status != "PASSED":
        raise ValueError("{} ends without '&&&& PASSED': the log is truncated or trtexec was killed".format(name))
    if metric not in log.summary:
        raise ValueError("{} has no complete '{}' line in its performance summary (trtexec {}){}".format(
            name, METRICS.get(metric, metric), version_label(log.version),
            "; End-to-End Host Latency exists only up to TensorRT 8.2" if metric == "end_to_end" else ""))
    s = log.summary[metric]
    pct = s["percentiles"]
    runs, estimated = _runs(log)
    info = {"runner": "trtexec", "source": "text summary", "metric": metric, "tensorrt": version_label(log.version),
            "device": log.device, "throughput_qps": log.throughput_qps, "runs_estimated": estimated,
            "percentiles": dict(("{:g}".format(q), v) for q, v in sorted(pct.items())),
            "summary": log.summary}
    info.update(batch_labels(log))
    warmup = (log.warmup_queries or 0) // (log.batch or 1)
    return LatencyStats(s["median"], s["mean"], pct.get(90.0, NAN), pct.get(99.0, NAN), s["min"], s["max"], NAN,
                        runs, warmup=warmup, info=info, batch=log.batch)


def batch_labels(log: TrtexecLog) -> Dict[str, Any]:
    """What trtexec's figures count: per image or per batch (implicit batch), or per query (explicit)."""
    if log.batch:
        return {"batch": log.batch, "implicit_batch": True,
                "throughput_unit": "images/s (trtexec counts the {} images of each batch)".format(log.batch),
                "throughput_batches_per_s": log.throughput_qps / log.batch if log.throughput_qps else None,
                "latency_unit": "ms per batch of {} images".format(log.batch),
                "queries_unit": "images (Timing trace / Warmup counts are divided by the batch for runs)"}
    return {"batch": None, "implicit_batch": False,
            "throughput_unit": "queries/s (one query = one run at the engine's input shape)",
            "latency_unit": "ms per query"}


def _runs(log):
    """Timed runs: from 'Timing trace has N queries' (images with an implicit batch: divided by it), else
    Total GPU Compute Time / mean (flagged)."""
    if log.runs is not None:
        return log.runs // (log.batch or 1), False
    gpu = log.summary.get("gpu_compute")
    if log.total_gpu_s and gpu and gpu["mean"] > 0:
        return int(round(log.total_gpu_s * 1000.0 / gpu["mean"])), True
    return 0, False


def version_label(version: Optional[Sequence[int]]) -> str:
    return ".".join(str(x) for x in version) if version else "unknown version"


# ---------------------------------------------------------------- JSON exports

def _load_json(source, what):
    """Parsed JSON from a path, str/bytes of JSON, or an already parsed list."""
    if isinstance(source, list):
        return source, "the given {}".format(what)
    if isinstance(source, (str, bytes)) and not source.strip():
        raise ValueError("the given {} is empty".format(what))
    text, name = source, "the given {}".format(what)
    if isinstance(source, bytes) or (isinstance(source, str) and source.lstrip()[:1] in ("[", "{")):
        text = _read_text(source)
    else:
        name = str(source)
        with open(name, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    if not text.strip():
        raise ValueError("{} is empty: trtexec did not finish writing its {}".format(name, what))
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError("{} is not valid JSON ({}): not a trtexec {} (or a truncated one)".format(name, e, what))
    if not isinstance(data, list):
        raise ValueError("{} is not a trtexec {}: expected a JSON list".format(name, what))
    return data, name


def parse_export_times(source: Union[str, bytes, os.PathLike, List[Any]]) -> List[Dict[str, Any]]:
    """All records of an --exportTimes file (path, JSON text or list), checked; warm-ups still included."""
    data, name = _load_json(source, "--exportTimes file")
    if not data or not all(isinstance(r, dict) and "computeMs" in r and "startComputeMs" in r for r in data):
        raise ValueError("{} is not a trtexec --exportTimes file: records need computeMs and startComputeMs"
                         .format(name))
    return data


def filter_warmup(records: Iterable[Dict[str, Any]], warmup_ms: float = 200.0) -> List[Dict[str, Any]]:
    """Records whose compute started at or after `warmup_ms` (trtexec's own warm-up rule; 200 ms default)."""
    return [r for r in records if float(r["startComputeMs"]) >= float(warmup_ms)]


def times_stats(source: Union[str, bytes, os.PathLike, List[Any]], metric: str = "gpu_compute",
                warmup_ms: float = 200.0) -> LatencyStats:
    """LatencyStats (with samples) of one per-query metric of an --exportTimes file, warm-ups removed."""
    records = parse_export_times(source)
    timed = filter_warmup(records, warmup_ms)
    if not timed:
        raise ValueError("no --exportTimes record starts after the {} ms warm-up".format(warmup_ms))
    if metric == "enqueue":
        samples = [float(r["endEnqMs"]) - float(r["startEnqMs"]) for r in timed]
    else:
        key = TIME_KEYS.get(metric)
        if key is None or key not in timed[0]:
            raise ValueError("--exportTimes records have no {!r} ({}); keys: {}".format(
                metric, key, ", ".join(sorted(timed[0]))))
        samples = [float(r[key]) for r in timed]
    info = {"runner": "trtexec", "source": "exportTimes", "metric": metric, "warmup_ms": warmup_ms}
    return LatencyStats.from_samples(samples, warmup=len(records) - len(timed), info=info)


def parse_export_profile(source: Union[str, bytes, os.PathLike, List[Any]]) -> Tuple[int, List[Dict[str, Any]]]:
    """(count, layers) from an --exportProfile file; layers as documented in the module docstring."""
    data, name = _load_json(source, "--exportProfile file")
    if not data or not isinstance(data[0], dict) or "count" not in data[0]:
        raise ValueError("{} is not a trtexec --exportProfile file: its first element must be {{\"count\": N}}"
                         .format(name))
    layers = []
    for rec in data[1:]:
        if not isinstance(rec, dict) or "name" not in rec or "averageMs" not in rec:
            raise ValueError("{}: layer record without name/averageMs: {!r}".format(name, rec))
        median = rec.get("medianMs")
        layers.append({"name": rec["name"], "average_ms": float(rec["averageMs"]),
                       "median_ms": float(median) if median is not None else None,
                       "total_ms": float(rec.get("timeMs", NAN)), "percentage": float(rec.get("percentage", NAN))})
    return int(data[0]["count"]), layers
