"""The search in rounds over a pool of boards: real jetson agents on 127.0.0.1 whose measurement is a short sleep
(the host's pipeline is real: ask/tell, screening, export, upload, the remote backend, tell)."""
import threading
import time

import optuna
from optuna.trial import TrialState

from benchmarks.bench_boards import sleeping_measure
from deploy.stats import LatencyStats
from edgeprune.latency.base import LatencyBackend, MeasurementError
from edgeprune.search import SearchConfig, run_search
from edgeprune.search.candidate import Evaluator
from edgeprune.search.context import SearchContext
from edgeprune.search.study import open_storage, round_size
from jetson.agent import serve


def config(base, out, backend, **kw):
    opts = dict(checkpoint=str(base / "base.pt"), data=str(base / "data/data.yaml"), out=str(out), img_size=64,
                trials=4, backend=backend, measure="all", runs=5, warmup=1, val_images=4, bn_batches=1,
                batch_size=4, scopes="blocks", sensitivity=[], heartbeat_s=1, grace_s=2,
                objective={"mode": "loss", "latency_weight": 1.0})
    opts.update(kw)
    return SearchConfig(**opts)


class Board:
    """bench_boards' stand-in board (its measurement sleeps `seconds`), recording when each measurement ran."""

    def __init__(self, seconds: float) -> None:
        self.sleep, self.windows, self.lock = sleeping_measure(seconds), [], threading.Lock()

    def measure(self, source, options, env, sha256=None, stop=None):
        t0 = time.monotonic()
        result = self.sleep(source, options, env, sha256, stop)
        with self.lock:
            self.windows.append((t0, time.monotonic()))
        return result


def test_a_round_is_measured_by_every_board_at_once_while_the_next_is_screened(base, tmp_path, monkeypatch):
    screens, screen = [], Evaluator.screen

    def timed_screen(self, ratios):
        t0 = time.monotonic()
        try:
            return screen(self, ratios)
        finally:
            screens.append((t0, time.monotonic()))

    monkeypatch.setattr(Evaluator, "screen", timed_screen)
    boards = [Board(1.0), Board(1.0)]
    agents = [serve(port=0, state_dir=str(tmp_path / f"b{i}"), measure=b.measure).start()
              for i, b in enumerate(boards)]
    try:
        hosts = ",".join(f"127.0.0.1:{a.server_address[1]}" for a in agents)
        cfg = config(base, tmp_path / "search", f"remote://{hosts}?backend=onnxruntime")
        ctx = SearchContext(cfg)
        try:
            assert round_size(cfg, ctx) == 2  # one trial per board
        finally:
            ctx.close()
        run_search(cfg, progress=False, report=False)
    finally:
        for a in agents:
            a.close()
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage_url))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4 and all(t.user_attrs["measured_ms"] > 0 for t in done)
    # base + 3 uniform baselines are measured one at a time; the 4 trials in 2 rounds, each on both boards at once
    assert all(len(b.windows) >= 2 for b in boards)
    overlapping = [(a, b) for a in boards[0].windows for b in boards[1].windows if a[0] < b[1] and b[0] < a[1]]
    assert len(overlapping) >= 2
    # the boards measure elsewhere: the host screened round 2 while round 1 was on the boards
    measuring = boards[0].windows + boards[1].windows
    assert any(s[0] < m[1] and m[0] < s[1] for s in screens[-4:] for m in measuring)


class FailsOnEvenCalls(LatencyBackend):
    """A backend whose every second measurement after the search's baselines (base and 3 uniform cuts) fails, as
    a board that drops a job would."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def fingerprint(self) -> dict:
        return {"backend": "flaky"}

    def measure(self, onnx: bytes, input_shape) -> LatencyStats:
        self.calls += 1
        if self.calls > 4 and self.calls % 2 == 0:
            raise MeasurementError("the board dropped the job")
        return LatencyStats.from_samples([len(onnx) / 1e6])


def test_a_failed_measurement_fails_its_trial_and_the_round_goes_on(base, tmp_path, monkeypatch):
    import edgeprune.latency as latency

    monkeypatch.setattr(latency, "get_backend", lambda spec, **kw: FailsOnEvenCalls())
    cfg = config(base, tmp_path / "flaky", "ort", batch_trials=2, trials=3)
    run_search(cfg, progress=False, report=False)
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage_url))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert failed and all("dropped" in t.user_attrs["error"] for t in failed)
