"""A round of trials: asked from Optuna together, screened on this machine, measured together by the backend
(`measure_many`: a pool of boards measures the round in parallel), then told.

Where the backend measures on other machines (`LatencyBackend.off_host`: the remote boards), a round's measurement
runs on a background thread while this machine screens the next round, so the boards never wait for the host's
pruning and scoring. A local backend (onnxruntime or a GPU of this machine) measures with nothing else running.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread  # what optimize() uses; ask/tell sends none
from optuna.trial import TrialState

from ..latency.base import MeasurementError
from .candidate import Candidate, with_ms
from .context import SearchContext
from .objective import Scores
from .trials import measured_front

__all__ = ["Round", "measures_elsewhere", "start_round"]


def measures_elsewhere(ctx: SearchContext) -> bool:
    """Whether the backend measures on other machines, so that this one may screen the next round meanwhile."""
    return ctx.evaluator.backend is not None and ctx.evaluator.backend.off_host


@dataclass
class Round:
    trials: list[optuna.Trial]
    cands: list[Candidate | MeasurementError]
    picked: list[int]  # the candidates being measured
    heartbeats: list
    result: Future

    def finish(self, study: optuna.Study, ctx: SearchContext, base: Scores, worker_id: int) -> int:
        """Wait for the measurement, tell every trial; returns how many completed."""
        try:
            results, seconds = self.result.result()
            share = seconds / max(1, len(self.picked))
            for i, ms in zip(self.picked, results):
                self.cands[i] = ms if isinstance(ms, MeasurementError) else with_ms(self.cands[i], ms, share)
            return sum(_tell(study, ctx, t, c, base, worker_id) for t, c in zip(self.trials, self.cands))
        finally:
            self.stop_heartbeats()

    def stop_heartbeats(self) -> None:
        for beat in self.heartbeats:
            beat.join()
        self.heartbeats = []


def start_round(study: optuna.Study, ctx: SearchContext, trials: list[optuna.Trial],
                pool: ThreadPoolExecutor | None) -> Round:
    """Screen `trials` here and start measuring the ones the policy picks: on `pool` (a thread) when given, else
    now, before returning. Heartbeats run from now until the round is finished."""
    heartbeats = [get_heartbeat_thread(t._trial_id, study._storage) for t in trials]
    for beat in heartbeats:
        beat.start()
    try:
        cands = [ctx.evaluator.screen(ctx.space.suggest(t)) for t in trials]
        front = measured_front(study)
        picked = [i for i, c in enumerate(cands) if ctx.evaluator.should_measure(c, front)]
        measure = _timed(ctx.evaluator.measurement([cands[i].model for i in picked]))
    except BaseException:
        for beat in heartbeats:
            beat.join()
        raise
    if pool is not None:
        result = pool.submit(measure)
    else:
        result = Future()
        result.set_result(measure())
    return Round(trials, cands, picked, heartbeats, result)


def _timed(measure):
    """`measure` returning its results and the seconds it took."""
    def run():
        t0 = time.perf_counter()
        results = measure()
        return results, time.perf_counter() - t0
    return run


def _tell(study: optuna.Study, ctx: SearchContext, trial: optuna.Trial, cand, base: Scores, worker_id: int) -> bool:
    """Record one scored candidate (or its failed measurement) in the study; True when it completed."""
    trial.set_user_attr("worker", worker_id)
    if isinstance(cand, MeasurementError):
        trial.set_user_attr("error", str(cand))
        study.tell(trial, state=TrialState.FAIL)
        return False
    for k, v in cand.attrs().items():
        trial.set_user_attr(k, v)
    for i, c in enumerate(ctx.objective.constraints(cand.scores)):
        trial.set_constraint(f"c{i}", c)
    values = ctx.objective.values(cand.scores, base)
    study.tell(trial, values if len(values) > 1 else values[0])
    return True
