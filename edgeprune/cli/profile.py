"""`edgeprune profile`: params, FLOPs and the latency measured on a backend (and predicted, with `--predict`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.tables import format_table
from ..utils.files import write_json
from .common import MODEL_HELP, add_imgsz, add_model, load_model_arg, model_name


def register(sub) -> None:
    p = sub.add_parser("profile", help="params, FLOPs and measured (and predicted) latency of a model")
    add_model(p, help=f"model.onnx, or {MODEL_HELP} (exported on the fly)")
    add_imgsz(p)
    p.add_argument("--opset", type=int, default=13, help="ONNX opset of the on-the-fly export")
    p.add_argument("--batch", type=int, default=1, help="batch size of the timed input")
    p.add_argument("--backend", default="ort",
                   help="ort (onnxruntime CPU), torch-cuda, tensorrt, or remote://host:port[,host2:port2] (Jetson "
                   "agents)")
    p.add_argument("--predict", metavar="LUT.json",
                   help="also predict the latency with this lookup table (built on the model, calibrated and saved "
                   "there when the file does not exist yet); checkpoints only")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: the cores free now)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    p.add_argument("--runs", type=int, default=50, help="timed runs")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=profile)


def profile(args: argparse.Namespace) -> dict:
    """Params, FLOPs and the latency measured on `--backend`; with `--predict`, the predictor's figure beside it."""
    from deploy.machine import busy_elsewhere, free_cores
    from deploy.onnx_info import inspect

    from ..latency import get_backend, measure, module_to_onnx, timing_options

    shape = (args.batch, 3, args.imgsz, args.imgsz)
    if not args.threads and args.backend in ("ort", "onnxruntime"):
        args.threads = free_cores(busy_elsewhere())  # the cores free now (the row says how many)
    backend = get_backend(args.backend, **timing_options(args.backend, threads=args.threads, runs=args.runs,
                                                         warmup=args.warmup))
    model, source = None, model_name(args)
    if source.endswith(".onnx"):
        if args.predict:
            raise ValueError(f"{source}: --predict needs a torch model (the predictor reads the model's layers), "
                             "not an ONNX file")
        info = inspect(source, input_shape=shape)  # names the file when it is not ONNX
        onnx = Path(source).read_bytes()
    else:
        from ..checkpoint import CheckpointError

        try:
            model = load_model_arg(args)
        except CheckpointError as e:
            raise CheckpointError(f"{e} (profile also takes an ONNX file ending in .onnx)") from None
        onnx = module_to_onnx(model, shape, args.opset)
        info = inspect(onnx, input_shape=shape)
    try:
        predicted = None
        if args.predict:
            from ..latency.calibrate import predictor_for

            predicted = predictor_for(model, shape, backend, args.predict).predict(model)
        stats = measure(model if model is not None else onnx, shape, backend, opset=args.opset)  # torch-cuda: module
        fingerprint = backend.fingerprint()
    finally:
        backend.close()
    row = {"model": Path(source).name, "input": "x".join(map(str, shape)), "params": info["params"],
           "GFLOPs": info["flops"] / 1e9, "backend": args.backend}
    if info["unshaped"]:  # GFLOPs is then a lower bound: no onnx-graphsurgeon, or shapes known only at run time
        row["uncounted ops"] = info["unshaped"]
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
