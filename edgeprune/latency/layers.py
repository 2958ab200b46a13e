"""Decompose a torch model into latency units at their real shapes, and build a tiny ONNX model per unit.

A *unit* is what an inference runtime executes as one kernel, more or less:

- `conv`: a Conv2d with the BatchNorm and activation that directly follow it folded in (runtimes fold BN into the
  convolution's weights and fuse the activation; TensorRT and onnxruntime both do). Key: in/out channels, kernel,
  stride, padding, dilation, groups, input H×W, bias, activation.
- `maxpool`, `avgpool`, `upsample`, standalone activations: leaf modules of their own.
- `add` (a residual add of two equal 4-D tensors) and `cat` (channel concatenation of 4-D tensors): functional
  ops, caught with a TorchFunctionMode while the model runs.

Everything else (the Detect decode's reshapes, sigmoid and grid arithmetic, views, permutes) is not a unit: it
does not change when channels are pruned (the task fixes the head's outputs) and ends up in the predictor's
fitted intercept. Leaf modules of other kinds (Linear, LayerNorm, ...) become `other` units keyed by their exact
input shape; they are measured as the module itself.

Tracing runs the model on the meta device (no arithmetic), so decomposing a YOLOv5s at 640 takes milliseconds.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["Unit", "decompose", "unit_module", "unit_onnx"]

_ACTS = (nn.SiLU, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.Tanh,
         nn.Mish, nn.PReLU)
_NORMS = (nn.BatchNorm2d,)
_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__, torch.Tensor.add_,
         torch.Tensor.__iadd__}
_CATS = {torch.cat, torch.concat, torch.concatenate}


@dataclass
class Unit:
    """One latency unit. `cin`/`cout` are the channel counts pruning changes; `attrs` is everything else."""

    op: str  # conv | maxpool | avgpool | upsample | act | add | cat | other
    cin: int
    cout: int
    attrs: dict = field(default_factory=dict)  # kernel, stride, h, w, act, ... (JSON-able)
    name: str = ""  # where it is in the model (first occurrence); not part of the key
    fixed_in: bool = False  # cin cannot change under pruning (the model's input)
    fixed_out: bool = False  # cout cannot change (a task-fixed output layer)
    module: nn.Module | None = field(default=None, repr=False, compare=False)  # `other` units: the module itself
    shares: list[int] | None = field(default=None, compare=False)  # `cat` units: the base model's channel split

    @property
    def family(self) -> str:
        """The key without the channel counts: units of one family differ only in cin / cout."""
        return json.dumps({"op": self.op, **self.attrs}, sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        return json.dumps({"op": self.op, "cin": self.cin, "cout": self.cout, **self.attrs}, sort_keys=True,
                          separators=(",", ":"))

    @property
    def channel_dims(self) -> int:
        """How many independent channel counts the unit has: 2 for dense convs, else 1 (cout follows cin)."""
        return 2 if self.op == "conv" and self.attrs.get("groups_mode") != "depthwise" else 1

    def with_channels(self, cin: int, cout: int) -> Unit:
        u = copy.copy(self)
        u.cin, u.cout = int(cin), int(cout)
        return u


def _act_name(m: nn.Module) -> str:
    if isinstance(m, nn.LeakyReLU):
        return f"LeakyReLU:{m.negative_slope}"
    return type(m).__name__


def _conv_attrs(m: nn.Conv2d, h: int, w: int) -> dict:
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    mode = "dense" if g == 1 else "depthwise" if g == cin == cout else f"grouped:{g}"
    pad = m.padding if isinstance(m.padding, str) else list(m.padding)
    return {"kernel": list(m.kernel_size), "stride": list(m.stride), "padding": pad, "dilation": list(m.dilation),
            "groups_mode": mode, "bias": m.bias is not None, "h": h, "w": w, "act": "none", "bn": False}


class _FunctionalOps(TorchFunctionMode):
    """Records residual adds and channel concatenations of 4-D tensors, in call order."""

    def __init__(self, sink) -> None:
        super().__init__()
        self.sink = sink
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            if func in _ADDS and len(args) >= 2 and all(isinstance(a, torch.Tensor) for a in args[:2]):
                a, b = args[0], args[1]
                if a.dim() == 4 and a.shape == b.shape:
                    self.sink("add", [a, b], out)
            elif func in _CATS:
                xs = args[0] if args else kwargs.get("tensors")
                dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
                if xs and all(isinstance(x, torch.Tensor) and x.dim() == 4 for x in xs) and dim in (1, -3):
                    self.sink("cat", list(xs), out)
        except Exception:  # noqa: BLE001, S110 - recording must never change what the model computes
            pass
        return out


def _to_meta(model: nn.Module) -> nn.Module:
    """A copy of `model` on the meta device (shapes only), without copying the weights' data."""
    memo = {}
    for t in list(model.parameters()) + list(model.buffers()):
        memo[id(t)] = t.to("meta") if not isinstance(t, nn.Parameter) else nn.Parameter(t.to("meta"),
                                                                                        t.requires_grad)
    return copy.deepcopy(model, memo)


def decompose(model: nn.Module, input_shape: tuple[int, ...]) -> list[Unit]:
    """The model's latency units in execution order, at the shapes `input_shape` gives them (eval mode).

    Runs one forward pass on the meta device with forward hooks on leaf modules (convs with the BatchNorm and
    activation applied right after them are one unit) and a TorchFunctionMode for adds and concatenations.
    """
    try:
        net = _to_meta(model).eval()
        x = torch.zeros(*input_shape, device="meta")
    except Exception:  # noqa: BLE001 - a model that cannot live on meta: trace for real (slower, same result)
        net = copy.deepcopy(model).eval()
        x = torch.zeros(*input_shape)
    fixed_out_names = set(getattr(model, "output_layers", []) or [])
    units: list[Unit] = []
    owner: dict[int, tuple[int, torch.Tensor]] = {}  # id(tensor) -> (unit index, tensor kept alive)
    inputs = {id(x)}

    def last(t):
        got = owner.get(id(t))
        return got[0] if got is not None and got[1] is t else None

    def add_unit(u: Unit, out) -> None:
        units.append(u)
        if isinstance(out, torch.Tensor):
            owner[id(out)] = (len(units) - 1, out)

    def hook(name):
        def fn(m, args, out):
            a = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if a is None:
                return
            if isinstance(m, nn.Conv2d) and a.dim() == 4:
                fixed_out = any(name == p or name.startswith(p + ".") for p in fixed_out_names)
                add_unit(Unit("conv", m.in_channels, m.out_channels, _conv_attrs(m, a.shape[2], a.shape[3]),
                              name, fixed_in=id(a) in inputs, fixed_out=fixed_out), out)
                return
            idx = last(a)
            if isinstance(m, _NORMS) and idx is not None and units[idx].op == "conv" and not units[idx].attrs["bn"] \
                    and units[idx].attrs["act"] == "none":
                units[idx].attrs["bn"] = True
                owner[id(out)] = (idx, out)
                return
            if isinstance(m, _ACTS) and idx is not None and units[idx].op == "conv" \
                    and units[idx].attrs["act"] == "none":
                units[idx].attrs["act"] = _act_name(m)
                owner[id(out)] = (idx, out)
                return
            if a.dim() != 4 or not isinstance(out, torch.Tensor):
                if isinstance(m, (nn.Identity, nn.Dropout)) or not any(True for _ in m.parameters()):
                    return
                add_unit(Unit("other", 0, 0, {"module": type(m).__name__, "in_shape": list(a.shape)}, name,
                              module=m), out)
                return
            c, h, w = a.shape[1], a.shape[2], a.shape[3]
            if isinstance(m, nn.MaxPool2d):
                attrs = {"kernel": m.kernel_size, "stride": m.stride, "padding": m.padding, "h": h, "w": w}
                add_unit(Unit("maxpool", c, c, json.loads(json.dumps(attrs)), name), out)
            elif isinstance(m, nn.AvgPool2d):
                attrs = {"kernel": m.kernel_size, "stride": m.stride, "padding": m.padding, "h": h, "w": w}
                add_unit(Unit("avgpool", c, c, json.loads(json.dumps(attrs)), name), out)
            elif isinstance(m, nn.Upsample):
                attrs = {"out_h": out.shape[2], "out_w": out.shape[3], "mode": m.mode, "h": h, "w": w}
                add_unit(Unit("upsample", c, c, attrs, name), out)
            elif isinstance(m, _ACTS):
                add_unit(Unit("act", c, c, {"act": _act_name(m), "h": h, "w": w}, name), out)
            elif isinstance(m, (nn.Identity, nn.Dropout)):
                return
            elif any(True for _ in m.parameters(recurse=False)) or not isinstance(m, _NORMS):
                add_unit(Unit("other", 0, 0, {"module": type(m).__name__, "in_shape": list(a.shape)}, name,
                              module=m), out)

        return fn

    def functional(op, xs, out) -> None:
        h, w = out.shape[2], out.shape[3]
        if op == "add":
            add_unit(Unit("add", xs[0].shape[1], xs[0].shape[1], {"h": h, "w": w}, "add"), out)
        else:
            shares = [int(t.shape[1]) for t in xs]
            add_unit(Unit("cat", sum(shares), sum(shares), {"inputs": len(xs), "h": h, "w": w}, "cat",
                          shares=shares), out)

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if not list(m.children())]
    try:
        with torch.no_grad(), _FunctionalOps(functional):
            net(x)
    finally:
        for h in handles:
            h.remove()
    return units


# ---------------------------------------------------------------------------------------------------------------
# One tiny model per unit
# ---------------------------------------------------------------------------------------------------------------
def _make_act(name: str) -> nn.Module:
    if name == "none":
        return nn.Identity()
    if name.startswith("LeakyReLU:"):
        return nn.LeakyReLU(float(name.split(":", 1)[1]))
    return getattr(nn, name)()


class _Add(nn.Module):
    def forward(self, a, b):
        return a + b


class _Cat(nn.Module):
    def forward(self, *xs):
        return torch.cat(xs, 1)


def _split(total: int, parts: int, shares: list[int] | None) -> list[int]:
    """Split `total` channels into `parts` inputs, in the base model's proportions when known."""
    if shares and len(shares) == parts and sum(shares) > 0:
        sizes = [max(1, round(total * s / sum(shares))) for s in shares]
    else:
        sizes = [max(1, total // parts)] * parts
    sizes[-1] = max(1, total - sum(sizes[:-1]))
    return sizes


def unit_module(u: Unit) -> tuple[nn.Module, list[tuple[int, ...]]]:
    """A standalone module computing unit `u`, and its input shapes."""
    a = u.attrs
    if u.op == "conv":
        groups = 1 if a["groups_mode"] == "dense" else u.cin if a["groups_mode"] == "depthwise" \
            else int(a["groups_mode"].split(":")[1])
        pad = a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"])
        # BN folds into the conv's weights and bias at export / engine build: a conv with a bias is the same work
        conv = nn.Conv2d(u.cin, u.cout, tuple(a["kernel"]), tuple(a["stride"]), pad, tuple(a["dilation"]),
                         groups=groups, bias=a["bias"] or a["bn"])
        return nn.Sequential(conv, _make_act(a["act"])), [(1, u.cin, a["h"], a["w"])]
    if u.op == "maxpool":
        return nn.MaxPool2d(a["kernel"], a["stride"], a["padding"]), [(1, u.cin, a["h"], a["w"])]
    if u.op == "avgpool":
        return nn.AvgPool2d(a["kernel"], a["stride"], a["padding"]), [(1, u.cin, a["h"], a["w"])]
    if u.op == "upsample":
        return nn.Upsample(size=(a["out_h"], a["out_w"]), mode=a["mode"]), [(1, u.cin, a["h"], a["w"])]
    if u.op == "act":
        return _make_act(a["act"]), [(1, u.cin, a["h"], a["w"])]
    if u.op == "add":
        return _Add(), [(1, u.cin, a["h"], a["w"])] * 2
    if u.op == "cat":
        sizes = _split(u.cin, a["inputs"], u.shares)
        return _Cat(), [(1, c, a["h"], a["w"]) for c in sizes]
    if u.op == "other":
        if u.module is None:
            raise ValueError(f"unit {u.key}: an 'other' unit needs its module to be measured")
        m = copy.deepcopy(u.module)
        if any(p.is_meta for p in m.parameters()) or any(b.is_meta for b in m.buffers()):
            m = m.to_empty(device="cpu")
            for p in m.parameters():
                nn.init.normal_(p, std=0.02)
        return m, [tuple(a["in_shape"])]
    raise ValueError(f"unknown unit op {u.op!r}")


def unit_onnx(u: Unit, opset: int = 13) -> tuple[bytes, tuple[int, ...]]:
    """ONNX bytes of unit `u` alone (TorchScript exporter, static shapes) and its first input's shape."""
    m, shapes = unit_module(u)
    m = m.eval()
    xs = tuple(torch.rand(*s) for s in shapes)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, xs, buf, opset_version=opset, dynamo=False, do_constant_folding=True,
                          input_names=[f"x{i}" for i in range(len(xs))], output_names=["y"])
    return buf.getvalue(), shapes[0]
