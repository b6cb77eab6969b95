"""Altair charts for the app and the PDF reports: plain DataFrames in, charts out (PNG via vl-convert)."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from recommender.advise import BUDGET_COLUMNS
from webapp.presentation import COSTS, cost_label, family

FAMILY_COLOURS = {"feature extraction": "#1f77b4", "fine-tuning": "#d62728"}
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
VEGALITE_VERSION = "6.4"  # the Vega-Lite that altair 6.3 writes; vl-convert must render the same


def fe_vs_ft_options(options: pd.DataFrame, recommended: str) -> list[str]:
    """The recommended option and the most accurate option of the other family, the comparison a reader wants."""
    chosen = options.loc[options["option"] == recommended]
    other_family = "fine-tuning" if chosen.empty or family(chosen["method"].iloc[0]) != "fine-tuning" \
        else "feature extraction"
    others = options[options["method"].map(family) == other_family]
    picks = [recommended] if not chosen.empty else []
    if not others.empty:
        picks.append(others.sort_values("acc_median", ascending=False)["option"].iloc[0])
    return picks


def _tooltips(*fields: str) -> list[alt.Tooltip]:
    """Tooltip channels; explicit channel objects (not shorthand strings) keep chart building fast."""
    return [alt.Tooltip(field) for field in fields]


def learning_curves(curves: pd.DataFrame, images_per_class: int, options: list[str] | None = None) -> alt.Chart:
    """Predicted accuracy against images per class, 80% interval as a band, the user's k as a rule."""
    data = curves if options is None else curves[curves["option"].isin(options)]
    data = data.assign(family=data["method"].map(family))
    x = alt.X("images_per_class:Q", scale=alt.Scale(type="log"), title="Images per class (k)")
    colour = alt.Color("option:N", title="Option", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400))
    band = alt.Chart().mark_area(opacity=0.15).encode(
        x=x, y=alt.Y("acc_low:Q", title="Test accuracy", axis=alt.Axis(format="%")), y2=alt.Y2("acc_high:Q"),
        color=colour)
    line = alt.Chart().mark_line(strokeWidth=2.5).encode(
        x=x, y=alt.Y("acc_median:Q"), color=colour, strokeDash=alt.StrokeDash("family:N", title="Family"),
        tooltip=[*_tooltips("option:N", "images_per_class:Q"), alt.Tooltip("acc_low:Q", format=".1%"),
                 alt.Tooltip("acc_median:Q", format=".1%"), alt.Tooltip("acc_high:Q", format=".1%")])
    marker = _vertical_rule(images_per_class, f"your k = {images_per_class:,}", "black", [4, 3])
    return alt.layer(band, line, *marker, data=data).properties(title="Learning curves (80% interval)", width=520,
                                                                height=320)


def _vertical_rule(x: float, label: str, colour: str, dash: list[int]) -> list[alt.Chart]:
    """A labelled vertical line at a data value; its own one-row data, so it is drawn once."""
    one_row = alt.Data(values=[{}])
    rule = alt.Chart(one_row).mark_rule(color=colour, strokeDash=dash, strokeWidth=2).encode(x=alt.XDatum(x))
    text = alt.Chart(one_row).mark_text(color=colour, align="left", dx=4, dy=4, baseline="top").encode(
        x=alt.XDatum(x), y=alt.YValue(0), text=alt.TextValue(label))
    return [rule, text]


def accuracy_vs_cost(options: pd.DataFrame, cost_column: str = "total_usd", budget: float | None = None,
                     recommended: str | None = None) -> alt.Chart:
    """Every option's accuracy interval against one cost; the Pareto front drawn and the budget as a red rule."""
    data = options.assign(
        family=options["method"].map(family),
        front=options["pareto"].map({True: "Pareto front", False: "dominated"}),
        status=options["feasible"].map({True: "within budgets", False: "breaks a budget"}),
        violated=options["violations"].map(lambda names: ", ".join(names) if len(names) else "none"))
    data = data[["option", "method", "backbone", "acc_low", "acc_median", "acc_high", *COSTS, "cost_basis",
                 "family", "front", "status", "violated", "pareto"]]
    positive = data[cost_column][data[cost_column] > 0]
    log_scale = len(positive) == len(data) and positive.max() / positive.min() > 20
    x = alt.X(f"{cost_column}:Q", title=cost_label(cost_column),
              scale=alt.Scale(type="log") if log_scale else alt.Scale(zero=True))
    y = alt.Y("acc_median:Q")
    tooltip = [*_tooltips("option:N", "method:N", "backbone:N"), alt.Tooltip("acc_low:Q", format=".1%"),
               alt.Tooltip("acc_median:Q", format=".1%"), alt.Tooltip("acc_high:Q", format=".1%"),
               *[alt.Tooltip(f"{column}:Q", title=cost_label(column), format=".3g") for column in COSTS],
               alt.Tooltip("cost_basis:N"), alt.Tooltip("violated:N", title="breaks budgets")]
    family_colour = alt.Color("family:N", title="Family",
                              scale=alt.Scale(domain=list(FAMILY_COLOURS), range=list(FAMILY_COLOURS.values())))
    bars = alt.Chart().mark_rule(strokeWidth=2, opacity=0.6).encode(
        x=x, y=alt.Y("acc_low:Q", title="Predicted test accuracy", axis=alt.Axis(format="%")),
        y2=alt.Y2("acc_high:Q"), color=family_colour)
    points = alt.Chart().mark_point(size=110, filled=True).encode(
        x=x, y=y, color=family_colour,
        shape=alt.Shape("status:N", title="Budgets",
                        scale=alt.Scale(domain=["within budgets", "breaks a budget"], range=["circle", "cross"])),
        opacity=alt.Opacity("front:N", title="", scale=alt.Scale(domain=["Pareto front", "dominated"],
                                                                range=[1.0, 0.35])),
        tooltip=tooltip)
    front = alt.Chart().transform_filter(alt.FieldEqualPredicate(field="pareto", equal=True)).mark_line(
        color="black", strokeWidth=1.5, interpolate="step-after").encode(x=x, y=y, order=alt.Order(f"{cost_column}:Q"))
    layers = [bars, front, points]
    if recommended is not None:
        chosen = alt.Chart().transform_filter(alt.FieldEqualPredicate(field="option", equal=recommended))
        layers.append(chosen.mark_point(size=420, color="black", strokeWidth=2).encode(x=x, y=y))
        layers.append(chosen.mark_text(dy=-16, fontWeight="bold").encode(x=x, y=y, text=alt.TextValue("recommended")))
    if budget is not None:
        layers += _vertical_rule(budget, f"budget {budget:g}", "red", [6, 3])
    front_of = "" if cost_column == "total_usd" else " of accuracy vs money"
    return alt.layer(*layers, data=data).properties(
        title=f"Accuracy vs {COSTS[cost_column][0].lower()} (Pareto front{front_of} in black)", width=520, height=320)


def cost_breakdown_frame(options: pd.DataFrame, budgets: dict[str, float] | None = None) -> pd.DataFrame:
    """Long table (option, measure, component, value, budget) of every option's costs: time, energy, CO₂,
    money split into compute and labour, and human hours."""
    budgets = budgets or {}
    by_column = {BUDGET_COLUMNS[name]: value for name, value in budgets.items() if name in BUDGET_COLUMNS}
    rows = []
    for option in options.itertuples(index=False):
        parts = [("time_h", "compute", option.time_h), ("energy_kwh", "energy", option.energy_kwh),
                 ("co2_kg", "CO₂", option.co2_kg), ("total_usd", "compute", option.compute_usd),
                 ("total_usd", "labour", option.total_usd - option.compute_usd),
                 ("human_hours", "labour", option.human_hours)]
        for column, component, value in parts:
            rows.append({"option": option.option, "measure": cost_label(column), "component": component,
                         "value": float(value), "budget": by_column.get(column)})
    return pd.DataFrame(rows)


def cost_breakdown(options: pd.DataFrame, budgets: dict[str, float] | None = None) -> alt.Chart:
    """One small bar chart per cost measure (own scale each), money stacked into compute and labour."""
    data = cost_breakdown_frame(options, budgets)
    bars = alt.Chart().mark_bar().encode(
        x=alt.X("sum(value):Q", title=None), y=alt.Y("option:N", title=None, axis=alt.Axis(labelLimit=260)),
        color=alt.Color("component:N", title="Component"),
        tooltip=[*_tooltips("option:N", "component:N"), alt.Tooltip("value:Q", format=".3g")])
    rule = alt.Chart().mark_rule(color="red", strokeDash=[6, 3], strokeWidth=2).encode(x=alt.X("mean(budget):Q"))
    return alt.layer(bars, rule, data=data).properties(width=240, height=alt.Step(18)).facet(
        facet=alt.Facet("measure:N", title=None, sort=[cost_label(c) for c in
                                                        ("total_usd", "time_h", "energy_kwh", "co2_kg",
                                                         "human_hours")]),
        columns=2).resolve_scale(x="independent").properties(title="Cost breakdown (budget in red)")


def evidence_accuracy_by_k(runs: pd.DataFrame) -> alt.Chart:
    """Measured accuracy against k per dataset: seed mean as a line, each run as a dot."""
    data = runs[["dataset", "backbone", "method", "images_per_class", "accuracy", "seed"]]
    x = alt.X("images_per_class:Q", scale=alt.Scale(type="log"), title="Images per class (k)")
    y = alt.Y("accuracy:Q", axis=alt.Axis(format="%"), title="Test accuracy")
    colour = alt.Color("method:N", title="Method")
    dots = alt.Chart().mark_circle(opacity=0.35, size=25).encode(x=x, y=y, color=colour,
                                                                  tooltip=_tooltips(*data.columns))
    lines = alt.Chart().mark_line().encode(x=x, y=alt.Y("mean(accuracy):Q"), color=colour,
                                           strokeDash=alt.StrokeDash("backbone:N", title="Backbone"))
    return alt.layer(dots, lines, data=data).properties(width=260, height=200).facet(
        facet=alt.Facet("dataset:N", title=None), columns=3).properties(title="Measured accuracy by k")


def evidence_accuracy_vs_time(runs: pd.DataFrame) -> alt.Chart:
    """Every run's accuracy against its wall time: what extra accuracy costs in the evidence."""
    data = runs[["dataset", "backbone", "method", "images_per_class", "accuracy", "total_s", "energy_j"]]
    data = data[data["total_s"] > 0]
    return alt.Chart(data).mark_point(filled=True, opacity=0.6).encode(
        x=alt.X("total_s:Q", scale=alt.Scale(type="log"), title="Wall time per run (s)"),
        y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), title="Test accuracy"),
        color=alt.Color("method:N", title="Method"), shape=alt.Shape("dataset:N", title="Dataset"),
        tooltip=_tooltips(*data.columns)).properties(title="Accuracy vs wall time, every run", width=520, height=300)


_fonts_registered = False


def to_png(chart: alt.TopLevelMixin, scale: float = 1.5) -> bytes:
    """PNG of a chart for the PDF reports, rendered offline with DejaVu so CO₂ shows."""
    global _fonts_registered
    import vl_convert

    if not _fonts_registered and FONT_DIR.is_dir():
        vl_convert.register_font_directory(str(FONT_DIR))
        _fonts_registered = True
    spec = chart.configure(font="DejaVu Sans").to_dict()
    return vl_convert.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=scale)


def warm_up_renderer() -> None:
    """Start vl-convert's JavaScript engine (about a second on first use) before a PDF is asked for."""
    to_png(alt.Chart(alt.Data(values=[{"x": 1}])).mark_point().encode(x=alt.X("x:Q")), scale=1.0)
