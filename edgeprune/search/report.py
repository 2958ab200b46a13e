"""What a search leaves behind: the chosen plan and pruned model, the Pareto front (CSV + plot), the history plot,
and a summary table people read at a glance."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..checkpoint import save_checkpoint
from ..report.tables import format_table, markdown_table
from ..utils.files import atomic_write_text, write_json
from .context import SearchContext
from .objective import choose, pareto_front
from .rescore import rescore, row_scores
from .trials import resolve_target

__all__ = ["RESULT_FILES", "choose_trial", "trial_rows", "write_report"]

# the chosen model and plan: a plan that meets every hard limit, or (never under the same name) the closest one
RESULT_FILES = {True: ("pruned.pt", "best.plan.json"), False: ("closest.pt", "closest.plan.json")}


def trial_rows(study: optuna.Study) -> list[dict]:
    """One row per completed trial: number, ratios, scores, predicted/measured latency, objective value(s)."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        rows.append({"trial": t.number, "map50": a["map50"], "map": a["map"], "latency_ms": a["latency_ms"],
                     "measured_ms": a.get("measured_ms"), "predicted_ms": a.get("predicted_ms"),
                     "gflops": a["flops"] / 1e9, "mparams": a["params"] / 1e6, "values": list(t.values),
                     "seed": a["seed"] if a.get("seed") == "allocated" else bool(a.get("seed")),
                     "ratios": dict(t.params)})
    return rows


def choose_trial(study: optuna.Study, ctx: SearchContext, rows: list[dict], log=print) -> dict | None:
    """The search's answer: the best objective value (loss / reward), or in pareto mode the most accurate front
    point within the target latency or speed-up; with `rescore_top`, the best of the screen's top trials after
    a short KD fine-tune (search.rescore)."""
    if not rows:
        return None
    obj = ctx.objective
    if ctx.cfg.rescore_top > 0:
        best = rescore(study, ctx, rows, ctx.cfg.rescore_top, ctx.cfg.rescore_iters, log)
        if best is not None:
            return {**best, "feasible": True}
    if obj.mode != "pareto":
        feasible = [r for r in rows if all(c <= 0 for c in obj.constraints(row_scores(r)))]
        best = min(feasible or rows, key=lambda r: r["values"][0])
        return {**best, "feasible": bool(feasible)}
    base_ms = study.user_attrs["base"]["latency_ms"]
    i = choose([(r["map50"], r["latency_ms"]) for r in rows], obj.target_latency_ms, None, base_ms)
    return rows[i] if i is not None else None


def _row(name: str, s: dict, base: dict) -> dict:
    """A summary row of raw numbers: edgeprune.report.tables writes them the same way as every other table."""
    return {"model": name, "params": s["params"], "GFLOPs": s["flops"] / 1e9, "latency_ms": s["latency_ms"],
            "speedup": base["latency_ms"] / s["latency_ms"], "mAP50": s["map50"], "mAP50-95": s["map"]}


def write_report(study: optuna.Study, ctx: SearchContext, log=print) -> dict:
    cfg, out = ctx.cfg, ctx.cfg.run_dir
    resolve_target(ctx, study)
    rows = trial_rows(study)
    base, uniform = study.user_attrs["base"], study.user_attrs.get("uniform", [])
    best = choose_trial(study, ctx, rows, log)
    result: dict = {"base": base, "uniform": uniform, "trials": len(rows), "objective": ctx.objective.to_dict(),
                    "rescored": study.user_attrs.get("rescored", {})}
    table = [_row("base", base, base)] + [_row(f"uniform {u['ratio']}", u, base) for u in uniform]
    allocated = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.user_attrs.get("seed") == "allocated"]
    table += [_row(f"allocated seed (trial {t.number})", t.user_attrs, base) for t in allocated[:1]]
    if best is not None:
        cand = ctx.evaluator.evaluate(best["ratios"])
        measured = cand.measured_ms if cand.measured_ms is not None else \
            ctx.evaluator.measure(cand.model) if ctx.backend is not None else float("nan")
        chosen = {**cand.scores.__dict__, "latency_ms": measured, "predicted_ms": cand.predicted_ms,
                  "trial": best["trial"], "ratios": best["ratios"], "widths": cand.widths,
                  **({"rescored": best["rescored"]} if "rescored" in best else {})}
        feasible = best.get("feasible", True)
        model_path, plan_path = out / RESULT_FILES[feasible][0], out / RESULT_FILES[feasible][1]
        save_checkpoint(model_path, cand.model, metrics={"map50": chosen["map50"], "map": chosen["map"],
                                                          "pruned_from": cfg.checkpoint, "search": str(out)})
        cand.plan.info.update(source=cfg.checkpoint, trial=best["trial"], feasible=feasible)
        cand.plan.save(plan_path)
        result["chosen"] = {**chosen, "feasible": feasible}
        how = ", limits missed" if not feasible else ", rescored" if "rescored" in best else ""
        table.append(_row(f"search (trial {best['trial']}{how})", chosen, base))
        if not feasible:
            log(f"warning: no trial met the hard limits (target latency, --max-gflops, --max-mparams); the closest "
                f"plan is in {model_path.name} and {plan_path.name}, not pruned.pt. Run more trials, or loosen the "
                f"limits.")
    write_csv(out / "trials.csv", rows)
    front = pareto_front([(r["map50"], r["latency_ms"]) for r in rows])
    write_csv(out / "pareto.csv", [rows[i] for i in front])
    plot_pareto(out / "pareto.png", rows, front, base, uniform, result.get("chosen"))
    plot_history(out / "history.png", rows, ctx.objective.mode)
    result["table"] = table
    write_json(out / "result.json", result)
    atomic_write_text(out / "summary.md", markdown_table(table) + "\n")
    log(format_table(table))
    files = RESULT_FILES[result["chosen"]["feasible"]] if "chosen" in result else ()
    log(f"wrote {', '.join(str(out / f) for f in files + ('pareto.csv', 'pareto.png', 'history.png', 'summary.md'))}")
    return result


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        cols = [c for c in rows[0] if c != "ratios"] + ["ratios"]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "values": ";".join(f"{v:.6g}" for v in r["values"]),
                        "ratios": ";".join(f"{k}={v:g}" for k, v in r["ratios"].items())})
    atomic_write_text(path, buf.getvalue())


def plot_pareto(path: Path, rows: list[dict], front: list[int], base: dict, uniform: list[dict],
                chosen: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    meas = [r for r in rows if r["measured_ms"] is not None]
    pred = [r for r in rows if r["measured_ms"] is None]
    ax.scatter([r["latency_ms"] for r in pred], [r["map50"] for r in pred], s=10, c="0.75",
               label="trials (predicted latency)")
    ax.scatter([r["latency_ms"] for r in meas], [r["map50"] for r in meas], s=14, c="tab:blue",
               label="trials (measured latency)")
    f = sorted((rows[i] for i in front), key=lambda r: r["latency_ms"])
    ax.step([r["latency_ms"] for r in f], [r["map50"] for r in f], where="post", c="tab:blue", lw=1)
    if uniform:
        u = sorted(uniform, key=lambda r: r["latency_ms"])
        ax.plot([r["latency_ms"] for r in u], [r["map50"] for r in u], "s--", c="tab:orange",
                label="uniform pruning (0.3/0.5/0.7)")
    ax.scatter([base["latency_ms"]], [base["map50"]], marker="*", s=160, c="k", label="base model", zorder=5)
    if chosen is not None:
        ax.scatter([chosen["latency_ms"]], [chosen["map50"]], s=140, facecolors="none", edgecolors="tab:red",
                   lw=2, label="chosen (measured)", zorder=6)
    ax.set_xlabel("latency, ms")
    ax.set_ylabel("mAP@0.5 (search subset, BN recalibrated, before recovery)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(path: Path, rows: list[dict], mode: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["trial"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [r["trial"] for r in rows]
    if mode == "pareto":
        axes[0].scatter(x, [r["map50"] for r in rows], s=10)
        axes[0].set_ylabel("mAP@0.5")
    else:
        v = [r["values"][0] for r in rows]
        best = [min(v[: i + 1]) for i in range(len(v))]
        axes[0].scatter(x, v, s=10, label="trial")
        axes[0].plot(x, best, c="tab:red", label="best so far")
        axes[0].set_ylabel("objective (lower is better)")
        axes[0].legend(fontsize=8)
    axes[1].scatter(x, [r["latency_ms"] for r in rows], s=10, c=[r["map50"] for r in rows], cmap="viridis")
    axes[1].set_ylabel("latency, ms (colour: mAP@0.5)")
    for ax in axes:
        ax.set_xlabel("trial")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
