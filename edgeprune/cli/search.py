"""The `search` verb: APRS with MOOL against measured latency (edgeprune.search, docs/search.md)."""

from __future__ import annotations

import argparse

from .common import NoFeasibleResult, add_imgsz, add_no_progress, add_seed, add_skip_bad


def register(sub) -> None:
    p = sub.add_parser("search", help="search per-group pruning ratios against latency (APRS with MOOL on Optuna)")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="data.yaml (validation subset scores candidates; train batches "
                   "recalibrate batch norms)")
    p.add_argument("--out", default="runs/search", help="run directory (study, latency table, cache, report)")
    add_imgsz(p)
    p.add_argument("--trials", type=int, default=100, help="completed trials the study ends with")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--batch-trials", type=int, default=0, metavar="K", help="trials asked and scored per round, "
                   "their latencies measured together (a pool of boards in parallel); 0: one per board of a "
                   "remote backend, else 1")
    p.add_argument("--storage", help="SQLAlchemy URL shared by workers on several machines, e.g. "
                   "postgresql://user@host/db (default: sqlite in the run directory)")
    p.add_argument("--study-name", default="edgeprune-search", help="the study in the storage")
    p.add_argument("--backend", default="ort", help="ort, torch-cuda, tensorrt, remote://host:port[,...], or none "
                   "(FLOPs/params objectives only)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads per worker (0: cores / workers)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per latency measurement")
    p.add_argument("--measure", default="pareto", choices=["pareto", "all", "none"],
                   help="which candidates are measured on the backend (the rest are predicted)")
    p.add_argument("--predict", metavar="LUT.json", help="latency table (default: built as OUT/lut.json)")
    p.add_argument("--mode", default="loss", choices=["loss", "reward", "pareto"], help="MOOL loss, MnasNet "
                   "reward, or NSGA-II Pareto search")
    p.add_argument("--target-latency", help="hard latency target, e.g. 12ms")
    p.add_argument("--speedup", type=float, help="latency target as a speed-up over the base model measured on the "
                   "backend, e.g. 2 (instead of --target-latency)")
    p.add_argument("--lambda-latency", type=float, default=1.0, help="weight of T/T0 in the loss")
    p.add_argument("--lambda-flops", type=float, default=0.0, help="weight of F/F0 in the loss")
    p.add_argument("--lambda-params", type=float, default=0.0, help="weight of P/P0 in the loss")
    p.add_argument("--max-gflops", type=float, help="hard FLOPs limit (GFLOPs)")
    p.add_argument("--max-mparams", type=float, help="hard params limit (millions)")
    p.add_argument("--scopes", default="groups", help="groups, blocks, stages, or a JSON file of glob patterns")
    p.add_argument("--step", type=float, default=0.05, help="grid of the ratios")
    p.add_argument("--max-ratio", type=float, default=0.9, help="largest ratio a scope may get")
    p.add_argument("--round-to", type=int, default=8, help="kept widths are multiples of this")
    p.add_argument("--min-width", type=int, default=8, help="no group keeps fewer channels")
    p.add_argument("--importance", default="l1", help="l1, l2, bn or fused")
    p.add_argument("--val-images", type=int, default=64, help="validation images that score each candidate")
    p.add_argument("--bn-batches", type=int, default=4, help="training batches that recalibrate batch norms")
    p.add_argument("--rescore-top", type=int, default=0, metavar="K", help="stage two: the screen's best K trials "
                   "fine-tuned with KD and scored again, the answer the best of them (0: off)")
    p.add_argument("--rescore-iters", type=int, default=24, help="KD iterations of the stage-two fine-tune")
    p.add_argument("--no-allocated-seed", dest="allocated_seed", action="store_false", help="do not start from "
                   "the allocated cut (the least Taylor importance per millisecond the latency table saves, to the "
                   "target: the demo's path, docs/search.md)")
    p.add_argument("--sensitivity", type=float, nargs="*", default=[0.5],
                   help="ratios of the per-scope sensitivity that seeds the first trials (none: skip)")
    add_seed(p)
    add_skip_bad(p)
    add_no_progress(p)
    p.set_defaults(func=search)


def config_from_args(args: argparse.Namespace):
    from ..search.config import SearchConfig, parse_ms

    objective = {"mode": args.mode, "latency_weight": args.lambda_latency, "flops_weight": args.lambda_flops,
                 "params_weight": args.lambda_params, "target_latency_ms": parse_ms(args.target_latency),
                 "max_flops": args.max_gflops * 1e9 if args.max_gflops else None,
                 "max_params": args.max_mparams * 1e6 if args.max_mparams else None}
    if args.speedup and objective["target_latency_ms"]:
        raise ValueError("give --target-latency or --speedup, not both")
    if args.mode == "reward" and not (args.speedup or objective["target_latency_ms"]):
        raise ValueError("the reward objective needs --target-latency or --speedup")
    if args.backend == "none" and (args.lambda_latency or objective["target_latency_ms"] or args.speedup
                                   or args.mode != "loss"):
        raise ValueError("--backend none has no latency: use --lambda-latency 0 with --lambda-flops/--lambda-params "
                         "and no --target-latency")
    return SearchConfig(
        checkpoint=args.checkpoint, data=args.data, out=args.out, img_size=args.imgsz, trials=args.trials,
        workers=args.workers, batch_trials=args.batch_trials, storage=args.storage, study_name=args.study_name,
        scopes=args.scopes,
        step=args.step, max_ratio=args.max_ratio, round_to=args.round_to, min_width=args.min_width,
        importance=args.importance, objective=objective, backend=args.backend, threads=args.threads,
        runs=args.runs, predict=args.predict, measure="none" if args.backend == "none" else args.measure,
        val_images=args.val_images, bn_batches=args.bn_batches, rescore_top=args.rescore_top,
        rescore_iters=args.rescore_iters, allocated_seed=args.allocated_seed, sensitivity=list(args.sensitivity),
        seed=args.seed, speedup=args.speedup, skip_bad=args.skip_bad)


def search(args: argparse.Namespace) -> dict:
    from ..search import run_search
    from ..search.objective import Objective

    cfg = config_from_args(args)
    Objective(**cfg.objective)  # refuse a bad objective before any work
    result = run_search(cfg, progress=not args.no_progress)[1]
    chosen = (result or {}).get("chosen")
    if chosen is None or not chosen.get("feasible", True):
        raise NoFeasibleResult(f"no trial met the hard limits: the closest plan is {cfg.run_dir / 'closest.pt'}; "
                               f"run more trials (--trials, the same --out resumes) or loosen the limits")
    return result
