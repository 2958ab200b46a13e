"""`edgeprune eval`: mAP@0.5, mAP@0.5:0.95, precision and recall of a checkpoint on the validation split."""

from __future__ import annotations

import argparse

from ..report.tables import format_table
from ..utils.files import write_json
from .common import add_data, add_imgsz, add_skip_bad


def register(sub) -> None:
    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, precision and recall on the validation split")
    p.add_argument("checkpoint")
    add_data(p)
    add_imgsz(p)
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold before NMS")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    add_skip_bad(p, "skip and count bad labels of the validation split instead of stopping (eval reads no other "
                 "split)")
    p.set_defaults(func=evaluate)


def evaluate(args: argparse.Namespace) -> dict:
    from ..checkpoint import load_model
    from ..data.dataset import build_loader
    from ..data.formats import load_dataset
    from ..evaluate import evaluate as run_eval

    model = load_model(args.checkpoint)
    spec = load_dataset(args.data, skip_bad=args.skip_bad, need=("val",))
    loader = build_loader(spec.val, args.imgsz, args.batch, augment=False, shuffle=False)
    m = run_eval(model, loader, conf_thres=args.conf, iou_thres=args.iou, progress=True)
    row = {k: m[k] for k in ("images", "precision", "recall", "map50", "map")}
    print(format_table([row]))
    if args.json:
        write_json(args.json, m)
    return m
