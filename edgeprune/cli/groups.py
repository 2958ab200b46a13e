"""`edgeprune groups`: the coupled-channel groups of a checkpoint, with their importance."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the verbs that run, so that `edgeprune --help` stays instant
    from torch import nn

from ..report.tables import format_table
from .common import add_model, load_model_arg


def register(sub) -> None:
    p = sub.add_parser("groups", help="list the coupled-channel groups of a model")
    add_model(p)
    p.add_argument("--importance", default="l1", help="l1, l2, bn, fused (taylor needs `prune --data`)")
    p.add_argument("--ignore", nargs="*", default=[], help="layer names or prefixes to leave alone")
    p.set_defaults(func=groups)


def importance_scores(model: nn.Module, groups: list, args: argparse.Namespace) -> dict:
    from ..data.formats import load_dataset
    from ..prune.importance import accumulate_gradients, score_groups

    if args.importance == "taylor":
        if not getattr(args, "data", None):
            raise ValueError("taylor importance needs gradients: pass --data DATA (a few training batches are used)")
        spec = load_dataset(args.data, skip_bad=getattr(args, "skip_bad", False), need=("train",))
        accumulate_gradients(model, spec.train, args.imgsz, args.batches)
    return score_groups(groups, args.importance, alpha=getattr(args, "alpha", 0.5))


def groups(args: argparse.Namespace) -> None:
    from ..models import example_input
    from ..prune.graph import find_groups

    model = load_model_arg(args)
    found = find_groups(model, example_input(model), ignored_layers=args.ignore)
    scores = importance_scores(model, found, args)
    rows = []
    for g in found:
        s = scores[g.name]
        layers = sorted({m.name for m in g.members})
        rows.append({"group": g.name, "width": g.width, "layers": len(layers),
                     "members": ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else ""),
                     f"{args.importance} min": float(s.min()), "median": float(s.median()), "max": float(s.max())})
    print(format_table(rows))
    print(f"{len(found)} groups, {sum(g.width for g in found)} channels; output layers left alone: "
          f"{', '.join(getattr(model, 'output_layers', [])) or 'none declared'}")
