"""Progressive, latency-budgeted pruning (HALP, NetAdapt): K cuts during KD training, each recovered before the next.

Step k aims at a latency on the line from the base's measured latency to the target (HALP's linear schedule).
Its cut is an allocation (edgeprune.search.allocate): the channels of lowest importance per millisecond saved, as the
target's calibrated lookup table predicts, at widths the table shows are fast. Every cut model is measured on the
backend before it is recovered, and the ratio measured / predicted rescales the next aim, so the table's drift
does not pile up. The last cut is re-aimed (up to `retries` times) until its measured latency meets the target,
and also when it lands more than two tolerances under it (speed nobody asked for costs accuracy); once one try
was too slow and another too fast, the next aim is interpolated between them. Latency does not
change with training, so this check costs no recovery epochs: every method keeps the same budget, `epochs` in
all, split over the steps (the last takes the remainder).

With a final `plan` (a searched one), the steps are `chain.step_plans` instead: the schedule reaches that plan
step by step, and the last measurement says whether it meets the target.

Everything lands in `out_dir`: `progressive.json` (the schedule, the base latency, one record per step with its
aim, predicted and measured latency), `stepK/pruned.pt` (each cut, saved before its recovery), `stepK/plan.json`
(its plan, against the model before the cut) and `stepK/`'s training run. A killed run resumes from the last
finished step, or inside a step's recovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from ..checkpoint import load_model, save_checkpoint
from ..evaluate.complexity import count_flops, count_params
from ..models import example_input
from ..prune.graph import find_groups
from ..prune.importance import accumulate_gradients, rankable, score_groups
from ..prune.plan import Plan, plan_from_widths, pruned_model
from ..utils.files import write_json
from .allocate import UnitMap, allocate

__all__ = ["Schedule", "progressive_prune"]

FORMAT = "edgeprune-progressive"


@dataclass
class Schedule:
    target_ms: float
    steps: int = 1  # one cut and the whole recovery after it beat 4 cuts on the same budget (docs/search.md)
    epochs: int = 13  # recovery epochs in all (KD from the teacher), split over the steps
    importance: str = "taylor"  # comparable across groups, which the allocation needs (l1 is rescaled per group)
    taylor_batches: int = 8  # training batches whose gradients score channels, with importance taylor
    round_to: int = 0  # kept widths: multiples of this; 0: the latency table's fast channel block (its align)
    min_width: int = 8
    tolerance: float = 0.02  # the final model meets the target when measured ≤ target · (1 + tolerance)
    retries: int = 3  # re-aims of the last cut when its measured latency misses the target
    img_size: int = 320
    batch_size: int = 16
    lr0: float = 0.002
    seed: int = 0
    cost: str = "latency"  # what the predictor prices: latency (the target's table) or flops (for comparison)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.target_ms <= 0:
            raise ValueError(f"the target latency must be positive, not {self.target_ms} ms")

    def step_epochs(self) -> list[int]:
        share, extra = divmod(self.epochs, self.steps)
        return [share + (extra if k == self.steps else 0) for k in range(1, self.steps + 1)]

    def aim(self, base_ms: float, step: int) -> float:
        """Step `step`'s latency on the line from the base to the target."""
        return base_ms + (min(self.target_ms, base_ms) - base_ms) * step / self.steps


def progressive_prune(model: nn.Module, teacher: nn.Module | None, spec, backend, predictor, schedule: Schedule,
                      out_dir: str | Path, plan: Plan | None = None, log: Callable[[str], None] = print,
                      progress: bool = False) -> tuple[nn.Module, dict]:
    """Run (or resume) `schedule` on `model`; `spec` is a DatasetSpec (train / val samples), `backend` measures,
    `predictor` (a LatencyPredictor for this model and input) predicts. Returns the final model and the record."""
    out = Path(out_dir)
    state = _load_state(out, schedule)
    shape = (1, 3, schedule.img_size, schedule.img_size)
    if "base_ms" not in state:
        state["base_ms"] = settled_ms(model, shape, backend)
        state["base_predicted_ms"] = predictor.predict(model)
        write_json(out / "progressive.json", state)
    log(f"base: {state['base_ms']:.2f} ms measured ({state['base_predicted_ms']:.2f} predicted); target "
        f"{schedule.target_ms:.2f} ms in {schedule.steps} steps, {schedule.epochs} recovery epochs")
    chain = _chain(model, plan, schedule, spec) if plan is not None else None
    current, maps = model, []  # maps: the UnitMap, learnt on the first model cut and kept for the next steps
    for k in range(1, schedule.steps + 1):
        rec = next((r for r in state["steps"] if r["step"] == k), None)
        if rec is not None and rec.get("done"):
            current = load_model(out / rec["checkpoint"]).eval()
            continue
        if rec is None:
            cut, rec, plan_k = _cut(current, k, state, schedule, backend, predictor, chain, maps, log, spec)
            save_checkpoint(out / f"step{k}" / "pruned.pt", cut)
            plan_k.save(out / f"step{k}" / "plan.json")
            state["steps"].append(rec)
            write_json(out / "progressive.json", state)
        else:
            cut = load_model(out / f"step{k}" / "pruned.pt").eval()
        current = _recover(cut, teacher, spec, schedule, k, out, progress, rec)
        rec["done"] = True
        write_json(out / "progressive.json", state)
        log(_step_line(rec))
    last = state["steps"][-1]
    state["met"] = last["measured_ms"] <= schedule.target_ms * (1 + schedule.tolerance)
    write_json(out / "progressive.json", state)
    return current, state


def _load_state(out: Path, schedule: Schedule) -> dict:
    path = out / "progressive.json"
    if not path.is_file():
        return {"format": FORMAT, "schedule": asdict(schedule), "steps": []}
    try:
        state = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: cannot read the schedule's state ({e}); move it away to start again") from None
    saved = {"cost": "latency", **state.get("schedule", {})}  # states written before --cost existed
    if state.get("format") != FORMAT or saved != asdict(schedule):
        raise ValueError(f"{path}: this directory holds a schedule made with other settings "
                         f"({state.get('schedule')}); resume with the same settings or choose another output")
    return state


def settled_ms(model: nn.Module, shape: tuple[int, ...], backend, passes: int = 3) -> float:
    """The lowest median of `passes` measurements: one median on this CPU has drifted by 25 % between two runs
    of the same base (15.2 and 18.9 ms for a yolov5n), which moved a --speedup target by as much."""
    from ..latency import measure

    raw = getattr(backend, "backend", backend)  # past a CachedBackend: its cache would answer passes 2 and 3
    return min(measure(model, shape, raw).median_ms for _ in range(passes))


def _importance(model: nn.Module, groups: list, schedule: Schedule, spec) -> dict:
    """The schedule's importance of the model as it is now (taylor: gradients on a few training batches first)."""
    if schedule.importance == "taylor":
        accumulate_gradients(model, spec.train, schedule.img_size, schedule.taylor_batches)
    try:
        return score_groups(groups, schedule.importance)
    finally:
        model.zero_grad(set_to_none=True)


def _chain(model: nn.Module, plan: Plan, schedule: Schedule, spec) -> list[Plan]:
    from ..prune.chain import step_plans

    groups = find_groups(model, example_input(model))
    return step_plans(plan, groups, _importance(model, groups, schedule, spec), schedule.steps,
                      schedule.round_to or 8, schedule.min_width)


def _cut(current: nn.Module, k: int, state: dict, schedule: Schedule, backend, predictor,
         chain: list[Plan] | None, maps: list[UnitMap], log, spec) -> tuple[nn.Module, dict, Plan]:
    """Step k's pruned model, its record and its plan (against the model before the cut); the last step is
    re-aimed until its measured latency is within [target · (1 − 2 · tolerance), target · (1 + tolerance)]."""
    shape = (1, 3, schedule.img_size, schedule.img_size)
    example = example_input(current)
    prev = state["steps"][-1] if state["steps"] else {"measured_ms": state["base_ms"],
                                                      "predicted_ms": state["base_predicted_ms"]}
    scale = prev["measured_ms"] / prev["predicted_ms"]  # the table's drift, measured on the model before the cut
    target = schedule.aim(state["base_ms"], k)
    if chain is not None:
        cut = pruned_model(current, chain[k - 1], example)
        predicted, measured = predictor.predict(cut), settled_ms(cut, shape, backend)
        return cut, _record(k, target, target, predicted, measured, cut, schedule, "plan"), chain[k - 1]
    groups = find_groups(current, example)
    scores = rankable(_importance(current, groups, schedule, spec), schedule.importance)
    if not maps or not {g.name for g in groups} <= set(maps[0].widths):  # the slopes hold at any width
        maps[:] = [UnitMap.learn(current, groups, shape, example)]
    umap = maps[0]
    round_to = schedule.round_to or getattr(predictor, "align", 0) or 8
    tries = 1 + (schedule.retries if k == schedule.steps else 0)
    lo, hi = target * (1 - 2 * schedule.tolerance), target * (1 + schedule.tolerance)
    attempts, aim = [], target / scale
    for attempt in range(tries):
        alloc = allocate(groups, scores, umap, predictor, aim, round_to, schedule.min_width)
        plan = plan_from_widths(groups, scores, alloc.widths, {"mode": "latency-budget", "step": k, "aim_ms": aim})
        cut = pruned_model(current, plan, example)
        predicted, measured = predictor.predict(cut), settled_ms(cut, shape, backend)
        attempts.append((cut, aim, predicted, measured, alloc, plan))
        if lo <= measured <= hi or not alloc.reached or attempt + 1 == tries:
            break
        aim = _next_aim(attempts, target, lo, hi)
        log(f"step {k}: measured {measured:.2f} ms for a goal of {target:.2f} (predicted {predicted:.2f}); "
            f"re-aiming ({attempt + 1}/{tries - 1})")
    # the slowest attempt that meets the goal (the most channels kept), else the fastest one
    meets = [a for a in attempts if a[3] <= hi]
    cut, aim, predicted, measured, alloc, plan = max(meets, key=lambda a: a[3]) if meets else min(
        attempts, key=lambda a: a[3])
    if not alloc.reached:
        log(f"step {k}: {alloc.reason}")
    return cut, _record(k, target, aim, predicted, measured, cut, schedule, f"{len(alloc.moves)} moves"), plan


def _next_aim(attempts: list, target: float, lo: float, hi: float) -> float:
    """The predicted latency to ask for next. Between the closest attempts that measured too slow and too fast,
    interpolate (a bisection that uses the measurements); before such a pair exists, rescale the target by the
    last attempt's measured / predicted ratio. Rescaling alone can swing around the window on a noisy machine:
    yolov5n's last step measured 5.30, 3.73, then 4.95 ms for a goal of 4.64."""
    slow = [(a[3], a[1]) for a in attempts if a[3] > hi]
    fast = [(a[3], a[1]) for a in attempts if a[3] < lo]
    if slow and fast:
        (m_slow, a_slow), (m_fast, a_fast) = min(slow), max(fast)
        return a_fast + (target - m_fast) * (a_slow - a_fast) / (m_slow - m_fast)
    predicted, measured = attempts[-1][2:4]
    return target * predicted / measured


def _record(k: int, target: float, aim: float, predicted: float, measured: float, cut: nn.Module,
            schedule: Schedule, how: str) -> dict:
    return {"step": k, "goal_ms": target, "asked_ms": aim, "predicted_ms": predicted, "measured_ms": measured,
            "params": count_params(cut), "GFLOPs": count_flops(cut, schedule.img_size) / 1e9, "cut": how,
            "epochs": schedule.step_epochs()[k - 1], "checkpoint": f"step{k}/pruned.pt", "done": False}


def _recover(cut: nn.Module, teacher: nn.Module | None, spec, schedule: Schedule, k: int, out: Path,
             progress: bool, rec: dict) -> nn.Module:
    """Step k's recovery (KD from `teacher`, plain fine-tuning without one); resumes a killed run."""
    from ..train.trainer import TrainConfig, train

    epochs = rec["epochs"]
    if epochs == 0:
        return cut
    run = out / f"step{k}"
    cfg = TrainConfig(epochs=epochs, batch_size=schedule.batch_size, img_size=schedule.img_size, lr0=schedule.lr0,
                      warmup_epochs=min(1.0, epochs / 2), eval_every=epochs, seed=schedule.seed)
    row = train(cut.train(), spec.train, spec.val, cfg, run, resume=(run / "last.pt").is_file(), progress=progress,
                teacher=teacher)
    rec.update(checkpoint=f"step{k}/last.pt", mAP50=row.get("map50"), **{"mAP50-95": row.get("map")})
    return load_model(run / "last.pt").eval()


def _step_line(rec: dict) -> str:
    got = f", mAP@0.5 {rec['mAP50']:.3f}" if rec.get("mAP50") is not None else ""
    return (f"step {rec['step']}: goal {rec['goal_ms']:.2f} ms, predicted {rec['predicted_ms']:.2f}, measured "
            f"{rec['measured_ms']:.2f}; {rec['params'] / 1e6:.2f} M params, {rec['GFLOPs']:.3f} GFLOPs; "
            f"{rec['epochs']} ep{got}")

