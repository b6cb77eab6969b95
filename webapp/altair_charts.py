"""Everything the app draws with Altair: the advisor charts' layouts and the evidence explorer's charts.

A layout is a chart's Vega-Lite spec without its data: named datasets and a few ``⟨placeholders⟩`` in its texts,
filled in per request by ``webapp.charts``. Layouts are built (and checked against Vega-Lite's schema) once, by
``build_layouts``, and persisted: Altair's import and the build take half a second that a cold server's first
answer would otherwise wait for.
"""
from __future__ import annotations

import altair as alt
import pandas as pd

from study.labels import family_label, short_option_label
from webapp.charts import BEYOND, WITHIN

FAMILY_COLOURS = {"Feature extraction": "#1f77b4", "Fine-tuning": "#d62728"}
FAMILY_SCALE = alt.Scale(domain=list(FAMILY_COLOURS), range=list(FAMILY_COLOURS.values()))
COMPONENT_COLOURS = {"compute": "#4c78a8", "labour": "#f58518", "device": "#54a24b",
                     "data-centre overhead (PUE)": "#b7dfa9", "CO₂": "#7f7f7f"}
# Compound charts keep their own size (Vega's "fit" works for single and layered views only).
COMPOUND_AUTOSIZE = alt.AutoSizeParams(type="pad", contains="padding")


def build_layouts() -> dict:
    """Every layout of the advisor's charts, by key: ``"learning_curves"``, ``"cost_breakdown"`` and
    ``("accuracy_vs_cost", log_scale, with_budget)``."""
    return {"learning_curves": learning_curves_layout(), "cost_breakdown": cost_breakdown_layout(),
            **{("accuracy_vs_cost", log_scale, with_budget): accuracy_vs_cost_layout(log_scale, with_budget)
               for log_scale in (False, True) for with_budget in (False, True)}}


def title(text: str, *subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=list(subtitle) or alt.Undefined, anchor="start", fontSize=14,
                           subtitleColor="#444", subtitleFontSize=11)


def learning_curves_layout() -> dict:
    """``charts.learning_curves``: datasets ``curves``, ``segments``, ``at_k``, ``your_k``; placeholder ``k``."""
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
        title=title("Predicted accuracy by images per class",
                     "Grey dotted line: your k = ⟨k⟩. Shaded: each option's 80% interval.",
                     "Dashed: extrapolated outside what the study measured (k, or without a probe the class count)."),
        width=620, height=300).to_dict()


def accuracy_vs_cost_layout(log_scale: bool, with_budget: bool) -> dict:
    """``charts.accuracy_vs_cost``: datasets ``options`` (and ``budget``); placeholders ``chosen`` (a JSON string),
    ``cost``, ``cost_lower``, ``axis_title`` (and ``budget``)."""
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
        autosize=COMPOUND_AUTOSIZE, title=title("Accuracy and ⟨cost_lower⟩ per option", *subtitle)).to_dict()


def cost_breakdown_layout() -> dict:
    """``charts.cost_breakdown``: dataset ``costs``, ranked by its ``rank`` and ``panel_rank`` columns."""
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
        title=title("What each option costs", "Red dashed line: your budget, where you set one.")).to_dict()


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
        facet=alt.Facet("dataset:N", title=None), columns=3).properties(title=title("Measured accuracy by k"))


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
        title=title("Accuracy vs wall time, every run"), width=520, height=300)
