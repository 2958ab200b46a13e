"""The torch CUDA latency backend on a real GPU: yolov5n/s at 320 and 640, eager and CUDA graphs, fp32 and fp16.

    python benchmarks/bench_torch_cuda.py [--out benchmarks/results/torch_cuda.json]

Writes the JSON with the GPU's name and software versions (the backend's fingerprint). Without a CUDA GPU it says
so and writes nothing: a figure is measured, never made up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from edgeprune.latency import get_backend
from edgeprune.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/torch_cuda.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: nothing measured (run this where torch.cuda.is_available())")
    t0, rows, fingerprint = time.perf_counter(), [], None
    for name in args.models:
        model = create_model(name, num_classes=1).eval()
        for size in args.sizes:
            for precision in ("fp32", "fp16"):
                for graph in (False, True):
                    be = get_backend("torch-cuda", cuda_graph=graph, precision=precision, runs=args.runs)
                    st = be.measure_module(model, (1, 3, size, size))
                    fingerprint = be.fingerprint()
                    rows.append({"model": name, "imgsz": size, "precision": precision, "cuda_graph": graph,
                                 "median_ms": st.median_ms, "p90_ms": st.p90_ms, "p99_ms": st.p99_ms, "cv": st.cv,
                                 "runs": st.runs})
                    print(json.dumps(rows[-1]), flush=True)
    out = {"fingerprint": fingerprint, "gpu": torch.cuda.get_device_name(0), "rows": rows,
           "wall_s": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
