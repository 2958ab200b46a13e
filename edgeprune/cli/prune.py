"""`edgeprune prune`: prune a checkpoint by a global ratio or a plan, in one cut, in recovered steps, or progressively
against a latency target (`--progressive`, edgeprune.search.progressive)."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the verbs that run, so that `edgeprune --help` stays instant
    from torch import nn

from ..report.tables import format_table
from .common import NoFeasibleResult, add_imgsz, add_model, add_skip_bad, load_model_arg, model_name
from .groups import importance_scores


def register(sub) -> None:
    p = sub.add_parser("prune", help="prune a model by a global ratio or a plan file, or progressively to a latency")
    add_model(p)
    p.add_argument("-o", "--out", required=True, help="pruned checkpoint (.pt or .safetensors); plan beside it")
    p.add_argument("--ratio", type=float, help="share of all group channels to remove, e.g. 0.5")
    p.add_argument("--plan", help="apply this plan JSON instead of making one")
    p.add_argument("--importance", help="l1, l2, bn, fused or taylor (default: l1; taylor with --progressive, "
                   "whose allocation needs scores comparable across groups: docs/search.md)")
    p.add_argument("--alpha", type=float, default=0.5, help="global vs local weight of the fused importance")
    p.add_argument("--round-to", type=int, default=8, help="kept widths are multiples of this (1: no rounding)")
    p.add_argument("--min-width", type=int, default=8, help="no group keeps fewer channels")
    p.add_argument("--ignore", nargs="*", default=[], help="layer names or prefixes to leave alone")
    add_imgsz(p, "input size for the FLOP count")
    p.add_argument("--data", help="dataset for taylor importance (gradients on a few training batches)")
    p.add_argument("--batches", type=int, default=4, help="training batches for taylor importance")
    add_skip_bad(p, "skip and count bad labels of --data instead of stopping")
    p.add_argument("--steps", type=int, help="prune in this many steps, recovering after each (default 1: with "
                   "--progressive one allocated cut and the whole recovery after it beat 4 cuts, docs/search.md)")
    p.add_argument("--assistant-kd", action="store_true", help="with --steps: each step distils from the model "
                   "before it (teacher-assistant chain); without it each step is plainly fine-tuned")
    p.add_argument("--finetune-epochs", type=int, default=5, help="with --steps: recovery epochs per step")
    g = p.add_argument_group("progressive, latency-budgeted pruning (HALP / NetAdapt: docs/search.md)")
    g.add_argument("--progressive", action="store_true", help="cut in --steps steps during KD training, each "
                   "removing the channels of least importance per millisecond the target's latency table saves")
    g.add_argument("--target-latency", type=float, help="final latency on --backend, ms")
    g.add_argument("--speedup", type=float, help="or: final latency = the base's measured latency / this")
    g.add_argument("--backend", default="ort", help="where latency is measured: ort (this CPU), tensorrt, "
                   "torch-cuda, remote://host:port")
    g.add_argument("--threads", type=int, default=1, help="onnxruntime threads when --backend is ort")
    g.add_argument("--epochs", type=int, default=13, help="recovery epochs in all, split over the steps")
    g.add_argument("--teacher", help="KD teacher (default: the checkpoint itself)")
    g.add_argument("--predict", help="latency table JSON (built and saved there when missing; default beside "
                   "--out)")
    g.add_argument("--cost", choices=("latency", "flops"), default="latency", help="what a removed channel saves: "
                   "milliseconds on the target's latency table, or FLOPs (the FLOPs objective, to compare with; "
                   "every cut is still measured and re-aimed to the target)")
    g.add_argument("--tolerance", type=float, default=0.02, help="the final latency may exceed the target by this")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=prune)


def _prune_in_steps(model: nn.Module, plan, groups: list, args: argparse.Namespace) -> nn.Module:
    """`--steps K`: K nested cuts, each recovered for `--finetune-epochs` (distilling the model before the cut
    with `--assistant-kd`); run directories `OUT.stepN/` beside the output."""
    from ..checkpoint import load_model
    from ..data.formats import load_dataset
    from ..prune.chain import prune_in_steps, step_plans
    from ..prune.importance import score_groups
    from ..train.trainer import TrainConfig, train

    spec = load_dataset(args.data, skip_bad=args.skip_bad)
    plans = step_plans(plan, groups, score_groups(groups, "l1" if args.importance == "taylor" else args.importance),
                       args.steps, args.round_to, args.min_width)

    def recover(student: nn.Module, teacher: nn.Module, step: int) -> nn.Module:
        run = Path(args.out).with_suffix(f".step{step}")
        how = "distilling from the previous model" if args.assistant_kd else "fine-tuning"
        print(f"step {step}/{args.steps}: {how}"
              f" for {args.finetune_epochs} epochs -> {run}", flush=True)
        cfg = TrainConfig(epochs=args.finetune_epochs, batch_size=16, img_size=args.imgsz, lr0=0.002,
                          warmup_epochs=min(1.0, args.finetune_epochs / 2), eval_every=args.finetune_epochs)
        train(student.train(), spec.train, spec.val, cfg, run, progress=False,
              teacher=teacher if args.assistant_kd else None)
        return load_model(run / "last.pt").eval()

    return prune_in_steps(model, plans, recover if args.finetune_epochs > 0 else None)[-1]


def _summary(model: nn.Module, img_size: int) -> tuple[int, float]:
    from ..evaluate.complexity import count_flops, count_params

    return count_params(model), count_flops(model, img_size) / 1e9


def prune(args: argparse.Namespace) -> None:
    from ..checkpoint import save_checkpoint
    from ..models import example_input
    from ..prune.graph import find_groups
    from ..prune.importance import rankable
    from ..prune.plan import Plan, plan_global, plan_warnings, prune_model

    args.steps = args.steps or 1
    if args.progressive:
        args.importance = args.importance or "taylor"
        return progressive(args)
    args.importance = args.importance or "l1"
    if (args.ratio is None) == (args.plan is None):
        raise ValueError("give either --ratio R (make a plan) or --plan FILE (apply one)")
    if args.steps > 1 and not args.data:
        raise ValueError("--steps recovers the model after each step: pass --data DATA")
    model = load_model_arg(args)
    params0, flops0 = _summary(model, args.imgsz)
    found = find_groups(model, example_input(model), ignored_layers=args.ignore)
    if args.plan:
        plan = Plan.load(args.plan)
    else:
        scores = rankable(importance_scores(model, found, args), args.importance)
        plan = plan_global(found, scores, args.ratio, round_to=args.round_to, min_width=args.min_width)
        plan.info.update(importance=args.importance, source=model_name(args))
    try:
        if args.steps > 1:
            model = _prune_in_steps(model, plan, found, args)
        else:
            import torch

            with torch.no_grad():
                prune_model(model, plan, example_input(model))
    except KeyError as e:  # a plan made for another model names groups this one does not have
        raise ValueError(f"{args.plan or 'plan'} does not fit {model_name(args)}: {e.args[0]}") from None
    params1, flops1 = _summary(model, args.imgsz)
    save_checkpoint(args.out, model, metrics=_source_metrics(model_name(args)))
    plan_path = plan.save(Path(args.out).with_suffix(".plan.json"))
    rows = [{"model": "before", "params": params0, "GFLOPs": flops0, "channels": plan.total},
            {"model": "after", "params": params1, "GFLOPs": flops1, "channels": plan.kept}]
    print(format_table(rows))
    print(f"channel ratio {plan.ratio:.3f} (asked {plan.info.get('requested_ratio', '-')}), params -"
          f"{1 - params1 / params0:.1%}, FLOPs -{1 - flops1 / flops0:.1%} at {args.imgsz}x{args.imgsz}; "
          f"wrote {args.out} and {plan_path}")
    for warning in plan_warnings(plan, found, args.round_to, args.min_width):
        print(f"warning: {warning}", file=sys.stderr)


def _source_metrics(source: str) -> dict:
    """The metrics of the checkpoint a model was pruned from (none for a factory, a name or a yaml), and its name."""
    from ..checkpoint import CheckpointError, load_checkpoint

    try:
        metrics = load_checkpoint(source).get("metrics", {}) if Path(source).is_file() else {}
    except CheckpointError:  # an ultralytics .pt
        metrics = {}
    return dict(metrics, pruned_from=source)


def _speedup_target(work: Path, speedup: float, measure) -> float:
    """A `--speedup` target in ms: the one a killed schedule in `work` aimed at, so that its resume aims at the same
    target (this machine's speed drifts between runs), else the base's `measure()` over `speedup`."""
    state = work / "progressive.json"
    saved = json.loads(state.read_text()).get("schedule", {}).get("target_ms") if state.is_file() else None
    return float(saved) if saved else measure() / speedup


def progressive(args: argparse.Namespace) -> None:
    """`prune --progressive`: edgeprune.search.progressive on a backend, the latency table beside the output."""
    from ..checkpoint import load_model, save_checkpoint
    from ..data.formats import load_dataset
    from ..latency import CachedBackend, LatencyCache, get_backend, timing_options
    from ..latency.calibrate import predictor_for
    from ..latency.flops import FlopsPredictor
    from ..prune.plan import Plan
    from ..search.progressive import Schedule, progressive_prune, settled_ms

    if (args.target_latency is None) == (args.speedup is None):
        raise ValueError("--progressive needs the final latency: --target-latency MS or --speedup S")
    if not args.data:
        raise ValueError("--progressive recovers the model after each cut: pass --data DATA")
    if args.ratio is not None:
        raise ValueError("--progressive allocates channels by latency: drop --ratio (or pass --plan FILE to reach "
                         "that plan step by step)")
    work = Path(args.out).with_suffix(".progressive")
    model = load_model_arg(args)
    teacher = load_model(args.teacher).eval() if args.teacher else load_model_arg(args)
    spec = load_dataset(args.data, skip_bad=args.skip_bad)
    work.mkdir(parents=True, exist_ok=True)
    raw = get_backend(args.backend, **timing_options(args.backend, threads=args.threads))
    backend = CachedBackend(raw, LatencyCache(work / "latency.sqlite"))
    shape = (1, 3, args.imgsz, args.imgsz)
    base_ms = functools.cache(lambda: settled_ms(model, shape, backend))  # one measurement for the scale and target
    try:
        if args.cost == "flops":  # latency taken as proportional to FLOPs, scaled on the base's measurement
            predictor = FlopsPredictor.fit(model, shape, base_ms(), align=args.round_to)
        else:
            predictor = predictor_for(model, shape, raw, args.predict or work / "latency_table.json")
        target = args.target_latency or _speedup_target(work, args.speedup, base_ms)
        schedule = Schedule(target, steps=args.steps, epochs=args.epochs, importance=args.importance,
                            round_to=max(args.round_to, predictor.align), min_width=args.min_width,
                            tolerance=args.tolerance, img_size=args.imgsz, seed=args.seed, cost=args.cost)
        plan = Plan.load(args.plan) if args.plan else None
        final, state = progressive_prune(model, teacher, spec, backend, predictor, schedule, work, plan,
                                         progress=True)
    finally:
        raw.close()
    save_checkpoint(args.out, final, metrics={"pruned_from": model_name(args), "progressive": str(work)})
    if args.steps == 1:  # one cut: its plan is the whole plan against the base, as `prune --ratio` writes it
        shutil.copyfile(work / "step1" / "plan.json", Path(args.out).with_suffix(".plan.json"))
    rows = [{"step": r["step"], "goal ms": r["goal_ms"], "asked ms": r["asked_ms"], "predicted ms": r["predicted_ms"],
             "measured ms": r["measured_ms"], "params": r["params"], "GFLOPs": r["GFLOPs"], "epochs": r["epochs"],
             "mAP50": r.get("mAP50"), "mAP50-95": r.get("mAP50-95")} for r in state["steps"]]
    print(format_table(rows))
    last = state["steps"][-1]["measured_ms"]
    print(f"{'met' if state['met'] else 'MISSED'}: {last:.2f} ms measured on {args.backend} for a target of "
          f"{target:.2f} ms ({last / target - 1:+.1%}); wrote {args.out}; steps, latencies and checkpoints in {work}")
    if not state["met"]:
        raise NoFeasibleResult(f"the final model misses the target by {last / target - 1:+.1%}; it is saved "
                               f"anyway: {args.out}")
