"""Any model through the verbs a user runs on it: YOLOv8 / YOLO11 by name and a hand-written detector by its
factory are pruned, saved, reloaded (bit-identical), exported (onnxruntime matches) and profiled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.onnxruntime_runner import OnnxRuntimeRunner
from edgeprune.checkpoint import load_checkpoint, load_model
from edgeprune.cli import main as cli

ROOT = Path(__file__).resolve().parents[3]


# the YOLO rows analyse the model ~10 times (prune, two reloads, export, profile): 0.5-1.5 min each on 2 cores
@pytest.mark.parametrize("model, family", [pytest.param("yolov8n", "yolov8", marks=pytest.mark.slow),
                                           pytest.param("yolo11n", "yolov8", marks=pytest.mark.slow),
                                           ("examples.my_detector:build", "factory")])
def test_prune_save_reload_export_profile(tmp_path, monkeypatch, capsys, model, family):
    monkeypatch.syspath_prepend(str(ROOT))
    kwargs = json.dumps({"num_classes": 2})
    out = tmp_path / "pruned.pt"
    assert cli(["prune", "--model", model, "--model-kwargs", kwargs, "--ratio", "0.3", "-o", str(out)]) == 0
    spec = load_checkpoint(out)["model"]
    assert spec["family"] == family and len(spec["plans"]) == 1
    a, b, x = load_model(out), load_model(out), torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))  # rebuilt from the spec twice: bit-identical
        want = a(x).numpy()
    assert cli(["export", str(out), "--imgsz", "160", "--out", str(tmp_path / "p.onnx")]) == 0
    (got,) = OnnxRuntimeRunner(str(tmp_path / "p.onnx")).infer({"images": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)
    assert cli(["profile", str(out), "--imgsz", "160", "--runs", "5", "--warmup", "1", "--threads", "1",
                "--json", str(tmp_path / "prof.json")]) == 0
    prof = json.loads((tmp_path / "prof.json").read_text())
    assert prof["median_ms"] > 0 and prof["params"] > 0
    assert "onnxruntime matches torch" in capsys.readouterr().out


def test_the_nms_layout_of_an_anchor_free_model(tmp_path):
    assert cli(["export", "yolov8n", "--model-kwargs", '{"num_classes": 2}', "--imgsz", "128", "--layout", "nms",
                "--out", str(tmp_path / "m.onnx")]) == 0
    x = torch.rand(1, 3, 128, 128)
    boxes, scores = OnnxRuntimeRunner(str(tmp_path / "m.onnx")).infer({"images": x.numpy()})
    assert boxes.shape == (1, 336, 4) and scores.shape == (1, 336, 2)
    assert np.all(boxes[..., 2] >= boxes[..., 0]) and np.all(boxes[..., 3] >= boxes[..., 1])


def test_the_nms_layout_of_an_unknown_output_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    assert cli(["export", "examples.my_detector:build", "--layout", "nms", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "layout 'nms' needs" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
