"""Training throughput and onnxruntime CPU latency of yolov5n / yolov5s at two input sizes.

    python benchmarks/bench_spine.py [--out benchmarks/results/spine.json]

Training throughput: images/s of full training steps (forward, YOLOv5 loss, backward, SGD step) on random images
with one target each, channels-last as the trainer uses, median over timed steps after warm-up steps.
Latency: the exported ONNX model (opset 13) on onnxruntime's CPU provider, median/p90/p99 of timed runs after warm-up,
all usable cores. Both measured in the same run on the same machine; the JSON records the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deploy.onnxruntime_runner import OnnxRuntimeRunner, cpu_name
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.export import export_onnx
from edgeprune.models import create_model
from edgeprune.models.loss import YOLOv5Loss


def train_throughput(name: str, size: int, batch: int, warmup: int = 2, steps: int = 5) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=1).train().to(memory_format=torch.channels_last)
    criterion = YOLOv5Loss(model.head, img_size=size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.tensor([[i, 0, 0.5, 0.5, 0.05, 0.03] for i in range(batch)])
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss, _ = criterion(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/spine.json")
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    rows = []
    for name in args.models:
        for size in args.sizes:
            model = create_model(name, num_classes=1)
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = export_onnx(model, Path(tmp) / "m.onnx", img_size=size).path
                runner = OnnxRuntimeRunner(onnx_path)
                stats = runner.time(warmup=10, runs=args.runs)
            batch = 16 if size <= 320 else 4
            row = {
                "model": name, "imgsz": size, "params": count_params(model),
                "gflops": count_flops(model, size) / 1e9,
                "train_images_per_s": train_throughput(name, size, batch), "train_batch": batch,
                "ort_median_ms": stats.median_ms, "ort_p90_ms": stats.p90_ms, "ort_p99_ms": stats.p99_ms,
                "ort_cv": stats.cv, "ort_threads": runner.threads, "ort_runs": stats.runs,
            }
            rows.append(row)
            print(json.dumps(row))
    result = {
        "machine": {"cpu": cpu_name(), "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "onnxruntime": stats.info["onnxruntime"]},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
