"""The FLOPs objective as a predictor: its FLOPs are torch's FLOP counter's convolution FLOPs on every registered
model and conv variant, and fitted on a base it reads in that base's milliseconds."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeprune.evaluate.complexity import count_flops
from edgeprune.latency.flops import FlopsPredictor
from edgeprune.latency.layers import decompose
from edgeprune.models import create_model, list_models

IMG = 64


def conv_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """torch's FLOP counter, convolutions only (YOLO11's attention also has matmuls, which the predictor leaves out)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith("n")])
def test_its_flops_are_the_flop_counters_on_every_registered_family(name):
    model = create_model(name, 2).eval()
    shape = (1, 3, IMG, IMG)
    assert FlopsPredictor(shape).gflops(model) * 1e9 == pytest.approx(conv_flops(model, shape))


@pytest.mark.parametrize("conv", [nn.Conv2d(16, 24, 3, padding=1), nn.Conv2d(16, 24, 3, stride=2, padding=1),
                                  nn.Conv2d(16, 24, 5, padding="same"), nn.Conv2d(16, 24, 3, padding="valid"),
                                  nn.Conv2d(16, 24, 3, padding=2, dilation=2), nn.Conv2d(16, 16, 3, groups=16),
                                  nn.Conv2d(16, 24, 3, stride=2, groups=4), nn.Conv2d(16, 24, (1, 3), padding=(0, 1))],
                         ids=["3x3", "stride", "same", "valid", "dilated", "depthwise", "grouped", "1x3"])
def test_every_conv_variant_counts_as_the_flop_counter_counts_it(conv):
    model = nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()).eval()
    shape = (1, 16, 33, 31)  # odd sizes: the output size's rounding matters
    assert FlopsPredictor(shape).gflops(decompose(model, shape)) * 1e9 == pytest.approx(conv_flops(model, shape))


def test_fitted_on_the_base_it_predicts_in_the_bases_milliseconds():
    shape = (1, 3, IMG, IMG)
    base, narrow = create_model("yolov5s", 2).eval(), create_model("yolov5n", 2).eval()
    pred = FlopsPredictor.fit(base, shape, measured_ms=40.0, align=16)
    assert pred.predict(base) == pytest.approx(40.0) and pred.align == 16
    assert pred.predict(narrow) == pytest.approx(40.0 * count_flops(narrow, IMG) / count_flops(base, IMG), rel=1e-6)


def test_a_model_without_convolutions_is_refused():
    with pytest.raises(ValueError, match="no convolutions"):
        FlopsPredictor.fit(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), (1, 3, 8, 8), 1.0)
