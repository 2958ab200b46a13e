"""One way to write every number: the terminal table, Markdown and the report agree cell for cell."""
import re

from edgeprune.report.page import format_value as report_format
from edgeprune.report.tables import format_table, format_value, markdown_table

ROW = {"model": "pruned", "params": 1760539, "GFLOPs": 0.19512, "latency_ms": 4.7912, "speedup": 2.4917,
       "mAP50": 0.74123, "lr": 0.000125, "threads": 1, "note": None}


def test_the_terminal_and_markdown_tables_write_the_same_cells():
    cells = ["pruned", "1.76 M", "0.195", "4.79", "2.49×", "0.741", "1.25e-04", "1", "–"]
    assert re.split(r"\s{2,}", format_table([ROW]).splitlines()[2].strip()) == cells
    assert markdown_table([ROW]).splitlines()[2] == "| " + " | ".join(cells) + " |"


def test_the_report_uses_the_same_formatter():
    assert report_format is format_value
    assert format_value("speedup", 2.212) == "2.21×" and format_value("params", 15766) == "0.02 M"
