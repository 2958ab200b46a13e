"""Stage two of scoring: the screen's best trials scored again by a proxy that predicts recovered accuracy.

Every trial is screened cheaply (candidate.py: mAP after batch-norm recalibration). At deep cuts that screen ranks
plans close to noise; the short KD fine-tune (proxy.fine_tuned, NetAdapt's short-term fine-tune) ranks them as
the full recovery does far better (benchmarks/results/proxy.json, docs/search.md) but costs more, so it is spent
only on the `top` trials of the screen. The answer is the best of those by the same objective, with the
fine-tuned mAP in place of the screened one. Each rescored trial is kept in the study (user attribute
`rescored`), so a resumed or repeated report does not fine-tune it again.
"""

from __future__ import annotations

import time

import optuna

from ..evaluate.accuracy import evaluate
from .context import SearchContext
from .objective import Scores, pareto_front
from .proxy import fine_tuned

__all__ = ["rescore", "row_scores", "shortlist"]


def shortlist(rows: list[dict], ctx: SearchContext, top: int) -> list[dict]:
    """The `top` trials the screen ranks best: by objective value among those within the hard limits (loss,
    reward), or the most accurate front points within the target (pareto)."""
    obj = ctx.objective
    if obj.mode == "pareto":
        front = [rows[i] for i in pareto_front([(r["map50"], r["latency_ms"]) for r in rows])]
        ok = [r for r in front if not obj.target_latency_ms or r["latency_ms"] <= obj.target_latency_ms]
        return sorted(ok, key=lambda r: -r["map50"])[:top]
    feasible = [r for r in rows if all(c <= 0 for c in obj.constraints(row_scores(r)))]
    return sorted(feasible, key=lambda r: r["values"][0])[:top]


def rescore(study: optuna.Study, ctx: SearchContext, rows: list[dict], top: int, iters: int,
            log=print) -> dict | None:
    """The shortlist's trials fine-tuned for `iters` KD iterations and scored again; returns the best of them
    (its row with `rescored` filled in), or None when no trial is within the limits."""
    done = {int(k): v for k, v in study.user_attrs.get("rescored", {}).items()}
    picked = shortlist(rows, ctx, top)
    base = Scores(**study.user_attrs["base"])
    for row in picked:
        if row["trial"] not in done:
            done[row["trial"]] = _fine_tuned_scores(ctx, row, iters)
            study.set_user_attr("rescored", {str(k): v for k, v in done.items()})
            log(f"trial {row['trial']}: mAP@0.5 {row['map50']:.3f} screened, {done[row['trial']]['map50']:.3f} after "
                f"{iters} KD iterations ({done[row['trial']]['seconds']:.0f} s)")
    if not picked:
        return None
    scored = [{**row, "rescored": {**done[row["trial"]], "value": _value(ctx, row, done[row["trial"]], base)}}
              for row in picked]
    return max(scored, key=lambda r: r["rescored"]["value"])


def _fine_tuned_scores(ctx: SearchContext, row: dict, iters: int) -> dict:
    t0 = time.perf_counter()
    cand = ctx.evaluator.evaluate(row["ratios"], predict_only=True)  # pruned and BN-recalibrated
    images = ctx.train_samples[: iters * ctx.cfg.batch_size]
    model = fine_tuned(cand.model, ctx.model, images, ctx.cfg.img_size, batch_size=ctx.cfg.batch_size)
    m = evaluate(model, ctx.val_loader, conf_thres=ctx.cfg.conf_thres, max_det=100)
    return {"map50": float(m["map50"]), "map": float(m["map"]), "iters": iters,
            "seconds": time.perf_counter() - t0}


def _value(ctx: SearchContext, row: dict, rescored: dict, base: Scores) -> float:
    """Higher is better: the objective with the fine-tuned mAP in place of the screened one."""
    if ctx.objective.mode == "pareto":
        return rescored["map50"]
    scores = row_scores(row)
    scores.map50, scores.map = rescored["map50"], rescored["map"]
    return -ctx.objective.values(scores, base)[0]


def row_scores(row: dict) -> Scores:
    """A trial row's (report.trial_rows) scores."""
    return Scores(row["map50"], row["map"], row["latency_ms"], row["gflops"] * 1e9, row["mparams"] * 1e6)
