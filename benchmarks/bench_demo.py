"""The demo's figures: its wall time, its yolov5n's accuracy and latency, and a one-epoch model for contrast.

    python benchmarks/bench_demo.py [--out benchmarks/results/demo.json] [--workdir runs/bench-demo]

Runs `edgeprune demo` as a user would, then trains the same model for a single epoch on the same data (same
command, `--epochs 1`) and evaluates it, so the JSON shows that the synthetic task is learnable but not trivial.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from edgeprune.cli import main as cli


def run(argv: list[str]) -> None:
    if cli(argv) != 0:
        raise SystemExit(f"edgeprune {' '.join(argv)} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/demo.json")
    ap.add_argument("--workdir", default="runs/bench-demo")
    args = ap.parse_args()
    work = Path(args.workdir)
    t0 = time.perf_counter()
    run(["demo", "--out", str(work)])
    demo_minutes = (time.perf_counter() - t0) / 60
    demo = json.loads((work / "results.json").read_text())
    data = str(work / "data" / "data.yaml")
    size = str(demo["plan"]["size"])
    run(["train", "--data", data, "--epochs", "1", "--imgsz", size, "--out", str(work / "one-epoch"),
         "--no-progress"])
    run(["eval", str(work / "one-epoch" / "last.pt"), "--data", data, "--imgsz", size,
         "--json", str(work / "one-epoch" / "eval.json")])
    one = json.loads((work / "one-epoch" / "eval.json").read_text())
    result = {
        "command": "edgeprune demo",
        "wall_minutes": demo_minutes,
        "plan": demo["plan"],
        "demo": demo["rows"][0],
        "one_epoch": {"mAP50": one["map50"], "mAP50-95": one["map"], "recall": one["recall"]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(work / "training.png", out.with_name("demo_training.png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
