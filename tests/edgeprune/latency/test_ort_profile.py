"""Per-node latency from onnxruntime's profiler: real profiles of a small named model, warm-up runs dropped,
node names summed into module blocks, and no profile file left behind."""
import tempfile

import pytest
from torch import nn

from edgeprune.latency import module_to_onnx
from edgeprune.latency.ort_profile import _per_run, by_block, layer_times, module_path


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.act = nn.SiLU()  # as in YOLOv5: onnxruntime does not fuse it into the Conv

    def forward(self, x):
        return self.act(self.conv(x))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(Block(3, 16), Block(16, 32))
        self.head = Block(32, 8)

    def forward(self, x):
        return self.head(self.backbone(x)).flatten(1)  # the head's conv output is not the graph output


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return module_to_onnx(Tiny().eval(), (1, 3, 64, 64))


def test_layer_times_are_real_and_positive(onnx_bytes, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the profile goes: it must be deleted
    times = layer_times(onnx_bytes, (1, 3, 64, 64), threads=1, runs=5, warmup=2)
    convs = [n for n in times if "Conv" in n]
    assert len(convs) == 3 and all(times[n] > 0 for n in convs)
    assert all(t >= 0 for t in times.values()) and sum(times.values()) < 1000  # milliseconds, not µs
    assert list(tmp_path.iterdir()) == []


def test_layer_times_accepts_a_path(onnx_bytes, tmp_path):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(onnx_bytes)
    assert sum(layer_times(path, (1, 3, 64, 64), runs=2, warmup=0).values()) > 0
    with pytest.raises(ValueError, match="runs"):
        layer_times(path, (1, 3, 64, 64), runs=0)


def test_blocks_of_a_real_profile(onnx_bytes):
    times = layer_times(onnx_bytes, (1, 3, 64, 64), runs=3, warmup=1)
    blocks = by_block(times, depth=1)
    assert {"backbone", "head"} <= set(blocks) and blocks["backbone"] > 0 and blocks["head"] > 0
    assert sum(blocks.values()) == pytest.approx(sum(times.values()))
    assert {"backbone.backbone.0", "backbone.backbone.1", "head.conv"} <= set(by_block(times, depth=2))


def test_module_path_and_blocks_from_torch_onnx_names():
    assert module_path("/backbone/stage2/cv1/conv/Conv") == ["backbone", "stage2", "cv1", "conv"]
    assert module_path("/backbone/stem/act/Mul/QuickGeluFusion/") == ["backbone", "stem", "act"]
    assert module_path("/neck/out3/m/m.0/cv1/conv/Conv_output_0_nchwc") == ["neck", "out3", "m", "m.0", "cv1",
                                                                             "conv"]
    assert module_path("ReorderOutput_token_206") == [] and module_path("/Concat_3") == []
    times = {"/backbone/stage2/cv1/conv/Conv": 1.0, "/backbone/stage2/Concat": 0.5, "/backbone/stem/conv/Conv": 2.0,
             "/neck/Concat_1": 0.25, "ReorderOutput": 0.125}
    assert by_block(times) == {"backbone.stage2": 1.5, "backbone.stem": 2.0, "neck": 0.25, "other": 0.125}
    assert by_block(times, depth=1) == {"backbone": 3.5, "neck": 0.25, "other": 0.125}


def test_events_are_assigned_to_their_run():
    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(name, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur}

    events = [run(0, 100), node("/a/Conv", 10, 90), {"cat": "Node", "name": "/a/Conv_fence_before", "ts": 9,
                                                     "dur": 1},
              run(200, 100), node("/a/Conv", 210, 40), node("/a/Conv", 260, 5), node("/b/Relu", 270, 3),
              node("/stray", 150, 7)]  # between runs: belongs to none
    assert _per_run(events) == [{"/a/Conv": 90.0}, {"/a/Conv": 45.0, "/b/Relu": 3.0}]
