import pytest
import torch

from edgeprune.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from edgeprune.models import create_model


@pytest.fixture
def model():
    return create_model("yolov5n", num_classes=2)


def test_round_trip_with_weights_only(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, metrics={"map50": 0.5})
    raw = torch.load(path, weights_only=True)  # no pickled code inside
    assert raw["model"]["family"] == "yolov5" and raw["metrics"]["map50"] == 0.5
    loaded = load_model(path)
    assert not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint(tmp_path, model):
    path = tmp_path / "cut.pt"
    save_checkpoint(path, model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not an edgeprune checkpoint: a torch archive that does "
                       "not load: damaged or truncated"):
        load_checkpoint(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("name, content, looks_like", [
    ("notes.pt", b"hello world\n", "a text file"),
    ("arr.pt", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}", "a NumPy array file"),
    ("pickle.pt", b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.", "a plain pickle"),
    ("random.pt", bytes(range(129, 256)) * 20, "neither a torch archive"),
    ("model.onnx", b"\x08\x07\x12\x07pytorch", "an ONNX model"),
], ids=["text", "numpy", "pickle", "random", "onnx"])
def test_a_file_that_is_not_a_checkpoint_says_what_it_looks_like_and_never_suggests_unsafe_loading(
        tmp_path, name, content, looks_like):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert looks_like in str(err.value) and name in str(err.value)
    assert "weights_only" not in str(err.value) and "arbitrary code" not in str(err.value)


def test_pickled_module_is_refused_as_foreign(tmp_path, model):
    path = tmp_path / "full.pt"
    torch.save({"model": model}, path)  # the ultralytics way: a pickled nn.Module
    with pytest.raises(CheckpointError, match="needs pickled Python objects"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_an_edgeprune_checkpoint(tmp_path, model):
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not an edgeprune checkpoint"):
        load_checkpoint(path)


def test_weights_of_another_model_do_not_load(tmp_path, model):
    path = tmp_path / "m.pt"
    other = create_model("yolov5n", num_classes=5)
    save_checkpoint(path, model, state_dict=other.state_dict())
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(path)
