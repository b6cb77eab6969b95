"""Charts for the app and the PDF reports: plain DataFrames in, Vega-Lite specs (advisor) or Altair charts
(evidence explorer) out, PNG via vl-convert.

Options are named as people read them (``study.labels``); titles are anchored left and short enough to fit, with
what would otherwise be an overlapping label (your k, your budget) said in the subtitle; every layer has its own
finite data, so Vega logs no warnings.

The advisor's three charts are drawn after every submit. Building them with Altair took 130-170 ms of the submit
(its layer and concat deep copies, profiled on an AVX2 EPYC), so each chart's layout is built with Altair once,
from its named datasets and a few ``⟨placeholders⟩``, checked against Vega-Lite's schema, and memoised; a submit
only fills in the data and the placeholders.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import altair as alt
import pandas as pd

from recommender.advise import BUDGET_COLUMNS
from study.labels import family_label, short_option_label
from webapp.presentation import COSTS, cost_label, family, format_amount, readable

FAMILY_COLOURS = {"Feature extraction": "#1f77b4", "Fine-tuning": "#d62728"}
FAMILY_SCALE = alt.Scale(domain=list(FAMILY_COLOURS), range=list(FAMILY_COLOURS.values()))
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
VEGALITE_VERSION = "6.4"  # the Vega-Lite that altair 6.3 writes; vl-convert must render the same
WITHIN, BEYOND = "within what the study measured", "extrapolated (beyond the measured k or class count)"
# Compound charts keep their own size (Vega's "fit" works for single and layered views only).
COMPOUND_AUTOSIZE = alt.AutoSizeParams(type="pad", contains="padding")
TIME_UNITS = (("s", 1 / 3600), ("min", 1 / 60), ("h", 1.0))


def _records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON rows (Python scalars, missing values as null), as Vega-Lite datasets hold them."""
    if frame.isna().to_numpy().any():
        frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def _filled(node, values: dict[str, str]):
    """A copy of a memoised layout with every ``⟨name⟩`` in its strings replaced by ``values[name]``."""
    if isinstance(node, dict):
        return {key: _filled(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_filled(value, values) for value in node]
    if isinstance(node, str) and "⟨" in node:
        for name, value in values.items():
            node = node.replace(f"⟨{name}⟩", value)
    return node


def _spec(layout: dict, values: dict[str, str], **datasets: pd.DataFrame) -> dict:
    """A chart's Vega-Lite spec: its layout with the placeholders and the named datasets filled in."""
    return {**_filled(layout, values), "datasets": {name: _records(frame) for name, frame in datasets.items()}}


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


def _names(frame: pd.DataFrame) -> list[str]:
    return [short_option_label(m, b) for m, b in zip(frame["method"], frame["backbone"])]


def _title(text: str, *subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=list(subtitle) or alt.Undefined, anchor="start", fontSize=14,
                           subtitleColor="#444", subtitleFontSize=11)


def time_unit(hours: pd.Series) -> tuple[str, float]:
    """The unit a person reads a set of durations in (s, min, h) and hours per unit."""
    largest = float(hours.max()) if len(hours) else 0.0
    for unit, per in TIME_UNITS:
        if largest < 90 * per or unit == "h":
            return unit, per
    return "h", 1.0


def _segments(data: pd.DataFrame) -> pd.DataFrame:
    """Each option's curve cut where it leaves the measured range: a solid part and a dashed (extrapolated)
    part, joined at the last point of the previous part."""
    parts = []
    for option, group in data.groupby("name", sort=False):
        group = group.sort_values("images_per_class")
        flags = group["extrapolated"].astype(bool).tolist()
        start = 0
        for index in range(1, len(group) + 1):
            if index == len(group) or flags[index] != flags[start]:
                rows = group.iloc[max(0, start - 1) if flags[start] else start:index]
                parts.append(rows.assign(segment=f"{option}|{start}", kind=BEYOND if flags[start] else WITHIN))
                start = index
    return pd.concat(parts, ignore_index=True) if parts else data.assign(segment="", kind=WITHIN)


def learning_curves(curves: pd.DataFrame, images_per_class: int, options: list[str] | None = None) -> dict:
    """Predicted accuracy against images per class: the 80% interval as a band and as a bar at your k, the median
    as a line (dashed where extrapolated), your k as a grey rule."""
    data = curves if options is None else curves[curves["option"].isin(options)]
    data = data.assign(name=_names(data), family=data["method"].map(family_label))
    data = data[["name", "family", "images_per_class", "acc_low", "acc_median", "acc_high", "extrapolated"]]
    return _spec(_learning_curves_layout(), {"k": f"{images_per_class:,}"}, curves=data, segments=_segments(data),
                 at_k=data[data["images_per_class"] == images_per_class],
                 your_k=pd.DataFrame({"k": [images_per_class]}))


@functools.cache
def _learning_curves_layout() -> dict:
    x = alt.X("images_per_class:Q", scale=alt.Scale(type="log"), title="Images per class (k)")
    colour = alt.Color("name:N", title="Option", legend=alt.Legend(orient="bottom", columns=1, labelLimit=400,
                                                                   symbolType="stroke", symbolOpacity=1,
                                                                   symbolStrokeWidth=3))
    tooltip = [alt.Tooltip("name:N", title="option"), alt.Tooltip("images_per_class:Q", title="k"),
               alt.Tooltip("acc_median:Q", title="median", format=".1%"),
               alt.Tooltip("acc_low:Q", title="80% low", format=".1%"),
               alt.Tooltip("acc_high:Q", title="80% high", format=".1%")]
    band = alt.Chart(alt.NamedData("curves")).mark_area(opacity=0.13).encode(
        x=x, y=alt.Y("acc_low:Q", title="Predicted test accuracy", axis=alt.Axis(format="%")),
        y2=alt.Y2("acc_high:Q"), color=colour)
    line = alt.Chart(alt.NamedData("segments")).mark_line(strokeWidth=2.5).encode(
        x=x, y=alt.Y("acc_median:Q"), color=colour, detail=alt.Detail("segment:N"),
        strokeDash=alt.StrokeDash("kind:N", title="Curve", scale=alt.Scale(domain=[WITHIN, BEYOND],
                                                                            range=[[1, 0], [6, 4]]),
                                  legend=alt.Legend(orient="bottom", columns=1, labelLimit=400, symbolType="stroke",
                                                    symbolSize=500, symbolStrokeWidth=2.5)),
        tooltip=tooltip)
    ticks = alt.Chart(alt.NamedData("at_k")).mark_point(filled=True, size=60, opacity=1).encode(
        x=x, y=alt.Y("acc_median:Q"), color=colour, tooltip=tooltip)
    your_k = alt.Chart(alt.NamedData("your_k")).mark_rule(color="#555", strokeDash=[2, 3], strokeWidth=1.5).encode(
        x=alt.X("k:Q"))
    return alt.layer(band, your_k, line, ticks).properties(
        title=_title("Predicted accuracy by images per class",
                     "Grey dotted line: your k = ⟨k⟩. Shaded: each option's 80% interval.",
                     "Dashed: extrapolated outside what the study measured (k, or without a probe the class count)."),
        width=620, height=300).to_dict()


def _cost_values(options: pd.DataFrame, column: str) -> tuple[pd.Series, str]:
    """The column in the unit its axis shows, and the axis title."""
    if column in ("time_h", "human_hours"):
        unit, per = time_unit(options[column])
        return options[column] / per, f"{COSTS[column][0]} ({unit})"
    return options[column], cost_label(column)


def accuracy_vs_cost(options: pd.DataFrame, cost_column: str = "total_usd", budget: float | None = None,
                     recommended: str | None = None) -> dict:
    """A dot plot, one row per option (so options with equal costs stay apart): the predicted accuracy with its
    80% interval, and the chosen cost with your budget as a red rule. Faded options are off the Pareto front of
    accuracy vs money; a cross marks an option that breaks a budget; the recommended option is in bold."""
    values, axis_title = _cost_values(options, cost_column)
    data = options.assign(
        name=_names(options), family=options["method"].map(family_label), cost=values,
        cost_text=[format_amount(cost_column, v) for v in options[cost_column]],
        front=options["pareto"].map({True: "on the Pareto front", False: "dominated"}),
        status=options["feasible"].map({True: "within budgets", False: "breaks a budget"}),
        broken=options["violations"].map(lambda names: ", ".join(names) if len(names) else "none"),
        basis=options["cost_basis"].map(readable))
    chosen = data.loc[data["option"] == recommended, "name"]
    data = data.sort_values("acc_median", ascending=False, kind="stable").assign(rank=range(len(data)))
    data = data[["name", "rank", "family", "acc_low", "acc_median", "acc_high", "cost", "cost_text", "front",
                 "status", "broken", "basis"]]  # names only: the study's ids stay out of the chart
    positive = data["cost"][data["cost"] > 0]
    log_scale = bool(len(positive) == len(data) and positive.max() / positive.min() > 20)
    datasets = {"options": data}
    placeholders = {"cost": COSTS[cost_column][0], "cost_lower": _lower(COSTS[cost_column][0]),
                    "axis_title": axis_title, "chosen": json.dumps(chosen.iloc[0] if len(chosen) else None)}
    if budget is not None:
        shown_budget = budget / time_unit(options[cost_column])[1] if cost_column in ("time_h", "human_hours") \
            else budget
        datasets["budget"] = pd.DataFrame({"budget": [shown_budget]})
        placeholders["budget"] = format_amount(cost_column, budget)
    return _spec(_accuracy_vs_cost_layout(log_scale, budget is not None), placeholders, **datasets)


@functools.cache
def _accuracy_vs_cost_layout(log_scale: bool, with_budget: bool) -> dict:
    y = alt.Y("name:N", sort=alt.EncodingSortField("rank", op="min"), title=None,
              axis=alt.Axis(labelLimit=260, labelFontWeight=alt.expr("datum.value == ⟨chosen⟩ ? 'bold' : 'normal'")))
    colour = alt.Color("family:N", title="Family", scale=FAMILY_SCALE, legend=alt.Legend(orient="bottom"))
    opacity = alt.Opacity("front:O", scale=alt.Scale(domain=["on the Pareto front", "dominated"], range=[1.0, 0.35]),
                          legend=None)
    tooltip = [alt.Tooltip("name:N", title="option"), alt.Tooltip("acc_median:Q", title="median", format=".1%"),
               alt.Tooltip("acc_low:Q", title="80% low", format=".1%"),
               alt.Tooltip("acc_high:Q", title="80% high", format=".1%"),
               alt.Tooltip("cost_text:N", title="⟨cost⟩"), alt.Tooltip("front:N", title="Pareto"),
               alt.Tooltip("broken:N", title="budgets broken"), alt.Tooltip("basis:N", title="cost basis")]
    base = alt.Chart()  # the data once, at the top
    accuracy = alt.layer(
        base.mark_rule(strokeWidth=3).encode(x=alt.X("acc_low:Q", title="Predicted accuracy (80% interval)",
                                                     scale=alt.Scale(domain=[0, 1]),
                                                     axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1])),
                                             x2=alt.X2("acc_high:Q"), y=y, color=colour, opacity=opacity,
                                             tooltip=tooltip),
        base.mark_point(filled=True, size=90).encode(x="acc_median:Q", y=y, color=colour, opacity=opacity,
                                                     tooltip=tooltip),
    ).properties(width=300, height=alt.Step(30))
    x_cost = alt.X("cost:Q", title="⟨axis_title⟩", scale=alt.Scale(type="log") if log_scale else alt.Scale(zero=True))
    cost_layers = [base.mark_point(filled=True, size=90).encode(
        x=x_cost, y=alt.Y("name:N", sort=alt.EncodingSortField("rank", op="min"), axis=None), color=colour,
        opacity=opacity, tooltip=tooltip,
        shape=alt.Shape("status:N", legend=None,
                        scale=alt.Scale(domain=["within budgets", "breaks a budget"], range=["circle", "cross"])))]
    subtitle = ["Bold: recommended. Faded: off the Pareto front of accuracy vs money.",
                "A cross: the option breaks one of your budgets."]
    if with_budget:
        cost_layers.append(alt.Chart(alt.NamedData("budget")).mark_rule(
            color="red", strokeDash=[6, 3], strokeWidth=2).encode(x=alt.X("budget:Q")))
        subtitle.append("Red line: your budget, ⟨budget⟩.")
    cost = alt.layer(*cost_layers).properties(width=280, height=alt.Step(30))
    return alt.hconcat(accuracy, cost, spacing=14, data=alt.NamedData("options")).properties(
        autosize=COMPOUND_AUTOSIZE, title=_title("Accuracy and ⟨cost_lower⟩ per option", *subtitle)).to_dict()


def _lower(label: str) -> str:
    """'Money' -> 'money', but 'CO₂' stays."""
    return label if label[1:2].isupper() else label[0].lower() + label[1:]


def cost_breakdown_frame(options: pd.DataFrame, budgets: dict[str, float] | None = None) -> pd.DataFrame:
    """Long table (option, name, measure, column, component, value, budget) of every option's costs: money split
    into compute and labour, compute time, energy split into the device and the data-centre overhead (PUE), CO₂
    and human time. Values in the column's own unit (hours, kWh, kg, USD)."""
    budgets = budgets or {}
    by_column = {BUDGET_COLUMNS[name]: value for name, value in budgets.items() if name in BUDGET_COLUMNS}
    rows = []
    for option, name in zip(options.itertuples(index=False), _names(options)):
        parts = [("total_usd", "compute", option.compute_usd), ("total_usd", "labour", option.human_usd),
                 ("time_h", "compute", option.time_h),
                 ("energy_kwh_with_pue", "device", option.energy_kwh),
                 ("energy_kwh_with_pue", "data-centre overhead (PUE)", option.energy_kwh_with_pue - option.energy_kwh),
                 ("co2_kg", "CO₂", option.co2_kg), ("human_hours", "labour", option.human_hours)]
        for column, component, value in parts:
            rows.append({"option": option.option, "name": name, "measure": COSTS[column][0], "column": column,
                         "component": component, "value": float(value), "budget": by_column.get(column)})
    return pd.DataFrame(rows)


MEASURE_ORDER = ("total_usd", "time_h", "energy_kwh_with_pue", "co2_kg", "human_hours")
COMPONENT_COLOURS = {"compute": "#4c78a8", "labour": "#f58518", "device": "#54a24b",
                     "data-centre overhead (PUE)": "#b7dfa9", "CO₂": "#7f7f7f"}


def cost_breakdown(options: pd.DataFrame, budgets: dict[str, float] | None = None) -> dict:
    """One small bar chart per cost (own scale and unit each, named above it), money stacked into compute and
    labour, energy into the device and the data-centre overhead; a red rule where you set a budget. One dataset
    and one faceted spec; panels without a budget draw an invisible rule at 0, so every extent is finite."""
    frame = cost_breakdown_frame(options, budgets)
    rank = {name: position for position, name in enumerate(_names(options.sort_values("acc_median", ascending=False,
                                                                                      kind="stable")))}
    panel = {column: cost_label(column) for column in MEASURE_ORDER}
    per = dict.fromkeys(MEASURE_ORDER, 1.0)
    for column in ("time_h", "human_hours"):
        unit, per[column] = time_unit(frame[frame["column"] == column].groupby("option")["value"].sum())
        panel[column] = f"{COSTS[column][0]} ({unit})"
    shown_per = frame["column"].map(per)
    data = frame.assign(
        panel=frame["column"].map(panel), panel_rank=frame["column"].map(MEASURE_ORDER.index),
        rank=frame["name"].map(rank), shown=frame["value"] / shown_per,
        limit=(frame["budget"].astype(float) / shown_per).fillna(0.0), has_budget=frame["budget"].notna().astype(int),
        amount=[format_amount("energy_kwh" if c == "energy_kwh_with_pue" else c, v)
                for c, v in zip(frame["column"], frame["value"])]).sort_values("panel_rank", kind="stable")
    data = data[["panel", "panel_rank", "name", "rank", "component", "shown", "limit", "has_budget", "amount"]]
    return _spec(_cost_breakdown_layout(), {}, costs=data)  # names only: the study's ids stay out of the chart


@functools.cache
def _cost_breakdown_layout() -> dict:
    colour = alt.Color("component:N", title="Component", legend=alt.Legend(orient="bottom"),
                       scale=alt.Scale(domain=list(COMPONENT_COLOURS), range=list(COMPONENT_COLOURS.values())))
    x_axis = alt.Axis(tickCount=4, format=",~r", labelOverlap="greedy")
    bars = alt.Chart().mark_bar().encode(
        x=alt.X("sum(shown):Q", title=None, axis=x_axis),
        y=alt.Y("name:N", sort=alt.EncodingSortField("rank", op="min"), title=None, axis=alt.Axis(labelLimit=230)),
        color=colour, tooltip=[alt.Tooltip("name:N", title="option"), alt.Tooltip("component:N"),
                               alt.Tooltip("amount:N", title="amount")])
    rule = alt.Chart().transform_aggregate(limit="max(limit)", has_budget="max(has_budget)").mark_rule(
        color="red", strokeDash=[6, 3], strokeWidth=2).encode(
        x=alt.X("limit:Q"), opacity=alt.condition("datum.has_budget > 0", alt.value(1.0), alt.value(0.0)))
    return alt.layer(bars, rule, data=alt.NamedData("costs")).properties(width=230, height=alt.Step(18)).facet(
        facet=alt.Facet("panel:N", title=None, sort=alt.EncodingSortField("panel_rank", op="min"),
                        header=alt.Header(labelFontWeight="bold", labelFontSize=12)),
        columns=2, spacing=alt.RowColnumber(row=16, column=28)).resolve_scale(x="independent").properties(
        title=_title("What each option costs", "Red dashed line: your budget, where you set one.")).to_dict()


def evidence_accuracy_by_k(runs: pd.DataFrame) -> alt.Chart:
    """Measured accuracy against k per dataset: seed mean as a line, each run as a dot."""
    data = runs[["dataset", "backbone", "method", "images_per_class", "accuracy", "seed"]].assign(
        method_name=[family_label(m) + ", " + short_option_label(m, b).split(" · ")[-1]
                     for m, b in zip(runs["method"], runs["backbone"])],
        backbone_name=[short_option_label(m, b).split(" · ")[1] for m, b in zip(runs["method"], runs["backbone"])])
    data = data.drop(columns=["method", "backbone"])
    x = alt.X("images_per_class:Q", scale=alt.Scale(type="log"), title="Images per class (k)")
    y = alt.Y("accuracy:Q", axis=alt.Axis(format="%"), title="Test accuracy")
    colour = alt.Color("method_name:N", title="Method", legend=alt.Legend(orient="bottom", labelLimit=300))
    tooltip = [alt.Tooltip("dataset:N"), alt.Tooltip("method_name:N", title="method"),
               alt.Tooltip("backbone_name:N", title="backbone"), alt.Tooltip("images_per_class:Q", title="k"),
               alt.Tooltip("accuracy:Q", format=".1%"), alt.Tooltip("seed:Q")]
    dots = alt.Chart().mark_circle(opacity=0.35, size=25).encode(x=x, y=y, color=colour, tooltip=tooltip)
    lines = alt.Chart().mark_line().encode(x=x, y=alt.Y("mean(accuracy):Q"), color=colour,
                                           strokeDash=alt.StrokeDash("backbone_name:N", title="Backbone",
                                                                     legend=alt.Legend(orient="bottom")))
    return alt.layer(dots, lines, data=data).properties(width=260, height=200).facet(
        facet=alt.Facet("dataset:N", title=None), columns=3).properties(title=_title("Measured accuracy by k"))


def evidence_accuracy_vs_time(runs: pd.DataFrame) -> alt.Chart:
    """Every run's accuracy against its wall time: what extra accuracy costs in the evidence."""
    data = runs[["dataset", "method", "images_per_class", "accuracy", "total_s"]]
    data = data[data["total_s"] > 0].assign(method_name=lambda d: d["method"].map(
        lambda m: family_label(m) + ", " + short_option_label(m, "").split(" · ")[-1])).drop(columns="method")
    return alt.Chart(data).mark_point(filled=True, opacity=0.6).encode(
        x=alt.X("total_s:Q", scale=alt.Scale(type="log"), title="Wall time per run (s)"),
        y=alt.Y("accuracy:Q", axis=alt.Axis(format="%"), title="Test accuracy"),
        color=alt.Color("method_name:N", title="Method", legend=alt.Legend(orient="bottom")),
        # one column on the right: three columns beside the method legend at the bottom ran off the chart
        shape=alt.Shape("dataset:N", title="Dataset", legend=alt.Legend(orient="right", labelLimit=300)),
        tooltip=[alt.Tooltip("dataset:N"), alt.Tooltip("method_name:N", title="method"),
                 alt.Tooltip("images_per_class:Q", title="k"), alt.Tooltip("accuracy:Q", format=".1%"),
                 alt.Tooltip("total_s:Q", title="seconds", format=".3g")]).properties(
        title=_title("Accuracy vs wall time, every run"), width=520, height=300)


_fonts_registered = False


def to_png(spec: dict, scale: float = 1.5) -> bytes:
    """PNG of a chart's Vega-Lite spec for the PDF reports, rendered offline with DejaVu so CO₂ shows."""
    global _fonts_registered
    import vl_convert

    if not _fonts_registered and FONT_DIR.is_dir():
        vl_convert.register_font_directory(str(FONT_DIR))
        _fonts_registered = True
    spec = {**spec, "config": {**spec.get("config", {}), "font": "DejaVu Sans"}}
    return vl_convert.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=scale)


def warm_up_renderer() -> None:
    """Start vl-convert's JavaScript engine (about a second on first use) before a PDF is asked for."""
    to_png(alt.Chart(alt.Data(values=[{"x": 1}])).mark_point().encode(x=alt.X("x:Q")).to_dict(), scale=1.0)
