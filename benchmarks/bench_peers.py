"""Against what users would pick instead: every method at equal *measured* latency, the same recovery budget.

    python benchmarks/bench_peers.py [--model yolov5s] [--speedup 2] [--seeds 3] [--work runs/bench-peers]
    python benchmarks/bench_peers.py --model yolov5n --speedup 2.5 --no-nano-target      # the second table
    python benchmarks/bench_peers.py --smoke                                             # every row, tiny sizes
    python benchmarks/bench_peers.py --model yolov5n --speedup 2.5 --no-nano-target --only hi --seeds 1  # a pilot

Setting: synthetic SAR (the demo's generator, 500 train / 100 val at 320 px); the base is the model trained
densely with the demo's recipe (36 epochs). Targets on onnxruntime CPU, 1 thread, as speed-ups over the base
(each model measured right after the base, as this machine's speed drifts by 10 % over an hour): --speedup, and
(for a yolov5s base) the speed-up of a dense yolov5n at the same input. Rows, each tuned until its measured
latency is within 3 % of the target (edgeprune.latency.match), every pruned row recovered by the same KD epochs
from the same dense base:

  base, base + R epochs      the reference, and the same base trained on for the recovery epochs (the fair "loss")
  (a) tp-l1, tp-bn           Torch-Pruning MagnitudePruner, uniform ratio, round_to 8, Detect convs ignored
  (b) modelopt-fastnas       NVIDIA ModelOpt FastNAS under a FLOPs limit (or the error that stops it here)
  (c) narrow                 a narrower yolov5 trained from scratch for E + R epochs
  (d) input                  the dense base at a smaller input size
  (e) edgeprune              bn-l1 sparsity training, search with the latency objective, KD (`demo --method
                             search`; since 2026-12-07 the search's first trial is the allocated cut, which the
                             yolov5n table's rows e-g ran without)
  (f) edgeprune-flops        the search with a FLOPs cap (the FLOPs of (a) at the target), same recovery
  (g) edgeprune-rescored     (e) with the two-stage score: its 8 best trials fine-tuned for 24 KD iterations and
                             scored again (edgeprune.search.rescore), the answer the best of them
  (h) edgeprune-progressive  `edgeprune prune --progressive --importance taylor` on the dense base: 4 latency-
                             budgeted cuts during the same R epochs of KD, the last re-aimed until its measured
                             latency meets the target
  (i) edgeprune-allocated    the same with --steps 1: one Taylor-allocated cut to the target, then the R epochs
  (j) edgeprune-alloc-flops  (i) with `--cost flops`: channels priced by the FLOPs they save instead of the latency
                             table's milliseconds, the cut still re-aimed until its measured latency meets the
                             target (the FLOPs-objective control of (i), as (f) is of (e))

ModelOpt row: `pip install -c constraints.txt nvidia-modelopt huggingface_hub` and then
`pip install --no-deps torchprofile==0.0.4` (ModelOpt 0.47 imports huggingface_hub without declaring it, and its
FLOPs counter needs torchprofile's pre-0.1 API, whose 0.0.4 release declares torchvision, CUDA-only here, although
it never imports it). Without them the row records the error.

Every finished row is kept in WORK/rows/ (checkpoints beside it), so the script resumes and can run in several
sittings. The final models of one target are measured back to back, in turns, 3 passes (`--passes`), lowest
median; the target in milliseconds is the base's latency in that pass over the speed-up.
Writes benchmarks/results/peers.json (or peers_<model>.json), a plot and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import PeerUnavailable, modelopt_fastnas, narrow_yolov5, torch_pruning_uniform  # noqa: E402
from benchmarks.peers_table import plot, summarize, verdict  # noqa: E402
from deploy.machine import LoadMeter  # noqa: E402
from edgeprune.checkpoint import load_model, save_checkpoint  # noqa: E402
from edgeprune.cli import main as cli  # noqa: E402
from edgeprune.data.dataset import build_loader  # noqa: E402
from edgeprune.data.formats import load_dataset  # noqa: E402
from edgeprune.evaluate.accuracy import evaluate  # noqa: E402
from edgeprune.evaluate.complexity import count_flops, count_params  # noqa: E402
from edgeprune.latency import get_backend, module_to_onnx  # noqa: E402
from edgeprune.latency.match import interleaved, match_latency  # noqa: E402
from edgeprune.models import create_model  # noqa: E402
from edgeprune.models.yolov5 import make_divisible  # noqa: E402
from edgeprune.report.tables import markdown_table  # noqa: E402
from edgeprune.train.trainer import TrainConfig, train  # noqa: E402
from edgeprune.utils.files import write_json  # noqa: E402

RECIPE = {"train": 500, "val": 100, "size": 320, "epochs": 36, "recovery": 13, "trials": 30}
KD_BOX = TrainConfig().kd_box_weight  # recorded with every KD row: the tables before 2026-12-03 ran at 1
SMOKE = {"train": 32, "val": 8, "size": 128, "epochs": 1, "recovery": 1, "trials": 4}


def current_kd(row: dict) -> bool:
    """False for a row recovered by an older KD loss (box weight 1 before 2026-12-03): it is made again."""
    return "KD" not in row.get("training", "") or row.get("kd_box_weight", 1.0) == KD_BOX


class Bench:
    def __init__(self, args) -> None:
        self.args, self.work, self.r = args, Path(args.work), SMOKE if args.smoke else RECIPE
        self.img, self.base = self.r["size"], None  # the base: set once trained, every latency is relative to it
        data = self.work / "data"
        if not (data / "data.yaml").is_file():
            cli(["data", "synth", "--out", str(data), "--train", str(self.r["train"]), "--val", str(self.r["val"]),
                 "--size", str(self.img), "--seed", "0"])
        self.data = data / "data.yaml"
        self.spec = load_dataset(self.data)
        self.backend = get_backend("ort", threads=1, runs=50 if not args.smoke else 10, warmup=10)
        self.clock = self.work / "rows" / "sittings.json"  # wall time summed over every sitting
        self.before = json.loads(self.clock.read_text())["seconds"] if self.clock.is_file() else 0.0
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        """Wall time over every sitting so far; `tick()` saves it, so a sitting cut off keeps what it ran."""
        return self.before + time.perf_counter() - self.t0

    def tick(self) -> None:
        write_json(self.clock, {"seconds": self.seconds()})

    def stats(self, model, img: int | None = None):
        img = img or self.img
        return self.backend.measure(module_to_onnx(model, (1, 3, img, img)), (1, 3, img, img))

    def ms(self, model, img: int | None = None) -> float:
        return self.stats(model, img).median_ms

    def fit(self, name: str, model, epochs: int, seed: int, teacher=None, scratch: bool = False, **kw):
        """`edgeprune train`'s recipe from scratch, else `edgeprune finetune`'s; a killed run resumes. A KD run's
        directory names its box weight, so a change of the KD loss never resumes an older run."""
        tag = f"-kdbox{KD_BOX:g}" if teacher is not None and KD_BOX != 1.0 else ""
        run, t0 = self.work / (name + tag), time.perf_counter()
        if (run / "done").is_file():
            return load_model(run / "last.pt").eval()
        lr = {} if scratch else {"lr0": 0.002, "warmup_epochs": 1.0}
        cfg = TrainConfig(epochs=epochs, batch_size=16, img_size=self.img, eval_every=epochs, seed=seed, **lr, **kw)
        train(model.train(), self.spec.train, self.spec.val, cfg, run, resume=(run / "last.pt").is_file(),
              progress=False, teacher=teacher)
        (run / "done").write_text(f"{time.perf_counter() - t0:.1f}")  # seconds of this sitting's training
        return load_model(run / "last.pt").eval()

    def row(self, name: str, make, img: int | None = None) -> dict:
        """Cached in WORK/rows/NAME.json with the final checkpoint beside it; `make()` → (model, extra fields)."""
        path = self.work / "rows" / f"{name}.json"
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached and current_kd(cached):
            return cached
        t0, img, load = time.perf_counter(), img or self.img, LoadMeter().start()
        model, extra = make()
        m = evaluate(model, build_loader(self.spec.val, img, 16, augment=False, shuffle=False))
        save_checkpoint(path.with_suffix(".pt"), model)
        row = {"name": name, "mAP50": m["map50"], "mAP50-95": m["map"], "params": count_params(model),
               "GFLOPs": count_flops(model, img) / 1e9, "imgsz": img, "seconds": time.perf_counter() - t0,
               "load_elsewhere": load.stop(), **extra}
        if "KD" in row.get("training", ""):
            row["kd_box_weight"] = KD_BOX
        write_json(path, row)
        self.tick()
        print(json.dumps(row), flush=True)
        return row

    def sparse(self):
        """The base trained again with bn-l1 sparsity (rows a-bn, e, f, g), trained only when one of them runs."""
        return self.fit("sparse", create_model(self.args.model, len(self.spec.names)), self.r["epochs"], 0,
                        scratch=True, sparsity="bn-l1", sparsity_lambda=0.01)

    def relative(self, model, img: int | None = None) -> float:
        """The model's latency over the base's, the two measured back to back: this machine's speed drifts by
        10 % over an hour, which would move a target in milliseconds but not a ratio."""
        return self.ms(model, img) / self.ms(self.base)

    def matched(self, name: str, build, lo, hi: float, speedup: float, snap=None, scan: int = 0) -> dict:
        """The knob (cached) whose model runs `speedup` times faster than the base, from edgeprune.latency.match
        (its "ms" are latencies relative to the base here). `lo` may be a function, called only when the knob is
        not cached (ModelOpt's floor costs a search)."""
        path = self.work / "rows" / f"match-{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        lo = lo() if callable(lo) else lo
        img_of = (lambda k: int(k)) if name.endswith("input") else (lambda k: self.img)
        m = match_latency(build, lambda pair: self.relative(pair[0], img_of(pair[1])), 1 / speedup, lo, hi,
                          snap=snap, scan=scan)
        write_json(path, m.to_dict())
        print(f"{name}: knob {m.knob:g} → {1 / m.latency_ms:.2f}× for {speedup:.2f}× "
              f"({'within 3 %' if m.reached else m.reason})", flush=True)
        return m.to_dict()


def seeds_of(bench: Bench, name: str, make_seed) -> list[dict]:
    return [bench.row(f"{name}-s{s}", lambda s=s: make_seed(s)) for s in range(bench.args.seeds)]


def target_rows(bench: Bench, tname: str, speedup: float, base) -> list[dict]:
    """Every method (of --only) at one latency target (a speed-up over the base). A row's name carries its knob,
    so a knob matched anew never reuses a training made for another."""
    r, rows, only = bench.r, [], bench.args.only
    kd_ep = f"{r['recovery']} ep KD"
    for imp in ("l1", "bn") if "a" in only else ():
        src = base if imp == "l1" else bench.sparse()  # BN scale ranks channels only after sparsity training
        # scanned first: Torch-Pruning's latency is not monotonic in its ratio (edgeprune.latency.match)
        k = bench.matched(f"{tname}-tp-{imp}", lambda x, src=src, imp=imp: (torch_pruning_uniform(src, x, imp), x),
                          0.0, 0.9, speedup, scan=4)["knob"]
        name = f"{tname}-tp-{imp}@{k:.4g}"
        rows += seeds_of(bench, name, lambda s, src=src, imp=imp, k=k, name=name: (
            bench.fit(f"{name}-s{s}", torch_pruning_uniform(src, k, imp), r["recovery"], s, teacher=base),
            {"method": f"(a) tp-{imp}", "knob": k, "training": kd_ep}))
    if "b" in only:
        rows.append(modelopt_row(bench, tname, base, speedup))
    if "c" in only:
        rows += narrow_rows(bench, tname, speedup)
    if "d" in only:
        size = int(bench.matched(f"{tname}-input", lambda i: (base, i), 64, bench.img, speedup,
                                 snap=lambda i: float(make_divisible(i, 32)))["knob"])
        rows.append(bench.row(f"{tname}-input@{size}", lambda: (base, {"method": "(d) input", "knob": size,
                                                                     "training": "none (the base)"}), img=size))
    rows += edgeprune_rows(bench, tname, speedup, base, rows)
    if "h" in only:
        rows += progressive_rows(bench, tname, speedup, steps=4)
    if "i" in only:
        rows += progressive_rows(bench, tname, speedup, steps=1)
    if "j" in only:
        rows += progressive_rows(bench, tname, speedup, steps=1, cost="flops")
    return rows


def narrow_rows(bench: Bench, tname: str, speedup: float) -> list[dict]:
    """(c) the narrower yolov5 whose measured latency meets the target, trained from scratch for E + R epochs."""
    r, nc = bench.r, len(bench.spec.names)
    width = bench.matched(f"{tname}-narrow", lambda w: (narrow_yolov5(w, 0.33, nc), w), 0.0625, 0.5, speedup,
                          snap=lambda w: round(w * 64) / 64)["knob"]
    return seeds_of(bench, f"{tname}-narrow@{width:g}", lambda s: (
        bench.fit(f"{tname}-narrow@{width:g}-s{s}", narrow_yolov5(width, 0.33, nc), r["epochs"] + r["recovery"], s,
                  scratch=True), {"method": "(c) narrow", "knob": width,
                                 "training": f"{r['epochs'] + r['recovery']} ep from scratch"}))


def modelopt_row(bench: Bench, tname: str, base, speedup: float) -> dict:
    path = bench.work / "rows" / f"{tname}-modelopt.json"
    if path.is_file():
        return json.loads(path.read_text())
    val = build_loader(bench.spec.val[:32], bench.img, 16, augment=False, shuffle=False)
    bn = build_loader(bench.spec.train, bench.img, 16, augment=True, shuffle=True)
    score = lambda m: evaluate(m, val)["map50"]  # noqa: E731
    # FastNAS keeps its per-layer sensitivity map in this checkpoint and reuses it under any new FLOPs limit
    sensitivity = bench.work / "modelopt-search.pth"
    fastnas = lambda f: modelopt_fastnas(base, f, score, bn, checkpoint=str(sensitivity))  # noqa: E731
    try:
        share = bench.matched(f"{tname}-modelopt", lambda f: (fastnas(f), f), lambda: fastnas_floor(fastnas), 0.9,
                              speedup)["knob"]
        return bench.row(f"{tname}-modelopt@{share:.4g}", lambda: (bench.fit(f"{tname}-modelopt@{share:.4g}-s0",
                                                                               fastnas(share),
                                                                 bench.r["recovery"], 0, teacher=base),
                                                       {"method": "(b) modelopt-fastnas", "knob": share,
                                                        "training": f"{bench.r['recovery']} ep KD"}))
    except PeerUnavailable as e:
        row = {"name": f"{tname}-modelopt", "method": "(b) modelopt-fastnas", "error": str(e)}
        write_json(path, row)
        print(f"{tname}: ModelOpt row not run: {e}", flush=True)
        return row


def fastnas_floor(fastnas, shares=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) -> float:
    """The lowest FLOPs share FastNAS accepts: it refuses limits below what its search space (channel choices in
    steps of 32) reaches, with "NOT all constraints can be satisfied"; any other error stops the row."""
    for share in shares:
        try:
            fastnas(share)
            return share
        except PeerUnavailable as e:
            if "NOT all constraints" not in str(e):
                raise
            print(f"FastNAS refuses a FLOPs limit of {share:.0%}: {e}", flush=True)
    raise PeerUnavailable(f"FastNAS refuses every FLOPs limit up to {shares[-1]:.0%} of the base")


def edgeprune_rows(bench: Bench, tname: str, speedup: float, base, rows: list[dict]) -> list[dict]:
    """(e) the demo's path: search the sparse base against the target, KD from the dense base; (f) a FLOPs cap;
    (g) (e) with the two-stage score (its 8 best trials fine-tuned for 24 KD iterations and scored again)."""
    r, out, runs = bench.r, [], []
    if "e" in bench.args.only:
        runs.append((f"{tname}-edgeprune", ["--speedup", f"{speedup:.4f}"]))
    if "g" in bench.args.only:
        runs.append((f"{tname}-edgeprune-rescored", ["--speedup", f"{speedup:.4f}", "--rescore-top", "8"]))
    if "f" in bench.args.only:  # capped at the FLOPs of Torch-Pruning L1 at the target
        tp = next(x for x in rows if x["name"].startswith(f"{tname}-tp-l1"))
        runs.append((f"{tname}-edgeprune-flops@{tp['GFLOPs']:.3g}", ["--lambda-latency", "0", "--lambda-flops", "1",
                                                                     "--max-gflops", f"{tp['GFLOPs']:.4f}"]))
    for name, limits in runs:
        run, t0 = bench.work / f"search-{name}", time.perf_counter()
        if not (run / "search_s.txt").is_file():
            bench.sparse()
            cli(["search", str(bench.work / "sparse" / "last.pt"), "--data", str(bench.data), "--out", str(run),
                 "--imgsz", str(bench.img), "--trials", str(r["trials"]), "--scopes", "blocks", "--threads", "1",
                 "--importance", "bn", "--no-progress", *limits])
            (run / "search_s.txt").write_text(f"{time.perf_counter() - t0:.1f}")
        search_s = float((run / "search_s.txt").read_text())
        chosen = run / ("pruned.pt" if (run / "pruned.pt").is_file() else "closest.pt")
        method = {"edgeprune": "(e) edgeprune", "rescored": "(g) edgeprune-rescored"}.get(name.split("-")[-1],
                                                                                            "(f) edgeprune-flops")
        seeds = 1 if method.startswith("(f)") else bench.args.seeds
        out += [bench.row(f"{name}-s{s}", lambda s=s: (bench.fit(f"{name}-s{s}", load_model(chosen),
                                                                 r["recovery"], s, teacher=base),
                                                       {"method": method,
                                                        "plan": chosen.name, "search_s": search_s,
                                                        "training": f"{r['recovery']} ep KD"}))
                for s in range(seeds)]
    return out


def progressive_rows(bench: Bench, tname: str, speedup: float, steps: int, cost: str = "latency") -> list[dict]:
    """(h) the dense base pruned in `steps` latency-budgeted cuts with Taylor importance (edgeprune.search.progressive)
    through the CLI, as a user runs it; (i) the same allocation in one cut (steps 1) with the whole recovery after it;
    (j) (i) priced in FLOPs. One latency table for every seed (WORK/progressive-table.json)."""
    r = bench.r
    name = f"{tname}-progressive-taylor" if steps > 1 else f"{tname}-allocated-taylor"
    method = "(h) edgeprune-progressive" if steps > 1 else "(i) edgeprune-allocated"
    if cost == "flops":
        name, method = f"{tname}-allocated-flops", "(j) edgeprune-alloc-flops"

    table = bench.work / "progressive-table.json"

    def make(s: int):
        out = bench.work / f"{name}-s{s}.pt"
        if not out.is_file():
            # (j) keeps the widths (i) may keep, multiples of the table's channel block: only the cost differs
            rounding = ["--round-to", str(json.loads(table.read_text())["align"])] if cost == "flops" else []
            code = cli(["prune", str(bench.work / "base" / "last.pt"), "-o", str(out), "--progressive",
                        "--speedup", f"{speedup:.4f}", "--data", str(bench.data), "--backend", "ort", "--threads", "1",
                        "--steps", str(steps), "--epochs", str(r["recovery"]), "--seed", str(s), "--imgsz",
                        str(bench.img), "--importance", "taylor", "--cost", cost, *rounding, "--predict", str(table)])
            if code not in (0, 3):  # 3: saved, but its measured latency missed the target (the final pass says)
                raise RuntimeError(f"edgeprune prune --progressive failed with exit code {code}")
        state = json.loads((out.with_suffix(".progressive") / "progressive.json").read_text())
        return load_model(out).eval(), {"method": method, "training": f"{r['recovery']} ep KD", "importance": "taylor",
                                        "cost": cost,
                                        "steps": [{k: x[k] for k in ("goal_ms", "predicted_ms", "measured_ms")}
                                                  for x in state["steps"]]}

    return seeds_of(bench, name, make)


def final_latency(bench: Bench, rows: list[dict]) -> None:
    """All finished models of one target, measured in turns (`--passes`, 3 by default); each keeps its pass of
    lowest median (the least disturbed one: this host's medians moved 10-25 % between passes some afternoons)."""
    models = {x["name"]: (x["name"], load_model(bench.work / "rows" / f"{x['name']}.pt"), x["imgsz"]) for x in rows
              if "error" not in x}
    best: dict = {}

    def measure(entry) -> float:
        name, model, img = entry
        stats = bench.stats(model, img)
        if name not in best or stats.median_ms < best[name].median_ms:
            best[name] = stats
        return stats.median_ms

    got = interleaved(measure, models, passes=bench.args.passes)
    for x in rows:
        if x["name"] in got:
            s = best[x["name"]]
            x.update(latency_ms=s.median_ms, p90_ms=s.p90_ms, latency_passes=got[x["name"]]["passes"],
                     latency_load_elsewhere=s.info.get("load_elsewhere"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov5s")
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--no-nano-target", action="store_true", help="skip the dense-yolov5n-latency target")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=3, help="back-to-back passes of the final latency measurement")
    ap.add_argument("--work", default="runs/bench-peers")
    ap.add_argument("--out", help="JSON (default benchmarks/results/peers.json, peers_<model>.json for others)")
    ap.add_argument("--smoke", action="store_true", help="every row at tiny sizes, to check the script")
    ap.add_argument("--only", default="abcdefghij", help="the rows to run, by letter (f needs a: its FLOPs cap)")
    ap.add_argument("--targets", help="comma-separated targets to run in this sitting (e.g. yolov5n); the other "
                    "targets' tables are kept from the existing JSON as they were")
    args = ap.parse_args()
    if "f" in args.only and "a" not in args.only:
        ap.error("--only: row f is capped at the FLOPs of row a (Torch-Pruning L1 at the target): add a")
    if "j" in args.only and "i" not in args.only:
        ap.error("--only: row j rounds widths to the channel block of row i's latency table: add i")
    args.work = Path(args.work) / args.model
    bench = Bench(args)
    nc, r = len(bench.spec.names), bench.r
    base = bench.fit("base", create_model(args.model, nc), r["epochs"], 0, scratch=True)
    bench.base = base
    saved = bench.work / "rows" / "speedups.json"  # measured once: the cached knobs were matched against them
    if saved.is_file():
        targets = json.loads(saved.read_text())
    else:  # the dense yolov5n's speed-up over the base: both measured in turns, lowest medians
        targets = {f"{args.speedup:g}x": args.speedup}
        if args.model != "yolov5n" and not args.no_nano_target:
            got = interleaved(lambda m: bench.ms(m), {"base": base, "yolov5n": create_model("yolov5n", nc)})
            targets["yolov5n"] = got["base"]["ms"] / got["yolov5n"]["ms"]
        write_json(saved, targets)
    refs = [bench.row("base", lambda: (base, {"method": "base", "training": f"{r['epochs']} ep"})),
            bench.row("base-long", lambda: (bench.fit("base-long", load_model(bench.work / "base" / "last.pt"),
                                                      r["recovery"], 0), {"method": f"base + {r['recovery']} ep",
                                                                         "training": f"+{r['recovery']} ep"}))]
    result = {"model": args.model, "recipe": r, "seeds": args.seeds, "speedups": targets,
              "train_minutes": {n: float((bench.work / n / "done").read_text() or 0) / 60 for n in ("base", "sparse")
                                if (bench.work / n / "done").is_file()},
              "targets": {}, "complete": False}
    out = Path(args.out or f"benchmarks/results/peers{'' if args.model == 'yolov5s' else '_' + args.model}"
               f"{'_smoke' if args.smoke else ''}.json")
    chosen = args.targets.split(",") if args.targets else list(targets)
    if set(chosen) - set(targets):
        ap.error(f"--targets: {', '.join(sorted(set(chosen) - set(targets)))} not among {', '.join(targets)}")
    if args.targets and out.is_file():  # each target's table has its own final pass: the others stay valid
        kept = json.loads(out.read_text()).get("targets", {})
        result["targets"] = {t: kept[t] for t in targets if t in kept and t not in chosen}
    for tname in chosen:  # written after each target, so a long run shows its first table early
        speedup = targets[tname]
        rows = refs + target_rows(bench, tname, speedup, base)
        final_latency(bench, rows)
        target = next(x["latency_ms"] for x in rows if x["name"] == "base") / speedup  # in the final pass's ms
        table = summarize(rows, target)
        result["targets"][tname] = {"speedup": speedup, "target_ms": target, "rows": rows, "table": table,
                                    "verdict": verdict(table, target)}
        result["complete"] = len(result["targets"]) == len(targets)
        result["minutes"] = bench.seconds() / 60
        write_json(out, result)
        bench.tick()
        plot(result, out.with_suffix(".png"))
        print(f"\n## {tname}: {target:.2f} ms\n\n{markdown_table(table)}\n\n{verdict(table, target)['text']}",
              flush=True)
    print(f"\nwrote {out}: {result['minutes']:.1f} min over every sitting")


if __name__ == "__main__":
    main()
