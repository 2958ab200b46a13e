"""Which cheap score predicts a pruned plan's accuracy *after* recovery? Plans at one FLOPs budget, each scored by
candidate proxies and then recovered with the standard recovery; each proxy's Spearman rank correlation with the
recovered mAP, and its cost per candidate.

    python benchmarks/bench_proxy.py [--model yolov5n] [--flops 0.3] [--random 12] [--work runs/bench-peers]
        [--seeds-for uniform allocated-taylor searched]
    python benchmarks/bench_proxy.py --smoke                       # every step at tiny sizes, to check the script

The base is bench_peers' dense base (the same WORK/<model>/base, trained once if absent: the demo's data and recipe).
Plans, all pruned from it to at most the same share of its FLOPs (prune.ratio_for_flops), channels ranked by L1
inside each group: uniform (one ratio everywhere), global (one threshold over every group), allocated
(edgeprune.search.allocate: least importance per FLOP saved), allocated-taylor (the same, channels ranked by Taylor
importance), searched (`edgeprune search` with the FLOPs objective, its chosen plan) and random (every group's
kept share drawn from U(0.15, 1), the whole vector scaled until the budget is met).

Proxies, in order of cost (the teacher is the dense base; "held out" = validation images the mAP proxies never see):
  bn-map      mAP@0.5 on 32 validation images after BN recalibration on 4 training batches (today's search score);
              each mAP proxy also as NAME50-95, mAP@0.5:0.95 of the same evaluation (no extra cost)
  abn-map     the same after 16 batches: EagleEye's adaptive batch norm, which recalibrates longer
  kd-loss     the recalibrated copy's distillation loss against the teacher on the held-out images (lower = better)
  ft-map      mAP@0.5 on the 32 images after a short KD fine-tune (--ft-iters iterations) of bn-map's copy
              (NetAdapt's short-term fine-tune)
  ft-kd-loss  the distillation loss on the held-out images after that fine-tune
  kept-l1     the share of the L1 importance the plan keeps (free)
Recovery: 13 epochs of KD from the base (bench_peers' recipe); the uniform plan (and every plan named by
--seeds-for) is recovered with two more seeds, for the recovered mAP's own noise (a proxy cannot rank plans closer
than that). Writes
benchmarks/results/proxy.json and proxy.png; every plan's proxies and recovery are cached in WORK/<model>/proxy/.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_peers import KD_BOX, Bench  # noqa: E402
from edgeprune.checkpoint import load_model, save_checkpoint  # noqa: E402
from edgeprune.cli import main as cli  # noqa: E402
from edgeprune.data.dataset import build_loader  # noqa: E402
from edgeprune.evaluate.accuracy import evaluate  # noqa: E402
from edgeprune.evaluate.complexity import count_flops  # noqa: E402
from edgeprune.latency.layers import decompose  # noqa: E402
from edgeprune.models import create_model, example_input  # noqa: E402
from edgeprune.prune.graph import find_groups  # noqa: E402
from edgeprune.prune.importance import accumulate_gradients, rankable, score_groups  # noqa: E402
from edgeprune.prune.plan import (  # noqa: E402
    Plan,
    allowed_widths,
    nearest_width,
    plan_from_widths,
    plan_global,
    pruned_model,
    ratio_for_flops,
)
from edgeprune.search.allocate import UnitMap, allocate  # noqa: E402
from edgeprune.search.candidate import recalibrate_bn  # noqa: E402
from edgeprune.search.proxy import fine_tuned, kd_loss  # noqa: E402
from edgeprune.train.distill import DetectionKD  # noqa: E402
from edgeprune.utils.files import write_json  # noqa: E402

PROXIES = {"bn-map": 1, "bn-map50-95": 1, "abn-map": 1, "abn-map50-95": 1, "kd-loss": -1, "ft-map": 1,
           "ft-map50-95": 1, "ft-kd-loss": -1, "kept-l1": 1}  # sign: higher = better


class ConvMacs:
    """A FLOPs 'latency table' for edgeprune.search.allocate: millions of conv MACs of a unit list."""

    align = 8

    def predict(self, units) -> float:
        return sum(u.cin * u.cout * u.attrs["h"] * u.attrs["w"] * u.attrs["kernel"][0] * u.attrs["kernel"][1]
                   for u in units if u.op == "conv") / 1e6


class Plans:
    """Pruned copies of one base, each scaled to the same FLOPs share."""

    def __init__(self, base, img: int, share: float) -> None:
        self.base, self.img, self.share = base, img, share
        self.example = example_input(base)
        self.groups = find_groups(base, self.example)
        self.scores = score_groups(self.groups, "l1")
        self.budget = share * count_flops(base, img)

    def flops(self, model) -> float:
        return count_flops(model, self.img)

    def prune(self, plan: Plan) -> tuple[torch.nn.Module, Plan]:
        return pruned_model(self.base, plan, self.example), plan

    def at_budget(self, make_plan) -> tuple[torch.nn.Module, Plan]:
        """`make_plan(ratio)`, its FLOPs falling as the ratio grows, bisected to at most the budget."""
        return self.prune(ratio_for_flops(make_plan, self.base, self.share, self.img)[1])

    def kept_l1(self, plan: Plan) -> float:
        kept = sum(float(self.scores[n][plan.keep[n]].sum()) for n in plan.keep)
        return kept / sum(float(s.sum()) for s in self.scores.values())

    def from_shares(self, shares: dict[str, float]) -> tuple[torch.nn.Module, Plan]:
        """The kept shares, all scaled by one factor (ratio 0: every group whole) until the budget is met."""
        def make_plan(ratio: float) -> Plan:
            alpha = (1 - ratio) / min(shares.values())
            widths = {g.name: nearest_width(g.width * min(1.0, shares[g.name] * alpha), allowed_widths(g.width))
                      for g in self.groups}
            return plan_from_widths(self.groups, self.scores, widths)
        return self.at_budget(make_plan)

    def uniform(self):
        return self.from_shares({g.name: 1.0 for g in self.groups})

    def global_(self):
        ranked = rankable(self.scores, "l1")
        return self.at_budget(lambda ratio: plan_global(self.groups, ranked, ratio))

    def allocated(self, scores: dict | None = None, criterion: str = "l1"):
        shape = (1, 3, self.img, self.img)
        scores = scores or self.scores
        umap, ranked = UnitMap.learn(self.base, self.groups, shape, self.example), rankable(scores, criterion)
        macs = ConvMacs()
        full = macs.predict(decompose(self.base, shape))  # conv MACs only: the aim is bisected to the FLOPs budget
        return self.at_budget(lambda ratio: plan_from_widths(self.groups, scores, allocate(
            self.groups, ranked, umap, macs, full * (1 - ratio), 8, 8).widths))

    def allocated_taylor(self, train: list):
        """`allocated` with the channels ranked by the Taylor estimate of the loss change (comparable across groups,
        not rescaled per group as L1 is): what progressive pruning does with --importance taylor."""
        accumulate_gradients(self.base, train, self.img)
        try:
            return self.allocated(score_groups(self.groups, "taylor"), "taylor")
        finally:
            self.base.zero_grad(set_to_none=True)

    def random(self, seed: int):
        rng = random.Random(seed)
        return self.from_shares({g.name: rng.uniform(0.15, 1.0) for g in self.groups})

    def searched(self, bench: Bench, trials: int) -> tuple[torch.nn.Module, Plan]:
        """`edgeprune search` as a user runs it: the FLOPs objective under this budget, on the same base."""
        run = bench.work / "proxy" / "search"
        if not (run / "best.plan.json").is_file():
            cli(["search", str(bench.work / "base" / "last.pt"), "--data", str(bench.data), "--out", str(run),
                 "--imgsz", str(self.img), "--trials", str(trials), "--scopes", "blocks", "--backend", "none",
                 "--importance", "l1", "--lambda-latency", "0", "--lambda-flops", "1",
                 "--max-gflops", f"{self.budget / 1e9 * 1.02:.4f}", "--no-progress"])
        plan = Plan.load(run / "best.plan.json")
        return self.prune(plan_from_widths(self.groups, self.scores, {n: len(k) for n, k in plan.keep.items()}))


class Proxies:
    """Every proxy of one pruned copy, each timed (seconds on this CPU, BN recalibration included where used)."""

    def __init__(self, bench: Bench, teacher, ft_iters: int) -> None:
        spec, img, self.bench, self.teacher = bench.spec, bench.img, bench, teacher
        n = min(32, len(spec.val) // 2)  # the search's 32 images; the rest held out for the KD-loss proxies
        self.val = build_loader(spec.val[:n], img, 16, augment=False, shuffle=False)
        self.held_out = build_loader(spec.val[n:], img, 16, augment=False, shuffle=False)
        self.bn = build_loader(spec.train, img, 16, augment=True, shuffle=True, seed=0)
        self.ft_images = spec.train[: 16 * ft_iters]
        self.kd = DetectionKD(w_box=KD_BOX)

    def score(self, model, run: Path) -> dict:
        out, cost, recalibrated = {}, {}, {}
        for name, batches in (("bn-map", 4), ("abn-map", 16)):
            t0 = time.perf_counter()
            recalibrated[name] = recalibrate_bn(copy.deepcopy(model), self.bn, batches), time.perf_counter() - t0
            t0 = time.perf_counter()
            metrics = evaluate(recalibrated[name][0], self.val)
            out[name], out[name + "50-95"] = metrics["map50"], metrics["map"]
            cost[name] = cost[name + "50-95"] = recalibrated[name][1] + time.perf_counter() - t0
        t0 = time.perf_counter()  # on bn-map's copy, its recalibration counted in the cost
        out["kd-loss"] = self.kd_loss(recalibrated["bn-map"][0])
        cost["kd-loss"] = recalibrated["bn-map"][1] + time.perf_counter() - t0
        t0 = time.perf_counter()  # from bn-map's copy: BN momentum 0.03 leaves half the dense statistics after 24 its
        tuned = self.fine_tune(copy.deepcopy(recalibrated["bn-map"][0]), run)
        tuning, t0 = recalibrated["bn-map"][1] + time.perf_counter() - t0, time.perf_counter()
        metrics = evaluate(tuned, self.val)
        out["ft-map"], out["ft-map50-95"] = metrics["map50"], metrics["map"]
        cost["ft-map"] = cost["ft-map50-95"] = tuning + time.perf_counter() - t0
        t0 = time.perf_counter()
        out["ft-kd-loss"], cost["ft-kd-loss"] = self.kd_loss(tuned), tuning + time.perf_counter() - t0
        return {"proxies": out, "seconds": cost}

    def kd_loss(self, model) -> float:
        return kd_loss(model, self.teacher, self.held_out, self.kd)

    def fine_tune(self, model, run: Path):
        return fine_tuned(model, self.teacher, self.ft_images, self.bench.img, run)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's ρ: Pearson's r of the ranks, ties sharing their mean rank."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties: the mean of their ranks
            r[v == value] = r[v == value].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def plan_makers(plans: Plans, bench: Bench, n_random: int, trials: int) -> dict:
    makers = {"uniform": plans.uniform, "global": plans.global_, "allocated": plans.allocated,
              "searched": lambda: plans.searched(bench, trials),
              "allocated-taylor": lambda: plans.allocated_taylor(bench.spec.train)}
    makers.update({f"random{i}": (lambda i=i: plans.random(i)) for i in range(n_random)})
    return makers


def scored(name: str, make, plans: Plans, proxies: Proxies, work: Path) -> dict:
    """The plan's pruned model (saved) and its proxies, cached in WORK/proxy/NAME.json."""
    path = work / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    model, plan = make()
    save_checkpoint(work / f"{name}.pt", model)
    rec = {"name": name, "flops_share": plans.flops(model) / plans.flops(plans.base),
           "widths": {n: len(k) for n, k in plan.keep.items()}, **proxies.score(model, work / f"ft-{name}")}
    rec["proxies"]["kept-l1"], rec["seconds"]["kept-l1"] = plans.kept_l1(plan), 0.0
    write_json(path, rec)
    print(f"{name}: {rec['flops_share']:.3f} of the FLOPs, " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                                         rec["proxies"].items()), flush=True)
    return rec


def recovered(bench: Bench, rec: dict, seeds: int, work: Path) -> dict:
    """The plan recovered by the standard KD (bench_peers' recipe), per seed: cached as bench rows."""
    r = bench.r
    runs = [bench.row(f"proxy-{rec['name']}-s{s}", lambda s=s: (
        bench.fit(f"proxy/{rec['name']}-s{s}", load_model(work / f"{rec['name']}.pt"), r["recovery"], s,
                  teacher=bench.base), {"training": f"{r['recovery']} ep KD"})) for s in range(seeds)]
    return {"mAP50": float(np.mean([x["mAP50"] for x in runs])), "mAP50-95": float(np.mean([x["mAP50-95"]
                                                                                               for x in runs])),
            "seeds": [{k: x[k] for k in ("mAP50", "mAP50-95")} for x in runs], "GFLOPs": runs[0]["GFLOPs"],
            "params": runs[0]["params"], "recovery_s": float(np.mean([x["seconds"] for x in runs]))}


def summarize(records: list[dict]) -> dict:
    """Each proxy's Spearman ρ with the recovered mAPs (sign-corrected: +1 = it ranks plans as recovery does) and
    its median cost per candidate, relative to today's screen (bn-map)."""
    today = float(np.median([x["seconds"]["bn-map"] for x in records]))
    table = []
    for name, sign in PROXIES.items():
        values = [sign * x["proxies"][name] for x in records]
        cost = float(np.median([x["seconds"][name] for x in records]))
        table.append({"proxy": name, "spearman_map": spearman(values, [x["recovered"]["mAP50-95"] for x in records]),
                      "spearman_map50": spearman(values, [x["recovered"]["mAP50"] for x in records]),
                      "seconds": cost, "cost_vs_bn_map": cost / today if today else float("nan")})
    uniform = next(x for x in records if x["name"] == "uniform")["recovered"]["seeds"]
    spread = {k: (max(s[k] for s in uniform) - min(s[k] for s in uniform)) / 2 for k in ("mAP50", "mAP50-95")}
    mean = [x["recovered"]["mAP50-95"] for x in records]
    return {"table": table, "seed_spread": spread, "recovered_range": [min(mean), max(mean)],
            "n_plans": len(records)}


def plot(records: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(12, 10))
    y = [x["recovered"]["mAP50-95"] for x in records]
    for ax, line in zip(axes.flat, summary["table"]):
        ax.scatter([x["proxies"][line["proxy"]] for x in records], y, s=18)
        for x, yy in zip(records, y):
            if not x["name"].startswith("random"):
                ax.annotate(x["name"], (x["proxies"][line["proxy"]], yy), fontsize=7)
        ax.set_title(f"{line['proxy']}: ρ = {line['spearman_map']:.2f}, {line['seconds']:.1f} s", fontsize=9)
        ax.set_ylabel("recovered mAP@0.5:0.95", fontsize=8)
    fig.suptitle(f"{summary['n_plans']} plans at one FLOPs budget: proxy against the accuracy after recovery "
                 f"(seed spread ±{summary['seed_spread']['mAP50-95']:.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov5n")
    ap.add_argument("--flops", type=float, default=0.3, help="the budget: share of the base's FLOPs every plan keeps")
    ap.add_argument("--random", type=int, default=12, help="random plans beside uniform, global, allocated, searched")
    ap.add_argument("--ft-iters", type=int, default=24, help="iterations of the short KD fine-tune (ft-* proxies)")
    ap.add_argument("--trials", type=int, default=30, help="trials of the FLOPs search that makes the searched plan")
    ap.add_argument("--work", default="runs/bench-peers", help="shared with bench_peers: the same dense base")
    ap.add_argument("--out", help="JSON (default benchmarks/results/proxy.json)")
    ap.add_argument("--seeds-for", nargs="*", default=["uniform"], metavar="PLAN",
                    help="plans recovered with 3 seeds (the rest with one); uniform's spread is the noise floor")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and 2 random plans, to check the script")
    args = ap.parse_args()
    args.work, args.seeds = Path(args.work) / args.model, 1
    if args.smoke:
        args.work, args.random, args.ft_iters, args.trials = args.work.with_name(args.model + "-smoke"), 2, 2, 3
    bench = Bench(args)
    r = bench.r
    bench.base = bench.fit("base", create_model(args.model, len(bench.spec.names)), r["epochs"], 0, scratch=True)
    plans, proxies = Plans(bench.base, bench.img, args.flops), Proxies(bench, bench.base, args.ft_iters)
    work = bench.work / "proxy"
    work.mkdir(parents=True, exist_ok=True)
    records = [scored(n, make, plans, proxies, work) for n, make in plan_makers(plans, bench, args.random,
                                                                                 args.trials).items()]
    for rec in records:  # the expensive part last, so that every proxy is on disk before the first recovery
        rec["recovered"] = recovered(bench, rec, 3 if rec["name"] in args.seeds_for and not args.smoke else 1, work)
    summary = summarize(records)
    out = Path(args.out or f"benchmarks/results/proxy{'_smoke' if args.smoke else ''}.json")
    result = {"model": args.model, "flops_share": args.flops, "recipe": r, "ft_iters": args.ft_iters,
              "kd_box_weight": KD_BOX, "minutes": bench.seconds() / 60, **summary, "plans": records}
    write_json(out, result)
    plot(records, summary, out.with_suffix(".png"))
    for line in summary["table"]:
        print(f"{line['proxy']:>11}  ρ(mAP@0.5:0.95) {line['spearman_map']:+.2f}  ρ(mAP@0.5) "
              f"{line['spearman_map50']:+.2f}  {line['seconds']:.1f} s ({line['cost_vs_bn_map']:.1f}× bn-map)")
    print(f"recovered mAP@0.5:0.95 {summary['recovered_range'][0]:.3f}..{summary['recovered_range'][1]:.3f}, "
          f"seed spread ±{summary['seed_spread']['mAP50-95']:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
