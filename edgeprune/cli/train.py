"""`edgeprune train`: train a detector, optionally with sparsity on its BatchNorm scales (docs/sparsity.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.tables import format_table
from .common import add_data, add_imgsz, add_run_options, add_seed, add_threads


def register(sub) -> None:
    p = sub.add_parser("train", help="train a detector")
    add_data(p)
    p.add_argument("--model", default="yolov5n", help="registered model name, e.g. yolov5n/s/m")
    p.add_argument("--weights", help="start from this edgeprune checkpoint instead of random weights")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    add_imgsz(p)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr0", type=float, default=None, help="initial lr (default 0.01 for SGD, 0.002 for AdamW)")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (and after the last)")
    add_seed(p)
    add_threads(p)
    p.add_argument("--sparsity", default="none", choices=["none", "bn-l1", "l1rr", "heatmap"],
                   help="sparsity training on BatchNorm scale factors (docs/sparsity.md)")
    p.add_argument("--sparsity-lambda", type=float, default=1e-3, help="strength of the sparsity penalty")
    p.add_argument("--attention-weight", type=float, default=0.0,
                   help="feature-attention loss: keep the neck's attention inside ground-truth boxes as it was at "
                   "the start (use with --weights and --sparsity)")
    add_run_options(p, "runs/train", "run directory (checkpoints, metrics.csv)")
    p.set_defaults(func=train)


def train(args: argparse.Namespace) -> None:
    from ..checkpoint import load_model
    from ..data.formats import load_dataset
    from ..models import create_model
    from ..train import TrainConfig
    from ..train import train as run_training

    spec = load_dataset(args.data, skip_bad=args.skip_bad)
    model = load_model(args.weights).train() if args.weights else create_model(args.model, len(spec.names))
    lr0 = args.lr0 if args.lr0 is not None else (0.01 if args.optimizer == "sgd" else 0.002)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, img_size=args.imgsz, optimizer=args.optimizer,
                      lr0=lr0, seed=args.seed, threads=args.threads, eval_every=args.eval_every,
                      sparsity=args.sparsity, sparsity_lambda=args.sparsity_lambda,
                      attention_weight=args.attention_weight)
    last = run_training(model, spec.train, spec.val, cfg, args.out, resume=args.resume,
                        progress=not args.no_progress)
    print(format_table([last]))
    print(f"checkpoints: {Path(args.out) / 'best.pt'}, {Path(args.out) / 'last.pt'}; "
          f"per-epoch metrics: {Path(args.out) / 'metrics.csv'}")
    if args.sparsity != "none":
        print(f"sparsity: {Path(args.out) / 'sparsity.json'} (per-layer shares, evenness), "
              f"{Path(args.out) / 'gamma.png'} (|gamma| histograms)")
