"""The base every end-to-end search test prunes: an untrained yolov5n and 8 + 4 synthetic scenes at 64 px; and one
UnitMap per architecture for the tests that cut the same base again and again."""
import pytest
import torch

from edgeprune.checkpoint import save_checkpoint
from edgeprune.data.synth import synthesize
from edgeprune.models import create_model
from edgeprune.search.allocate import UnitMap

_MAPS: dict = {}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    synthesize(root / "data", n_train=8, n_val=4, size=64, seed=0)
    torch.manual_seed(0)
    save_checkpoint(root / "base.pt", create_model("yolov5n", num_classes=1))
    return root


@pytest.fixture()
def unit_maps_once(monkeypatch):
    """`UnitMap.learn` traces the model once per group (20-25 s for a yolov5n on this CPU); tests that allocate cuts
    of the same architecture share one map, which the allocation only reads. Not for the tests of `learn` itself."""
    learn = UnitMap.learn.__func__

    def cached(cls, model, groups, input_shape, example):
        key = (tuple(input_shape), tuple(tuple(p.shape) for p in model.parameters()))
        if key not in _MAPS:
            _MAPS[key] = learn(cls, model, groups, input_shape, example)
        return _MAPS[key]

    monkeypatch.setattr(UnitMap, "learn", classmethod(cached))
