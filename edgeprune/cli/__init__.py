"""`edgeprune <verb>`: the command line, one module per verb (docs/architecture.md).

Verbs write their results as files (checkpoints, ONNX, JSON) so that the demo and scripts can chain them. Each
verb imports its stage (and torch) only when it runs, so that `--help` stays instant.
"""

from __future__ import annotations

import sys

from . import data, demo, eval, export, finetune, groups, profile, prune, search, train
from .common import EXIT_CODES, EXIT_INPUT, EXIT_NO_FEASIBLE, NoFeasibleResult, build_parser, run

__all__ = ["EXIT_CODES", "EXIT_INPUT", "EXIT_NO_FEASIBLE", "NoFeasibleResult", "VERBS", "build_parser", "main"]

VERBS = [data, train, finetune, eval, export, profile, groups, prune, search, demo]


def main(argv: list[str] | None = None) -> int:
    """Run one verb; returns the exit code (EXIT_CODES)."""
    return run(argv, VERBS)


if __name__ == "__main__":
    sys.exit(main())
