"""Progressive latency-budgeted pruning on the real onnxruntime backend: the schedule meets its target, logs the
predicted and measured latency of every step, and a run killed mid-schedule resumes from the last finished step."""
import json
from dataclasses import asdict

import pytest
import torch

import edgeprune.search.progressive as progressive
from edgeprune.checkpoint import load_model
from edgeprune.data.formats import load_dataset
from edgeprune.data.synth import synthesize
from edgeprune.latency import get_backend, measure
from edgeprune.latency.calibrate import predictor_for
from edgeprune.latency.flops import FlopsPredictor
from edgeprune.models import create_model, example_input
from edgeprune.prune.plan import Plan, pruned_model
from edgeprune.search.progressive import Schedule, progressive_prune
from tests.edgeprune.latency.test_predictor import FlopsBackend

pytest.importorskip("onnxruntime")
IMG = 160  # at 96 px a yolov5n's onnxruntime latency is mostly fixed overhead: no cut reaches 0.7x
MACS = FlopsPredictor((1, 3, IMG, IMG), ms_per_gflop=500.0)  # a stand-in latency table: conv MACs in millions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("progressive")
    yaml = synthesize(root / "data", 8, 4, size=IMG, seed=5, progress=False)
    return root, load_dataset(yaml), yaml


def _model():
    torch.manual_seed(0)
    return create_model("yolov5n", 1).eval()


@pytest.fixture(scope="module")
def setup(data):
    """The real thing: onnxruntime on this CPU and a latency table calibrated on it."""
    root, spec, _ = data
    model = _model()
    backend = get_backend("ort", threads=1, runs=20, warmup=5)
    predictor = predictor_for(model, (1, 3, IMG, IMG), backend, root / "table.json", levels=(0.5, 1.0),
                              log=lambda s: None)
    yield model, spec, backend, predictor
    backend.close()


@pytest.fixture()
def fake(data, unit_maps_once):
    """A deterministic device (latency ∝ FLOPs, 10 % above the table's figure) for the schedule's bookkeeping."""
    return _model(), data[1], FlopsBackend(scale=1.1e-6), MACS


def _schedule(base_ms: float, **kw) -> Schedule:
    kw = {"steps": 2, "epochs": 2, "importance": "l1", **kw}
    return Schedule(target_ms=0.7 * base_ms, img_size=IMG, batch_size=4, **kw)


@pytest.mark.slow  # 2.5 min: the latency table's calibration alone is 75 s on this 2-core CPU
def test_the_schedule_stops_at_the_measured_target(setup, tmp_path):
    model, spec, backend, predictor = setup
    schedule = _schedule(measure(model, (1, 3, IMG, IMG), backend).median_ms)
    final, state = progressive_prune(model, model, spec, backend, predictor, schedule, tmp_path, log=lambda s: None)
    steps = state["steps"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["done"] for s in steps)
    assert state["met"] and steps[-1]["measured_ms"] <= schedule.target_ms * (1 + schedule.tolerance)
    assert steps[0]["measured_ms"] > steps[1]["measured_ms"]  # the aim moves down the line step by step
    assert all(s["predicted_ms"] > 0 and s["mAP50"] is not None for s in steps)
    assert steps[-1]["params"] < sum(p.numel() for p in model.parameters())
    saved = json.loads((tmp_path / "progressive.json").read_text())
    assert saved["steps"][-1]["measured_ms"] == steps[-1]["measured_ms"]
    assert sum(p.numel() for p in final.parameters()) == steps[-1]["params"]


def test_a_killed_schedule_resumes_from_the_last_finished_step(fake, tmp_path, monkeypatch):
    model, spec, backend, predictor = fake
    schedule = _schedule(measure(model, (1, 3, IMG, IMG), backend).median_ms)
    real_recover, real_cut = progressive._recover, progressive._cut
    calls = []

    def dies_in_step_2(cut, teacher, spec_, sched, k, out, progress, rec):
        if k == 2:
            raise KeyboardInterrupt("killed")
        return real_recover(cut, teacher, spec_, sched, k, out, progress, rec)

    monkeypatch.setattr(progressive, "_recover", dies_in_step_2)
    with pytest.raises(KeyboardInterrupt):
        progressive_prune(model, model, spec, backend, predictor, schedule, tmp_path, log=lambda s: None)
    state = json.loads((tmp_path / "progressive.json").read_text())
    assert [(s["step"], s["done"]) for s in state["steps"]] == [(1, True), (2, False)]
    step1 = (tmp_path / "step1" / "metrics.csv").read_text()

    def counted(*a, **kw):  # (current, k, ...)
        calls.append(a[1])
        return real_cut(*a, **kw)

    monkeypatch.setattr(progressive, "_recover", real_recover)
    monkeypatch.setattr(progressive, "_cut", counted)
    _, state = progressive_prune(model, model, spec, backend, predictor, schedule, tmp_path, log=lambda s: None)
    assert calls == []  # step 2's cut was saved before its recovery: nothing is cut again
    assert [(s["step"], s["done"]) for s in state["steps"]] == [(1, True), (2, True)]
    assert (tmp_path / "step1" / "metrics.csv").read_text() == step1  # step 1 was not trained again
    assert (tmp_path / "step2" / "last.pt").is_file()
    # each cut's plan, against the model before it, rebuilds that cut
    plan = Plan.load(tmp_path / "step1" / "plan.json")
    assert plan.kept < plan.total and (tmp_path / "step2" / "plan.json").is_file()
    rebuilt = pruned_model(model, plan, example_input(model))
    cut = load_model(tmp_path / "step1" / "pruned.pt")
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in cut.parameters()]


def test_taylor_importance_scores_each_cut_on_its_own_gradients(fake, tmp_path, monkeypatch):
    model, spec, backend, predictor = fake
    schedule = _schedule(measure(model, (1, 3, IMG, IMG), backend).median_ms, importance="taylor", taylor_batches=1)
    seen = []
    real = progressive.score_groups

    def scored(groups, criterion):
        seen.append(sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()))
        return real(groups, criterion)

    monkeypatch.setattr(progressive, "score_groups", scored)
    final, state = progressive_prune(model, model, spec, backend, predictor, schedule, tmp_path, log=lambda s: None)
    assert len(seen) == 2  # one scoring per cut, each after a backward pass on training batches
    assert seen[0] > 0 and all(p.grad is None for p in model.parameters())  # the gradients are not left behind
    assert state["steps"][-1]["params"] < sum(p.numel() for p in model.parameters())


def test_other_settings_in_the_same_directory_are_refused(fake, tmp_path):
    model, spec, backend, predictor = fake
    (tmp_path / "progressive.json").write_text(json.dumps({"format": progressive.FORMAT, "schedule": {"steps": 9},
                                                           "steps": []}))
    with pytest.raises(ValueError, match="other settings"):
        progressive_prune(model, model, spec, backend, predictor, _schedule(1.0), tmp_path, log=lambda s: None)


def test_a_state_written_before_the_cost_setting_resumes_and_another_cost_is_refused(tmp_path):
    schedule = _schedule(1.0)
    old = {k: v for k, v in asdict(schedule).items() if k != "cost"}
    (tmp_path / "progressive.json").write_text(json.dumps({"format": progressive.FORMAT, "schedule": old,
                                                           "steps": []}))
    assert progressive._load_state(tmp_path, schedule)["steps"] == []
    with pytest.raises(ValueError, match="other settings"):
        progressive._load_state(tmp_path, _schedule(1.0, cost="flops"))


@pytest.mark.slow  # 50 s: real measurements of the base and of every try of the cut
def test_priced_in_flops_the_cli_cut_meets_the_measured_target_without_a_latency_table(data, tmp_path, capsys):
    """`--cost flops`, the FLOPs-objective control: no table is built, the cut is measured and re-aimed on the real
    onnxruntime backend like a latency-priced one, and the schedule records its cost."""
    from edgeprune.checkpoint import save_checkpoint
    from edgeprune.cli import main

    save_checkpoint(tmp_path / "base.pt", _model())
    out = tmp_path / "cut.pt"
    code = main(["prune", str(tmp_path / "base.pt"), "-o", str(out), "--progressive", "--cost", "flops",
                 "--speedup", "1.4", "--data", str(data[2]), "--epochs", "1", "--imgsz", str(IMG)])
    state = json.loads((tmp_path / "cut.progressive" / "progressive.json").read_text())
    assert code == 0 and state["met"] and state["schedule"]["cost"] == "flops", capsys.readouterr().out
    assert not (tmp_path / "cut.progressive" / "latency_table.json").exists()
    step = state["steps"][0]
    # the target is the base's settled latency / 1.4, measured once before the schedule (its own base_ms may differ)
    assert step["measured_ms"] <= state["schedule"]["target_ms"] * 1.02
    # the FLOPs predictor reads in the base's milliseconds: the base is predicted as measured
    assert state["base_predicted_ms"] == pytest.approx(state["base_ms"], rel=0.05)


@pytest.mark.parametrize("extra, says", [([], "--target-latency MS or --speedup S"),
                                         (["--speedup", "2"], "--data DATA"),
                                         (["--speedup", "2", "--data", "d.yaml", "--ratio", "0.5"], "drop --ratio")])
def test_the_cli_says_what_a_progressive_run_needs(tmp_path, capsys, extra, says):
    from edgeprune.cli import EXIT_INPUT, main

    assert main(["prune", str(tmp_path / "base.pt"), "-o", str(tmp_path / "p.pt"), "--progressive", *extra]) \
        == EXIT_INPUT
    assert says in capsys.readouterr().err


def test_a_resumed_speedup_schedule_aims_at_the_target_it_had(tmp_path):
    from edgeprune.cli.prune import _speedup_target

    def never():
        raise AssertionError("a resumed schedule must not measure its base again (the machine's speed drifts)")

    assert _speedup_target(tmp_path, 2.0, lambda: 7.0) == 3.5  # a new schedule measures
    (tmp_path / "progressive.json").write_text(json.dumps({"schedule": {"target_ms": 4.85}, "steps": []}))
    assert _speedup_target(tmp_path, 2.0, never) == 4.85


def test_a_last_cut_that_swung_around_the_window_is_aimed_between_its_tries():
    """Measured 5.30 then 3.73 ms for a goal of 4.64 (yolov5n's bench, a noisy machine): the next aim lies between
    the two tries' aims, where the measurements put the goal, not where the last try's ratio alone would."""
    too_slow, too_fast = (None, 5.0, 4.85, 5.30, None), (None, 4.2, 4.24, 3.73, None)
    aim = progressive._next_aim([too_slow, too_fast], 4.64, 4.64 * 0.96, 4.64 * 1.02)
    assert 4.2 < aim < 5.0 and aim == pytest.approx(4.2 + (4.64 - 3.73) * 0.8 / (5.30 - 3.73))
    assert progressive._next_aim([too_slow], 4.64, 4.45, 4.73) == pytest.approx(4.64 * 4.85 / 5.30)
