"""`edgeprune demo`: the main job on the embedded defaults, composed of the same verbs a user runs by hand.

synthesize data → train the base with BN sparsity → search per-block pruning ratios against measured latency →
recover the chosen pruned model with distillation from the base → export both to ONNX (and TensorRT engines when
TensorRT is installed) → profile both on the same backend → report. Each step prints the `edgeprune ...` command it
runs, so the demo doubles as a walk-through, and each can be rerun on its own.

`--backend remote://HOST:PORT` points the search and the profiles at a Jetson agent (docs/demo-on-a-jetson.md); the
default is onnxruntime on this machine's CPU with one thread (steadier than two on a shared 2-core machine,
docs/latency.md). Everything lands in the run directory; `results.json` holds the numbers, `report.html` shows them.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .cli import main
from .files import atomic_write_text, write_json
from .plots import plot_training
from .tables import format_table, markdown_table


@dataclass
class DemoPlan:
    """Sizes of one demo run; the full plan fits the 20-minute budget on 2 CPU cores."""

    train: int = 500
    val: int = 100
    size: int = 320
    model: str = "yolov5n"
    epochs: int = 36
    batch: int = 16
    eval_every: int = 5
    sparsity: str = "bn-l1"
    sparsity_lambda: float = 0.01
    importance: str = "bn"  # after sparsity training the BN scales rank channels (benchmarks/bench_recovery.py)
    search_trials: int = 30
    search_scopes: str = "blocks"
    search_val: int = 32
    search_sensitivity: bool = True
    speedup: float = 2.0  # latency target for the search, over the base measured on the same backend
    flops_share: float = 0.3  # and a hard FLOPs limit: at most this share of the base's
    finetune_epochs: int = 13
    profile_runs: int = 200


QUICK = DemoPlan(train=48, val=16, size=256, epochs=2, batch=16, eval_every=1, search_trials=4, search_val=8,
                 search_sensitivity=False, finetune_epochs=1)


def step(argv: list[str]) -> None:
    print(f"\n$ edgeprune {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def _timing_flags(backend: str) -> list[str]:
    return ["--threads", "1"] if backend in ("ort", "onnxruntime") else []


def train_base(plan: DemoPlan, out: Path, seed: int) -> Path:
    data = out / "data"
    step(["data", "synth", "--out", str(data), "--train", str(plan.train), "--val", str(plan.val),
          "--size", str(plan.size), "--seed", str(seed)])
    step(["train", "--data", str(data / "data.yaml"), "--model", plan.model, "--epochs", str(plan.epochs),
          "--batch", str(plan.batch), "--eval-every", str(plan.eval_every), "--imgsz", str(plan.size),
          "--sparsity", plan.sparsity, "--sparsity-lambda", str(plan.sparsity_lambda), "--seed", str(seed),
          "--out", str(out / "train")])
    plot_training(out / "train" / "metrics.csv", out / "training.png")
    return out / "train" / "best.pt"


def search_and_recover(plan: DemoPlan, out: Path, base: Path, base_gflops: float, backend: str, seed: int) -> Path:
    """The search picks per-block ratios; its pruned model is distilled from the base."""
    data = str(out / "data" / "data.yaml")
    shutil.rmtree(out / "search", ignore_errors=True)  # a search of an earlier demo's model would not resume
    step(["search", str(base), "--data", data, "--out", str(out / "search"), "--imgsz", str(plan.size),
          "--trials", str(plan.search_trials), "--scopes", plan.search_scopes, "--val-images", str(plan.search_val),
          "--backend", backend, "--speedup", str(plan.speedup),
          "--max-gflops", f"{plan.flops_share * base_gflops:.4f}", "--importance", plan.importance, "--seed",
          str(seed), "--no-progress"]
         + _timing_flags(backend) + ([] if plan.search_sensitivity else ["--sensitivity"]))
    if not (out / "search" / "pruned.pt").is_file():
        raise SystemExit(f"the search found no pruned model: see {out / 'search' / 'summary.md'}")
    shutil.rmtree(out / "finetune", ignore_errors=True)
    step(["finetune", str(out / "search" / "pruned.pt"), "--data", data, "--teacher", str(base), "--epochs",
          str(plan.finetune_epochs), "--eval-every", str(plan.finetune_epochs), "--imgsz", str(plan.size),
          "--seed", str(seed), "--out", str(out / "finetune")])
    return out / "finetune" / "best.pt"


def ship(plan: DemoPlan, out: Path, name: str, ckpt: Path) -> dict:
    """Evaluate and export one model: OUT/NAME.onnx, and a TensorRT engine when TensorRT is here."""
    data = str(out / "data" / "data.yaml")
    step(["eval", str(ckpt), "--data", data, "--imgsz", str(plan.size), "--json", str(out / f"{name}_eval.json")])
    onnx = out / f"{name}.onnx"
    export = ["export", str(ckpt), "--imgsz", str(plan.size), "--out", str(onnx)]
    if importlib.util.find_spec("tensorrt") is not None:
        export += ["--engine", str(onnx.with_suffix(".engine"))]
    step(export)
    ev = json.loads((out / f"{name}_eval.json").read_text())
    return {"mAP50": ev["map50"], "mAP50-95": ev["map"]}


def onnx_gflops(onnx: Path, size: int) -> float:
    from deploy.onnx_info import inspect

    return inspect(str(onnx), input_shape=(1, 3, size, size))["flops"] / 1e9


def profile(plan: DemoPlan, out: Path, name: str, backend: str) -> dict:
    """Params, GFLOPs and the median latency of OUT/NAME.onnx on the backend."""
    step(["profile", str(out / f"{name}.onnx"), "--imgsz", str(plan.size), "--backend", backend, "--runs",
          str(plan.profile_runs), "--json", str(out / f"{name}_profile.json")] + _timing_flags(backend))
    prof = json.loads((out / f"{name}_profile.json").read_text())
    return {"params": prof["params"], "GFLOPs": prof["GFLOPs"], "latency_ms": prof["median_ms"]}


def summarize(plan: DemoPlan, out: Path, base: dict, pruned: dict, backend: str, seconds: float) -> dict:
    def row(name: str, m: dict) -> dict:
        return {"model": name, "params": m["params"], "GFLOPs": m["GFLOPs"], "latency_ms": m["latency_ms"],
                "speedup": base["latency_ms"] / m["latency_ms"], "mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"]}

    base_row, pruned_row = row(f"base {plan.model}", base), row("pruned + KD", pruned)
    rows = [base_row, pruned_row]
    search = json.loads((out / "search" / "result.json").read_text())
    gains = {"flops_reduction": 1 - pruned["GFLOPs"] / base["GFLOPs"], "speedup": pruned_row["speedup"],
             "map50_change_points": 100 * (pruned["mAP50"] - base["mAP50"])}
    timing = "onnxruntime CPU, 1 thread" if backend in ("ort", "onnxruntime") else backend
    files = {"base checkpoint": "train/best.pt", "base ONNX": "model.onnx", "search": "search/summary.md",
             "pruned checkpoint": "finetune/best.pt", "pruned ONNX": "pruned.onnx", "plan": "search/best.plan.json"}
    files.update({f"{n} TensorRT engine": f"{n}.engine" for n in ("model", "pruned")
                  if (out / f"{n}.engine").is_file()})
    result = {"rows": rows, "gains": gains, "backend": timing, "imgsz": plan.size, "plan": asdict(plan),
              "search_chosen": search.get("chosen"), "files": files, "seconds": seconds}
    write_json(out / "results.json", result)
    atomic_write_text(out / "results.md", f"# edgeprune demo\n\n{markdown_table(rows)}\n\nlatency: {timing}, "
                      f"median; GFLOPs = 2 x MACs at {plan.size}x{plan.size}; mAP on the validation split.\n")
    return result


def run_demo(out: str | Path, quick: bool = False, epochs: int | None = None, seed: int = 0,
             backend: str = "ort") -> dict:
    plan = QUICK if quick else DemoPlan()
    if epochs is not None:
        plan = replace(plan, epochs=epochs)
    out = Path(out)
    t0 = time.perf_counter()
    base_ckpt = train_base(plan, out, seed)
    base = ship(plan, out, "model", base_ckpt)
    pruned_ckpt = search_and_recover(plan, out, base_ckpt, onnx_gflops(out / "model.onnx", plan.size), backend,
                                     seed)
    pruned = ship(plan, out, "pruned", pruned_ckpt)
    # both profiles back to back: a machine that drifts over minutes would bias a ratio of far-apart figures
    base.update(profile(plan, out, "model", backend))
    pruned.update(profile(plan, out, "pruned", backend))
    result = summarize(plan, out, base, pruned, backend, time.perf_counter() - t0)
    from .report import write_report

    report = write_report(out)
    g = result["gains"]
    print(f"\n{format_table(result['rows'])}\n\n{g['flops_reduction']:.0%} fewer FLOPs, {g['speedup']:.2f}x faster "
          f"({result['backend']}), mAP@0.5 {g['map50_change_points']:+.1f} points\n"
          f"wrote {out / 'results.json'} and {report} in {result['seconds'] / 60:.1f} min")
    return result
