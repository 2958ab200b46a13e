"""Pruning methods at one budget, with the same recovery: uniform L1, global BN-scale, and edgeprune's search with a
FLOPs objective and with the measured-latency objective.

    python benchmarks/bench_search.py [--base runs/bench-demo/train/best.pt --data runs/bench-demo/data/data.yaml]
                                      [--flops-share 0.2] [--trials 100] [--finetune-epochs 20]

Without --base, the synthetic SAR set (500/100 scenes, 320 px) is made and yolov5n trained on it as in the demo.
Budget: (a) uniform-ratio L1 pruning (Torch-Pruning's default: every group loses the same share, round_to 8) at
the ratio that leaves `--flops-share` of the base FLOPs; (b) global BN-scale pruning (network slimming's ranking,
CRP) at the same FLOPs; (c) `edgeprune search` with the FLOPs objective, FLOPs capped at the same budget;
(d) `edgeprune search` with the latency objective (onnxruntime CPU, 1 thread), latency target = what (a) measures.
Both searches maximise the candidates' accuracy (BN-recalibrated mAP@0.5 on `--val-images`) under their hard limit.
Every pruned model is then fine-tuned for `--finetune-epochs` epochs (same schedule for all) and evaluated on the
full validation split; latencies are measured in the same run (onnxruntime CPU, 1 thread, lowest median of 3
passes). Writes benchmarks/results/search.json and search.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deploy.onnxruntime_runner import cpu_name
from edgeprune.checkpoint import load_model
from edgeprune.cli import main as cli
from edgeprune.data.dataset import build_loader
from edgeprune.data.formats import load_dataset
from edgeprune.evaluate.accuracy import evaluate
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.latency import get_backend, module_to_onnx
from edgeprune.models import example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import plan_from_ratios, plan_global, pruned_model, ratio_for_flops
from edgeprune.search import SearchConfig, run_search
from edgeprune.train.trainer import TrainConfig, train


def at_flops(make_plan, base, share: float, img: int):
    """The ratio whose plan leaves `share` of the base FLOPs, and the pruned model."""
    ratio, plan = ratio_for_flops(make_plan, base, share, img)
    return ratio, pruned(base, plan)


def pruned(base, plan):
    return pruned_model(base, plan, example_input(base))


def latency(models: dict, img: int, passes: int = 3) -> dict:
    backend = get_backend("ort", threads=1, runs=50, warmup=10, min_warmup_s=0.5)
    onnx = {k: module_to_onnx(m, (1, 3, img, img)) for k, m in models.items()}
    best: dict = {}
    for p in range(passes):
        for k in (list(onnx) if p % 2 == 0 else list(reversed(onnx))):
            ms = backend.measure(onnx[k], (1, 3, img, img)).median_ms
            best[k] = min(best.get(k, ms), ms)
    return best


def search(name: str, args, out: Path, objective: dict, backend: str):
    cfg = SearchConfig(checkpoint=str(args.base), data=str(args.data), out=str(out / name), img_size=args.imgsz,
                       trials=args.trials, objective=objective, backend=backend, threads=1,
                       measure="pareto" if backend != "none" else "none", scopes="groups",
                       val_images=args.val_images, seed=args.seed)
    t0 = time.perf_counter()
    _, report = run_search(cfg, progress=True)
    return load_model(out / name / "pruned.pt").eval(), report, time.perf_counter() - t0


def finetune(name: str, model, args, out: Path, spec) -> dict:
    cfg = TrainConfig(epochs=args.finetune_epochs, batch_size=16, img_size=args.imgsz, lr0=0.002, warmup_epochs=1,
                      eval_every=args.finetune_epochs, seed=args.seed)
    t0 = time.perf_counter()
    train(model.train(), spec.train, spec.val, cfg, out / f"finetune-{name}", progress=False)
    best = load_model(out / f"finetune-{name}" / "last.pt").eval()
    loader = build_loader(spec.val, args.imgsz, 16, augment=False, shuffle=False)
    m = evaluate(best, loader)
    return {"model": best, "map50": m["map50"], "map": m["map"], "finetune_s": time.perf_counter() - t0}


def base_model(args, out: Path) -> None:
    if args.base:
        return
    data, run = out / "data", out / "base"
    cli(["data", "synth", "--out", str(data), "--train", "500", "--val", "100", "--size", str(args.imgsz)])
    cli(["train", "--data", str(data / "data.yaml"), "--model", "yolov5n", "--epochs", "50", "--eval-every", "4",
         "--imgsz", str(args.imgsz), "--out", str(run), "--no-progress"])
    args.base, args.data = run / "best.pt", data / "data.yaml"


def plot(rows: list[dict], base: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "map50", "mAP@0.5"), (axes[1], "map", "mAP@0.5:0.95")):
        for r in rows:
            ax.scatter(r["latency_ms"], r[key], s=50, label=r["method"])
            ax.annotate(r["method"][:3], (r["latency_ms"], r[key]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.scatter(base["latency_ms"], base[key], marker="*", s=160, c="k")
        ax.annotate("base", (base["latency_ms"], base[key]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("latency, ms (onnxruntime CPU, 1 thread)")
        ax.set_ylabel(f"{label} after recovery")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--flops-share", type=float, default=0.2)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--val-images", type=int, default=64)
    ap.add_argument("--finetune-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-search"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/search.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    base_model(args, args.work)
    base = load_model(args.base).eval()
    spec, img = load_dataset(args.data), args.imgsz
    f0 = count_flops(base, img)
    groups = find_groups(base, example_input(base))
    l1 = score_groups(groups, "l1")
    bn = rankable(score_groups(groups, "bn"), "bn")
    models, info = {}, {}
    r, models["(a) uniform L1"] = at_flops(lambda x: plan_from_ratios(groups, l1, x, round_to=8), base,
                                           args.flops_share, img)
    info["(a) uniform L1"] = {"ratio": r}
    r, models["(b) global BN-scale"] = at_flops(lambda x: plan_global(groups, bn, x, round_to=8), base,
                                                args.flops_share, img)
    info["(b) global BN-scale"] = {"ratio": r}
    t_a = latency({"a": models["(a) uniform L1"]}, img)["a"]
    print(f"budget: {args.flops_share:.0%} of {f0 / 1e9:.2f} GFLOPs; (a) measures {t_a:.2f} ms", flush=True)
    # both searches maximise accuracy inside the budget (hard limits, no pull toward smaller models), so that
    # every method lands at the same budget and the comparison is at equal FLOPs (c) or equal latency (d)
    flops_obj = {"latency_weight": 0.0, "max_flops": args.flops_share * f0}
    lat_obj = {"latency_weight": 0.0, "target_latency_ms": t_a}
    for name, obj, be in (("(c) search, FLOPs objective", flops_obj, "none"),
                          ("(d) search, latency objective", lat_obj, "ort")):
        key = "c" if name.startswith("(c)") else "d"
        models[name], report, secs = search(f"search-{key}", args, args.work, obj, be)
        info[name] = {"search_s": secs, "trials": report["trials"], "search_map50": report["chosen"]["map50"]}
    rows = []
    for name, m in models.items():
        rec = finetune(name[1], m, args, args.work, spec)
        rows.append({"method": name, **info[name], "params": count_params(rec["model"]),
                     "gflops": count_flops(rec["model"], img) / 1e9, "map50": rec["map50"], "map": rec["map"],
                     "finetune_s": rec["finetune_s"], "_model": rec["model"]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "_model"}), flush=True)
    lat = latency({"base": base, **{r["method"]: r["_model"] for r in rows}}, img)
    m0 = evaluate(base, build_loader(spec.val, img, 16, augment=False, shuffle=False))
    base_row = {"params": count_params(base), "gflops": f0 / 1e9, "latency_ms": lat["base"], "map50": m0["map50"],
                "map": m0["map"]}
    for r in rows:
        r.pop("_model")
        r["latency_ms"] = lat[r["method"]]
        r["speedup"] = lat["base"] / r["latency_ms"]
        r["flops_share"] = r["gflops"] * 1e9 / f0
    out = {"machine": {"cpu": cpu_name(), "threads": 1}, "base": base_row, "budget_flops_share": args.flops_share,
           "target_latency_ms": t_a, "trials": args.trials, "finetune_epochs": args.finetune_epochs,
           "val_images_in_search": args.val_images, "rows": rows, "wall_s": time.perf_counter() - t_start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    plot(rows, base_row, args.out.with_suffix(".png"))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
