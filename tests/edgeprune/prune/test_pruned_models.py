"""Pruned models: saved without pickled code, reloaded identically, refused by the wrong base; the CLI verbs."""
import pytest
import torch

from edgeprune.checkpoint import CheckpointError, load_model, save_checkpoint
from edgeprune.cli import main
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.models import create_model, example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import Plan, plan_global, prune_model


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=2).eval()
    groups = find_groups(model, example_input(model))
    plan = plan_global(groups, rankable(score_groups(groups, "l1"), "l1"), 0.5)
    return prune_model(model, plan, example_input(model)), plan


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_reloaded_pruned_model_gives_identical_outputs(tmp_path, pruned, suffix):
    model, _ = pruned
    path = tmp_path / f"pruned{suffix}"
    save_checkpoint(path, model)
    if suffix == ".pt":
        assert "plans" in torch.load(path, weights_only=True)["model"]
    loaded = load_model(path)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_pruned_model_keeps_output_shapes_and_shrinks(pruned):
    model, plan = pruned
    base = create_model("yolov5n", num_classes=2).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert model(x).shape == base(x).shape
    model.train()
    assert [m.shape for m in model(x)] == [m.shape for m in base.train()(x)]
    model.eval()
    assert count_params(model) < 0.5 * count_params(base)
    assert count_flops(model, 320) < 0.5 * count_flops(base, 320)
    assert abs(plan.ratio - 0.5) <= 8 / plan.total * len(plan.keep)


def test_wrong_base_model_is_refused(tmp_path, pruned):
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, pruned[0])
    with pytest.raises(CheckpointError, match="pruned.pt: cannot rebuild the pruned model from the given base"):
        load_model(path, base=create_model("yolov5s", num_classes=2))
    assert load_model(path, base=create_model("yolov5n", num_classes=2)) is not None  # the right base works


def test_cli_groups_and_prune(tmp_path, capsys):
    ckpt = tmp_path / "base.pt"
    save_checkpoint(ckpt, create_model("yolov5n", num_classes=1))
    assert main(["groups", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "backbone.stem.conv" in out and "head.m.0" in out  # the table, and the output layers left alone
    assert main(["prune", str(ckpt), "--ratio", "0.5", "--importance", "bn", "-o", str(tmp_path / "p.pt")]) == 0
    assert "params -" in capsys.readouterr().out
    plan = Plan.load(tmp_path / "p.plan.json")
    assert abs(plan.ratio - 0.5) < 0.05
    # the saved plan applied again to the base gives the same weights
    assert main(["prune", str(ckpt), "--plan", str(tmp_path / "p.plan.json"), "-o", str(tmp_path / "q.pt")]) == 0
    a, b = load_model(tmp_path / "p.pt").state_dict(), load_model(tmp_path / "q.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_prune_needs_ratio_or_plan(tmp_path, capsys):
    ckpt = tmp_path / "base.pt"
    save_checkpoint(ckpt, create_model("yolov5n", num_classes=1))
    assert main(["prune", str(ckpt), "-o", str(tmp_path / "p.pt")]) == 2
    assert "either --ratio" in capsys.readouterr().err


def test_cli_plan_of_another_model_is_one_clear_line(tmp_path, capsys):
    ckpt = tmp_path / "base.pt"
    save_checkpoint(ckpt, create_model("yolov5n", num_classes=1))
    (tmp_path / "other.json").write_text('{"format": "edgeprune-plan", "widths": {"no.such.conv": 16}, '
                                         '"keep": {"no.such.conv": [0, 1, 2, 3, 4, 5, 6, 7]}}')
    assert main(["prune", str(ckpt), "--plan", str(tmp_path / "other.json"), "-o", str(tmp_path / "p.pt")]) == 2
    err = capsys.readouterr().err
    assert "other.json does not fit" in err and "no.such.conv" in err and "Traceback" not in err
