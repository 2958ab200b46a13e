"""The peer adapters of benchmarks/bench_peers.py produce runnable, exportable edgeprune models on a tiny detector
(Torch-Pruning through its own API; ModelOpt FastNAS where it runs, else a skip naming the error)."""
import pytest
import torch

from benchmarks.peers import PeerUnavailable, modelopt_fastnas, narrow_yolov5, torch_pruning_uniform
from edgeprune.checkpoint import load_model, save_checkpoint
from edgeprune.evaluate.complexity import count_flops
from edgeprune.export import export_onnx
from edgeprune.models import create_model


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=1).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # distinct γ, as after training
        bn.weight.data.uniform_(0.1, 1.0)
    return model


def _round_trip(model, tmp_path, name):
    x = torch.rand(1, 3, 64, 64)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, model)
    again = load_model(path)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-5)
    assert export_onnx(again, tmp_path / f"{name}.onnx", img_size=64).path.stat().st_size > 0


@pytest.mark.parametrize("importance", ["l1", "bn"])
def test_torch_pruning_uniform_gives_an_exact_checkpointable_model(base, tmp_path, importance):
    import copy

    import torch_pruning as tp

    pruned = torch_pruning_uniform(base, 0.5, importance=importance)
    # the same cut made by Torch-Pruning alone computes what the adopted model computes
    alone = copy.deepcopy(base)
    imp = tp.importance.MagnitudeImportance(p=1) if importance == "l1" else tp.importance.BNScaleImportance()
    tp.pruner.MagnitudePruner(alone, torch.zeros(1, 3, 64, 64), importance=imp, pruning_ratio=0.5, round_to=8,
                              ignored_layers=list(alone.head.m)).step()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(pruned(x), alone(x), atol=1e-5)
    assert count_flops(pruned, 64) < 0.4 * count_flops(base, 64)
    assert all(m.weight.shape[0] % 8 == 0 for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)
               and m not in list(pruned.head.m))
    _round_trip(pruned, tmp_path, f"tp-{importance}")


def test_modelopt_fastnas_or_the_reason_it_cannot_run(base, tmp_path):
    pytest.importorskip("modelopt.torch.prune", reason="nvidia-modelopt is not installed (pip install "
                        "nvidia-modelopt with torch kept pinned: -c constraints.txt)")
    loader = [(torch.rand(2, 3, 64, 64), torch.zeros(0, 6), []) for _ in range(2)]
    try:
        pruned = modelopt_fastnas(base, 0.5, score=lambda m: 0.0, loader=loader)
    except PeerUnavailable as e:
        pytest.skip(f"ModelOpt FastNAS cannot run here: {e}")
    assert count_flops(pruned, 64) <= 0.55 * count_flops(base, 64)
    _round_trip(pruned, tmp_path, "fastnas")


def test_a_narrower_yolov5_is_a_registered_family(tmp_path):
    model = narrow_yolov5(0.1875, 0.33, num_classes=1).eval()
    assert count_flops(model, 64) < count_flops(create_model("yolov5n", num_classes=1), 64)
    _round_trip(model, tmp_path, "narrow")
