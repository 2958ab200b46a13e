"""Search throughput with a pool of boards: candidates per hour of `edgeprune search` with 1, 2 and 4 boards.

    python benchmarks/bench_boards.py [--boards 1 2 4] [--trials 12] [--board-s 10]

Real jetson agents on 127.0.0.1 stand in for the boards, each with a measurement that is a fixed sleep of
`--board-s` seconds (`jetson.serve.serve(measure=...)`; its latency is 1 ms per MB of ONNX, so candidates differ
at no cost), so the figure measures the host's pipeline (Optuna ask/tell, pruning and scoring each candidate here,
export, upload, the remote backend spreading a round over the boards, polling, the cache, tell) and not this CPU or a
board. A TensorRT engine build alone takes longer than 10 s on a TX2. Every configuration searches the same tiny
base (yolov5n at 128 px, untrained: accuracy is not the point) for the same number of trials, measuring every trial
(`--measure all`, no sensitivity seeding); the search's preparation (base and uniform baselines) is timed apart.
Writes benchmarks/results/boards.json and prints one row per configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.machine import LoadMeter  # noqa: E402
from deploy.stats import LatencyStats, check_stop  # noqa: E402
from edgeprune.checkpoint import save_checkpoint  # noqa: E402
from edgeprune.data.synth import synthesize  # noqa: E402
from edgeprune.models import create_model  # noqa: E402
from edgeprune.report.tables import format_table  # noqa: E402
from edgeprune.search import SearchConfig  # noqa: E402
from edgeprune.search.context import SearchContext  # noqa: E402
from edgeprune.search.study import prepare, round_size, run_worker  # noqa: E402
from edgeprune.utils.files import write_json  # noqa: E402
from jetson.agent import serve  # noqa: E402


def sleeping_measure(seconds: float):
    """A board whose every measurement takes `seconds` (cancellable between sleeps, like a real timing loop)."""
    def measure(source, options, env, sha256=None, stop=None):
        start_wall, t0 = time.time(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            check_stop(stop)
            time.sleep(0.05)
        ms = os.path.getsize(source) / 1e6
        stats = LatencyStats.from_samples([ms] * int(options["iterations"]), warmup=int(options["warmup"]))
        return {"latency": stats.to_dict(with_samples=True), "engine": None, "prepare_s": 0.0,
                "tegrastats": None, "window": {"start": start_wall, "end": time.time()}}
    return measure


def start_boards(n: int, seconds: float, work: Path) -> list:
    return [serve(port=0, state_dir=str(work / f"board{i}"), measure=sleeping_measure(seconds)).start()
            for i in range(n)]


def search_config(base: Path, data: Path, out: Path, boards: list, trials: int) -> SearchConfig:
    hosts = ",".join(f"127.0.0.1:{b.server_address[1]}" for b in boards)
    return SearchConfig(checkpoint=str(base), data=str(data), out=str(out), img_size=128, trials=trials,
                        scopes="blocks", backend=f"remote://{hosts}?backend=onnxruntime", runs=10, warmup=2,
                        measure="all", sensitivity=[], val_images=8, bn_batches=1, batch_size=8,
                        objective={"mode": "loss", "latency_weight": 1.0})


def run(n_boards: int, trials: int, seconds: float, base: Path, data: Path, work: Path) -> dict:
    boards = start_boards(n_boards, seconds, work / f"pool{n_boards}")
    try:
        cfg = search_config(base, data, work / f"search{n_boards}", boards, trials)
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save()
        ctx = SearchContext(cfg, log=lambda *a: None)
        try:
            t0 = time.perf_counter()
            prepare(cfg, ctx, progress=False, log=lambda *a: None)
            prepared, load = time.perf_counter() - t0, LoadMeter().start()
            t0 = time.perf_counter()
            done = run_worker(cfg, ctx)
            seconds_run = time.perf_counter() - t0
            t0 = time.perf_counter()
            ctx.evaluator.screen(ctx.space.uniform(0.3))
            screen = time.perf_counter() - t0
            per_round = round_size(cfg, ctx)
        finally:
            ctx.close()
    finally:
        for b in boards:
            b.close()
    return {"boards": n_boards, "trials": done, "round": per_round, "board_s": seconds, "seconds": seconds_run,
            "candidates_per_hour": 3600.0 * done / seconds_run, "prepare_s": prepared, "screen_s": screen,
            "load_elsewhere": load.stop()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--trials", type=int, default=12, help="trials of each search (the same for every pool)")
    ap.add_argument("--board-s", type=float, default=10.0, help="seconds one stand-in board takes per measurement")
    ap.add_argument("--out", default="benchmarks/results/boards.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="edgeprune-boards-") as tmp:
        work = Path(tmp)
        data = synthesize(work / "data", 16, 16, size=128, seed=0)
        base = work / "base.pt"
        save_checkpoint(base, create_model("yolov5n", 1))
        rows = [run(n, args.trials, args.board_s, base, Path(data), work) for n in args.boards]
    one = next((r for r in rows if r["boards"] == 1), None)
    for r in rows:
        r["speedup_vs_1"] = r["candidates_per_hour"] / one["candidates_per_hour"] if one else None
    write_json(args.out, {"trials": args.trials, "board_s": args.board_s, "rows": rows})
    print(format_table([{"boards": r["boards"], "round": r["round"], "trials": r["trials"], "seconds": r["seconds"],
                         "candidates/h": r["candidates_per_hour"], "× 1 board": r["speedup_vs_1"],
                         "screen s": r["screen_s"], "busy elsewhere": r["load_elsewhere"]} for r in rows]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
