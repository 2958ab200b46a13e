"""Latency predictor accuracy: 50 randomly pruned yolov5n and yolov5s each, measured vs predicted, plus the
measured speed-up against the FLOPs reduction of uniform pruning.

    python benchmarks/bench_predictor.py [--models yolov5n yolov5s] [--variants 50] [--imgsz 320] [--runs 20]

For each model: the lookup table is built on the base model (edgeprune.latency.predictor), then calibrated on 10
models: 7 uniform prunings (ratio 0 and 0.3 / 0.5 / 0.7 with round_to 1 and 8; they also give the speed-up vs
FLOPs table) and 3 random round_to=1 plans drawn from their own random stream.
The evaluation set is disjoint: `--variants` plans from `plan_from_ratios` with one random keep ratio per group in
[0, 0.8], round_to 8 for the first half and 1 for the second, L1 importance on untrained weights. Each is exported
(the `edgeprune export` graph) and measured on onnxruntime's CPU provider (2 threads, median of `--runs` timed runs
after warm-up; fewer runs than bench_prune's 50 to keep the whole benchmark near 10 minutes), and predicted.
Also reported as a baseline: a FLOPs model `T ≈ a·FLOPs + b` fitted on the same calibration models.

Writes benchmarks/results/predictor.json and benchmarks/results/predictor.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch

from deploy.onnxruntime_runner import cpu_name
from edgeprune.complexity import count_flops
from edgeprune.graph import find_groups
from edgeprune.importance import score_groups
from edgeprune.latency import get_backend, module_to_onnx
from edgeprune.latency.predictor import LatencyPredictor, mape, spearman
from edgeprune.models import create_model, example_input
from edgeprune.prune import plan_from_ratios, prune_model

UNIFORM = [(0.0, 8), (0.3, 1), (0.3, 8), (0.5, 1), (0.5, 8), (0.7, 1), (0.7, 8)]


def ort_align() -> int:
    """onnxruntime's NCHWc block: 16 channels where the CPU has AVX-512, 8 with AVX2."""
    try:
        return 16 if " avx512f" in Path("/proc/cpuinfo").read_text() else 8
    except OSError:
        return 8


def pruned(name: str, base: torch.nn.Module, groups, scores, ratios, round_to: int) -> torch.nn.Module:
    model = create_model(name, num_classes=1).eval()
    model.load_state_dict(base.state_dict())
    plan = plan_from_ratios(groups, scores, ratios, round_to=round_to, min_width=8)
    prune_model(model, plan, example_input(model))
    return model.eval()


def measure(backend, model, shape, repeat: int) -> tuple[float, float, float]:
    """(ms, cv, seconds for export + one measurement): the lowest of `repeat` medians, which discards the bursts
    when another process takes a core for a second or two (seen on the shared 2-core machine)."""
    t0 = time.perf_counter()
    onnx = module_to_onnx(model, shape)
    runs = [backend.measure_many([(onnx, shape)])[0] for _ in range(repeat)]
    best = min(runs, key=lambda st: st.median_ms)
    return best.median_ms, best.cv, (time.perf_counter() - t0) / repeat


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return a, my - a * mx


def bench_model(name: str, args, unit_backend, model_backend) -> dict:
    shape = (1, 3, args.imgsz, args.imgsz)
    torch.manual_seed(0)
    base = create_model(name, num_classes=1).eval()
    groups = find_groups(base, example_input(base))
    scores = score_groups(groups, "l1")

    t0 = time.perf_counter()
    pred = LatencyPredictor.build(base, shape, unit_backend, align=args.align or ort_align())
    build_s = time.perf_counter() - t0
    n_units = pred.stats["measured_units"]
    print(f"{name}: table of {n_units} unit configurations in {build_s:.0f} s", flush=True)

    # calibration models: the uniform prunings, plus a few random round_to=1 plans (their own random stream,
    # so disjoint from the evaluation set) because uniform ratios of multiple-of-16 widths stay mostly aligned
    cal_rng = random.Random(f"{name}-calibration-{args.seed}")
    cal_plans = [(r, rt, f"uniform {r}") for r, rt in UNIFORM]
    cal_plans += [({g.name: cal_rng.uniform(0.0, 0.8) for g in groups}, 1, "random") for _ in range(args.cal_random)]
    cal_models, cal_rows = [], []
    base_flops = count_flops(base, args.imgsz)
    for ratio, rt, kind in cal_plans:
        m = pruned(name, base, groups, scores, ratio, rt)
        ms, cv, _ = measure(model_backend, m, shape, args.repeat + 1)  # few points: one more repeat each
        cal_models.append(m)
        lut, transit = pred.features(m)
        cal_rows.append({"kind": kind, "ratio": ratio if isinstance(ratio, float) else None, "round_to": rt,
                         "gflops": count_flops(m, args.imgsz) / 1e9, "measured_ms": ms, "cv": cv,
                         "lut_sum_ms": lut, "unaligned_melems": transit})
    base_ms = cal_rows[0]["measured_ms"]
    for r in cal_rows:
        r["flops_reduction"] = 1 - r["gflops"] * 1e9 / base_flops
        r["speedup"] = base_ms / r["measured_ms"]
        r["flops_speedup"] = base_flops / (r["gflops"] * 1e9)
    raw = pred.evaluate(cal_models, [r["measured_ms"] for r in cal_rows])  # a=1, b=0: the table alone
    cal = pred.calibrate(cal_models, [r["measured_ms"] for r in cal_rows])
    for r in cal_rows:
        r["fitted_ms"] = pred.a * r["lut_sum_ms"] + pred.r * r["unaligned_melems"] + pred.b
    fa, fb = linear_fit([r["gflops"] for r in cal_rows], [r["measured_ms"] for r in cal_rows])
    print(f"{name}: calibrated {cal['form']}: a={cal['a']:.3f} r={cal['r']:.3f} b={cal['b']:.3f} ms "
          f"(fit MAPE {cal['fit_mape']:.2f} %)", flush=True)

    rng = random.Random(f"{name}-{args.seed}")
    rows, meas_s, pred_s = [], [], []
    for i in range(args.variants):
        rt = 8 if i < args.variants // 2 else 1
        ratios = {g.name: rng.uniform(0.0, 0.8) for g in groups}
        m = pruned(name, base, groups, scores, ratios, rt)
        t0 = time.perf_counter()
        p = pred.predict(m)
        pred_s.append(time.perf_counter() - t0)
        lut, transit = pred.features(m)
        ms, cv, dt = measure(model_backend, m, shape, args.repeat)
        meas_s.append(dt)
        gf = count_flops(m, args.imgsz) / 1e9
        rows.append({"round_to": rt, "gflops": gf, "measured_ms": ms, "cv": cv, "predicted_ms": p,
                     "lut_sum_ms": lut, "unaligned_melems": transit, "flops_model_ms": fa * gf + fb})
        if (i + 1) % 10 == 0:
            print(f"{name}: {i + 1}/{args.variants} variants", flush=True)

    def score(key, subset=None):
        rs = [r for r in rows if subset is None or r["round_to"] == subset]
        p, t = [r[key] for r in rs], [r["measured_ms"] for r in rs]
        return {"mape": mape(p, t), "max_ape": max(100 * abs(a - b) / b for a, b in zip(p, t)),
                "spearman": spearman(p, t), "n": len(rs)}

    out = {
        "model": name, "base_ms": base_ms, "base_gflops": base_flops / 1e9,
        "table": {"unit_configurations": n_units, "build_s": build_s, "overhead_ms": pred.overhead_ms,
                  "families": len(pred.grids)},
        "calibration": {k: v for k, v in pred.calibration.items() if k != "points"},
        "table_alone_on_calibration_set": {k: raw[k] for k in ("mape", "spearman")},
        "uniform_speedup_vs_flops": [{k: r[k] for k in ("ratio", "round_to", "gflops", "flops_reduction",
                                                         "flops_speedup", "measured_ms", "speedup")}
                                     for r in cal_rows if r["kind"].startswith("uniform")],
        "predictor": {"all": score("predicted_ms"), "round_to_8": score("predicted_ms", 8),
                      "round_to_1": score("predicted_ms", 1)},
        "flops_baseline": {"all": score("flops_model_ms"), "round_to_8": score("flops_model_ms", 8),
                           "round_to_1": score("flops_model_ms", 1)},
        "seconds_per_measurement": sum(meas_s) / len(meas_s),
        "seconds_per_prediction": sum(pred_s) / len(pred_s),
        "calibration_models": cal_rows, "variants": rows,
    }
    print(json.dumps({k: out[k] for k in ("model", "predictor", "flops_baseline", "seconds_per_measurement",
                                          "seconds_per_prediction")}), flush=True)
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        for rt, colour in ((8, "tab:blue"), (1, "tab:orange")):
            rs = [r for r in res["variants"] if r["round_to"] == rt]
            ax.scatter([r["measured_ms"] for r in rs], [r["predicted_ms"] for r in rs], s=14, c=colour,
                       label=f"random plans, round_to={rt}")
        u = res["calibration_models"]
        ax.scatter([r["measured_ms"] for r in u], [r["fitted_ms"] for r in u], marker="x", c="k",
                   label="calibration models")
        lo = min(min(r["measured_ms"], r["predicted_ms"]) for r in res["variants"]) * 0.95
        hi = max(max(r["measured_ms"], r["predicted_ms"]) for r in res["variants"]) * 1.05
        lo = min(lo, min(r["measured_ms"] for r in u) * 0.95)
        hi = max(hi, max(r["measured_ms"] for r in u) * 1.05)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        s = res["predictor"]["all"]
        ax.set_title(f"{res['model']}: MAPE {s['mape']:.1f} %, Spearman {s['spearman']:.3f}")
        ax.set_xlabel("measured latency, ms (onnxruntime CPU, 2 threads)")
        ax.set_ylabel("predicted latency, ms")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s"])
    ap.add_argument("--variants", type=int, default=50)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="measure each whole model this often, keep the lowest")
    ap.add_argument("--align", type=int, default=0, help="channel multiple the runtime wants (0: 16 with "
                    "AVX-512, else 8: onnxruntime's NCHWc block)")
    ap.add_argument("--cal-random", type=int, default=3, help="random round_to=1 plans added to the calibration set")
    ap.add_argument("--out", default="benchmarks/results/predictor.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # pruning and tracing only: keep torch off the core onnxruntime is timing on
    # units are tiny: more runs, shorter warm-up floor; whole models: --runs after at least 0.3 s of warm-up
    unit_backend = get_backend("ort", threads=args.threads, runs=30, warmup=10, min_warmup_s=0.2)
    model_backend = get_backend("ort", threads=args.threads, runs=args.runs, warmup=5, min_warmup_s=0.3)
    t0 = time.perf_counter()
    load = os.getloadavg()
    results = [bench_model(n, args, unit_backend, model_backend) for n in args.models]
    out = {"machine": {"cpu": cpu_name(), "torch": torch.__version__, "threads": args.threads,
                       "loadavg_at_start": load, "loadavg_at_end": os.getloadavg()},
           "imgsz": args.imgsz, "runs_per_full_measurement": args.runs, "runs_per_unit_measurement": 30,
           "repeats_per_full_measurement": args.repeat,
           "repeats_per_calibration_measurement": args.repeat + 1,
           "fingerprint": unit_backend.fingerprint(), "wall_s": time.perf_counter() - t0, "models": results}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')} in {out['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
