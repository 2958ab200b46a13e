"""The base every end-to-end search test prunes: an untrained yolov5n and 8 + 4 synthetic scenes at 64 px."""
import pytest
import torch

from edgeprune.checkpoint import save_checkpoint
from edgeprune.data.synth import synthesize
from edgeprune.models import create_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    synthesize(root / "data", n_train=8, n_val=4, size=64, seed=0)
    torch.manual_seed(0)
    save_checkpoint(root / "base.pt", create_model("yolov5n", num_classes=1))
    return root
