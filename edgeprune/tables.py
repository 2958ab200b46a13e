"""Tables people read at a glance: plain text for the terminal, Markdown for reports."""

from __future__ import annotations

__all__ = ["format_table", "markdown_table"]


def _cell(v, floatfmt: str) -> str:
    return floatfmt.format(v) if isinstance(v, float) else str(v)


def format_table(rows: list[dict], floatfmt: str = "{:.3f}") -> str:
    """A plain-text table with one row per dict (keys of the first row are the columns)."""
    cols = list(rows[0])
    cells = [list(cols)] + [[_cell(r[c], floatfmt) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict], floatfmt: str = "{:.3f}") -> str:
    """The same rows as a Markdown table."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r[c], floatfmt) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
