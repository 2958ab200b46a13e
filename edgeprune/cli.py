"""`edgeprune <verb>`: the command line. Each verb imports its stage lazily so that `--help` stays instant.

Verbs write their results as files (checkpoints, ONNX, JSON) so that the demo and scripts can chain them.
"""

from __future__ import annotations

import argparse
import sys

from . import prune_commands, search_commands


def _add_data_parsers(sub) -> None:
    data = sub.add_parser("data", help="make or convert datasets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write a synthetic SAR ship dataset in YOLO format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=400, help="training scenes")
    p.add_argument("--val", type=int, default=100, help="validation scenes")
    p.add_argument("--size", type=int, default=320, help="scene side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p = data.add_parser("convert", help="convert a COCO-json / VOC-xml / YOLO dataset to the YOLO layout")
    p.add_argument("src", help="data.yaml, COCO dataset folder or json, or VOC folder")
    p.add_argument("--to", default="yolo", choices=["yolo"])
    p.add_argument("--format", default="auto", choices=["auto", "yolo", "coco", "voc"])
    p.add_argument("--out", required=True)
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels instead of stopping")


def _add_model_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a detector")
    p.add_argument("--data", required=True, help="data.yaml (or any dataset `edgeprune data convert` reads)")
    p.add_argument("--model", default="yolov5n", help="registered model name, e.g. yolov5n/s/m")
    p.add_argument("--weights", help="start from this edgeprune checkpoint instead of random weights")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr0", type=float, default=None, help="initial lr (default 0.01 for SGD, 0.002 for AdamW)")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (and after the last)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--sparsity", default="none", choices=["none", "bn-l1", "l1rr", "heatmap"],
                   help="sparsity training on BatchNorm scale factors (docs/sparsity.md)")
    p.add_argument("--sparsity-lambda", type=float, default=1e-3, help="strength of the sparsity penalty")
    p.add_argument("--attention-weight", type=float, default=0.0,
                   help="feature-attention loss: keep the neck's attention inside ground-truth boxes as it was at "
                   "the start (use with --weights and --sparsity)")
    p.add_argument("--out", default="runs/train", help="run directory (checkpoints, metrics.csv)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels instead of stopping")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("finetune", help="recover a pruned detector: fine-tuning, or distillation from a teacher")
    p.add_argument("checkpoint", help="the pruned checkpoint (edgeprune prune / search)")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", help="distil from this checkpoint (e.g. the unpruned model)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the distillation loss")
    p.add_argument("--kd-temperature", type=float, default=1.0)
    p.add_argument("--feature-kd", default="none", choices=["none", "mse", "cwd"],
                   help="with --teacher: also distil the neck's outputs (1x1 adapters where widths differ)")
    p.add_argument("--self-reflection", type=float, default=0.0, metavar="A_T",
                   help="student self-reflection: its previous-epoch predictions as soft targets, weight growing "
                   "linearly to A_T (e.g. 0.5); alone or with --teacher")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz")
    p.add_argument("--lr0", type=float, default=0.002, help="initial lr (SGD); lower than training from scratch")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/finetune")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, precision and recall on the validation split")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--conf", type=float, default=0.001)
    p.add_argument("--iou", type=float, default=0.6)
    p.add_argument("--json", help="also write the metrics to this JSON file")

    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked, compared with torch)")
    p.add_argument("checkpoint")
    p.add_argument("--out", help="ONNX path (default: next to the checkpoint)")
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset; TensorRT 8.2 (TX2, JetPack 4.6) needs <= 13")
    p.add_argument("--layout", default="yolo", choices=["yolo", "nms"],
                   help="yolo: one [B,N,5+C] output; nms: boxes [B,N,4] + scores [B,N,C] for an NMS plugin")
    p.add_argument("--dynamic-batch", action="store_true")
    p.add_argument("--engine", metavar="PATH", help="also build a TensorRT engine here (needs TensorRT; on a Jetson "
                   "build it on the board, deploy/)")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16"],
                   help="of the engine (INT8 needs calibration images: deploy.trt_build.build_engine)")

    p = sub.add_parser("profile", help="params, FLOPs and measured (and predicted) latency of a model")
    p.add_argument("model", help="model.onnx or an edgeprune checkpoint (exported on the fly)")
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backend", default="ort",
                   help="ort (onnxruntime CPU), torch-cuda, tensorrt, or remote://host:port[,host2:port2] (Jetson agents)")
    p.add_argument("--predict", metavar="LUT.json",
                   help="also predict the latency with this lookup table (built on the model, calibrated and saved "
                   "there when the file does not exist yet); checkpoints only")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all usable cores)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--json", help="also write the result to this JSON file")

    p = sub.add_parser("demo", help="the main job: data → sparse training → latency search → prune → KD → export "
                       "→ profile → report")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--quick", action="store_true", help="a tiny run for a first look (a few minutes)")
    p.add_argument("--backend", default="ort", help="where latency is measured: ort (this CPU, 1 thread) or "
                   "remote://host:port of a Jetson agent (docs/demo-on-a-jetson.md)")
    p.add_argument("--epochs", type=int, help="override the number of training epochs")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeprune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data_parsers(sub)
    _add_model_parsers(sub)
    prune_commands.add_parsers(sub)
    search_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import commands

    args = build_parser().parse_args(argv)
    handler = {
        "data": commands.data, "train": commands.train, "eval": commands.evaluate, "export": commands.export,
        "profile": commands.profile, "demo": commands.demo, "groups": prune_commands.groups,
        "prune": prune_commands.prune, "search": search_commands.search, "finetune": commands.finetune,
    }[args.cmd]
    try:
        handler(args)
    except commands.USER_ERRORS as e:
        print(f"edgeprune {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
