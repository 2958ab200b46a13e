"""YOLOv8 and YOLO11 built natively: ultralytics' sizes and layer names, the decoded output, and (where ultralytics
imports) equal outputs against a model ultralytics builds from its own yaml."""

from __future__ import annotations

import pytest
import torch

from edgeprune.checkpoint import build_from_spec, model_spec
from edgeprune.models import create_model, list_models
from tests.edgeprune.models.toys import overfit, toy_batch

YOLOV8 = [n for n in list_models() if n.startswith(("yolov8", "yolo11"))]
# parameter counts ultralytics prints for these models at 80 classes (its model summaries)
ULTRALYTICS_PARAMS = {"yolov8n": 3_157_200, "yolov8s": 11_166_560, "yolo11n": 2_624_080, "yolo11s": 9_458_752}


def test_every_size_of_both_versions_is_registered():
    assert YOLOV8 == sorted(f"{v}{s}" for v in ("yolov8", "yolo11") for s in "nsmlx")


@pytest.mark.parametrize("name", sorted(ULTRALYTICS_PARAMS))
def test_parameter_counts_are_ultralytics(name):
    assert sum(p.numel() for p in create_model(name).parameters()) == ULTRALYTICS_PARAMS[name]


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_training_maps_and_the_decoded_output(name, num_classes):
    model = create_model(name, num_classes=num_classes)
    x = torch.zeros(2, 3, 128, 96)
    maps = model.train()(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64 + num_classes, 128 // s, 96 // s) for s in (8, 16, 32)]
    with torch.no_grad():
        y = model.eval()(x)
    cells = sum((128 // s) * (96 // s) for s in (8, 16, 32))
    assert y.shape == (2, 4 + num_classes, cells)
    assert 0 <= float(y[:, 4:].min()) and float(y[:, 4:].max()) <= 1  # class scores after sigmoid
    # at init every side's distance is the mean bin (7.5 of 0..15): boxes 15 strides wide, centred on their cell
    first = y[0, :, : (128 // 8) * (96 // 8)]
    assert torch.allclose(first[2], torch.full_like(first[2], 15 * 8), atol=1e-3)
    assert torch.allclose(first[0, :3], torch.tensor([4.0, 12.0, 20.0]), atol=1e-3)


@pytest.mark.parametrize("name", YOLOV8)
def test_spec_round_trip_rebuilds_the_same_architecture(name):
    model = create_model(name, num_classes=2)
    clone = build_from_spec(model_spec(model))
    assert [(k, v.shape) for k, v in clone.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_output_layers_are_the_heads_last_convs(name):
    model = create_model(name, num_classes=2)
    modules = dict(model.named_modules())
    widths = sorted(modules[n].out_channels for n in model.output_layers)
    assert widths == [1] + [2] * 3 + [64] * 3  # dfl, class and box convs


def _ultralytics_model(yaml_name: str):
    tasks = pytest.importorskip("ultralytics.nn.tasks", reason="ultralytics does not import here (it needs "
                                "torchvision, which has only CUDA builds on this machine)")
    return tasks.DetectionModel(yaml_name, nc=80, verbose=False).eval()


@pytest.mark.parametrize("name, yaml_name", [("yolov8n", "yolov8n.yaml"), ("yolo11n", "yolo11n.yaml")])
def test_equal_outputs_against_ultralytics_built_from_its_yaml(name, yaml_name):
    theirs = _ultralytics_model(yaml_name)
    ours = create_model(name, num_classes=80).eval()
    ours.load_state_dict(theirs.state_dict())  # the same names and shapes: no mapping needed
    for m in theirs.modules():
        if type(m).__name__ == "Detect":
            m.export, m.format = True, "onnx"
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_loss_falls_when_overfitting_a_few_images_and_the_boxes_are_found(name):
    from edgeprune.evaluate.ops import bbox_ciou
    from edgeprune.models.loss_v8 import YOLOv8Loss

    torch.manual_seed(0)
    model = create_model(name, num_classes=1).train()
    criterion = YOLOv8Loss(model.head, img_size=128)
    images, targets = toy_batch()
    losses = overfit(model, criterion, images, targets, steps=60)
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():  # decoded with the batch statistics: 60 steps do not settle BN's running averages
        y = model.head.decode(model(images))
    top = y[torch.arange(4), :, y[:, 4].argmax(1)]  # each image's highest-scoring prediction, [4, 5]
    found = [float(top[i, 4]) > 0.9 and float(bbox_ciou(top[i, :4], targets[i, 2:] * 128)) > 0.9 for i in range(4)]
    assert sum(found) >= 3, found  # the small 16 px box of image 0 takes longer


def test_the_assigner_gives_each_box_its_best_aligned_cells_inside_it():
    from edgeprune.models.loss_v8 import YOLOv8Loss

    model = create_model("yolov8n", num_classes=2)
    criterion = YOLOv8Loss(model.head, img_size=64)
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [44.0, 44.0]])  # px
    gt = torch.tensor([[[0.0, 0.0, 24.0, 8.0]]])  # covers the first three cell centres
    pred = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 24.0, 8.0], [16.0, 0.0, 24.0, 8.0], [40, 40, 48, 48]]])
    scores = torch.tensor([[[0.1, 0.05], [0.1, 0.9], [0.1, 0.9], [0.9, 0.9]]])  # class 1's score counts
    criterion.g.topk = 2
    boxes, target_scores, fg = criterion._assign(scores, pred, points, torch.tensor([[[1.0]]]), gt,
                                                 torch.ones(1, 1, 1, dtype=torch.bool))
    assert fg.tolist() == [[False, True, True, False]]  # top 2 by score^0.5 · CIoU^6; cell 4 lies outside the box
    assert target_scores[0, 1].argmax() == 1 and target_scores[0, 1, 1] == pytest.approx(1.0)  # the best: 1
    assert 0 < float(target_scores[0, 2, 1]) < float(target_scores[0, 1, 1]) and target_scores[0, 0].sum() == 0
    assert torch.equal(boxes[0, 1], gt[0, 0])


def test_loss_with_no_targets_is_class_loss_only():
    from edgeprune.models.loss_v8 import YOLOv8Loss

    model = create_model("yolo11n", num_classes=2).train()
    loss, parts = YOLOv8Loss(model.head, img_size=64)(model(torch.zeros(2, 3, 64, 64)), torch.zeros(0, 6))
    assert float(parts[0]) == 0 and float(parts[2]) == 0 and float(parts[1]) > 0
    loss.backward()
