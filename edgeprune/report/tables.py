"""Tables people read at a glance: plain text for the terminal, Markdown for reports, one way to write numbers.

Every table edgeprune prints or writes (a verb's summary, the demo's results.md, the search summary, the report)
writes its numbers through `format_value`, keyed by the column, so the same figure reads the same everywhere:
params `1.76 M`, GFLOPs `1.032`, milliseconds `11.95`, speed-ups `2.49×`, mAP `0.741`.
"""

from __future__ import annotations

import math

__all__ = ["format_table", "format_value", "markdown_table"]


def format_value(column: str, value) -> str:
    """How a number of column `column` is written (strings pass through)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (str, bool)):
        return str(value)
    c = column.lower()
    if c in ("params", "parameters") or c.endswith("_params"):
        return f"{value / 1e6:.2f} M"
    if c == "mparams":
        return f"{value:.2f} M"
    if c in ("gflops", "block_ms"):
        return f"{value:.3f}"
    if c.endswith("ms") or c.endswith("(ms)") or c.startswith("latency"):
        return f"{value:.2f}"
    if c in ("speedup", "speed-up", "ratio") or c.endswith("speedup"):
        return f"{value:.2f}×"
    if c.endswith("pct") or c.endswith("%"):
        return f"{value:+.1f} %"
    if isinstance(value, int):
        return str(value)
    if value and abs(value) < 0.01:  # learning rates, small losses
        return f"{value:.2e}"
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"


def _cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    cols = list(rows[0])
    return cols, [[format_value(c, r.get(c)) for c in cols] for r in rows]


def format_table(rows: list[dict]) -> str:
    """A plain-text table with one row per dict (keys of the first row are the columns)."""
    cols, body = _cells(rows)
    cells = [list(cols)] + body
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """The same rows as a Markdown table."""
    cols, body = _cells(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
