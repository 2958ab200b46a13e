"""bench_peers' summary: one line per method (mean and spread over seeds, latency against the target), the
verdict that says where edgeprune stands, and the plot (mAP@0.5:0.95 against measured latency)."""

from __future__ import annotations

import statistics
from pathlib import Path


def summarize(rows: list[dict], target: float) -> list[dict]:
    """One line per method: mean and spread (half the range) over seeds, the measured latency's median over seeds,
    its distance from the target and its speed-up over the base measured in the same pass, the training each row
    had and the method's wall time (mean per seed)."""
    table, base_ms = [], next(x["latency_ms"] for x in rows if x["name"] == "base")
    for method in dict.fromkeys(x.get("method", x["name"]) for x in rows):
        xs = [x for x in rows if x.get("method", x["name"]) == method]
        if "error" in xs[0]:
            table.append({"method": method, "note": xs[0]["error"]})
            continue
        half = lambda key: f"±{(max(x[key] for x in xs) - min(x[key] for x in xs)) / 2:.3f}"  # noqa: E731
        lat = statistics.median(x["latency_ms"] for x in xs)
        table.append({"method": method, "seeds": len(xs), "params": xs[0]["params"], "GFLOPs": xs[0]["GFLOPs"],
                      "imgsz": xs[0]["imgsz"], "latency_ms": lat,
                      "p90_ms": statistics.median(x["p90_ms"] for x in xs),
                      "vs target": f"{100 * (lat / target - 1):+.1f} %", "speedup": base_ms / lat,
                      "mAP50": statistics.mean(x["mAP50"] for x in xs),
                      "spread50": half("mAP50") if len(xs) > 1 else "–",
                      "mAP50-95": statistics.mean(x["mAP50-95"] for x in xs),
                      "spread": half("mAP50-95") if len(xs) > 1 else "–", "training": xs[0].get("training", ""),
                      "minutes": round(statistics.mean(x["seconds"] + x.get("search_s", 0.0) for x in xs) / 60, 1)})
    return table


OURS = ("(e)", "(g)", "(h)", "(i)")  # edgeprune's candidates for its best path
CONTROLS = ("(f)", "(j)")  # the FLOPs-objective controls of (e) and (i): edgeprune too, so not "other methods"


def _spread(line: dict) -> float:
    return float(line["spread"].lstrip("±")) if line.get("spread", "–") != "–" else 0.0


def verdict(table: list[dict], target: float, tol: float = 0.03) -> dict:
    """Where edgeprune's best path ((e), (g) search, (h) progressive or (i) allocated) stands among the rows that
    meet the target (measured latency ≤ target + tol): the best other method by mAP@0.5:0.95, the difference in
    points, and whether it exceeds the two rows' seed spreads. A row faster than target − tol meets it (a user would
    deploy it) but is named as outside the matching window: it bought speed nobody asked for, and may have paid
    accuracy for it."""
    timed = [x for x in table if "latency_ms" in x and not x["method"].startswith("base")]
    meets = [x for x in timed if x["latency_ms"] <= (1 + tol) * target]
    missed = [f"{x['method']} ({x['vs target']})" for x in timed if x not in meets]
    fast = [f"{x['method']} ({x['vs target']})" for x in meets if x["latency_ms"] < (1 - tol) * target]
    mine = [x for x in meets if x["method"].startswith(OURS)]
    ours = max(mine, key=lambda x: x["mAP50-95"]) if mine else None
    others = [x for x in meets if not x["method"].startswith(OURS + CONTROLS)]
    out = {"meets_target": [x["method"] for x in meets], "missed_target": missed, "outside_window": fast}
    if not others or ours is None:
        out["text"] = ("edgeprune (e), (g), (h) and (i) missed the target" if ours is None
                       else "no other method met the target") + (f"; missed: {', '.join(missed)}" if missed else "")
        return out
    best = max(others, key=lambda x: x["mAP50-95"])
    diff, spread = ours["mAP50-95"] - best["mAP50-95"], _spread(ours) + _spread(best)
    out.update(best_other=best["method"], lead_points=100 * diff, spread_points=100 * spread,
               beyond_spread=abs(diff) > spread)
    out["text"] = (f"best other method at the target: {best['method']} ({best['mAP50-95']:.3f} mAP@0.5:0.95); "
                   f"edgeprune {ours['method']} {ours['mAP50-95']:.3f}: {'leads' if diff > 0 else 'trails'} by "
                   f"{100 * abs(diff):.1f} points, {'more' if abs(diff) > spread else 'less'} than the seeds' "
                   f"spread (±{100 * spread:.1f})" + (f"; missed the target: {', '.join(missed)}" if missed else "")
                   + (f"; faster than the ±{100 * tol:g} % window: {', '.join(fast)}" if fast else ""))
    return out


def plot(result: dict, path: Path) -> None:
    """mAP@0.5:0.95 against measured latency: one marker per method (seed spread as error bars), targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result["targets"]), figsize=(6.5 * len(result["targets"]), 4.8), squeeze=False)
    for ax, (tname, t) in zip(axes[0], result["targets"].items()):
        colors = plt.cm.tab20.colors  # more methods than the default cycle's 10 colours
        for i, row in enumerate(r for r in t["table"] if "latency_ms" in r):
            ours = row["method"].startswith("(") and "edgeprune" in row["method"]
            ax.errorbar(row["latency_ms"], row["mAP50-95"], yerr=_spread(row), fmt="s" if ours else "o",
                        capsize=3, color=colors[i % len(colors)], label=row["method"])
        ax.axvline(t["target_ms"], ls="--", c="gray")
        ax.axvspan(0.97 * t["target_ms"], 1.03 * t["target_ms"], color="gray", alpha=0.15, label="target ±3 %")
        ax.set(xlabel="latency (ms, onnxruntime CPU, 1 thread)", ylabel="mAP@0.5:0.95",
               title=f"{result['model']}, target {tname}: {t['target_ms']:.2f} ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

