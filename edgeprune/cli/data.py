"""`edgeprune data`: make a synthetic SAR ship dataset, or convert COCO-json / VOC-xml / YOLO to the YOLO layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_seed, add_skip_bad


def register(sub) -> None:
    data = sub.add_parser("data", help="make or convert datasets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write a synthetic SAR ship dataset in YOLO format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=400, help="training scenes")
    p.add_argument("--val", type=int, default=100, help="validation scenes")
    p.add_argument("--size", type=int, default=320, help="scene side in pixels")
    add_seed(p)
    p.set_defaults(func=synth)
    p = data.add_parser("convert", help="convert a COCO-json / VOC-xml / YOLO dataset to the YOLO layout")
    p.add_argument("src", help="data.yaml, COCO dataset folder or json, or VOC folder")
    p.add_argument("--to", default="yolo", choices=["yolo"], help="output layout")
    p.add_argument("--format", default="auto", choices=["auto", "yolo", "coco", "voc"], help="input format")
    p.add_argument("--out", required=True, help="output folder")
    add_skip_bad(p)
    p.set_defaults(func=convert)


def synth(args: argparse.Namespace) -> None:
    from ..data.synth import synthesize

    yaml_path = synthesize(args.out, args.train, args.val, size=args.size, seed=args.seed)
    print(f"wrote {yaml_path} ({args.train} train / {args.val} val scenes, preview: {Path(args.out) / 'preview.png'})")


def convert(args: argparse.Namespace) -> None:
    from ..data.convert import convert_to_yolo
    from ..data.formats import load_dataset

    spec = load_dataset(args.src, fmt=args.format, skip_bad=args.skip_bad)
    print(f"wrote {convert_to_yolo(spec, args.out)} ({len(spec.train)} train / {len(spec.val)} val images)")
