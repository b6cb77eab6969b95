"""Text for the reports generated from the database (EVIDENCE.md, GUIDELINES.md, the advice): Markdown tables and
signed numbers."""
from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame) -> str:
    frame = frame.astype(object).where(frame.notna(), "")
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign and ``digits`` decimals (+1.2, -0.4, +0.0): a change that rounds to zero reads
    "+0.0", never "-0.0"."""
    return f"{round(float(value), digits) + 0.0:+.{digits}f}"
