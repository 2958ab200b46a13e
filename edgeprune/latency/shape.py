"""Input shapes as every backend takes them."""

from __future__ import annotations

Shape = tuple[int, ...]


def normalize_shape(input_shape) -> Shape:
    """(1, 3, 64, 64) from a tuple, list, or "1,3,64,64"; ValueError for anything else."""
    if isinstance(input_shape, str):
        input_shape = [p for p in input_shape.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of positive ints such as (1, 3, 640, 640), "
                         f"not {input_shape!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape must be positive ints such as (1, 3, 640, 640), not {input_shape!r}")
    return shape
