"""Run an APRS search on Optuna: one study in any SQLAlchemy storage, workers in processes or on other machines.

Resuming is running the same command again: the study is loaded from its storage; a trial that was running when
its process was killed stops sending heartbeats, is marked failed after `grace_s` and retried with the same
ratios (RetryFailedTrialCallback), so a kill loses at most the trial in flight. Workers start a trial only while
completed + running trials are fewer than `trials`, and a trial that finds the budget taken when it starts is
pruned, so the study ends with exactly `trials` completed trials however many workers share it.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import optuna
import sqlalchemy
from optuna.trial import TrialState
from tqdm import tqdm

from ..utils.files import write_json
from .config import SearchConfig
from .context import SearchContext
from .objective import Scores
from .rounds import measures_elsewhere, start_round
from .sensitivity import allocated_seed, measure_sensitivity, seed_trials
from .trials import base_scores, counts, resolve_target

__all__ = ["open_storage", "open_study", "prepare", "run_search", "run_worker"]

UNIFORM_BASELINE = (0.3, 0.5, 0.7)


def open_storage(url: str, heartbeat_s: int | None = None, grace_s: int | None = None,
                 attempts: int = 8) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at `url`, created on first use, safe to open from many processes at the same moment.

    Optuna creates its tables and its version rows without a lock: two processes that open a fresh database
    together race, and the loser gets `UNIQUE constraint failed: alembic_version.version_num` (SQLite) or a
    duplicate-key error (PostgreSQL). The winner has then created everything, so the loser only needs to try again.
    """
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = {} if heartbeat_s is None else {
                "heartbeat_interval": heartbeat_s, "grace_period": grace_s,
                "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **retry)

    return _despite_creation_race(create, attempts)


def _despite_creation_race(create, attempts: int):
    """`create()`, tried again while it fails the way another process creating the same rows at the same moment
    makes it fail (a unique constraint, a locked database, a table that already exists)."""
    for attempt in range(attempts):
        try:
            return create()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
            text = str(e).lower()
            race = isinstance(e, sqlalchemy.exc.IntegrityError) or "locked" in text or "already exists" in text
            if attempt == attempts - 1 or not race:
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def open_study(cfg: SearchConfig, directions: list[str], seed: int) -> optuna.Study:
    """The study in `cfg`'s storage (created on first use), with heartbeats so that killed trials are retried.
    Constraints reach the samplers through `trial.set_constraint` (the objective's hard limits)."""
    storage = open_storage(cfg.storage_url, cfg.heartbeat_s, cfg.grace_s)
    if len(directions) > 1:
        sampler = optuna.samplers.NSGAIISampler(population_size=20, seed=seed)
    else:
        # constant liar: trials asked while others run (a round, other workers) are kept apart
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10, constant_liar=True)
    # two processes creating the study itself race the same way as on the tables
    return _despite_creation_race(lambda: optuna.create_study(
        storage=storage, sampler=sampler, study_name=cfg.study_name, directions=directions, load_if_exists=True), 3)


def _study_for(cfg: SearchConfig, ctx: SearchContext, seed: int) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return open_study(cfg, ctx.objective.directions, seed)


def prepare(cfg: SearchConfig, ctx: SearchContext, progress: bool = True, log=print) -> optuna.Study:
    """Create (or reopen) the study; score the base model and the uniform baseline; seed from sensitivity.
    Each step is recorded in the study, so a resumed run skips what is done."""
    study = _study_for(cfg, ctx, cfg.seed)
    ev = ctx.evaluator

    def measured(ratio: float) -> dict:
        cand = ev.evaluate(ctx.space.uniform(ratio))
        lat = cand.measured_ms if cand.measured_ms is not None else \
            ev.measure(cand.model) if ev.backend is not None else float("nan")
        return {**cand.scores.__dict__, "latency_ms": lat}

    if "base" not in study.user_attrs:
        base = Scores(**measured(0.0))
        study.set_user_attr("base", base.__dict__)
        log(f"base model: mAP@0.5 {base.map50:.3f}, {base.latency_ms:.2f} ms, {base.flops / 1e9:.2f} GFLOPs")
    resolve_target(ctx, study)
    if ctx.objective.target_latency_ms:
        log(f"latency target: {ctx.objective.target_latency_ms:.2f} ms")
    if "uniform" not in study.user_attrs:
        study.set_user_attr("uniform", [{**measured(r), "ratio": r} for r in UNIFORM_BASELINE])
    if cfg.allocated_seed and "allocated" not in study.user_attrs:
        _seed_allocated(ctx, study, log)
    if cfg.sensitivity and not study.user_attrs.get("seeded"):
        sens = measure_sensitivity(ev, ctx.space, base_scores(study), tuple(cfg.sensitivity), progress)
        write_json(cfg.run_dir / "sensitivity.json", sens)
        seeds = seed_trials(ctx.space, sens)
        for params in seeds:
            study.enqueue_trial(params, user_attrs={"seed": True}, skip_if_exists=True)
        study.set_user_attr("seeded", True)
        log(f"sensitivity of {len(sens)} scopes measured; {len(seeds)} seed trials queued")
    return study


def _seed_allocated(ctx: SearchContext, study: optuna.Study, log) -> None:
    """Queue the allocated cut (the demo's path) as the study's first trial: it needs a latency table and a
    latency target; without them the search says so and starts from the other seeds."""
    target = ctx.objective.target_latency_ms
    if ctx.predictor is None or not target:
        log("no allocated seed: it needs a latency target and a latency table (not --measure all / --backend none)")
        study.set_user_attr("allocated", None)
        return
    ratios = allocated_seed(ctx.model, ctx.groups, ctx.space, ctx.train_samples, ctx.predictor, target,
                            base_scores(study).latency_ms, ctx.cfg.img_size)
    study.enqueue_trial(ratios, user_attrs={"seed": "allocated"}, skip_if_exists=True)
    study.set_user_attr("allocated", ratios)
    log(f"allocated seed queued: {sum(ratios.values()) / len(ratios):.2f} mean scope ratio for {target:.2f} ms")


def _surplus(study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
    """True when earlier trials (completed or still running) already fill the budget: the exactness guard that
    keeps workers which asked at the same moment from completing more than `budget` trials."""
    taken = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                if t.number < trial.number)
    return taken >= budget


def round_size(cfg: SearchConfig, ctx: SearchContext) -> int:
    """Trials asked, scored and measured together: `--batch-trials`, else one per board of the backend."""
    backend = ctx.evaluator.backend
    return cfg.batch_trials or (backend.parallel if backend is not None else 1)


def _ask(study: optuna.Study, n: int, budget: int) -> list[optuna.Trial]:
    """Up to `n` new trials; one asked while earlier trials already fill the budget (another worker asked at the
    same moment) is pruned at once."""
    with warnings.catch_warnings():  # Optuna warns that heartbeats are for optimize(): the round sends them
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        asked = [study.ask() for _ in range(n)]
    trials = []
    for t in asked:
        if _surplus(study, t, budget):
            study.tell(t, state=TrialState.PRUNED)
        else:
            trials.append(t)
    return trials


def run_worker(cfg: SearchConfig, ctx: SearchContext, worker_id: int = 0, on_trial=None) -> int:
    """Run rounds of trials (search/rounds.py) until the study holds `cfg.trials` completed ones; returns how many
    this worker completed. With boards that measure elsewhere, the next round is screened while one is measured."""
    study = _study_for(cfg, ctx, cfg.seed + 1 + worker_id)
    base = base_scores(study)
    resolve_target(ctx, study)
    size, done, pending = round_size(cfg, ctx), 0, None
    pool = ThreadPoolExecutor(1, thread_name_prefix="edgeprune-measure") if measures_elsewhere(ctx) else None
    try:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a killed worker's trials: failed, then queued again
            c = counts(study)
            if c[TrialState.COMPLETE] >= cfg.trials and pending is None:
                return done
            free = cfg.trials - c[TrialState.COMPLETE] - c[TrialState.RUNNING]
            trials = _ask(study, min(size, free), cfg.trials) if free > 0 else []
            nxt = start_round(study, ctx, trials, pool) if trials else None
            if pending is None and nxt is None:
                time.sleep(min(cfg.heartbeat_s, 2))  # a trial may be stale (its worker killed): wait for its retry
            for finished in (pending, nxt if pool is None else None):
                if finished is not None:
                    done += finished.finish(study, ctx, base, worker_id)
                    if on_trial is not None:
                        on_trial()
            pending = nxt if pool is not None else None
            gc.collect()
    finally:
        if pending is not None:
            pending.stop_heartbeats()
        if pool is not None:
            pool.shutdown(wait=True)


def _worker_main(config_path: str, worker_id: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = SearchConfig.load(config_path)
    ctx = SearchContext(cfg)
    try:
        run_worker(cfg, ctx, worker_id)
    finally:
        ctx.close()


def run_search(cfg: SearchConfig, progress: bool = True, log=print, report: bool = True
               ) -> tuple[optuna.Study, dict | None]:
    """Prepare the study, run `cfg.workers` workers (processes on this machine) until `cfg.trials` trials are
    complete, write the report (edgeprune.search.report), and return the study and the report's result. Other
    machines join by running the same command with the same --storage."""
    cfg.check_resume()
    cfg.save()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = SearchContext(cfg, build_predictor=True, log=log)
    try:
        study = prepare(cfg, ctx, progress, log)
        before = counts(study)[TrialState.COMPLETE]
        bar = tqdm(total=cfg.trials, initial=min(before, cfg.trials), desc="search", disable=not progress)
        if cfg.workers <= 1:
            run_worker(cfg, ctx, 0, on_trial=lambda: _update(bar, study))
        else:
            procs = [mp.get_context("spawn").Process(target=_worker_main, args=(str(cfg.run_dir / "search.json"), i))
                     for i in range(cfg.workers)]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                time.sleep(1.0)
                _update(bar, study)
            bad = [p.exitcode for p in procs if p.exitcode]
            if bad:
                raise RuntimeError(f"{len(bad)} search worker(s) failed (exit codes {bad}); run the same command "
                                   "again to resume")
        _update(bar, study)
        bar.close()
        if not report:
            return study, None
        from .report import write_report

        return study, write_report(study, ctx, log)
    finally:
        ctx.close()


def _update(bar, study: optuna.Study) -> None:
    n = min(counts(study)[TrialState.COMPLETE], bar.total)
    bar.update(n - bar.n)
