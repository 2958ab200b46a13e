"""`edgeprune export`: a checkpoint to ONNX (checked, compared with torch), and a TensorRT engine where possible."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_imgsz


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked, compared with torch)")
    p.add_argument("checkpoint")
    p.add_argument("--out", help="ONNX path (default: next to the checkpoint)")
    add_imgsz(p)
    p.add_argument("--opset", type=int, default=13, help="ONNX opset; TensorRT 8.2 (TX2, JetPack 4.6) needs <= 13")
    p.add_argument("--layout", default="yolo", choices=["yolo", "nms"],
                   help="yolo: one [B,N,5+C] output; nms: boxes [B,N,4] + scores [B,N,C] for an NMS plugin")
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis")
    p.add_argument("--engine", metavar="PATH", help="also build a TensorRT engine here (needs TensorRT; on a Jetson "
                   "build it on the board, deploy/)")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16"],
                   help="of the engine (INT8 needs calibration images: deploy.trt_build.build_engine)")
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> None:
    from ..checkpoint import load_model
    from ..export import export_onnx

    out = args.out or str(Path(args.checkpoint).with_suffix(".onnx"))
    r = export_onnx(load_model(args.checkpoint), out, img_size=args.imgsz, opset=args.opset, layout=args.layout,
                    dynamic_batch=args.dynamic_batch)
    print(f"wrote {r.path} (opset {r.opset}, outputs {', '.join(r.outputs)}, input {args.imgsz}x{args.imgsz}); "
          f"{r.agreement()}")
    if args.engine:
        from deploy.trt_build import build_engine

        info = build_engine(str(r.path), args.engine, precision=args.precision,
                            input_shape=(1, 3, args.imgsz, args.imgsz))
        print(f"wrote {args.engine} (TensorRT {info.get('tensorrt', '?')}, {args.precision})")
