"""`edgeprune <verb>`: the command line.

Verbs write their results as files (checkpoints, ONNX, JSON) so that the demo and scripts can chain them. Each
verb imports its stage (and torch) only when it runs, so that `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from . import prune_commands, search_commands

DESCRIPTION = ("Prune object detectors as a whole and search per-layer pruning rates against latency measured on "
               "your board (Jetson TX2 / Orin, or this CPU).")
EXIT_CODES = """exit codes:
  0  done
  1  an unexpected error (a traceback follows; please report it)
  2  bad input: a file, field or option (the message names it and says what to do)
  3  search: no trial met the hard limits (target latency, --max-gflops, --max-mparams); the closest plan is in
     OUT/closest.pt, the rest of the report as usual; prune --progressive: the final model's measured latency
     misses the target (the model is saved all the same)"""
EXIT_INPUT, EXIT_NO_FEASIBLE = 2, 3


class NoFeasibleResult(Exception):
    """A run that finished but found nothing that meets the user's limits (exit code 3)."""


def _add_data_parsers(sub) -> None:
    data = sub.add_parser("data", help="make or convert datasets").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write a synthetic SAR ship dataset in YOLO format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=400, help="training scenes")
    p.add_argument("--val", type=int, default=100, help="validation scenes")
    p.add_argument("--size", type=int, default=320, help="scene side in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p = data.add_parser("convert", help="convert a COCO-json / VOC-xml / YOLO dataset to the YOLO layout")
    p.add_argument("src", help="data.yaml, COCO dataset folder or json, or VOC folder")
    p.add_argument("--to", default="yolo", choices=["yolo"], help="output layout")
    p.add_argument("--format", default="auto", choices=["auto", "yolo", "coco", "voc"], help="input format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels instead of stopping")


def _add_model_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a detector")
    p.add_argument("--data", required=True, help="data.yaml (or any dataset `edgeprune data convert` reads)")
    p.add_argument("--model", default="yolov5n", help="registered model name, e.g. yolov5n/s/m")
    p.add_argument("--weights", help="start from this edgeprune checkpoint instead of random weights")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help="input size (pixels)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr0", type=float, default=None, help="initial lr (default 0.01 for SGD, 0.002 for AdamW)")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (and after the last)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores free now, re-checked every "
                   "epoch)")
    p.add_argument("--sparsity", default="none", choices=["none", "bn-l1", "l1rr", "heatmap"],
                   help="sparsity training on BatchNorm scale factors (docs/sparsity.md)")
    p.add_argument("--sparsity-lambda", type=float, default=1e-3, help="strength of the sparsity penalty")
    p.add_argument("--attention-weight", type=float, default=0.0,
                   help="feature-attention loss: keep the neck's attention inside ground-truth boxes as it was at "
                   "the start (use with --weights and --sparsity)")
    p.add_argument("--out", default="runs/train", help="run directory (checkpoints, metrics.csv)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("finetune", help="recover a pruned detector: fine-tuning, or distillation from a teacher")
    p.add_argument("checkpoint", help="the pruned checkpoint (edgeprune prune / search)")
    p.add_argument("--data", required=True)
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
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help="input size (pixels)")
    p.add_argument("--lr0", type=float, default=0.002, help="initial lr (SGD); lower than training from scratch")
    p.add_argument("--eval-every", type=int, default=5, help="validate every N epochs (and after the last)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores free now, re-checked every "
                   "epoch)")
    p.add_argument("--out", default="runs/finetune", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="mAP@0.5, mAP@0.5:0.95, precision and recall on the validation split")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help="input size (pixels)")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold before NMS")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad labels of the validation split "
                   "instead of stopping (eval reads no other split)")

    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked, compared with torch)")
    p.add_argument("checkpoint")
    p.add_argument("--out", help="ONNX path (default: next to the checkpoint)")
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help="input size (pixels)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset; TensorRT 8.2 (TX2, JetPack 4.6) needs <= 13")
    p.add_argument("--layout", default="yolo", choices=["yolo", "nms"],
                   help="yolo: one [B,N,5+C] output; nms: boxes [B,N,4] + scores [B,N,C] for an NMS plugin")
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis")
    p.add_argument("--engine", metavar="PATH", help="also build a TensorRT engine here (needs TensorRT; on a Jetson "
                   "build it on the board, deploy/)")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16"],
                   help="of the engine (INT8 needs calibration images: deploy.trt_build.build_engine)")

    p = sub.add_parser("profile", help="params, FLOPs and measured (and predicted) latency of a model")
    p.add_argument("model", help="model.onnx or an edgeprune checkpoint (exported on the fly)")
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help="input size (pixels)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the timed input")
    p.add_argument("--backend", default="ort",
                   help="ort (onnxruntime CPU), torch-cuda, tensorrt, or remote://host:port[,host2:port2] (Jetson agents)")
    p.add_argument("--predict", metavar="LUT.json",
                   help="also predict the latency with this lookup table (built on the model, calibrated and saved "
                   "there when the file does not exist yet); checkpoints only")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: the cores free now)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    p.add_argument("--runs", type=int, default=50, help="timed runs")
    p.add_argument("--json", help="also write the result to this JSON file")

    p = sub.add_parser("demo", help="the main job: data → sparse training → latency search → prune → KD → export "
                       "→ profile → report")
    p.add_argument("--out", default="runs/demo", help="run directory; when it holds an earlier run, the next free "
                   "name (runs/demo2, runs/demo3, ...) is used")
    p.add_argument("--exist-ok", action="store_true", help="reuse OUT even if it holds an earlier run (the demo's "
                   "own files there are removed first)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT (default: the newest "
                   "runs/demo*) from its last finished step")
    p.add_argument("--quick", action="store_true", help="a smoke run of every step at tiny sizes (about 2 "
                   "minutes); its models are too briefly trained to detect anything")
    p.add_argument("--backend", default="ort", help="where latency is measured: ort (this CPU, 1 thread) or "
                   "remote://host:port of a Jetson agent (docs/demo-on-a-jetson.md)")
    p.add_argument("--epochs", type=int, help="override the number of training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-reference", dest="reference", action="store_false", help="skip the dense reference "
                   "(the model trained densely as long as the pruned one, the fair base for its loss; a third of the "
                   "demo's time)")


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default (argparse's ArgumentDefaultsHelpFormatter skips options without
    a help text and repeats defaults a help already states)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)
            continue
        if not action.option_strings or action.nargs == 0 or any(action.default is v for v in (None, False,
                                                                                                  argparse.SUPPRESS)):
            continue
        if "default" not in (action.help or ""):
            default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            text = f"default: {default}".replace("%", "%%")
            action.help = f"{action.help} ({text})" if action.help else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeprune", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="VERB")
    _add_data_parsers(sub)
    _add_model_parsers(sub)
    prune_commands.add_parsers(sub)
    search_commands.add_parsers(sub)
    _show_defaults(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; returns the exit code (EXIT_CODES)."""
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
        return EXIT_INPUT
    except NoFeasibleResult as e:
        print(f"edgeprune {args.cmd}: {e}", file=sys.stderr)
        return EXIT_NO_FEASIBLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
