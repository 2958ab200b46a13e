"""Can channels flow through an operation node of the traced graph exactly? (`NodeAudit.reason`)

Torch-Pruning treats every operation it does not know as element-wise and tracks channels by count, not by
dimension. That is right for activations, pooling, upsampling and adds, and wrong for a reshape that splits the
channel dimension (attention heads, channel shuffle), for a broadcast or reduction across channels, or for a
split whose sizes are fixed in code. Those are found here, from the shapes autograd recorded at each node, and the
groups that pass through them are left alone.
"""

from __future__ import annotations

from torch import nn

from .trace import OPTYPE, FlattenIndexMapping, prod, split_attrs


class NodeAudit:
    """Why channels cannot flow through an operation node exactly (None when they can); cached per node."""

    def __init__(self, DG, model: nn.Module) -> None:
        self.DG, self.model, self.cache = DG, model, {}

    def reason(self, node) -> str | None:
        if node not in self.cache:
            self.cache[node] = self._reason(node)
        return self.cache[node]

    def _reason(self, node) -> str | None:
        DG, t = self.DG, node.type
        if node.grad_fn in DG.internal:
            return None  # a step inside a layer's own computation (see _DependencyGraph._layer_internals)
        if node in DG.unmapped:
            return f"{t.name.lower()} not mapped: {DG.unmapped[node]}"
        rec = DG.records.get(node.grad_fn)
        where = f" in {rec.module or 'the model'}" if rec else ""
        if t == OPTYPE.SPLIT:
            info = DG.splits.get(node)
            if info is None:
                return None
            sizes = [b - a for a, b in zip(info.offsets, info.offsets[1:])]
            if info.func == "chunk":
                return None if len(set(sizes)) == 1 else f"chunk{where} into unequal pieces {sizes}"
            info.attrs = split_attrs(self.model, info)
            if None in info.attrs:
                return (f"{info.func}{where} with sizes {sizes} fixed in code (no unique int attribute of "
                        f"{info.module or 'the model'} holds them; torch.chunk would adapt)")
            return None
        if t in (OPTYPE.CONCAT, OPTYPE.CUSTOMIZED):
            return None
        if t == OPTYPE.OUTPUT:
            return "its channels reach a model output"
        if t == OPTYPE.PARAMETER:
            return "a bare nn.Parameter (outside a standard layer) is tied to these channels"
        if t == OPTYPE.UNBIND:
            return f"unbind{where} is not supported"
        if t == OPTYPE.RESHAPE:
            return None if not node.inputs else self._reshape(node, rec, where)
        if t == OPTYPE.SLICE:
            g = node.grad_fn
            ndim = len(g._saved_self_sym_sizes)
            dim = int(g._saved_dim) % ndim
            if ndim == 4 or (ndim in (2, 5) and dim == 1):
                return None
            return f"slice on dim {dim} of a {ndim}-D tensor{where}"
        if not node.inputs:
            return None  # a branch from parameters or constants only (e.g. PReLU's reshaped slopes)
        shapes = DG.shapes(node)
        if shapes is None:
            return None if rec is None else self._shapes_from_record(rec, t, where)
        ins, shape_out = shapes
        name = rec.name if rec else node.grad_fn.name()
        for shape_in in ins:
            if t == OPTYPE.EXPAND and not (len(shape_in) == len(shape_out) == 4 and shape_in[1] == shape_out[1]):
                return f"expand {shape_in} -> {shape_out}{where}"
            if len(shape_in) == 4 and (len(shape_out) < 2 or shape_out[1] != shape_in[1]):
                return f"{name}{where} maps {shape_in} to {shape_out} across the channel dimension"
        return None

    @staticmethod
    def _shapes_from_record(rec, t, where: str) -> str | None:
        shape_out = rec.out_shapes[0]
        for shape_in, in_graph in zip(rec.in_shapes, rec.in_grad):
            if in_graph and len(shape_in) == 4 and (len(shape_out) < 2 or shape_out[1] != shape_in[1]):
                return f"{rec.name}{where} maps {shape_in} to {shape_out} across the channel dimension"
        return None

    def _reshape(self, node, rec, where: str) -> str | None:
        if any(isinstance(mp, FlattenIndexMapping) for dep in node.dependencies for mp in dep.index_mapping):
            return None  # flatten into a Linear layer: Torch-Pruning maps it
        shapes = self.DG.shapes(node)
        if shapes is not None and len(shapes[0]) == 1:
            shape_in, shape_out = shapes[0][0], shapes[1]
        elif rec is not None:
            shape_in, shape_out = rec.in_shapes[0], rec.out_shapes[0]
        else:
            return f"reshape inside an operation ({node.grad_fn.name()}): shapes unknown"
        if shape_in == shape_out:
            return None
        c = self.DG.channels_into(node)
        dims = [d for d in range(len(shape_in)) if shape_in[d] == c] if c else []
        if len(shape_in) != 3 and 1 in dims:
            dims = [1]
        if not dims:
            return f"reshape {shape_in} -> {shape_out}{where}: cannot tell which dimension holds the channels"
        for d in dims:
            if not any(shape_out[d2] == shape_in[d] and prod(shape_in[:d]) == prod(shape_out[:d2])
                       for d2 in range(len(shape_out))):
                return (f"reshape {shape_in} -> {shape_out}{where} splits or merges the channel dimension "
                        "(attention heads, channel shuffle, ...)")
        return None
