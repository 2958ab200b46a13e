"""The work behind each CLI verb: parse nothing, print a little, write files. Called by edgeprune.cli."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoint import CheckpointError
from .data.labels import LabelError
from .files import write_json
from .latency.base import MeasurementError
from .tables import format_table

# Errors caused by the user's input or a device that failed: the CLI prints them as one line, not a traceback.
USER_ERRORS = (CheckpointError, LabelError, FileNotFoundError, ValueError, MeasurementError,
               ImportError)  # ImportError: an optional dependency (TensorRT, CUDA) is missing; its message says so


def data(args: argparse.Namespace) -> None:
    if args.data_cmd == "synth":
        from .data.synth import synthesize

        yaml_path = synthesize(args.out, args.train, args.val, size=args.size, seed=args.seed)
        print(f"wrote {yaml_path} ({args.train} train / {args.val} val scenes, preview: {Path(args.out) / 'preview.png'})")
    else:
        from .data.convert import convert_to_yolo
        from .data.formats import load_dataset

        spec = load_dataset(args.src, fmt=args.format, skip_bad=args.skip_bad)
        print(f"wrote {convert_to_yolo(spec, args.out)} ({len(spec.train)} train / {len(spec.val)} val images)")


def train(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .data.formats import load_dataset
    from .models import create_model
    from .train import TrainConfig
    from .train import train as run_training

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


def finetune(args: argparse.Namespace) -> dict:
    """Recover a pruned model: plain fine-tuning, or detection KD from `--teacher` on top of the detection loss."""
    from .checkpoint import load_model
    from .data.formats import load_dataset
    from .train import TrainConfig
    from .train import train as run_training

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


def evaluate(args: argparse.Namespace) -> dict:
    from .checkpoint import load_model
    from .data.dataset import build_loader
    from .data.formats import load_dataset
    from .evaluate import evaluate as run_eval

    model = load_model(args.checkpoint)
    spec = load_dataset(args.data, skip_bad=args.skip_bad, need=("val",))
    loader = build_loader(spec.val, args.imgsz, args.batch, augment=False, shuffle=False)
    m = run_eval(model, loader, conf_thres=args.conf, iou_thres=args.iou, progress=True)
    row = {k: m[k] for k in ("images", "precision", "recall", "map50", "map")}
    print(format_table([row]))
    if args.json:
        write_json(args.json, m)
    return m


def export(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .export import export_onnx

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


def _backend_options(spec: str, args: argparse.Namespace) -> dict:
    """CLI timing options for `get_backend`: threads only mean something to onnxruntime and remote CPU runs."""
    opts = {"warmup": args.warmup}
    if spec in ("ort", "onnxruntime"):
        opts.update(threads=args.threads or None, runs=args.runs)
    elif spec.startswith("remote://"):
        opts.update(iterations=args.runs)
    else:
        opts.update(runs=args.runs)
    return opts


def profile(args: argparse.Namespace) -> dict:
    """Params, FLOPs and the latency measured on `--backend`; with `--predict`, the predictor's figure beside it."""
    from deploy.machine import busy_elsewhere, free_cores
    from deploy.onnx_info import inspect

    from .latency import get_backend, measure, module_to_onnx

    shape = (args.batch, 3, args.imgsz, args.imgsz)
    if not args.threads and args.backend in ("ort", "onnxruntime"):
        args.threads = free_cores(busy_elsewhere())  # the cores free now (the row says how many)
    backend = get_backend(args.backend, **_backend_options(args.backend, args))
    model = None
    if str(args.model).endswith(".onnx"):
        if args.predict:
            raise ValueError(f"{args.model}: --predict needs an edgeprune checkpoint (the predictor reads the "
                             "model's layers), not an ONNX file")
        info = inspect(args.model, input_shape=shape)  # names the file when it is not ONNX
        onnx = Path(args.model).read_bytes()
    else:
        from .checkpoint import load_model

        try:
            model = load_model(args.model).eval()
        except CheckpointError as e:
            raise CheckpointError(f"{e} (profile takes an edgeprune checkpoint or an ONNX file ending in .onnx)") \
                from None
        onnx = module_to_onnx(model, shape)
        info = inspect(onnx, input_shape=shape)
    try:
        predicted = None
        if args.predict:
            from .latency.calibrate import predictor_for

            predicted = predictor_for(model, shape, backend, args.predict).predict(model)
        stats = measure(model if model is not None else onnx, shape, backend)  # torch-cuda times the module
        fingerprint = backend.fingerprint()
    finally:
        backend.close()
    row = {"model": Path(args.model).name, "input": "x".join(map(str, shape)), "params": info["params"],
           "GFLOPs": info["flops"] / 1e9, "backend": args.backend}
    if fingerprint.get("threads"):
        row["threads"] = fingerprint["threads"]
    if stats.info.get("load_elsewhere") is not None:
        row["busy elsewhere"] = round(stats.info["load_elsewhere"], 1)  # cores other processes used meanwhile
    row.update(median_ms=stats.median_ms, p90_ms=stats.p90_ms, p99_ms=stats.p99_ms, runs=stats.runs)
    if predicted is not None:
        row.update(predicted_ms=predicted, error_pct=100.0 * (predicted - stats.median_ms) / stats.median_ms)
    print(format_table([row]))
    print("GFLOPs = 2 x multiply-accumulates of Conv/Gemm/MatMul; params counted from the ONNX initializers "
          "(batch norms folded into convs).")
    result = {**row, "latency": stats.to_dict(), "fingerprint": fingerprint, "onnx": info}
    if args.json:
        write_json(args.json, result)
    return result


def demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, epochs=args.epochs, seed=args.seed, backend=args.backend,
             exist_ok=args.exist_ok, resume=args.resume, reference=args.reference)
