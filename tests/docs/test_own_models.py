"""docs/own-models.md stays true: its Python snippet and its command lines run as written, on the hand-written
detector of examples/my_detector.py, and what they print and write is checked."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.onnxruntime_runner import OnnxRuntimeRunner
from edgeprune.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from edgeprune.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "own-models.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """The doc's lines run in an empty folder with the repository importable, as from a user's project."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    return tmp_path


def test_the_python_snippet_runs_and_its_checkpoint_rebuilds_the_pruned_model(workdir, capsys):
    (snippet,) = blocks("python")
    exec(compile(snippet, "docs/own-models.md", "exec"), {"__name__": "own_models_doc"})
    out = capsys.readouterr().out
    assert "left alone" in out and "cls" in out and "onnxruntime matches torch" in out and " ms on onnxruntime" in out
    spec = load_checkpoint(workdir / "mine.pt")["model"]
    assert spec["family"] == "factory" and spec["config"] == {"factory": "examples.my_detector:build",
                                                              "kwargs": {"num_classes": 2}}
    assert len(spec["plans"]) == 1 and (workdir / "mine.onnx").is_file()


def test_the_command_lines_run_as_written(workdir, capsys):
    (script,) = blocks("bash")
    lines = [shlex.split(line)[1:] for line in script.splitlines() if line.startswith("edgeprune ")]
    assert [argv[0] for argv in lines] == ["groups", "prune", "export", "profile"]
    for argv in lines:
        assert cli(argv) == 0, argv
    out = capsys.readouterr().out
    assert re.search(r"\d+ groups, \d+ channels", out) and "onnxruntime matches torch" in out
    pruned = load_model(workdir / "mine-cli.pt")
    x = torch.rand(1, 3, 256, 256)
    (got,) = OnnxRuntimeRunner(str(workdir / "mine-cli.onnx")).infer({"images": x.numpy()})
    with torch.no_grad():
        want = pruned(x).numpy()
    assert got.shape == want.shape == (1, 6, 32 * 32)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)


def test_weights_given_to_a_factory_are_the_ones_the_pruned_checkpoint_carries(workdir):
    from examples.my_detector import build

    torch.manual_seed(3)
    trained = build(num_classes=2)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))  # not the weights a fresh build gets
    torch.save(trained.state_dict(), workdir / "w.pt")
    assert cli(["prune", "--model", "examples.my_detector:build", "--model-kwargs", '{"num_classes": 2}',
                "--weights", "w.pt", "--ratio", "0.3", "-o", "p.pt"]) == 0
    pruned, x = load_model(workdir / "p.pt"), torch.rand(1, 3, 128, 128)
    kept = {k for k, v in pruned.state_dict().items() if v.shape == trained.state_dict()[k].shape}
    assert kept and all(torch.equal(pruned.state_dict()[k], trained.state_dict()[k]) for k in kept)
    assert pruned(x).shape == trained.eval()(x).shape


def test_a_module_without_a_source_saves_and_loads_only_with_its_base(workdir):
    from examples.my_detector import MyDetector

    save_checkpoint(workdir / "plain.pt", MyDetector(num_classes=2))
    with pytest.raises(CheckpointError, match=r"examples\.my_detector\.MyDetector.*base=.*from_factory"):
        load_model(workdir / "plain.pt")
    assert load_model(workdir / "plain.pt", base=MyDetector(num_classes=2)) is not None


@pytest.mark.parametrize("argv, message", [
    (["groups"], "give the model once"),
    (["groups", "x.pt", "--model", "y.pt"], "give the model once"),
    (["groups", "--model", "nowhere_module:build"], "cannot import nowhere_module"),
    (["groups", "--model", "examples.my_detector:nothing"], "has no nothing"),
    (["groups", "--model", "examples.my_detector:build", "--model-kwargs", "{num_classes: 2}"], "not JSON"),
    (["groups", "--model", "mystery"], "not a model edgeprune can load"),
    (["prune", "yolov5n.pt", "--ratio", "0.3", "-o", "p.pt"], "no such checkpoint file"),
])
def test_a_bad_model_argument_is_one_clear_line(workdir, capsys, argv, message):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
