#!/usr/bin/env python3
"""Build and time ONNX models (or TensorRT engines) on this Jetson; print one table, write it as CSV and JSON.

    python3 benchmarks/board_bench.py yolov5n.onnx yolov5n-p50.onnx --runner trt --precision fp16 \\
        --input-shape 1,3,640,640 --iterations 500 --out benchmarks/results/board_bench

Run from a checkout on the board (torch-free, Python ≥ 3.6). Each model is built (engines are cached, as the
agent caches them), then timed with tegrastats sampling over the timed runs. Columns: model, runner, precision,
median and p99 latency, FPS (images per run × 1000 / median ms), average power of the whole module (W), energy per
frame (mJ = average power W × median ms / images per run), the hottest GPU temperature, the power mode and whether
clocks were pinned.
Where tegrastats is missing (not a Jetson) the power columns say unknown (empty in the CSV, null in the JSON).
Power needs enough timed runs to span several tegrastats intervals: a run shorter than one interval reports the
whole measurement, warm-up included.
"""

import argparse
import csv
import io
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # jetson/ is not installed: it runs from the checkout
    sys.path.insert(0, ROOT)

from deploy.files import write_atomic, write_json_atomic  # noqa: E402
from jetson import board  # noqa: E402
from jetson.jobs import BACKENDS, MeasureEnv, OptionError, backends, measure, parse_options  # noqa: E402

COLUMNS = ("model", "runner", "precision", "median_ms", "p99_ms", "fps", "power_w", "energy_mj", "gpu_temp_c",
           "power_mode", "clocks_pinned", "error")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def pick_runner(requested, trtexec=None):
    if requested != "auto":
        return requested
    found = backends(trtexec)
    return next(b for b in ("trt", "trtexec", "onnxruntime") if found[b]["available"] or b == "onnxruntime")


def gpu_temperature(tegrastats_summary, zones):
    """The hottest GPU reading: tegrastats' GPU/gpu sensor, else a GPU thermal zone in sysfs."""
    temps = dict((tegrastats_summary or {}).get("max_temp_c") or {})
    temps.update((k, v) for k, v in (zones or {}).items() if k not in temps)
    found = [v for k, v in temps.items() if k.lower().split("-")[0] == "gpu"]
    return max(found) if found else None


def table_row(name, options, result, fingerprint, zones=None):
    """One row of the table; `result` is what jetson.jobs.measure returned."""
    latency = result["latency"]
    tegra = result.get("tegrastats") or {}
    power_mw = tegra.get("total_power_mw")
    power_w = power_mw / 1000.0 if power_mw is not None else None
    median = latency["median_ms"]
    images = latency.get("batch") or 1  # per run: an implicit-batch trtexec run times a batch of N images
    engine_given = name.endswith(ENGINE_SUFFIXES)
    return {
        "model": name, "runner": options["backend"],
        "precision": "engine" if engine_given else options["precision"],
        "median_ms": median, "p99_ms": latency["p99_ms"], "fps": 1000.0 * images / median if median > 0 else None,
        "power_w": power_w, "energy_mj": power_w * median / images if power_w is not None else None,
        "gpu_temp_c": gpu_temperature(tegra, zones),
        "power_mode": fingerprint.get("power_mode"), "clocks_pinned": fingerprint.get("clocks_pinned"),
        "error": None,
    }


def error_row(name, options, error, fingerprint):
    row = dict((c, None) for c in COLUMNS)
    row.update(model=name, runner=options.get("backend"), precision=options.get("precision"), error=error,
               power_mode=fingerprint.get("power_mode"), clocks_pinned=fingerprint.get("clocks_pinned"))
    return row


FORMATS = {"median_ms": "{:.3f}", "p99_ms": "{:.3f}", "fps": "{:.1f}", "power_w": "{:.2f}", "energy_mj": "{:.2f}",
           "gpu_temp_c": "{:.1f}"}


def _cell(column, value):
    if value is None:
        return "" if column == "error" else "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return FORMATS.get(column, "{}").format(value)


def format_table(rows):
    shown = [c for c in COLUMNS if c != "error" or any(r["error"] for r in rows)]
    cells = [[_cell(c, r[c]) for c in shown] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(shown)]
    lines = [shown, ["-" * w for w in widths]] + cells
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def csv_text(rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(dict((k, "" if v is None else v) for k, v in r.items()))
    return out.getvalue()


def bench_one(path, options, env, static):
    """(row, record) for one model; a model that fails becomes a row with its error, never a crash."""
    name = os.path.basename(path)
    fingerprint = board.fingerprint(static, board.dynamic_facts())
    if not os.path.isfile(path):
        return error_row(name, options, "no such file: {}".format(path), fingerprint), None
    try:
        result = measure(path, options, env)
    except Exception as e:  # an engine build error, a model onnxruntime cannot load: report it in the table
        message = "{}: {}".format(type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
        return error_row(name, options, message, fingerprint), {"model": path, "error": message}
    row = table_row(name, options, result, fingerprint, board.temperatures())
    return row, {"model": path, "options": options, "device": fingerprint, "result": result}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help=".onnx files, or engines (.engine/.plan) for trt and trtexec")
    p.add_argument("--runner", default="auto", choices=("auto",) + BACKENDS,
                   help="auto: trt if the TensorRT Python bindings import, else trtexec, else onnxruntime")
    p.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"),
                   help="default fp16 on TensorRT, fp32 on onnxruntime")
    p.add_argument("--input-shape", default=None, help="e.g. 1,3,640,640 (needed for dynamic inputs)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--tegrastats", default="tegrastats", help="tegrastats binary")
    p.add_argument("--interval-ms", type=int, default=100, help="tegrastats sampling interval")
    p.add_argument("--no-tegrastats", action="store_true")
    p.add_argument("--trtexec", default=None)
    p.add_argument("--engine-dir", default="~/.edgeprune-agent/engines", help="engine cache (shared with the agent)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "board_bench"),
                   help="output prefix: writes PREFIX.csv and PREFIX.json")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    try:
        options = parse_options({
            "backend": pick_runner(a.runner, a.trtexec), "precision": a.precision, "input_shape": a.input_shape,
            "warmup": a.warmup, "iterations": a.iterations, "threads": a.threads, "workspace_mb": a.workspace_mb,
            "tegrastats": not a.no_tegrastats})
    except OptionError as e:
        print("board_bench: {}".format(e), file=sys.stderr)
        return 2
    env = MeasureEnv(a.engine_dir, tegrastats=a.tegrastats, interval_ms=a.interval_ms, trtexec=a.trtexec)
    static = board.static_facts()
    facts = dict(static, **board.dynamic_facts())
    rows, records = [], []
    for path in a.models:
        row, record = bench_one(path, options, env, static)
        rows.append(row)
        records.append(record)
        print("{}: {}".format(row["model"], row["error"] or "{:.3f} ms".format(row["median_ms"])), file=sys.stderr)
    print(format_table(rows))
    out = os.path.abspath(os.path.expanduser(a.out))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_atomic(out + ".csv", csv_text(rows).encode("utf-8"))
    write_json_atomic(out + ".json", {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "board": facts,
                                      "options": options, "rows": rows, "runs": records})
    print("wrote {0}.csv and {0}.json".format(out))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
