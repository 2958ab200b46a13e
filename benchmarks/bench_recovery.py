"""Recovery and sparsity study on the synthetic SAR set: one base model pruned to about 20 % of its FLOPs.

    python benchmarks/bench_recovery.py --base runs/bench-demo/train/best.pt --data runs/bench-demo/data/data.yaml
                                        [--epochs 10] [--sparsity-epochs 30] [--sparsity-lambda 0.01]

Recovery (same pruned model, same number of epochs each): (1) fine-tuning, (2) KD from the base, (3) a
teacher-assistant chain of 3 steps with KD (the epochs split across the steps), (4) KD with student
self-reflection (a_T 0.5). Sparsity: the model trained from scratch with the base's recipe (`edgeprune train`,
`--sparsity-epochs`) under bn-l1 / l1rr / heatmap ("none" is the base itself), pruned by BN-scale ranking (global,
CRP) to the same FLOPs and fine-tuned `--epochs` epochs. Every row is kept in WORK/rows/ as it finishes, so a
killed run resumes. Writes benchmarks/results/recovery.json and .png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgeprune.checkpoint import load_model
from edgeprune.data.dataset import build_loader
from edgeprune.data.formats import load_dataset
from edgeprune.evaluate.accuracy import evaluate
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.models import create_model, example_input
from edgeprune.prune.chain import prune_in_steps, step_plans
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import plan_global, pruned_model, ratio_for_flops
from edgeprune.train.sparsity import bn_layers, evenness, layer_sparsity
from edgeprune.train.trainer import TrainConfig, train
from edgeprune.utils.files import write_json


def plan_at_flops(model, importance: str, share: float, img: int):
    """The global plan (CRP, round_to 8) whose pruned model keeps `share` of the FLOPs."""
    groups = find_groups(model, example_input(model))
    scores = rankable(score_groups(groups, importance), importance)
    _, plan = ratio_for_flops(lambda r: plan_global(groups, scores, r, round_to=8), model, share, img, steps=12)
    return groups, score_groups(groups, importance), plan


def gamma_stats(model) -> dict:
    """How the BN scales of the model that gets pruned are spread: quantiles of |γ| over all layers, and the mean
    per-layer share under 1 % and 10 % of the layer's largest |γ| (with the evenness of the 1 % shares)."""
    g = torch.cat([bn.weight.detach().abs() for _, bn in bn_layers(model)])
    share, share10 = (layer_sparsity(model, t, relative=True) for t in (0.01, 0.1))
    return {"gamma_q10": float(g.quantile(0.1)), "gamma_q50": float(g.quantile(0.5)),
            "gamma_q90": float(g.quantile(0.9)), "sparse_share": sum(share.values()) / len(share),
            "share_under_10pct": sum(share10.values()) / len(share10), "evenness": evenness(share)}


def pruned(model, plan):
    return pruned_model(model, plan, example_input(model))


class Study:
    def __init__(self, args) -> None:
        self.args, self.work = args, args.work
        self.spec = load_dataset(args.data)
        self.val = build_loader(self.spec.val, args.imgsz, 16, augment=False, shuffle=False)

    def cfg(self, epochs: int, recipe: str = "recover", **kw) -> TrainConfig:
        """`recover`: `edgeprune finetune`'s recipe; `scratch`: `edgeprune train`'s (the base model's)."""
        if recipe == "scratch":
            return TrainConfig(epochs=epochs, batch_size=16, img_size=self.args.imgsz, eval_every=epochs,
                               seed=self.args.seed, **kw)
        return TrainConfig(epochs=epochs, batch_size=16, img_size=self.args.imgsz, lr0=0.002, warmup_epochs=1.0,
                           eval_every=epochs, seed=self.args.seed, **kw)

    def fit(self, name: str, model, epochs: int, teacher=None, recipe: str = "recover", **kw):
        run = self.work / name
        train(model.train(), self.spec.train, self.spec.val, self.cfg(epochs, recipe, **kw), run, progress=False,
              teacher=teacher)
        return load_model(run / "last.pt").eval()

    def row(self, name: str, make) -> dict:
        """Cached: WORK/rows/NAME.json, written when the row finishes."""
        path = self.work / "rows" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        model, extra = make()
        m = evaluate(model, self.val)
        row = {"name": name, "map50": m["map50"], "map": m["map"], "params": count_params(model),
               "gflops": count_flops(model, self.args.imgsz) / 1e9, "seconds": time.perf_counter() - t0, **extra}
        write_json(path, row)
        print(json.dumps(row), flush=True)
        return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--flops-share", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=10, help="recovery epochs, the same for every method")
    ap.add_argument("--model", default="yolov5n", help="architecture of the base (sparsity runs train it anew)")
    ap.add_argument("--sparsity-epochs", type=int, default=30, help="epochs of the from-scratch sparsity runs "
                    "(the base's recipe)")
    ap.add_argument("--sparsity-lambda", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-recovery"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/recovery.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    study, base = Study(args), load_model(args.base).eval()
    img, e = args.imgsz, args.epochs
    groups, scores, plan = plan_at_flops(base, "l1", args.flops_share, img)
    before = study.row("pruned, no recovery", lambda: (pruned(base, plan), {}))
    recovery = [before]
    recovery.append(study.row("(1) fine-tune", lambda: (study.fit("finetune", pruned(base, plan), e), {})))
    recovery.append(study.row("(2) KD", lambda: (study.fit("kd", pruned(base, plan), e, teacher=base), {})))

    def chain():
        plans = step_plans(plan, groups, scores, 3)
        epochs = [e // 3 + (1 if i < e % 3 else 0) for i in range(3)]
        return prune_in_steps(base, plans, lambda s, t, i: study.fit(f"chain{i}", s, epochs[i - 1], teacher=t))[-1], {}

    recovery.append(study.row("(3) teacher-assistant chain, 3 steps", chain))
    recovery.append(study.row("(4) KD + self-reflection", lambda: (
        study.fit("kd-reflect", pruned(base, plan), e, teacher=base, self_reflection=0.5), {})))
    sparsity = []
    for method in ("none", "bn-l1", "l1rr", "heatmap"):
        def sparse_then_prune(method=method):
            sparse = base if method == "none" else study.fit(
                f"scratch-{method}", create_model(args.model, len(study.spec.names)), args.sparsity_epochs,
                recipe="scratch", sparsity=method, sparsity_lambda=args.sparsity_lambda)
            m_sparse = evaluate(sparse, study.val)
            _, _, p = plan_at_flops(sparse, "bn", args.flops_share, img)
            cut = pruned(sparse, p)
            m0 = evaluate(cut, study.val)
            return study.fit(f"scratch-{method}-ft", cut, e), {
                "map50_sparse": m_sparse["map50"], "map50_before_recovery": m0["map50"]}
        row = study.row(f"sparsity {method}", sparse_then_prune)
        sparse = base if method == "none" else load_model(args.work / f"scratch-{method}" / "last.pt")
        sparsity.append({**row, **gamma_stats(sparse)})
    m_base = evaluate(base, study.val)
    out = {"base": {"map50": m_base["map50"], "map": m_base["map"], "params": count_params(base),
                    "gflops": count_flops(base, img) / 1e9},
           "flops_share": args.flops_share, "recovery_epochs": e, "sparsity_epochs": args.sparsity_epochs,
           "sparsity_lambda": args.sparsity_lambda, "recovery": recovery, "sparsity": sparsity,
           "wall_s": time.perf_counter() - t0}
    write_json(args.out, out)
    plot(out, args.out.with_suffix(".png"))
    print(json.dumps(out, indent=1))


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rows, title in ((axes[0], out["recovery"], "recovery, same pruned model"),
                            (axes[1], out["sparsity"], "sparsity training, then prune + fine-tune")):
        names = [r["name"] for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["map50"] for r in rows], 0.4, label="mAP@0.5")
        ax.bar([i + 0.2 for i in x], [r["map"] for r in rows], 0.4, label="mAP@0.5:0.95")
        ax.axhline(out["base"]["map50"], color="k", lw=0.8, ls="--", label="base mAP@0.5")
        ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
