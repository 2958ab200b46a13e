"""Progressive latency-budgeted pruning on the real onnxruntime backend: the schedule meets its target, logs the
predicted and measured latency of every step, and a run killed mid-schedule resumes from the last finished step."""
import json

import pytest
import torch

import edgeprune.progressive as progressive
from edgeprune.data.formats import load_dataset
from edgeprune.data.synth import synthesize
from edgeprune.latency import get_backend, measure
from edgeprune.latency.calibrate import predictor_for
from edgeprune.models.yolov5 import YOLOv5, YOLOv5Config
from edgeprune.progressive import Schedule, progressive_prune

pytest.importorskip("onnxruntime")
IMG = 96


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("progressive")
    spec = load_dataset(synthesize(root / "data", 8, 4, size=IMG, seed=5, progress=False))
    torch.manual_seed(0)
    model = YOLOv5(YOLOv5Config(width_multiple=0.25, depth_multiple=0.33, num_classes=1, name="tiny")).eval()
    backend = get_backend("ort", threads=1, runs=20, warmup=5)
    predictor = predictor_for(model, (1, 3, IMG, IMG), backend, root / "table.json", levels=(0.5, 1.0),
                              log=lambda s: None)
    yield model, spec, backend, predictor
    backend.close()


def _schedule(base_ms: float, **kw) -> Schedule:
    return Schedule(target_ms=0.6 * base_ms, steps=2, epochs=2, img_size=IMG, batch_size=4, **kw)


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


def test_a_killed_schedule_resumes_from_the_last_finished_step(setup, tmp_path, monkeypatch):
    model, spec, backend, predictor = setup
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


def test_other_settings_in_the_same_directory_are_refused(setup, tmp_path):
    model, spec, backend, predictor = setup
    (tmp_path / "progressive.json").write_text(json.dumps({"format": progressive.FORMAT, "schedule": {"steps": 9},
                                                           "steps": []}))
    with pytest.raises(ValueError, match="other settings"):
        progressive_prune(model, model, spec, backend, predictor, _schedule(1.0), tmp_path, log=lambda s: None)
