"""`edgeprune demo`: the main job on the embedded defaults, composed of the same verbs a user runs by hand.

synthesize data → train the base → cut it once to the latency target (`edgeprune prune --progressive --steps 1`:
the channels of least Taylor importance per millisecond the backend's calibrated latency table saves, re-aimed until
the measured latency meets the target), then recover it with distillation from the base → export both to ONNX (and
TensorRT engines when TensorRT is installed) → profile both on the same backend → report. That path won the peer
benchmark (docs/search.md); `--method search` runs the earlier one instead: the base trained with BN sparsity, the
per-block ratio search against measured latency, then the same recovery. Each step prints the `edgeprune ...`
command it runs, so the demo doubles as a walk-through, and each can be rerun on its own.

`--backend remote://HOST:PORT` points the pruning and the profiles at a Jetson agent (docs/demo-on-a-jetson.md); the
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
from typing import Callable

from ..report.plots import plot_training
from ..report.tables import format_table, format_value, markdown_table
from ..utils.files import atomic_write_text, write_json
from . import data as data_verb
from . import eval as eval_verb
from . import export as export_verb
from . import finetune as finetune_verb
from . import profile as profile_verb
from . import prune as prune_verb
from . import search as search_verb
from . import train as train_verb
from .common import EXIT_NO_FEASIBLE, run

# the verbs the demo runs, as a user would (this module's own `search`, `profile` ... are its steps)
STEPS = [data_verb, train_verb, prune_verb, search_verb, finetune_verb, eval_verb, export_verb, profile_verb]
METHODS = ("allocated", "search")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: data → training → a latency-allocated cut → KD → export → "
                       "profile → report")
    p.add_argument("--out", default="runs/demo", help="run directory; when it holds an earlier run, the next free "
                   "name (runs/demo2, runs/demo3, ...) is used")
    p.add_argument("--exist-ok", action="store_true", help="reuse OUT even if it holds an earlier run (the demo's "
                   "own files there are removed first)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT (default: the newest "
                   "runs/demo*) from its last finished step")
    p.add_argument("--quick", action="store_true", help="a smoke run of every step at tiny sizes (about 2 "
                   "minutes); its models are too briefly trained to detect anything")
    p.add_argument("--backend", default="ort", help="where latency is measured: ort (this CPU, 1 thread) or "
                   "remote://host:port of a Jetson agent (docs/demo-on-a-jetson.md)")
    p.add_argument("--epochs", type=int, help="override the number of training epochs")
    p.add_argument("--model", default="yolov5n", help="the detector: yolov5n/s/m/l/x, yolov8n/s/..., yolo11n/s/...")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--method", choices=METHODS, default="allocated", help="allocated: one cut allocated against the "
                   "backend's latency table (the peer benchmark's winner); search: BN sparsity training and the "
                   "latency search (docs/search.md)")
    p.add_argument("--no-reference", dest="reference", action="store_false", help="skip the dense reference "
                   "(the model trained densely as long as the pruned one, the fair base for its loss; a third of the "
                   "demo's time)")
    p.set_defaults(func=lambda args: run_demo(args.out, quick=args.quick, epochs=args.epochs, seed=args.seed,
                                              backend=args.backend, exist_ok=args.exist_ok, resume=args.resume,
                                              reference=args.reference, model=args.model, method=args.method))


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
    method: str = "allocated"  # or "search" (METHODS)
    importance: str = "taylor"  # of the allocated cut: scores comparable across groups (docs/search.md)
    # the search path: the base trained with BN sparsity, whose BN scales then rank channels (bench_recovery.py)
    sparsity: str = "bn-l1"
    sparsity_lambda: float = 0.01
    search_importance: str = "bn"
    search_trials: int = 30
    search_scopes: str = "blocks"
    search_val: int = 32
    search_sensitivity: bool = True
    speedup: float = 2.0  # latency target, over the base measured on the same backend
    flops_share: float = 0.3  # the search's hard FLOPs limit too: at most this share of the base's
    finetune_epochs: int = 13
    profile_runs: int = 200
    # the fair yardstick for "loss": the same model trained densely for as many epochs as the pruned one had in all
    # (the dense base + finetune_epochs; from scratch on the search path, whose sparsity-trained base is weaker)
    reference: bool = True


SMOKE_NOTE = ("smoke run (--quick): every step ran at tiny sizes; its models are trained for a few epochs only, "
              "so their mAP says nothing. Run `edgeprune demo` for figures that mean something.")
QUICK = DemoPlan(train=48, val=16, size=256, epochs=2, batch=16, eval_every=1, search_trials=4, search_val=8,
                 search_sensitivity=False, finetune_epochs=1)


STATE = "demo.json"  # the run's settings and its finished steps, for --resume
# what an earlier run left in a reused directory (--exist-ok): removed before a new run, so no file mixes two runs
STALE = ("results.json", "results.md", "report.html", "report.md", "report", "data", "train", "prune", "search",
         "finetune", "reference", "model.onnx", "pruned.onnx", "reference.onnx", "model.engine", "pruned.engine",
         "reference.engine", "training.png")


def step(argv: list[str], accept: tuple[int, ...] = (0,)) -> int:
    print(f"\n$ edgeprune {shlex.join(argv)}", flush=True)
    code = run(argv, STEPS)
    if code not in accept:
        raise SystemExit(code)
    return code


def _timing_flags(backend: str) -> list[str]:
    return ["--threads", "1"] if backend in ("ort", "onnxruntime") else []


def run_dir(out: str | Path, exist_ok: bool = False, resume: bool = False) -> Path:
    """Where this demo writes, the ultralytics way: OUT itself when it is new (or reused: exist_ok, resume), else
    the next free OUT2, OUT3, ...; `resume` without an existing OUT takes the newest OUT* with a demo state."""
    out = Path(out)
    if resume:
        if (out / STATE).is_file():
            return out
        runs = [d for d in _numbered(out) if (d / STATE).is_file()]
        if not runs:
            raise FileNotFoundError(f"{out}: no demo to resume here (no {STATE}); run `edgeprune demo` first")
        return max(runs, key=lambda d: (d / STATE).stat().st_mtime)
    if exist_ok or not out.exists() or not any(out.iterdir()):
        return out
    n = 2
    while (out.parent / f"{out.name}{n}").exists():
        n += 1
    return out.parent / f"{out.name}{n}"


def _numbered(out: Path) -> list[Path]:
    """OUT and its numbered siblings OUT2, OUT3, ..."""
    return [d for d in [out, *out.parent.glob(f"{out.name}*")] if d.is_dir()
            and (d == out or d.name[len(out.name):].isdigit())]


class RunState:
    """The demo's finished steps in OUT/demo.json, written after each one, so that `--resume` skips them."""

    def __init__(self, out: Path, settings: dict, resume: bool) -> None:
        self.path, self.settings = out / STATE, settings
        saved = json.loads(self.path.read_text()) if resume else None
        if saved is not None and saved["settings"] != settings:
            diff = [k for k in settings if saved["settings"].get(k) != settings[k]]
            raise ValueError(f"{self.path}: this run was started with other settings ({', '.join(diff)}); resume "
                             f"it with the same options, or start a new run without --resume")
        self.steps: dict = saved["steps"] if saved is not None else {}
        self.seconds, self.mark = (saved or {}).get("seconds", 0.0), time.perf_counter()
        if saved is None:
            for name in STALE:
                shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink(missing_ok=True)
            self.save()

    def elapsed(self) -> float:
        """Seconds of work over every sitting of this run."""
        return self.seconds + time.perf_counter() - self.mark

    def save(self) -> None:
        write_json(self.path, {"settings": self.settings, "steps": self.steps, "seconds": self.elapsed()})

    def once(self, name: str, work: Callable[[], dict | None]) -> dict:
        """Run a step unless an earlier sitting finished it; what it returns is kept for later steps."""
        if name in self.steps:
            print(f"\n# {name}: done in an earlier sitting, skipped", flush=True)
        else:
            self.steps[name] = work() or {}
            self.save()
        return self.steps[name]


def make_data(plan: DemoPlan, out: Path, seed: int) -> None:
    step(["data", "synth", "--out", str(out / "data"), "--train", str(plan.train), "--val", str(plan.val),
          "--size", str(plan.size), "--seed", str(seed)])


def train_base(plan: DemoPlan, out: Path, seed: int) -> None:
    """Train densely (with BN sparsity for the search path); a run killed mid-training continues from its last
    epoch."""
    run = out / "train"
    sparsity = ["--sparsity", plan.sparsity, "--sparsity-lambda", str(plan.sparsity_lambda)]
    step(["train", "--data", str(out / "data" / "data.yaml"), "--model", plan.model, "--epochs", str(plan.epochs),
          "--batch", str(plan.batch), "--eval-every", str(plan.eval_every), "--imgsz", str(plan.size),
          *(sparsity if plan.method == "search" else []), "--seed", str(seed),
          "--out", str(run)] + (["--resume"] if (run / "last.pt").is_file() else []))
    plot_training(run / "metrics.csv", out / "training.png")


def train_reference(plan: DemoPlan, out: Path, seed: int) -> None:
    """The dense reference, trained as long as the pruned model was in all (epochs + finetune_epochs; resumable).
    The default path prunes the dense base, so its reference is that base fine-tuned for the recovery's epochs
    (bench_peers' "base + R epochs"); the search path's base is sparsity-trained, so its reference is trained
    densely from scratch for the whole length."""
    run, data = out / "reference", str(out / "data" / "data.yaml")
    resume = ["--resume"] if (run / "last.pt").is_file() else []
    if plan.method != "search":
        step(["finetune", str(out / "train" / "best.pt"), "--data", data, "--epochs", str(plan.finetune_epochs),
              "--batch", str(plan.batch), "--eval-every", str(plan.finetune_epochs), "--imgsz", str(plan.size),
              "--seed", str(seed), "--out", str(run)] + resume)
        return
    epochs = plan.epochs + plan.finetune_epochs
    step(["train", "--data", data, "--model", plan.model, "--epochs", str(epochs), "--batch", str(plan.batch),
          "--eval-every", str(epochs), "--imgsz", str(plan.size), "--seed", str(seed), "--out", str(run)] + resume)


def search(plan: DemoPlan, out: Path, base: Path, base_gflops: float, backend: str, seed: int) -> dict:
    """The search picks per-block ratios against the measured speed-up (a killed search resumes its study). When
    no trial met the limits (exit code 3), the demo goes on with the closest plan and its results say so."""
    from ..search.report import RESULT_FILES

    argv = ["search", str(base), "--data", str(out / "data" / "data.yaml"), "--out", str(out / "search"),
            "--imgsz", str(plan.size), "--trials", str(plan.search_trials), "--scopes", plan.search_scopes,
            "--val-images", str(plan.search_val), "--backend", backend, "--speedup", str(plan.speedup),
            "--max-gflops", f"{plan.flops_share * base_gflops:.4f}", "--importance", plan.search_importance, "--seed",
            str(seed)] + _timing_flags(backend) + ([] if plan.search_sensitivity else ["--sensitivity"])
    code = step(argv, accept=(0, EXIT_NO_FEASIBLE))
    met = code == 0
    if not met:
        print("# the demo goes on with the closest plan (search/closest.pt); results.json says the limits were "
              "missed", flush=True)
    chosen = json.loads((out / "search" / "result.json").read_text()).get("chosen")
    # paths relative to OUT, so that a run directory moved or copied still resumes
    return {"met_limits": met, "pruned": f"search/{RESULT_FILES[met][0]}", "plan": f"search/{RESULT_FILES[met][1]}",
            "recovered": "finetune/best.pt", "chosen": chosen}


def allocate_and_recover(plan: DemoPlan, out: Path, base: Path, backend: str, seed: int) -> dict:
    """One cut to base latency / speedup, allocated against the backend's calibrated latency table and re-aimed
    until its measured latency meets the target, then the whole recovery (KD from the base). A killed run resumes
    inside the recovery. When the cut misses the target (exit code 3) the demo goes on and says so."""
    pruned = out / "prune" / "pruned.pt"
    code = step(["prune", str(base), "-o", str(pruned), "--progressive", "--steps", "1", "--speedup",
                 str(plan.speedup), "--importance", plan.importance, "--epochs", str(plan.finetune_epochs),
                 "--data", str(out / "data" / "data.yaml"), "--backend", backend, "--imgsz", str(plan.size),
                 "--seed", str(seed)] + _timing_flags(backend), accept=(0, EXIT_NO_FEASIBLE))
    if code:
        print("# the demo goes on with the model that missed the target; results.json says so", flush=True)
    state = json.loads((pruned.with_suffix(".progressive") / "progressive.json").read_text())
    cut = {k: state["steps"][-1][k] for k in ("goal_ms", "predicted_ms", "measured_ms")}
    return {"met_limits": code == 0, "plan": "prune/pruned.plan.json", "recovered": "prune/pruned.pt",
            "chosen": {"cut": cut, "base_ms": state["base_ms"]}}


def recover(plan: DemoPlan, out: Path, pruned: Path, base: Path, seed: int) -> None:
    """KD from the base; a recovery killed mid-way continues from its last epoch."""
    run = out / "finetune"
    step(["finetune", str(pruned), "--data", str(out / "data" / "data.yaml"), "--teacher", str(base), "--epochs",
          str(plan.finetune_epochs), "--eval-every", str(plan.finetune_epochs), "--imgsz", str(plan.size),
          "--seed", str(seed), "--out", str(run)] + (["--resume"] if (run / "last.pt").is_file() else []))


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


def summarize(plan: DemoPlan, out: Path, base: dict, pruned: dict, backend: str, seconds: float, found: dict,
              smoke: bool = False, reference: dict | None = None) -> dict:
    """results.json / results.md: the base, the dense reference (when trained) and the pruned model; the pruned
    model's changes against the base and against the reference. `found`: what the pruning step returned."""
    def row(name: str, m: dict) -> dict:
        return {"model": name, "params": m["params"], "GFLOPs": m["GFLOPs"], "latency_ms": m["latency_ms"],
                "speedup": base["latency_ms"] / m["latency_ms"], "mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"]}

    training = plan.sparsity if plan.method == "search" else "dense"
    base_row, pruned_row = row(f"base {plan.model} ({training}, {plan.epochs} ep)", base), row(
        f"pruned + KD ({plan.finetune_epochs} ep)", pruned)
    rows = [base_row, pruned_row]
    gains = {"flops_reduction": 1 - pruned["GFLOPs"] / base["GFLOPs"], "speedup": pruned_row["speedup"],
             "map50_change_points": 100 * (pruned["mAP50"] - base["mAP50"])}
    if reference is not None:
        length = f"{plan.epochs + plan.finetune_epochs} ep" if plan.method == "search" else \
            f"{plan.epochs} + {plan.finetune_epochs} ep"
        rows.insert(1, row(f"reference: dense {plan.model}, {length}", reference))
        gains.update(map50_vs_reference_points=100 * (pruned["mAP50"] - reference["mAP50"]),
                     map50_95_vs_reference_points=100 * (pruned["mAP50-95"] - reference["mAP50-95"]))
    timing = "onnxruntime CPU, 1 thread" if backend in ("ort", "onnxruntime") else backend
    files = {"base checkpoint": "train/best.pt", "base ONNX": "model.onnx",
             "pruned checkpoint": found["recovered"], "pruned ONNX": "pruned.onnx",
             "plan": found["plan"]}
    files.update({"search": "search/summary.md"} if plan.method == "search" else
                 {"cut": "prune/pruned.progressive/progressive.json"})
    if reference is not None:
        files.update({"reference checkpoint": "reference/best.pt", "reference ONNX": "reference.onnx"})
    files.update({f"{n} TensorRT engine": f"{n}.engine" for n in ("model", "pruned", "reference")
                  if (out / f"{n}.engine").is_file()})
    result = {"rows": rows, "gains": gains, "backend": timing, "imgsz": plan.size, "plan": asdict(plan),
              "chosen": found["chosen"], "files": files, "seconds": seconds, "smoke_run": smoke,
              "met_limits": found["met_limits"]}
    write_json(out / "results.json", result)
    note = f"\n\n**{SMOKE_NOTE}**" if smoke else ""
    atomic_write_text(out / "results.md", f"# edgeprune demo\n\n{markdown_table(rows)}\n\nlatency: {timing}, "
                      f"median; GFLOPs = 2 x MACs at {plan.size}x{plan.size}; mAP on the validation split.{note}\n")
    return result


def run_demo(out: str | Path, quick: bool = False, epochs: int | None = None, seed: int = 0,
             backend: str = "ort", exist_ok: bool = False, resume: bool = False, reference: bool = True,
             model: str = "yolov5n", method: str = "allocated") -> dict:
    """The whole job in OUT (or the next free OUT2, ...); `resume` continues a killed run from its last step."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    plan = replace(QUICK if quick else DemoPlan(), reference=reference, model=model, method=method)
    if epochs is not None:
        plan = replace(plan, epochs=epochs)
    out = run_dir(out, exist_ok, resume)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState(out, {"plan": asdict(plan), "seed": seed, "backend": backend, "quick": quick}, resume)
    print(f"demo run directory: {out}" + (" (resumed)" if resume else ""), flush=True)
    base_ckpt = out / "train" / "best.pt"
    state.once("data", lambda: make_data(plan, out, seed))
    state.once("train", lambda: train_base(plan, out, seed))
    base = state.once("ship base", lambda: ship(plan, out, "model", base_ckpt))
    if plan.method == "search":
        found = state.once("search", lambda: search(plan, out, base_ckpt, onnx_gflops(out / "model.onnx", plan.size),
                                                    backend, seed))
        state.once("recover", lambda: recover(plan, out, out / found["pruned"], base_ckpt, seed))
    else:
        found = state.once("prune", lambda: allocate_and_recover(plan, out, base_ckpt, backend, seed))
    pruned = state.once("ship pruned", lambda: ship(plan, out, "pruned", out / found["recovered"]))
    names = ["model", "pruned"]
    if plan.reference:
        state.once("train reference", lambda: train_reference(plan, out, seed))
        names.append("reference")
        shipped = state.once("ship reference", lambda: ship(plan, out, "reference", out / "reference" / "best.pt"))
    # every profile back to back, in one step: a machine that drifts over minutes would bias a ratio of far-apart
    # figures
    timed = state.once("profile", lambda: {n: profile(plan, out, n, backend) for n in names})
    reference = {**shipped, **timed["reference"]} if plan.reference else None
    result = summarize(plan, out, {**base, **timed["model"]}, {**pruned, **timed["pruned"]}, backend,
                       state.elapsed(), found, quick, reference)
    from ..report.page import write_report

    report = write_report(out)
    state.steps["report"] = {}
    state.save()
    print(f"\n{format_table(result['rows'])}\n\n{gains_line(result)}\n"
          f"wrote {out / 'results.json'} and {report} in {result['seconds'] / 60:.1f} min")
    if quick:
        print(SMOKE_NOTE)
    return result


def gains_line(result: dict) -> str:
    g = result["gains"]
    line = (f"{g['flops_reduction']:.0%} fewer FLOPs, {format_value('speedup', g['speedup'])} faster "
            f"({result['backend']}), mAP@0.5 {g['map50_change_points']:+.1f} points against the base")
    if "map50_vs_reference_points" in g:
        line += (f", {g['map50_vs_reference_points']:+.1f} against the dense model trained as long "
                 f"(mAP@0.5:0.95 {g['map50_95_vs_reference_points']:+.1f})")
    return line
