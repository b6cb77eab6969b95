"""Markdown tables for the reports generated from the database (EVIDENCE.md and its convergence section)."""
from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame) -> str:
    frame = frame.astype(object).where(frame.notna(), "")
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
