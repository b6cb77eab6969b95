"""PDF documents (fpdf2): the personal report of one piece of advice, and the guidelines. Plain data in, bytes out.

Text is set in DejaVu Sans (Debian's fonts-dejavu-core, installed by scripts/bootstrap.sh) because fpdf2's built-in
fonts are Latin-1 only and cannot show CO₂.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone

import pandas as pd
from fpdf import FPDF
from fpdf.fonts import FontFace
from PIL import Image

from webapp import charts, renderer
from recommender.advise import BUDGET_COLUMNS
from recommender.hardware import HARDWARE
from webapp.presentation import (answers_table, assumptions_table, budget_checks, duration, failures_table,
                                 format_amount, format_interval, format_money, format_number, numbers_tables,
                                 options_table, probe_would_narrow_sentence, pue_reason, readable,
                                 resolution_sentence)

FONT = "DejaVu"
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
CHART_WIDTH_MM = 180


class ReportError(RuntimeError):
    """A report cannot be made here; the message says what to install."""


class _Document(FPDF):
    def __init__(self, title: str):
        super().__init__(format="A4")
        missing = [name for name in FONT_FILES.values() if not (renderer.FONT_DIR / name).is_file()]
        if missing:
            raise ReportError(f"PDF export needs the DejaVu fonts ({', '.join(missing)} not in {renderer.FONT_DIR}); "
                              "install them with: apt-get install fonts-dejavu-core (scripts/bootstrap.sh does)")
        for style, name in FONT_FILES.items():
            self.add_font(FONT, style, str(renderer.FONT_DIR / name))
        self.document_title = title
        self.set_title(title)
        self.set_author("Extract or Tune")
        self.set_auto_page_break(auto=True, margin=15)
        self.add_page()

    def footer(self):
        self.set_y(-12)
        self.set_font(FONT, "", 8)
        self.cell(0, 5, f"{self.document_title} · page {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str, size: int = 13) -> None:
        self.ln(2)
        self.set_font(FONT, "B", size)
        self.multi_cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT", align="L")
        self.ln(1)

    def paragraph(self, text: str, size: int = 10) -> None:
        self.set_font(FONT, "", size)
        self.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT", align="L")
        self.ln(1)

    def bullets(self, items: list[str]) -> None:
        self.set_font(FONT, "", 10)
        for item in items:
            self.multi_cell(0, 5, f"•  {item}", new_x="LMARGIN", new_y="NEXT", align="L")
        self.ln(1)

    def table(self, frame: pd.DataFrame, col_widths: tuple | None = None, size: int = 8) -> None:
        self.set_font(FONT, "", size)
        with super().table(col_widths=col_widths, headings_style=FontFace(emphasis="BOLD"), line_height=size * 0.5,
                           text_align="LEFT") as table:
            table.row([str(column) for column in frame.columns])
            for values in frame.itertuples(index=False):
                table.row([_cell(value) for value in values])
        self.ln(2)

    def chart(self, title: str, png: bytes) -> None:
        with Image.open(io.BytesIO(png)) as image:
            height_mm = CHART_WIDTH_MM * image.height / image.width
        if self.will_page_break(height_mm + 12):  # keep the heading with its chart
            self.add_page()
        self.heading(title, size=11)
        self.image(png, w=CHART_WIDTH_MM)
        self.ln(2)

    def bytes(self) -> bytes:
        return bytes(self.output())


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_number(value) if isinstance(value, (int, float)) else str(value)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _costs_lines(advice, row) -> list[str]:
    q, a = advice.questionnaire, advice.assumptions
    return [
        f"Money {format_money(row['total_usd'])}: compute {format_money(row['compute_usd'])} + labour "
        f"{format_money(row['human_usd'])} ({duration(row['human_hours'])} of people's time).",
        f"Compute time {duration(row['time_h'])} on {HARDWARE[q.hardware].name}.",
        f"Energy {format_amount('energy_kwh', row['energy_kwh'])} on the device; "
        f"{format_amount('energy_kwh', row['energy_kwh_with_pue'])} with {pue_reason(q.hardware, row['pue'], a)}.",
        f"CO₂ {format_amount('co2_kg', row['co2_kg'])} (energy with PUE x the grid's carbon intensity).",
    ]


def personal_report(advice, specs: dict[str, dict], evidence: dict[str, str], defaults, sources: dict,
                    link: str | None = None, provenance: pd.DataFrame | None = None,
                    evaluation: dict | None = None) -> bytes:
    """The answers, the recommendation with its budget checks (what breaks each, what would change it) and
    rationale, the charts, every option, the assumptions with their sources, the evidence and every source the
    advice uses (``evaluation``: the stored recommender evaluation's summary, for what a pilot did to decisions).
    ``specs``: the charts by title (``chart_specs``), rendered to PNG in the renderer's processes while the pages
    before them are laid out."""
    rendering = renderer.Rendering(list(specs.values()))
    doc = _Document("Extract or Tune: your recommendation")
    doc.heading("Extract or Tune: your recommendation", size=16)
    doc.paragraph(f"Generated {_stamp()}.", size=8)
    if link:
        doc.paragraph(f"Reopen these answers: {link}", size=8)
    row = advice.recommended_row
    doc.heading(f"Recommended: {row['label']}")
    doc.paragraph(f"Predicted test accuracy {format_interval(row['acc_low'], row['acc_median'], row['acc_high'])}, "
                  f"{row['accuracy_basis']}" + (" (extrapolated outside what the study measured: see Why)."
                                                if row['extrapolated'] else "."))
    doc.bullets(_costs_lines(advice, row))
    doc.paragraph(resolution_sentence(row))
    if advice.probe_would_narrow:
        doc.paragraph(probe_would_narrow_sentence(
            advice.probe_would_narrow, "python -m study.probe YOUR_IMAGES, or the app's \"Measure your own images\"",
            "add --finetune-pilot, or tick \"Also fine-tune once\" in the app", evaluation))
    checks = budget_checks(advice)
    if checks.empty:
        doc.paragraph("No budgets were set.")
    else:
        doc.heading("Your budgets", size=11)
        columns = [BUDGET_COLUMNS[name] for name in checks["name"]]
        doc.table(pd.DataFrame({
            "Budget": checks["budget"],
            "Predicted": [format_amount(c, v) for c, v in zip(columns, checks["predicted"])],
            "Limit": [format_amount(c, v) for c, v in zip(columns, checks["limit"])],
            "Verdict": checks["passes"].map({True: "pass", False: "FAIL"}),
            "What breaks it": checks["component"]}), col_widths=(45, 25, 25, 15, 70))
        failures = failures_table(advice)
        if not failures.empty:
            doc.heading("Every option that breaks a budget", size=11)
            doc.table(failures, col_widths=(28, 52, 20, 45, 35), size=7)
    doc.heading("Why", size=11)
    doc.bullets([readable(line) for line in advice.rationale])
    doc.heading("Your answers", size=11)
    doc.table(answers_table(advice.questionnaire), col_widths=(1, 1))
    for title, png in zip(specs, rendering.pngs()):
        doc.chart(title, png)
    doc.add_page()
    doc.heading("Every option")
    options = options_table(advice.options)
    if options["Cost basis"].nunique() == 1:  # say it once rather than in every row
        doc.paragraph(f"Costs of every option are {options['Cost basis'].iloc[0]}.", size=8)
        options = options.drop(columns="Cost basis")
    doc.table(options, size=6)
    doc.heading("Assumptions")
    doc.table(assumptions_table(advice.assumptions, defaults, sources, advice.questionnaire),
              col_widths=(40, 16, 22, 102), size=7)
    _evidence(doc, evidence, provenance)
    return doc.bytes()


def _evidence(doc: _Document, evidence: dict[str, str], provenance: pd.DataFrame | None) -> None:
    doc.heading("Evidence")
    doc.table(pd.DataFrame({"": list(evidence), "Value": list(evidence.values())}), col_widths=(30, 150))
    if provenance is not None and not provenance.empty:
        doc.heading("Sources")
        doc.table(provenance, col_widths=(50, 130), size=7)


def guidelines_document(guidelines: list, evidence: dict[str, str], provenance: pd.DataFrame | None = None) -> bytes:
    """Each evidence-derived guideline with the numbers behind it, then what the evidence is."""
    doc = _Document("Extract or Tune: guidelines")
    doc.heading("Extract or Tune: when to extract features and when to fine-tune", size=16)
    doc.paragraph(f"Derived from the study's measurements, generated {_stamp()}.", size=8)
    for number, guideline in enumerate(guidelines, start=1):
        doc.heading(f"{number}. {readable(guideline.title)}")
        doc.paragraph(readable(guideline.statement))
        if guideline.points:
            doc.bullets([readable(point) for point in guideline.points])
        for table in numbers_tables(guideline.numbers or {}):
            doc.table(table, col_widths=(70, 110) if list(table.columns) == ["Number", "Value"] else None)
    _evidence(doc, evidence, provenance)
    return doc.bytes()


def chart_specs(advice, cost_column: str = "total_usd") -> dict[str, dict]:
    """The personal report's charts (Vega-Lite): learning curves, accuracy and cost per option, costs."""
    budgets = advice.questionnaire.budgets
    budget_name = next((name for name, column in BUDGET_COLUMNS.items() if column == cost_column), None)
    shown = charts.fe_vs_ft_options(advice.options, advice.recommended)
    k = advice.questionnaire.images_per_class
    return {"Learning curves": charts.learning_curves(advice.curves, k, shown),
            "Accuracy and cost": charts.accuracy_vs_cost(advice.options, cost_column, budgets.get(budget_name),
                                                         advice.recommended),
            "Costs": charts.cost_breakdown(advice.options, budgets)}
