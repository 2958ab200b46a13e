"""`edgeprune finetune`: recover a pruned detector by fine-tuning, or by distillation from a teacher."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.tables import format_table
from .common import add_data, add_imgsz, add_run_options, add_seed, add_threads


def register(sub) -> None:
    p = sub.add_parser("finetune", help="recover a pruned detector: fine-tuning, or distillation from a teacher")
    p.add_argument("checkpoint", help="the pruned checkpoint (edgeprune prune / search)")
    add_data(p)
    p.add_argument("--teacher", help="distil from this checkpoint (e.g. the unpruned model)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the distillation loss")
    p.add_argument("--kd-temperature", type=float, default=1.0, help="softening of the distilled scores")
    p.add_argument("--kd-box-weight", type=float, default=None,
                   help="weight of the distilled boxes (default TrainConfig's: YOLOv5's box gain, 0.05; 1 made thin "
                        "students collapse)")
    p.add_argument("--feature-kd", default="none", choices=["none", "mse", "cwd"],
                   help="with --teacher: also distil the neck's outputs (1x1 adapters where widths differ)")
    p.add_argument("--self-reflection", type=float, default=0.0, metavar="A_T",
                   help="student self-reflection: its previous-epoch predictions as soft targets, weight growing "
                   "linearly to A_T (e.g. 0.5); alone or with --teacher")
    p.add_argument("--epochs", type=int, default=20, help="recovery epochs")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    add_imgsz(p)
    p.add_argument("--lr0", type=float, default=0.002, help="initial lr (SGD); lower than training from scratch")
    p.add_argument("--eval-every", type=int, default=5, help="validate every N epochs (and after the last)")
    add_seed(p)
    add_threads(p)
    add_run_options(p, "runs/finetune", "run directory")
    p.set_defaults(func=finetune)


def finetune(args: argparse.Namespace) -> dict:
    """Recover a pruned model: plain fine-tuning, or detection KD from `--teacher` on top of the detection loss."""
    from ..checkpoint import load_model
    from ..data.formats import load_dataset
    from ..train import TrainConfig
    from ..train import train as run_training

    student = load_model(args.checkpoint).train()
    teacher = load_model(args.teacher) if args.teacher else None
    spec = load_dataset(args.data, skip_bad=args.skip_bad)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, img_size=args.imgsz, lr0=args.lr0,
                      warmup_epochs=1.0, seed=args.seed, threads=args.threads, eval_every=args.eval_every,
                      kd_weight=args.kd_weight, kd_temperature=args.kd_temperature,
                      self_reflection=args.self_reflection, feature_kd=args.feature_kd,
                      **({} if args.kd_box_weight is None else {"kd_box_weight": args.kd_box_weight}))
    last = run_training(student, spec.train, spec.val, cfg, args.out, resume=args.resume,
                        progress=not args.no_progress, teacher=teacher)
    print(format_table([last]))
    how = f"distilled from {args.teacher}" if teacher is not None else "fine-tuned"
    how += " with self-reflection" if args.self_reflection else ""
    print(f"{how}: {Path(args.out) / 'best.pt'}, {Path(args.out) / 'last.pt'}, {Path(args.out) / 'metrics.csv'}")
    return last
