"""Trace a model into Torch-Pruning's dependency graph, with exact split / concat index mappings.

This is the only module of edgeprune that imports `torch_pruning` (`edgeprune.prune.graph` is the public face). We use
Torch-Pruning (TP) for what it does well — tracing autograd into a graph of layers and operations, and the
dependency rules between them (Conv out → BN → activation → next Conv in, residual adds, depthwise convs,
flatten → Linear) — and replace the two places where TP 1.6.1 gets channel positions wrong under
torch ≥ 2.0:

1. **Split sizes.** `shape_infer.init_shape_information` looks for `grad_fn._saved_self_sizes`, which torch 2.x
   renamed `_saved_self_sym_sizes`. For `chunk` and `split(int)` (`SplitBackward0`, which has no
   `_saved_split_sizes`) TP therefore falls back to its "legacy" path and guesses each piece's width from the
   *consumer* of that output: a C2f piece that feeds `cat(...)` gets the concat's whole width (96), so the
   offsets become `[0, 96, 192, …]` and pruning reaches "index 96 … out of bounds for dimension 0 with size 64".
2. **Which piece an edge carries.** Even with the right sizes (`split((c, c))`), TP assigns piece *i* to the
   *i*-th consumer edge in `node.outputs`, i.e. in graph-traversal order, one entry per edge. The piece an edge
   really carries is the edge's `output_nr` in autograd, which TP drops. C2f's `y[-1]` feeds both the concat
   and the first bottleneck, so there are three edges for two pieces and the bottleneck's edge gets no mapping
   at all (it is silently left unpruned, and the forward pass breaks).

The fix lives in one place, `_DependencyGraph._map_splits_and_concats`: after TP's tracing and dependency rules,
every split edge is mapped by its autograd `output_nr` with sizes read from the grad_fn, and every concat input
by its argument position with sizes recorded during the forward pass. TP's own `update_split_index_mapping` /
`update_concat_index_mapping` are switched off for those nodes (`enable_index_mapping = False`) so that later
calls cannot overwrite the exact mapping. To drop the workaround once upstream reads `_saved_self_sym_sizes` and
`output_nr`: call `tp.DependencyGraph().build_dependency(...)` in `trace()` and delete `_map_splits_and_concats`;
`tests/edgeprune/prune/test_graph.py::test_upstream_split_bug_*` tells whether upstream still needs it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode
from torch_pruning import ops as tp_ops
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.dependency import shape_infer as tp_shape_infer

from ..utils.tensors import flatten_tensors

OPTYPE = tp_ops.OPTYPE
HybridIndex = tp._helpers._HybridIndex
FlattenIndexMapping = tp_index_mapping._FlattenIndexMapping


@dataclass
class OpRecord:
    """What a Python-level torch call did: its name, tensor argument shapes, output shapes, enclosing module."""

    name: str
    in_shapes: list[tuple[int, ...]]
    in_grad: list[bool]  # per tensor argument: part of the autograd graph (not a constant)
    out_shapes: list[tuple[int, ...]]
    module: str  # qualified name of the innermost module running when the call was made ("" = the model)
    in_fns: list = field(default_factory=list)  # grad_fns of the tensor arguments (where the call starts)


@dataclass
class SplitInfo:
    """A channel split (chunk / split on dim 1) and how its pieces can change when channels are pruned."""

    func: str  # "chunk", "split", ...
    offsets: list[int]  # piece p is channels offsets[p]:offsets[p+1] of the split input
    module: str  # module whose forward made the call
    attrs: list[str | None] = field(default_factory=list)  # per piece: int attribute of `module` holding its size


class _Recorder(TorchFunctionMode):
    """Records, for every tensor produced by a Python-level torch call, the call's shapes (keyed by grad_fn)."""

    def __init__(self, module_stack: list[str]) -> None:
        super().__init__()
        self.records: dict[object, OpRecord] = {}
        self.stack = module_stack

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        tensors = [t for t in outs if isinstance(t, torch.Tensor)]
        fns = {t.grad_fn for t in tensors if t.grad_fn is not None}
        if fns:
            ins, grads, in_fns = [], [], []
            for a in list(args) + list((kwargs or {}).values()):
                for t in (a if isinstance(a, (tuple, list)) else (a,)):
                    if isinstance(t, torch.Tensor):
                        ins.append(tuple(t.shape))
                        grads.append(t.requires_grad)
                        in_fns.append(t.grad_fn)
            rec = OpRecord(getattr(func, "__name__", str(func)), ins, grads, [tuple(t.shape) for t in tensors],
                           self.stack[-1] if self.stack else "", in_fns)
            for fn in fns:
                self.records.setdefault(fn, rec)
        return out


def _is_kept_input(DG, f) -> bool:
    """Mirror of TP's rule for which `next_functions` entries become graph inputs (so positions line up)."""
    if f is None:
        return False
    if hasattr(f, "name") and "accumulategrad" in f.name().lower():
        return any(f.variable is p for p, _ in DG.unwrapped_parameters)
    return True


class _DependencyGraph(tp.DependencyGraph):
    """TP's DependencyGraph with exact split / concat index mappings and a record of shapes and outputs."""

    def trace(self, model: nn.Module, example_inputs) -> _DependencyGraph:
        # The body of tp.DependencyGraph.build_dependency (1.6.1) without customised pruners and ignored layers,
        # and with `shape_infer.init_shape_information` + the split/concat part of `update_index_mapping`
        # replaced by `_map_splits_and_concats`.
        self.verbose = False
        self.model = model
        self._module2name = {m: n for n, m in model.named_modules()}
        self.ignored_params = []
        self._param_to_name, self.unwrapped_parameters = self._detect_unwrapped_parameters(None)

        stack: list[str] = []
        recorder = _Recorder(stack)
        self.calls: Counter = Counter()  # module → number of forward calls (reused modules are > 1)
        self.outputs: list[torch.Tensor] = []

        def forward_fn(m, x):
            hooks = []
            for name, sub in m.named_modules():
                def pre(mod, _inp, name=name):
                    stack.append(name)
                    self.calls[mod] += 1

                def post(_mod, _inp, _out):
                    stack.pop()

                hooks += [sub.register_forward_pre_hook(pre), sub.register_forward_hook(post)]
            try:
                with recorder:
                    out = m(*x) if isinstance(x, (tuple, list)) else m(x)
            finally:
                for h in hooks:
                    h.remove()
            self.outputs = flatten_tensors(out)
            return self.outputs  # flat: Torch-Pruning's own flattening fails on a None among the outputs

        self.records = recorder.records
        self.module2node = self._trace(model, example_inputs, forward_fn, output_transform=None)
        self.internal = self._layer_internals(model)
        self._build_dependency(self.module2node)
        self.splits: dict[object, SplitInfo] = {}  # split node → info
        self.unmapped: dict[object, str] = {}  # split / concat nodes we could not map → why
        self._map_splits_and_concats()
        for node in self.module2node.values():  # the rest of TP's update_index_mapping
            if node.type == OPTYPE.RESHAPE:
                tp_index_mapping.update_reshape_index_mapping(self, node)
            elif node.type == OPTYPE.UNBIND:
                tp_index_mapping.update_unbind_index_mapping(self, node)
            elif node.type == OPTYPE.EXPAND:
                tp_index_mapping.update_expand_index_mapping(self, node)
            elif node.type == OPTYPE.SLICE:
                tp_index_mapping.update_slice_index_mapping(self, node)
        return self

    # -- the fix --------------------------------------------------------------------------------------------------

    def _map_splits_and_concats(self) -> None:
        for node in self.module2node.values():
            if node.type in (OPTYPE.SPLIT, OPTYPE.CONCAT):
                node.enable_index_mapping = False  # keep TP's per-edge guesses from overwriting ours, ever
                try:
                    (self._map_split if node.type == OPTYPE.SPLIT else self._map_concat)(node)
                except Exception as e:  # noqa: BLE001 - an unmappable node makes its groups unprunable, not a crash
                    self.unmapped[node] = f"{type(e).__name__}: {e}"

    def _edge_dep(self, node, k: int, towards_output: bool):
        """The dependency of `node` for its k-th input edge, or its k-th output edge (TP appends inputs first)."""
        dep = node.dependencies[len(node.inputs) + k if towards_output else k]
        if dep.target is not (node.outputs[k] if towards_output else node.inputs[k]):
            raise ValueError("dependency order differs from Torch-Pruning 1.6's (inputs first, then outputs)")
        return dep

    def _map_split(self, node) -> None:
        g = node.grad_fn
        in_shape = tuple(int(s) for s in g._saved_self_sym_sizes)
        dim = int(g._saved_dim) % len(in_shape)
        if hasattr(g, "_saved_split_sizes"):
            pieces = [int(s) for s in g._saved_split_sizes]
        else:
            size, total = int(g._saved_split_size), in_shape[dim]
            pieces = [min(size, total - s) for s in range(0, total, size)]
        offsets = [0]
        for p in pieces:
            offsets.append(offsets[-1] + p)
        # Which piece (output_nr) each output edge carries: the j-th time consumer C appears in node.outputs is
        # the j-th time this grad_fn appears in C.grad_fn.next_functions.
        seen: Counter = Counter()
        edge_piece = []
        for out_node in node.outputs:
            nrs = [nr for f, nr in out_node.grad_fn.next_functions if f is g]
            edge_piece.append(nrs[seen[out_node]])
            seen[out_node] += 1
        node.module.offsets = offsets
        node.module.split_sizes = [pieces[p] for p in edge_piece]  # per edge: what TP's shape inference indexes
        rec = self.records.get(g)
        if dim != 1:
            if len(in_shape) == 3:
                raise ValueError(f"split on dim {dim} of a 3-D tensor: channel layout unknown")
            return  # a split along batch / space leaves channels whole: TP's identity coupling is right
        self.splits[node] = SplitInfo(rec.name if rec else "?", offsets, rec.module if rec else "")
        for k, out_node in enumerate(node.outputs):
            p = edge_piece[k]
            self._edge_dep(node, k, True).index_mapping[0] = tp_index_mapping._SplitIndexMapping(
                offset=offsets[p:p + 2], reverse=False)
        for consumer in set(node.outputs):
            j = 0
            nrs = [nr for f, nr in consumer.grad_fn.next_functions if f is g]
            for i, in_node in enumerate(consumer.inputs):
                if in_node is node:
                    p = nrs[j]
                    j += 1
                    self._edge_dep(consumer, i, False).index_mapping[0] = tp_index_mapping._SplitIndexMapping(
                        offset=offsets[p:p + 2], reverse=True)

    def _map_concat(self, node) -> None:
        g = node.grad_fn
        rec = self.records.get(g)
        if rec is None:
            raise ValueError("concatenation not seen at Python level: input sizes unknown")
        ndim = len(rec.out_shapes[0])
        dim = int(g._saved_dim) % ndim
        if dim != 1:
            if ndim == 3:
                raise ValueError(f"concatenation on dim {dim} of a 3-D tensor: channel layout unknown")
            return
        sizes = [s[dim] for s in rec.in_shapes]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        positions = [i for i, (f, _) in enumerate(g.next_functions) if _is_kept_input(self, f)]
        if len(positions) != len(node.inputs) or len(sizes) != len(g.next_functions):
            raise ValueError("concatenation inputs do not line up with the traced graph")
        node.module.concat_sizes = [sizes[p] for p in positions]
        node.module.offsets = starts + [sum(sizes)]
        seen: Counter = Counter()
        for i, in_node in enumerate(node.inputs):
            p = positions[i]
            off = [starts[p], starts[p] + sizes[p]]
            self._edge_dep(node, i, False).index_mapping[1] = tp_index_mapping._ConcatIndexMapping(off, reverse=True)
            ks = [k for k, o in enumerate(in_node.outputs) if o is node]
            k = ks[seen[in_node]]
            seen[in_node] += 1
            self._edge_dep(in_node, k, True).index_mapping[1] = tp_index_mapping._ConcatIndexMapping(off, reverse=False)

    # -- helpers for the group audit -----------------------------------------------------------------------------

    def _layer_internals(self, model: nn.Module) -> set:
        """grad_fns created inside a layer's own functional call (F.linear on a 3-D input is view → mm → view →
        add): TP makes graph nodes of them in front of the layer's node; they carry the layer's input channels
        and nothing else, so the audit must not judge them as model operations."""
        from .surgery import SUPPORTED

        internal = set()
        for fn, rec in self.records.items():
            if not rec.module or not isinstance(model.get_submodule(rec.module), SUPPORTED):
                continue
            stop = {f for f in rec.in_fns if f is not None}
            stack = [f for f, _ in fn.next_functions if f is not None]
            while stack:
                f = stack.pop()
                if f in stop or f in internal or "AccumulateGrad" in type(f).__name__:
                    continue
                internal.add(f)
                stack.extend(n for n, _ in f.next_functions if n is not None)
        return internal

    def shapes(self, node) -> tuple[list[tuple[int, ...]], tuple[int, ...]] | None:
        """(shapes of the node's graph inputs, shape of its first output), from autograd's metadata, which covers
        steps inside layers and ops too; None when this torch does not expose it."""
        g = node.grad_fn
        try:
            out = tuple(int(s) for s in g._input_metadata[0].shape)
            ins = [tuple(int(s) for s in f._input_metadata[nr].shape) for f, nr in g.next_functions
                   if f is not None]
        except (AttributeError, IndexError, RuntimeError):
            return None
        return ins, out

    def channels_into(self, node) -> int | None:
        """TP's estimate of the channel count flowing into `node` (None when unknown)."""
        for n in node.inputs:
            c = tp_shape_infer.infer_out_channels_recursively(self, n, [0])
            if c is not None:
                return c
        return None


def trace(model: nn.Module, example_inputs) -> _DependencyGraph:
    """Build the dependency graph of `model` on `example_inputs` (the model's train/eval mode is preserved)."""
    was_training = model.training
    if isinstance(example_inputs, torch.Tensor) and example_inputs.is_floating_point():
        example_inputs = example_inputs.detach().clone().requires_grad_(True)  # a graph even with frozen weights
    try:
        with torch.enable_grad():
            return _DependencyGraph().trace(model, example_inputs)
    finally:
        model.train(was_training)


def split_attrs(model: nn.Module, info: SplitInfo) -> list[str | None]:
    """For a fixed-size `split`, the int attribute of the calling module that holds each piece's size, if unique."""
    module = model.get_submodule(info.module) if info.module else model
    ints = {k: v for k, v in vars(module).items() if type(v) is int}
    out = []
    for p in range(len(info.offsets) - 1):
        size = info.offsets[p + 1] - info.offsets[p]
        names = [k for k, v in ints.items() if v == size]
        out.append(names[0] if len(names) == 1 else None)
    return out


def prod(xs) -> int:
    return math.prod(int(x) for x in xs)


@torch.no_grad()
def forward_problem(model: nn.Module, example_inputs, shapes: list[tuple[int, ...]]) -> str | None:
    """None when `model` runs in eval mode and gives outputs of `shapes`; otherwise what went wrong."""
    was_training = model.training
    model.eval()
    try:
        out = model(*example_inputs) if isinstance(example_inputs, (tuple, list)) else model(example_inputs)
    except Exception as e:  # noqa: BLE001 - reported to the caller
        return f"breaks the forward pass ({type(e).__name__}: {e})"
    finally:
        model.train(was_training)
    got = [tuple(t.shape) for t in flatten_tensors(out)]
    return None if got == shapes else f"changes the output shapes from {shapes} to {got}"
