"""Pruning engine figures for yolov5n/s/m, yolov8n and yolo11n: time to find groups and apply a plan, group counts
and what was left alone (with the reasons), and params, FLOPs and onnxruntime CPU latency at global channel ratios
0.3 / 0.5 / 0.7, with round_to=8 and without (round_to=1); beside each ratio with round_to=8, Torch-Pruning's
MagnitudePruner at the same uniform ratio on the same model (its result, or the error it stops with).

    python benchmarks/bench_prune.py [--out benchmarks/results/prune.json] [--imgsz 320] [--models ...]

Run it under a memory limit (`ulimit -v 16000000`): Torch-Pruning grows past 16 GB on yolo11n, and a MemoryError
is then its row (later ratios of that model are not tried).

Importance is L1 (untrained weights: the point here is structure and speed, not accuracy). Latency: exported
ONNX on onnxruntime's CPU provider, all usable cores, median of timed runs after warm-up, every row in the same run.
A name ending in .yaml or .pt (`rtdetr-l.yaml`, `yolov8n.yaml`) is built by ultralytics (an optional extra):
where it does not import (here: torchvision has only CUDA builds), the model's row records that instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import torch_pruning_raw  # noqa: E402
from deploy.onnxruntime_runner import OnnxRuntimeRunner, cpu_name  # noqa: E402
from edgeprune.evaluate.complexity import count_flops, count_params  # noqa: E402
from edgeprune.export import export_onnx  # noqa: E402
from edgeprune.models import create_model, example_input  # noqa: E402
from edgeprune.prune.graph import analyze, find_groups  # noqa: E402
from edgeprune.prune.importance import rankable, score_groups  # noqa: E402
from edgeprune.prune.plan import plan_global, prune_model  # noqa: E402


def measure(model: torch.nn.Module, size: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", img_size=size).path
        stats = OnnxRuntimeRunner(path).time(warmup=10, runs=runs)
    return {"params": count_params(model), "gflops": count_flops(model, size) / 1e9,
            "ort_median_ms": stats.median_ms, "ort_p90_ms": stats.p90_ms, "threads": stats.info["threads"]}


def build(name: str) -> torch.nn.Module:
    """edgeprune's model `name`, or an ultralytics one from a yaml / .pt, with one class."""
    if name.endswith((".yaml", ".yml", ".pt")):
        from edgeprune.models.source import from_ultralytics

        return from_ultralytics(name, num_classes=1)
    return create_model(name, num_classes=1).eval()


def bench_model(name: str, size: int, runs: int) -> list[dict]:
    torch.manual_seed(0)
    try:
        base = build(name)
    except ImportError as e:
        print(json.dumps(row := {"model": name, "error": str(e)}))
        return [row]
    t0 = time.perf_counter()
    groups = find_groups(base, example_input(base))
    find_s = time.perf_counter() - t0
    excluded = analyze(base, example_input(base)).excluded
    scores = rankable(score_groups(groups, "l1"), "l1")
    ref = {"model": name, "ratio": 0.0, "round_to": None, "groups": len(groups), "find_groups_s": find_s,
           "excluded": len(excluded), "excluded_reasons": excluded, **measure(base, size, runs)}
    rows = [ref]
    for round_to in (1, 8):
        for ratio in (0.3, 0.5, 0.7):
            plan = plan_global(groups, scores, ratio, round_to=round_to, min_width=8)
            model = deepcopy(base)
            t0 = time.perf_counter()
            prune_model(model, plan, example_input(model))
            row = {"model": name, "ratio": ratio, "round_to": round_to, "achieved_ratio": plan.ratio,
                   "groups": len(groups), "apply_s": time.perf_counter() - t0, **measure(model, size, runs)}
            for key in ("params", "gflops", "ort_median_ms"):
                row[f"{key}_vs_base"] = row[key] / ref[key]
            rows.append(row)
            print(json.dumps(row))
            if round_to == 8:
                ran_out = next((r for r in rows if "MemoryError" in r.get("error", "")
                                or "can't allocate memory" in r.get("error", "")), None)
                rows.append(torch_pruning_row(base, name, ratio, size, runs, ref) if ran_out is None else
                            {"model": name, "ratio": ratio, "round_to": 8, "engine": "torch-pruning",
                             "error": f"not run: out of memory at ratio {ran_out['ratio']}"})
    return rows


def torch_pruning_row(base: torch.nn.Module, name: str, ratio: float, size: int, runs: int, ref: dict) -> dict:
    """Torch-Pruning's MagnitudePruner at the same uniform ratio, its output layers ignored: what it gives, or why
    it stops."""
    row = {"model": name, "ratio": ratio, "round_to": 8, "engine": "torch-pruning"}
    t0 = time.perf_counter()
    try:
        model = torch_pruning_raw(base, ratio, round_to=8, example=example_input(base))
    except Exception as e:  # noqa: BLE001 - the table records it
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(row))
        return row
    row["apply_s"] = time.perf_counter() - t0
    try:
        row.update(measure(model, size, runs))
        for key in ("params", "gflops", "ort_median_ms"):
            row[f"{key}_vs_base"] = row[key] / ref[key]
    except Exception as e:  # noqa: BLE001 - pruned, but it no longer runs or exports
        row["error"] = f"pruned, then {type(e).__name__}: {str(e)[:300]}"
    print(json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/prune.json")
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s", "yolov5m", "yolov8n", "yolo11n",
                                                          "rtdetr-l.yaml"])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    rows = [r for name in args.models for r in bench_model(name, args.imgsz, args.runs)]
    result = {"machine": {"cpu": cpu_name(), "torch": torch.__version__}, "imgsz": args.imgsz, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
