"""Why the KD box term is weighted 0.05: the same pruned model recovered three ways, validated every epoch.

    python benchmarks/bench_kd_box.py --pruned runs/demo/search/pruned.pt --teacher runs/demo/train/best.pt \
                                      --data runs/demo/data/data.yaml [--epochs 13] [--seeds 3]

Arms, each `--epochs` epochs with `edgeprune finetune`'s recipe: fine-tuning without a teacher, KD with the box term
at weight 1 (edgeprune before 2026-12-03), KD with it at 0.05 (YOLOv5's box gain, the default now). Per run:
mAP per epoch, the last epoch's mAP, and the most boxes above 0.25 confidence on one validation image (a student
that fires on whole images shows up there first). Every run is kept in WORK/, so a killed study resumes.
Writes benchmarks/results/recovery_kd_box.json and .png.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.machine import LoadMeter  # noqa: E402
from edgeprune.checkpoint import load_model  # noqa: E402
from edgeprune.data.dataset import build_loader  # noqa: E402
from edgeprune.data.formats import load_dataset  # noqa: E402
from edgeprune.train.trainer import TrainConfig, train  # noqa: E402
from edgeprune.utils.files import write_json  # noqa: E402

ARMS = {"fine-tune, no teacher": None, "KD, box weight 1": 1.0, "KD, box weight 0.05": 0.05}


def _spread(v: list) -> float | None:
    """Half the range of the seeds' results (None for one seed)."""
    return (max(v) - min(v)) / 2 if len(v) > 1 else None


def most_boxes(model, samples, img: int) -> int:
    """The most boxes above 0.25 confidence (objectness × class) that `model` puts on one image of `samples`."""
    model.eval()
    worst = 0
    with torch.no_grad():
        for images, _, _ in build_loader(samples, img, 25, augment=False, shuffle=False):
            y = model(images)
            y = y[0] if isinstance(y, (tuple, list)) else y
            worst = max(worst, int((y[..., 4] * y[..., 5:].amax(-1) > 0.25).sum(1).max()))
    return worst


def run(args, spec, arm: str, seed: int) -> dict:
    out = Path(args.work) / f"{arm.replace(' ', '_').replace(',', '')}-s{seed}"
    done = out / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    box = ARMS[arm]
    teacher = load_model(args.teacher).eval() if box is not None else None
    kd = {} if box is None else {"kd_box_weight": box}
    cfg = TrainConfig(epochs=args.epochs, batch_size=16, img_size=args.imgsz, lr0=0.002, warmup_epochs=1.0,
                      seed=seed, eval_every=1, **kd)
    load = LoadMeter().start()
    train(load_model(args.pruned).train(), spec.train, spec.val, cfg, out, progress=False, teacher=teacher,
          resume=(out / "last.pt").is_file())
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    row = {"arm": arm, "seed": seed, "map50": [float(r["map50"]) for r in rows], "map": [float(r["map"]) for r in rows],
           "most_boxes_on_one_image": most_boxes(load_model(out / "last.pt"), spec.val, args.imgsz),
           "load_elsewhere": load.stop()}
    write_json(done, row)
    print(json.dumps({k: row[k] for k in ("arm", "seed", "most_boxes_on_one_image")} | {
        "last_map50": row["map50"][-1], "last_map": row["map"][-1]}), flush=True)
    return row


def summary(runs: list[dict]) -> list[dict]:
    table = []
    for arm in ARMS:
        xs = [r for r in runs if r["arm"] == arm]
        if not xs:
            continue
        last50, last = [r["map50"][-1] for r in xs], [r["map"][-1] for r in xs]
        table.append({"arm": arm, "seeds": len(xs), "mAP50": statistics.mean(last50), "spread50": _spread(last50),
                      "mAP50-95": statistics.mean(last), "spread": _spread(last),
                      "lowest_mAP50_after_epoch_3": min(min(r["map50"][3:]) for r in xs),
                      "most_boxes_on_one_image": max(r["most_boxes_on_one_image"] for r in xs)})
    return table


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = dict(zip(ARMS, ("tab:gray", "tab:red", "tab:blue")))
    for r in runs:
        ax.plot(range(1, len(r["map50"]) + 1), r["map50"], color=colors[r["arm"]], alpha=0.8,
                label=r["arm"] if r["seed"] == 0 else None)
    ax.set(xlabel="epoch", ylabel="validation mAP@0.5", title="recovering one pruned model, per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pruned", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=13)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--work", default="runs/bench-kd-box")
    ap.add_argument("--out", default="benchmarks/results/recovery_kd_box.json")
    args = ap.parse_args()
    spec = load_dataset(args.data)
    runs = [run(args, spec, arm, seed) for seed in range(args.seeds) for arm in ARMS]
    out = Path(args.out)
    write_json(out, {"pruned": args.pruned, "teacher": args.teacher, "epochs": args.epochs, "runs": runs,
                     "table": summary(runs)})
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
