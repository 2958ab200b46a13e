"""`edgeprune export`: a model (checkpoint, factory, ultralytics file) to ONNX (checked, compared with torch), and a
TensorRT engine where possible."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_imgsz, add_model, load_model_arg, model_name


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (checked, compared with torch)")
    add_model(p)
    p.add_argument("--out", help="ONNX path (default: next to the model file, or NAME.onnx here for a factory)")
    add_imgsz(p)
    p.add_argument("--opset", type=int, default=13, help="ONNX opset; TensorRT 8.2 (TX2, JetPack 4.6) needs <= 13, "
                   "RT-DETR >= 16")
    p.add_argument("--layout", default="yolo", choices=["yolo", "nms"],
                   help="yolo: the model's own output (YOLOv5 [B,N,5+C], ultralytics [B,4+C,N]); nms: boxes [B,N,4] + "
                   "scores [B,N,C] for an NMS plugin")
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis")
    p.add_argument("--engine", metavar="PATH", help="also build a TensorRT engine here (needs TensorRT; on a Jetson "
                   "build it on the board, deploy/)")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16"],
                   help="of the engine (INT8 needs calibration images: deploy.trt_build.build_engine)")
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> None:
    from ..export import export_onnx

    out = args.out or default_onnx_path(model_name(args))
    r = export_onnx(load_model_arg(args), out, img_size=args.imgsz, opset=args.opset, layout=args.layout,
                    dynamic_batch=args.dynamic_batch)
    print(f"wrote {r.path} (opset {r.opset}, outputs {', '.join(r.outputs)}, input {args.imgsz}x{args.imgsz}); "
          f"{r.agreement()}")
    if args.engine:
        from deploy.trt_build import build_engine

        info = build_engine(str(r.path), args.engine, precision=args.precision,
                            input_shape=(1, 3, args.imgsz, args.imgsz))
        print(f"wrote {args.engine} (TensorRT {info.get('tensorrt', '?')}, {args.precision})")


def default_onnx_path(source: str) -> str:
    """Beside a model file (`best.pt` → `best.onnx`); `NAME.onnx` here for a factory (`pkg.nets:build` →
    `build.onnx`) or a registered name."""
    path = Path(source)
    if path.is_file():
        return str(path.with_suffix(".onnx"))
    return f"{source.rpartition(':')[2] if ':' in source else path.stem}.onnx"
