import pytest
import torch

from edgeprune.checkpoint import build_from_spec, model_spec
from edgeprune.models import create_model, list_models
from edgeprune.models.loss import YOLOv5Loss
from tests.edgeprune.models.toys import overfit, toy_batch

YOLOV5 = [n for n in list_models() if n.startswith("yolov5")]


@pytest.mark.parametrize("name", YOLOV5)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_output_shapes(name, num_classes):
    model = create_model(name, num_classes=num_classes)
    x = torch.zeros(2, 3, 128, 96)
    model.train()
    maps = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 128 // s, 96 // s, num_classes + 5) for s in (8, 16, 32)]
    model.eval()
    with torch.no_grad():
        y = model(x)
    cells = sum((128 // s) * (96 // s) for s in (8, 16, 32))
    assert y.shape == (2, 3 * cells, num_classes + 5)
    assert float(y[..., 4:].min()) >= 0 and float(y[..., 4:].max()) <= 1  # scores are sigmoid-ed


@pytest.mark.parametrize("name", YOLOV5)
def test_output_layers_are_detect_convs(name):
    model = create_model(name, num_classes=2)
    modules = dict(model.named_modules())
    assert len(model.output_layers) == 3
    for layer in model.output_layers:
        assert modules[layer].out_channels == 3 * (2 + 5)


def test_sizes_differ_by_width_and_depth():
    params = {n: sum(p.numel() for p in create_model(n, 1).parameters()) for n in ("yolov5n", "yolov5s", "yolov5m")}
    assert params["yolov5n"] < params["yolov5s"] < params["yolov5m"]
    assert params["yolov5n"] == 1_765_270  # ultralytics' yolov5n summary for one class


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="yolov5n"):
        create_model("yolov9000")


def test_spec_round_trip_rebuilds_same_architecture():
    model = create_model("yolov5s", num_classes=4)
    clone = build_from_spec(model_spec(model))
    assert [(k, v.shape) for k, v in clone.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]


def test_decoded_boxes_follow_the_grid():
    model = create_model("yolov5n", num_classes=1).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64))
    # First level: stride 8, 8x8 cells; centres lie inside the image band the grid formula allows.
    cx = y[0, : 3 * 64, 0]
    assert float(cx.min()) >= -0.5 * 8 and float(cx.max()) <= 64 + 0.5 * 8


def test_loss_falls_when_overfitting_a_few_images():
    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=1).train()
    criterion = YOLOv5Loss(model.head, img_size=128)
    images, targets = toy_batch()
    losses = overfit(model, criterion, images, targets, steps=40)
    assert losses[-1] < 0.5 * losses[0]


def test_loss_with_no_targets_is_objectness_only():
    model = create_model("yolov5n", num_classes=2).train()
    criterion = YOLOv5Loss(model.head, img_size=64)
    loss, parts = criterion(model(torch.zeros(2, 3, 64, 64)), torch.zeros(0, 6))
    assert float(parts[0]) == 0 and float(parts[2]) == 0 and float(parts[1]) > 0
    loss.backward()
