"""How answers and advice are worded and tabulated for people; shared by the app pages and the PDFs.

People never read the study's ids (``fe_fne · mobilenetv2_100``): options are named with ``study.labels`` (the
advice's ``label`` column); the id survives only in the CSV's "Option id" column. One unit system, stated once in
each heading: money in USD, energy in kWh (device only, and with the data centre's PUE, both labelled), CO₂ in kg
(as the budget is asked), times for humans (s, min, h).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, fields

import pandas as pd

from recommender.carbon import REGIONS
from recommender.hardware import HARDWARE
from study.labels import (BACKBONE_NAMES, METHOD_NAMES, backbone_label, family_label, format_duration, head_label,
                          option_label, probed_option_label)
from study.spec import is_finetuning

# What each cost column is: column -> (label, unit). Times carry no unit here: they are written for humans.
COSTS = {
    "total_usd": ("Money", "USD"),
    "compute_usd": ("Compute money", "USD"),
    "time_h": ("Compute time", None),
    "energy_kwh": ("Energy, device only", "kWh"),
    "energy_kwh_with_pue": ("Energy with PUE", "kWh"),
    "co2_kg": ("CO₂", "kg"),
    "human_hours": ("Human time", None),
}
MONEY_COLUMNS = ("total_usd", "compute_usd", "human_usd")
TIME_COLUMNS = ("time_h", "human_hours")
QUESTION_LABELS = {
    "n_classes": "Classes",
    "images_per_class": "Labelled images per class",
    "domain": "Image domain",
    "image_size_px": "Typical image size (shorter side, px)",
    "working_resolution_px": "Working resolution (px)",
    "colour": "Colour images",
    "hardware": "Hardware",
    "region": "Electricity grid region",
    "budget_money_usd": "Money budget (USD, compute + labour)",
    "budget_energy_kwh": "Energy budget (kWh, with PUE)",
    "budget_co2_kg": "CO₂ budget (kg)",
    "budget_wall_time_h": "Compute wall-time budget (h)",
    "budget_human_hours": "Human-time budget (h)",
    "accuracy_weight": "Accuracy vs cost weight (1 = accuracy only)",
    "rank_by": "Rank options by",
    "probe": "Measured probe on your images (learning curves)",
}
RANK_BY_LABELS = {"expected": "expected accuracy", "cautious": "accuracy reached 3 times in 4"}
BUDGET_NAMES = {"budget_money_usd": "money", "budget_energy_kwh": "energy", "budget_co2_kg": "CO₂",
                "budget_wall_time_h": "compute wall time", "budget_human_hours": "human time"}
ASSUMPTION_LABELS = {
    "pue": "Power usage effectiveness (PUE)",
    "price_usd_per_h": "Hardware price (USD per hour)",
    "grid_gco2_per_kwh": "Grid carbon intensity (gCO₂ per kWh)",
    "hourly_rate_usd": "Engineer hourly rate (USD)",
    "setup_hours_fe": "Set-up hours, feature extraction",
    "setup_hours_ft": "Set-up hours, fine-tuning",
    "hours_per_trial": "Human hours per fine-tuning trial",
    "ft_trials": "Fine-tuning trials",
}
ENERGY_SOURCES = {
    "estimated": "estimated, not measured: CPU power model of 10 W per busy thread x threads x wall time",
    "nvml": "measured: NVIDIA NVML total-energy counter of the GPU",
}
_ID = re.compile(r"\b(fe_linear|fe_fne|ft_full|ft_partial)\s*[·.]\s*([a-z][a-z0-9_]*)\b")
_METHOD_ID = re.compile(r"\b(fe_linear|fe_fne|ft_full|ft_partial)\b")
_BACKBONE_ID = re.compile(r"\b(" + "|".join(sorted(BACKBONE_NAMES, key=len, reverse=True)) + r")(_random_init)?\b")
_SCIENTIFIC = re.compile(r"\b\d+(?:\.\d+)?e[-+]\d+\b")
_FILE_REFERENCE = re.compile(r"\s*\((?:see )?(?:recommender|study)/[^)]*\)|,?\s*(?:see )?(?:recommender|study)/[\w/.]+"
                             r"|\s*\([\w-]+\.md\)|\s*[\w-]+\.md\b")


def family(method: str) -> str:
    return "fine-tuning" if is_finetuning(method) else "feature extraction"


def method_label(method: str) -> str:
    """e.g. 'Feature extraction, Full-Network Embedding + linear SVM'."""
    return f"{family_label(method)}, {head_label(method)}" if method in METHOD_NAMES else str(method)


def grid_label(grid: str, evidence: set[str]) -> str:
    """A grid as the evidence explorer names it: whether the recommender learns from it or it is a check."""
    return f"{grid} · {'evidence' if grid in evidence else 'check, not evidence'}"


def evidence_first(grids, evidence: set[str]) -> tuple[list[str], list[str]]:
    """The grids present, evidence first, and those to show by default: the evidence grids (a check's runs use
    another resolution or recipe, and would bend the evidence's curves), or none (every run) where there is none."""
    present = sorted(set(grids), key=lambda grid: (grid not in evidence, grid))
    return present, [grid for grid in present if grid in evidence]


def readable(text) -> str:
    """Any stray study id in a text (from guidelines, bases, sources) replaced by the names people read, numbers in
    plain decimals (not 2.07e-06), file and module references dropped."""
    text = _ID.sub(lambda m: option_label(m.group(1), m.group(2)), str(text))
    text = _METHOD_ID.sub(lambda m: method_label(m.group(1)).lower().replace("feature extraction, ", "extraction "),
                          text)
    text = _BACKBONE_ID.sub(lambda m: backbone_label(m.group(0)), text)
    text = _SCIENTIFIC.sub(lambda m: plain(float(m.group(0)), 3), text)
    return _FILE_REFERENCE.sub("", text)


def cost_label(column: str) -> str:
    label, unit = COSTS[column]
    return f"{label} ({unit})" if unit else label


def format_number(value) -> str:
    """Three significant digits, thousands separated; empty for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != 0 and abs(value) < 0.001:
        return plain(value)
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def plain(value: float, digits: int = 2) -> str:
    """A number in plain decimals (never 1e-06) with ``digits`` significant digits: 0.0000056, 0.25, 12, 1,234."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if abs(value) < 1e-9:
        return "< 0.000000001"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def duration(hours: float) -> str:
    """A time for humans (s, min, h, days); never '0.0 s'."""
    if hours is None or (isinstance(hours, float) and math.isnan(hours)):
        return ""
    if 0 < hours * 3600 < 0.05:
        return "< 0.1 s"
    return format_duration(hours)


def format_money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${plain(value)}"


def format_amount(column: str, value: float) -> str:
    """A cost with its unit: durations for humans, kWh and kg as asked, dollars and cents."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in TIME_COLUMNS:
        return duration(value)
    if column in MONEY_COLUMNS:
        return format_money(value)
    if column in ("energy_kwh", "energy_kwh_with_pue"):
        return f"{plain(value)} kWh"
    if column == "co2_kg":
        return f"{plain(value)} kg"
    return format_number(value)


def format_interval(low: float, median: float, high: float) -> str:
    return f"{median:.1%} (80% interval {low:.1%} to {high:.1%})"


def short_interval(low: float, median: float, high: float) -> str:
    return f"{median:.1%} ({low:.0%}–{high:.0%})"


def pue_reason(hardware_key: str, pue: float, assumptions=None) -> str:
    """Why this PUE: the user's, or the default for this kind of machine."""
    if assumptions is not None and assumptions.pue is not None:
        return f"PUE {pue:.2f} (your assumption)"
    where = "your own machine, no data-centre overhead" if HARDWARE[hardware_key].personal else \
        "a data centre, the industry average"
    return f"PUE {pue:.2f} ({where})"


def resolution_sentence(row) -> str:
    """Why the recommended option runs at its resolution, and where its accuracy and costs come from."""
    return (f"Working resolution {row['resolution']} px: {row['resolution_reason']}. Accuracy was measured at "
            f"{row['accuracy_resolution']}; costs are {readable(row['cost_basis'])}.")


def regret_sentence(summary: dict | None, policies: dict[str, str]) -> str:
    """What measuring more did to the decisions in the stored leave-one-dataset-out evaluation: each policy's mean
    regret, in the order given (``policies``: policy -> how the sentence names it; '' before an evaluation with
    them all)."""
    regret = (summary or {}).get("mean_regret_points", {})
    if not policies or not set(policies) <= set(regret):
        return ""
    first, *rest = policies
    lost = [f"{regret[first]:.1f} points of accuracy against hindsight on average {policies[first]}",
            *(f"{regret[policy]:.1f} {policies[policy]}" for policy in rest)]
    listed = lost[0] if len(lost) == 1 else ", ".join(lost[:-1]) + ", and " + lost[-1]
    return f" On the study's datasets, each left out of the fit in turn, decisions lost {listed}."


def probe_would_narrow_sentence(narrow: dict, how_to_probe: str, how_to_pilot: str,
                                evaluation: dict | None = None) -> str:
    """How wide the interval is now, and how narrow a probe, or its fine-tuning pilot, would make it; with a probe,
    whether extraction and fine-tuning are still undecided and (``evaluation``: the stored evaluation's summary)
    what the pilot did to decisions on the study's datasets."""
    from study.probe import PILOT_DURATION

    pilot = narrow.get("width_with_pilot_fine_tuning_points")
    pilot_cost = f"another {PILOT_DURATION}"
    if narrow.get("probed"):
        if not narrow.get("families_overlap"):
            return (f"Fine-tuning is predicted from your extraction probe: its 80% interval is about "
                    f"{narrow['width_now_points']:.0f} points wide. The probe's fine-tuning pilot ({pilot_cost}; "
                    f"{how_to_pilot}) would narrow it to about {pilot:.0f} points.")
        (fe_low, fe_high), (ft_low, ft_high) = (narrow["best_extraction_interval_pct"],
                                                narrow["best_fine_tuning_interval_pct"])
        return (f"Extraction and fine-tuning are not yet told apart here: the best extraction option's 80% interval "
                f"is {fe_low:.0f}–{fe_high:.0f}%, the best fine-tuning option's {ft_low:.0f}–{ft_high:.0f}%. How "
                f"much your images gain from fine-tuning is what an extraction probe cannot see. The probe's "
                f"fine-tuning pilot ({pilot_cost}; {how_to_pilot}) measures it, and would narrow fine-tuning's 80% "
                f"interval from about {narrow['width_now_points']:.0f} to about {pilot:.0f} points."
                + regret_sentence(evaluation, {"recommender": "with the extraction probe alone",
                                               "recommender_with_pilot": "with its pilot"}))
    fine_tuning = narrow.get("width_with_probe_fine_tuning_points")
    return (f"No probe of your images yet: the 80% interval is about {narrow['width_now_points']:.0f} points wide. "
            f"A probe (about a minute, {how_to_probe}) would narrow it to about "
            f"{narrow['width_with_probe_extraction_points']:.0f} points for extraction"
            + (f" and {fine_tuning:.0f} for fine-tuning" if fine_tuning is not None else "")
            + (f"; with its fine-tuning pilot ({pilot_cost}; {how_to_pilot}), about {pilot:.0f} for fine-tuning."
               if pilot is not None else ".")
            + regret_sentence(evaluation, {"recommender_without_probe": "from the description alone",
                                           "best_fixed": "always taking the one option best on average",
                                           "recommender": "with the probe"}))


def describe_answer(name: str, value) -> str:
    if value is None:
        return "automatic" if name == "working_resolution_px" else "not set"
    if name == "hardware":
        return HARDWARE[value].name
    if name == "region":
        return f"{REGIONS[value].name} ({REGIONS[value].grid_gco2_per_kwh:.0f} gCO₂/kWh)"
    if name == "colour":
        return "yes" if value else "no (greyscale)"
    if name == "probe":
        return describe_probe(value)
    if name == "rank_by":
        return RANK_BY_LABELS[value]
    if name in ("image_size_px", "working_resolution_px"):
        return f"{value} px"
    if name.startswith("budget_"):
        return {"budget_money_usd": format_money(value), "budget_energy_kwh": f"{plain(value)} kWh",
                "budget_co2_kg": f"{plain(value)} kg", "budget_wall_time_h": duration(value),
                "budget_human_hours": duration(value)}[name]
    return format_number(value)


def probe_curves_table(curves: dict) -> pd.DataFrame:
    """The probe's measured curves {(method, backbone): {k: accuracy}} for reading: one row per option (named for
    people, in the probe's order), one column per k, accuracies as % with one decimal."""
    from study.probe import PROBE_BACKBONES, PROBE_METHODS

    def order(option):
        method, backbone = option
        return (PROBE_BACKBONES.index(backbone) if backbone in PROBE_BACKBONES else len(PROBE_BACKBONES), backbone,
                PROBE_METHODS.index(method) if method in PROBE_METHODS else len(PROBE_METHODS), method)

    ks = sorted({k for by_k in curves.values() for k in by_k})
    rows = [{"Option": probed_option_label(*option), **{f"k={k}": f"{100 * by_k[k]:.1f}%" if k in by_k else ""
                                                  for k in ks}}
            for option, by_k in sorted(curves.items(), key=lambda item: order(item[0]))]
    return pd.DataFrame(rows, columns=["Option"] + [f"k={k}" for k in ks])


def describe_probe(encoded: str) -> str:
    """A questionnaire's probe (``encode_probe`` text) in one line: what was measured and the best point."""
    from recommender.questionnaire import QuestionnaireError, parse_probe

    try:
        curves = parse_probe(encoded)
    except QuestionnaireError:
        return "not a probe measurement"
    ks = sorted({k for by_k in curves.values() for k in by_k})
    (method, backbone), k, accuracy = max(((option, k, a) for option, by_k in curves.items() for k, a in by_k.items()),
                                          key=lambda point: (point[2], -point[1]))
    return (f"{len(curves)} option(s) measured at k = {', '.join(map(str, ks))} images per class; best "
            f"{accuracy:.1%} ({probed_option_label(method, backbone)} at k={k})")


def answers_table(questionnaire) -> pd.DataFrame:
    """The questionnaire as (question, answer) rows."""
    return pd.DataFrame([{"Question": QUESTION_LABELS.get(name, name), "Answer": describe_answer(name, value)}
                         for name, value in asdict(questionnaire).items()])


def budget_checks(advice) -> pd.DataFrame:
    """Per budget the user set: the recommended option's cost, the limit, whether it passes and, if not, what
    breaks it."""
    from recommender.advise import BUDGET_COLUMNS  # scikit-learn: loaded once advice exists
    row = advice.recommended_row
    verdicts = {verdict["field"]: verdict for verdict in row["verdicts"]}
    checks = []
    for name, limit in advice.questionnaire.budgets.items():
        column = BUDGET_COLUMNS[name]
        checks.append({"name": name, "budget": QUESTION_LABELS[name], "predicted": float(row[column]),
                       "limit": float(limit), "passes": name not in verdicts,
                       "component": verdicts[name]["component"] if name in verdicts else ""})
    return pd.DataFrame(checks, columns=["name", "budget", "predicted", "limit", "passes", "component"])


def budget_failures(advice) -> pd.DataFrame:
    """Every option that breaks a budget, one row per (budget, option): its cost, the limit, the component that
    breaks it and the one assumption or answer that would change it."""
    rows = []
    for option in advice.options.itertuples(index=False):
        for verdict in option.verdicts:
            rows.append({"field": verdict["field"], "budget": BUDGET_NAMES.get(verdict["field"], verdict["budget"]),
                         "option": option.option, "label": option.label, "value": float(verdict["value"]),
                         "limit": float(verdict["limit"]), "component": verdict["component"],
                         "fix_kind": verdict["fix_kind"], "fix_field": verdict["fix_field"], "fix": verdict["fix"]})
    return pd.DataFrame(rows, columns=["field", "budget", "option", "label", "value", "limit", "component",
                                       "fix_kind", "fix_field", "fix"])


def failures_table(advice) -> pd.DataFrame:
    """``budget_failures`` for reading (the PDF)."""
    from recommender.advise import BUDGET_COLUMNS
    failures = budget_failures(advice)
    return pd.DataFrame({
        "Budget": [f"{b} ({format_amount(BUDGET_COLUMNS[f], lim)})" for b, f, lim in
                   zip(failures["budget"], failures["field"], failures["limit"])],
        "Option": failures["label"],
        "Predicted": [format_amount(BUDGET_COLUMNS[f], v) for f, v in zip(failures["field"], failures["value"])],
        "What breaks it": failures["component"],
        "What would change it": failures["fix"]})


def _accuracy_cell(row) -> str:
    text = short_interval(row.acc_low, row.acc_median, row.acc_high)
    return text + " extrapolated" if getattr(row, "extrapolated", False) else text


def options_table(options: pd.DataFrame) -> pd.DataFrame:
    """Every option with its accuracy interval and costs, for reading (most accurate first); units in the
    headings."""
    ordered = options.sort_values("acc_median", ascending=False)
    return pd.DataFrame({
        "Option": ordered["label"],
        "Accuracy (80% interval)": [_accuracy_cell(r) for r in ordered.itertuples()],
        "Expected": [f"{100 * v:.1f}%" for v in ordered["acc_expected"]],
        "Reached 3 times in 4": [f"{100 * v:.1f}%" for v in ordered["acc_cautious"]],
        "Within budgets": [("no: " + ", ".join(v)) if len(v) else "yes" for v in ordered["violations"]],
        "Pareto front": ordered["pareto"].map({True: "yes", False: "no"}),
        "Money": [format_money(v) for v in ordered["total_usd"]],
        "Compute time": [duration(v) for v in ordered["time_h"]],
        "Energy, device (kWh)": [plain(v) for v in ordered["energy_kwh"]],
        "Energy with PUE (kWh)": [plain(v) for v in ordered["energy_kwh_with_pue"]],
        "CO₂ (kg)": [plain(v) for v in ordered["co2_kg"]],
        "Human time": [duration(v) for v in ordered["human_hours"]],
        "Working resolution": [f"{r} px" for r in ordered["resolution"]],
        "Cost basis": ordered["cost_basis"].map(readable),
    }).reset_index(drop=True)


def options_csv(options: pd.DataFrame) -> pd.DataFrame:
    """Every option, every figure, for a spreadsheet: human column names; the study's id kept in 'Option id'."""
    return pd.DataFrame({
        "Option": options["label"],
        "Option id": options["option"],
        "Method": options["method"].map(method_label),
        "Backbone": options["backbone"].map(backbone_label),
        "Working resolution (px)": options["resolution"],
        "Why this resolution": options["resolution_reason"],
        "Accuracy measured at": options["accuracy_resolution"],
        "Predicted accuracy, median": options["acc_median"].round(4),
        "Predicted accuracy, 80% low": options["acc_low"].round(4),
        "Predicted accuracy, 80% high": options["acc_high"].round(4),
        "Expected accuracy": options["acc_expected"].round(4),
        "Accuracy reached 3 times in 4": options["acc_cautious"].round(4),
        "Accuracy the ranking used": options["acc_ranked"].round(4),
        "Accuracy basis": options["accuracy_basis"],
        "Study datasets measuring it": options["evidence_datasets"],
        "Extrapolated outside the measured k or class count": options["extrapolated"].map({True: "yes", False: "no"}),
        "Compute time (h)": options["time_h"],
        "Energy, device only (kWh)": options["energy_kwh"],
        "PUE": options["pue"],
        "Energy with PUE (kWh)": options["energy_kwh_with_pue"],
        "CO₂ (kg)": options["co2_kg"],
        "Compute money (USD)": options["compute_usd"],
        "Human hours": options["human_hours"],
        "Labour money (USD)": options["human_usd"],
        "Total money (USD)": options["total_usd"],
        "Trials": options["trials"],
        "Cost basis": options["cost_basis"].map(readable),
        "Energy basis": options["energy_basis"].map(readable),
        "Within budgets": options["feasible"].map({True: "yes", False: "no"}),
        "Budgets broken": [", ".join(v) for v in options["violations"]],
        "What breaks them": ["; ".join(f"{d['budget']}: {d['component']} (change {d['fix']})" for d in v)
                             for v in options["verdicts"]],
        "On the Pareto front (accuracy vs money)": options["pareto"].map({True: "yes", False: "no"}),
    })


def probe_comparison_table(without: pd.DataFrame, with_probe: pd.DataFrame) -> pd.DataFrame:
    """Each option's predicted accuracy from the questionnaire alone and anchored on the probe."""
    anchored = with_probe.set_index("option")
    return pd.DataFrame({
        "Option": without["label"],
        "Questionnaire only": [short_interval(r.acc_low, r.acc_median, r.acc_high) for r in without.itertuples()],
        "With your probe": [short_interval(*anchored.loc[o, ["acc_low", "acc_median", "acc_high"]])
                            for o in without["option"]]})


def numbers_tables(numbers: dict) -> list[pd.DataFrame]:
    """A guideline's numbers for reading: the lone numbers as (number, value) rows (a nested one named 'group /
    name'), then the records, groups of plain numbers at the same depth (one per dataset, or per band of k), as a
    table: a row per record (named by the groups above it) and a column per field, blank where a record lacks it.
    Squeezed into one cell per record, a dataset's six figures were cut off on the page."""
    leaves = []  # (path, value, whether a record)

    def walk(path: tuple, value) -> None:
        if isinstance(value, dict) and value and not any(isinstance(inner, (dict, list, tuple))
                                                         for inner in value.values()):
            leaves.append((path, value, True))
        elif isinstance(value, dict) and any(isinstance(inner, dict) for inner in value.values()):
            for key, inner in value.items():
                walk(path + (key,), inner)
        else:
            leaves.append((path, value, False))

    for key, value in numbers.items():
        walk((key,), value)
    depths = pd.Series([len(path) for path, _, record in leaves if record], dtype=int).value_counts()
    tabled = {depth for depth, count in depths.items() if count > 1}

    def name(path: tuple) -> str:
        return readable(" / ".join(map(str, path)))

    lone = pd.DataFrame([{"Number": name(path), "Value": readable(_compact(value))}
                         for path, value, record in leaves if not (record and len(path) in tabled)],
                        columns=["Number", "Value"])
    tables = [lone] if len(lone) else []
    for depth in sorted(tabled):
        found = [(path, value) for path, value, record in leaves if record and len(path) == depth]
        fields = list(dict.fromkeys(field for _, value in found for field in value))
        tables.append(pd.DataFrame([[name(path), *[readable(_compact(value[field])) if field in value else ""
                                                  for field in fields]] for path, value in found],
                                   columns=["Case", *[readable(field) for field in fields]]))
    return tables


def _compact(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_compact(inner)}" for key, inner in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_compact(inner) for inner in value)
    return format_number(value) if value is not None else "none"


def assumption_in_use(name: str, assumptions, answers, costs_row=None) -> str:
    """The value an assumption takes for these answers (the automatic ones resolved)."""
    value = getattr(assumptions, name)
    if value is not None:
        return format_number(value)
    if name == "pue":
        return f"{assumptions.pue_for(answers.hardware):g}"
    if name == "price_usd_per_h":
        return f"{HARDWARE[answers.hardware].price_usd_per_h:g}"
    if name == "grid_gco2_per_kwh":
        return f"{REGIONS[answers.region].grid_gco2_per_kwh:.0f}"
    if name == "ft_trials" and costs_row is not None:
        return str(int(costs_row))
    return "automatic"


def assumptions_table(assumptions, defaults, sources: dict[str, str], answers=None) -> pd.DataFrame:
    """Each assumption's value in use, its default and where the default comes from."""
    rows = []
    for item in fields(assumptions):
        value, default = getattr(assumptions, item.name), getattr(defaults, item.name)
        in_use = (assumption_in_use(item.name, assumptions, answers) if answers is not None else
                  format_number(value) if value is not None else "automatic")
        rows.append({"Assumption": ASSUMPTION_LABELS.get(item.name, item.name),
                     "In use": in_use,
                     "Default": format_number(default) if default is not None else _automatic(item.name),
                     "Source": readable(sources.get(item.name, ""))})
    return pd.DataFrame(rows)


def _automatic(name: str) -> str:
    return {"price_usd_per_h": "hardware's price", "grid_gco2_per_kwh": "region's intensity",
            "pue": "by kind of machine", "ft_trials": "from the evidence"}.get(name, "automatic")
