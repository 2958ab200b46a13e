"""Pruning engine figures for yolov5n/s/m: time to find groups and apply a plan, group counts, and params, FLOPs and
onnxruntime CPU latency at global channel ratios 0.3 / 0.5 / 0.7, with round_to=8 and without (round_to=1).

    python benchmarks/bench_prune.py [--out benchmarks/results/prune.json] [--imgsz 320]

Importance is L1 (untrained weights: the point here is structure and speed, not accuracy). Latency: exported
ONNX on onnxruntime's CPU provider, all usable cores, median of timed runs after warm-up, every row in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from deploy.onnxruntime_runner import OnnxRuntimeRunner, cpu_name
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.export import export_onnx
from edgeprune.models import create_model, example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import plan_global, prune_model


def measure(model: torch.nn.Module, size: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", img_size=size).path
        stats = OnnxRuntimeRunner(path).time(warmup=10, runs=runs)
    return {"params": count_params(model), "gflops": count_flops(model, size) / 1e9,
            "ort_median_ms": stats.median_ms, "ort_p90_ms": stats.p90_ms, "threads": stats.info["threads"]}


def bench_model(name: str, size: int, runs: int) -> list[dict]:
    torch.manual_seed(0)
    base = create_model(name, num_classes=1).eval()
    t0 = time.perf_counter()
    groups = find_groups(base, example_input(base))
    find_s = time.perf_counter() - t0
    scores = rankable(score_groups(groups, "l1"), "l1")
    ref = {"model": name, "ratio": 0.0, "round_to": None, "groups": len(groups), "find_groups_s": find_s,
           **measure(base, size, runs)}
    rows = [ref]
    for round_to in (1, 8):
        for ratio in (0.3, 0.5, 0.7):
            plan = plan_global(groups, scores, ratio, round_to=round_to, min_width=8)
            model = create_model(name, num_classes=1).eval()
            model.load_state_dict(base.state_dict())
            t0 = time.perf_counter()
            prune_model(model, plan, example_input(model))
            row = {"model": name, "ratio": ratio, "round_to": round_to, "achieved_ratio": plan.ratio,
                   "groups": len(groups), "apply_s": time.perf_counter() - t0, **measure(model, size, runs)}
            for key in ("params", "gflops", "ort_median_ms"):
                row[f"{key}_vs_base"] = row[key] / ref[key]
            rows.append(row)
            print(json.dumps(row))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/prune.json")
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s", "yolov5m"])
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
