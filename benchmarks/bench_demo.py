"""The demo's figures: its wall time, the before/after table, and a one-epoch model for contrast.

    python benchmarks/bench_demo.py [--out benchmarks/results/demo.json] [--workdir runs/demo-e2e] [--quick]
                                    [--model yolov8n --out benchmarks/results/demo_yolov8n.json]

Runs `edgeprune demo` as a user would (timed from outside, report included), then trains the same model for a
single epoch on the same data (`--epochs 1`) and evaluates it, so the JSON shows that the synthetic task is
learnable but not trivial. Copies the report's figures next to the JSON for the README.

(The other benchmarks' base model, runs/bench-demo/train/best.pt, is the demo's base before sparsity training was
added: `edgeprune data synth --out runs/bench-demo/data --train 500 --val 100 --size 320` and `edgeprune train
--data runs/bench-demo/data/data.yaml --epochs 50 --eval-every 4 --out runs/bench-demo/train`.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from edgeprune.cli import main as cli
from edgeprune.utils.files import write_json


def run(argv: list[str]) -> None:
    if cli(argv) != 0:
        raise SystemExit(f"edgeprune {' '.join(argv)} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/demo.json")
    ap.add_argument("--workdir", default="runs/demo-e2e")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="yolov5n", help="the demo's detector (yolov5n, yolov8n, yolo11n, ...)")
    args = ap.parse_args()
    work = Path(args.workdir)
    t0 = time.perf_counter()
    # --exist-ok: into WORKDIR itself, its old outputs cleared (else a second run goes to WORKDIR2 and the figures
    # below would be read from the first)
    run(["demo", "--out", str(work), "--exist-ok", "--model", args.model] + (["--quick"] if args.quick else []))
    collect(work, (time.perf_counter() - t0) / 60, args.quick, Path(args.out), args.model)


def collect(work: Path, demo_minutes: float, quick: bool, out: Path, model: str = "yolov5n") -> None:
    """The demo run in `work` → the JSON at `out` (with a one-epoch model for contrast) and the README's figures."""
    demo = json.loads((work / "results.json").read_text())
    data = str(work / "data" / "data.yaml")
    size = str(demo["plan"]["size"])
    run(["train", "--model", model, "--data", data, "--epochs", "1", "--imgsz", size, "--out", str(work / "one-epoch"),
         "--no-progress"])
    run(["eval", str(work / "one-epoch" / "last.pt"), "--data", data, "--imgsz", size,
         "--json", str(work / "one-epoch" / "eval.json")])
    one = json.loads((work / "one-epoch" / "eval.json").read_text())
    result = {
        "command": " ".join(["edgeprune demo"] + ([f"--model {model}"] if model != "yolov5n" else [])
                            + (["--quick"] if quick else [])),
        "wall_minutes": demo_minutes,
        "plan": demo["plan"],
        "rows": demo["rows"],
        "gains": demo["gains"],
        "backend": demo["backend"],
        "chosen": demo["chosen"],
        "met_limits": demo["met_limits"],
        "one_epoch": {"mAP50": one["map50"], "mAP50-95": one["map"], "recall": one["recall"]},
    }
    write_json(out, result)
    shutil.copy(work / "training.png", out.with_name(f"{out.stem}_training.png"))
    for name in ("detections", "layers", "widths", "pareto", "gamma"):  # the last two: `--method search` runs
        if (work / "report" / f"{name}.png").is_file():
            shutil.copy(work / "report" / f"{name}.png", out.with_name(f"{out.stem}_{name}.png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
