"""The charts the app and the PDF reports show: plain DataFrames in, Vega-Lite specs out (PNG: ``webapp.renderer``).

Options are named as people read them (``study.labels``); titles are anchored left and short enough to fit, with
what would otherwise be an overlapping label (your k, your budget) said in the subtitle; every layer has its own
finite data, so Vega logs no warnings.

The advisor's three charts are drawn after every submit. Building them with Altair took 130-170 ms of the submit
(its layer and concat deep copies, profiled on an AVX2 EPYC), so each chart's layout (``webapp.altair_charts``:
named datasets and a few ``⟨placeholders⟩``) is built with Altair once, checked against Vega-Lite's schema and
persisted; a submit only fills in the data and the placeholders, and a cold server neither imports Altair nor
builds a layout before its first answer (half a second).
"""
from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

import pandas as pd

from recommender.advise import BUDGET_COLUMNS
from study.labels import family_label, short_option_label
from webapp.presentation import COSTS, cost_label, family, format_amount, readable

WITHIN, BEYOND = "within what the study measured", "extrapolated (beyond the measured k or class count)"
TIME_UNITS = (("s", 1 / 3600), ("min", 1 / 60), ("h", 1.0))
LAYOUT_SOURCE = Path(__file__).with_name("altair_charts.py")


@functools.cache
def layouts() -> dict:
    """The advisor charts' layouts (``webapp.altair_charts.build_layouts``): persisted by an earlier server or by
    ``python -m webapp.persisted`` (milliseconds to read), else built and persisted. Keyed by the builder's source
    and Altair's version, so a changed layout is never served stale."""
    from webapp.persisted import load_or_fit

    key = hashlib.sha256(LAYOUT_SOURCE.read_bytes() + metadata.version("altair").encode()).hexdigest()
    return load_or_fit("chart-layouts", key, _build_layouts)


def _build_layouts() -> dict:
    from webapp.altair_charts import build_layouts

    return build_layouts()


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


def _accuracy_rank(options: pd.DataFrame) -> dict[str, int]:
    """Each option's name and its place by predicted median accuracy (0: the most accurate): the order of the rows
    in the accuracy-and-cost and cost charts."""
    ordered = options.sort_values("acc_median", ascending=False, kind="stable")
    return {name: place for place, name in enumerate(_names(ordered))}


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
    return _spec(layouts()["learning_curves"], {"k": f"{images_per_class:,}"}, curves=data, segments=_segments(data),
                 at_k=data[data["images_per_class"] == images_per_class],
                 your_k=pd.DataFrame({"k": [images_per_class]}))


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
    data = data.assign(rank=data["name"].map(_accuracy_rank(options))).sort_values("rank")
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
    return _spec(layouts()[("accuracy_vs_cost", log_scale, budget is not None)], placeholders, **datasets)


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
def cost_breakdown(options: pd.DataFrame, budgets: dict[str, float] | None = None) -> dict:
    """One small bar chart per cost (own scale and unit each, named above it), money stacked into compute and
    labour, energy into the device and the data-centre overhead; a red rule where you set a budget. One dataset
    and one faceted spec; panels without a budget draw an invisible rule at 0, so every extent is finite."""
    frame = cost_breakdown_frame(options, budgets)
    panel = {column: cost_label(column) for column in MEASURE_ORDER}
    per = dict.fromkeys(MEASURE_ORDER, 1.0)
    for column in ("time_h", "human_hours"):
        unit, per[column] = time_unit(frame[frame["column"] == column].groupby("option")["value"].sum())
        panel[column] = f"{COSTS[column][0]} ({unit})"
    shown_per = frame["column"].map(per)
    data = frame.assign(
        panel=frame["column"].map(panel), panel_rank=frame["column"].map(MEASURE_ORDER.index),
        rank=frame["name"].map(_accuracy_rank(options)), shown=frame["value"] / shown_per,
        limit=(frame["budget"].astype(float) / shown_per).fillna(0.0), has_budget=frame["budget"].notna().astype(int),
        amount=[format_amount("energy_kwh" if c == "energy_kwh_with_pue" else c, v)
                for c, v in zip(frame["column"], frame["value"])]).sort_values("panel_rank", kind="stable")
    data = data[["panel", "panel_rank", "name", "rank", "component", "shown", "limit", "has_budget", "amount"]]
    return _spec(layouts()["cost_breakdown"], {}, costs=data)  # names only: the study's ids stay out of the chart
