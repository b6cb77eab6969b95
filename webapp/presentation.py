"""How answers, advice and evidence are worded and tabulated for people; shared by the app pages and the PDFs."""
from __future__ import annotations

import math
from dataclasses import asdict, fields

import pandas as pd

from recommender.carbon import REGIONS
from recommender.hardware import HARDWARE
from study.labels import probed_option_label

# What each cost column is: column -> (label, unit).
COSTS = {
    "total_usd": ("Money", "USD"),
    "compute_usd": ("Compute money", "USD"),
    "time_h": ("Compute time", "h"),
    "energy_kwh": ("Energy", "kWh"),
    "co2_kg": ("CO₂", "kg"),
    "human_hours": ("Human time", "h"),
}
QUESTION_LABELS = {
    "n_classes": "Classes",
    "images_per_class": "Labelled images per class",
    "domain": "Image domain",
    "image_size_px": "Typical image size (shorter side, px)",
    "colour": "Colour images",
    "hardware": "Hardware",
    "region": "Electricity grid region",
    "budget_money_usd": "Money budget (USD, compute + labour)",
    "budget_energy_kwh": "Energy budget (kWh)",
    "budget_co2_kg": "CO₂ budget (kg)",
    "budget_wall_time_h": "Compute wall-time budget (h)",
    "budget_human_hours": "Human-time budget (h)",
    "accuracy_weight": "Accuracy vs cost weight (1 = accuracy only)",
    "probe": "Measured probe on your images (learning curves)",
}
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


def family(method: str) -> str:
    return "fine-tuning" if str(method).startswith("ft") else "feature extraction"


def cost_label(column: str) -> str:
    label, unit = COSTS[column]
    return f"{label} ({unit})"


def format_number(value) -> str:
    """Three significant digits, thousands separated; empty for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_amount(column: str, value: float) -> str:
    """A cost in the unit a person reads easily: seconds or minutes for short times, Wh and g for small
    energies and masses, dollars and cents."""
    if column == "time_h":
        seconds = value * 3600
        return f"{seconds:.3g} s" if seconds < 90 else f"{seconds / 60:.3g} min" if seconds < 5400 else \
            f"{value:,.3g} h"
    if column == "energy_kwh":
        return f"{value * 1000:.3g} Wh" if value < 1 else f"{value:,.3g} kWh"
    if column == "co2_kg":
        return f"{value * 1000:.3g} g" if value < 1 else f"{value:,.3g} kg"
    if column in ("total_usd", "compute_usd", "human_usd"):
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.2g}"
    return f"{value:,.3g} h" if column == "human_hours" else format_number(value)


def format_interval(low: float, median: float, high: float) -> str:
    return f"{median:.1%} (80% interval {low:.1%} to {high:.1%})"


def describe_answer(name: str, value) -> str:
    if value is None:
        return "not set"
    if name == "hardware":
        return HARDWARE[value].name
    if name == "region":
        return REGIONS[value].name
    if name == "colour":
        return "yes" if value else "no (greyscale)"
    if name == "probe":
        return describe_probe(value)
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
    rows = [{"option": probed_option_label(*option), **{f"k={k}": f"{100 * by_k[k]:.1f}%" if k in by_k else ""
                                                  for k in ks}}
            for option, by_k in sorted(curves.items(), key=lambda item: order(item[0]))]
    return pd.DataFrame(rows, columns=["option"] + [f"k={k}" for k in ks])


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
    return pd.DataFrame([{"question": QUESTION_LABELS.get(name, name), "answer": describe_answer(name, value)}
                         for name, value in asdict(questionnaire).items()])


def budget_checks(advice) -> pd.DataFrame:
    """Per budget the user set: the recommended option's cost, the limit and whether it passes."""
    from recommender.advise import BUDGET_COLUMNS, BUDGET_LABELS  # scikit-learn: loaded once advice exists
    row = advice.recommended_row
    checks = []
    for name, limit in advice.questionnaire.budgets.items():
        column = BUDGET_COLUMNS[name]
        checks.append({"name": name, "budget": QUESTION_LABELS[name], "predicted": float(row[column]),
                       "limit": float(limit), "passes": BUDGET_LABELS[name] not in list(row["violations"])})
    return pd.DataFrame(checks, columns=["name", "budget", "predicted", "limit", "passes"])


def options_table(options: pd.DataFrame) -> pd.DataFrame:
    """Every option with its accuracy interval and costs, formatted for reading (most accurate first)."""
    ordered = options.sort_values("acc_median", ascending=False)
    return pd.DataFrame({
        "option": ordered["option"],
        "accuracy": [format_interval(r.acc_low, r.acc_median, r.acc_high) for r in ordered.itertuples()],
        **{COSTS[column][0]: [format_amount(column, value) for value in ordered[column]] for column in
           ("total_usd", "time_h", "energy_kwh", "co2_kg", "human_hours")},
        "within budgets": ordered["feasible"].map({True: "yes", False: "no"}),
        "Pareto": ordered["pareto"].map({True: "yes", False: ""}),
        "cost basis": ordered["cost_basis"],
    }).reset_index(drop=True)


def numbers_table(numbers: dict) -> pd.DataFrame:
    """A guideline's numbers as (number, value) rows; nested groups become 'group / name' rows."""
    rows = []
    for key, value in numbers.items():
        if isinstance(value, dict) and any(isinstance(inner, (dict, list)) for inner in value.values()):
            rows += [{"number": f"{key} / {name}", "value": _compact(inner)} for name, inner in value.items()]
        else:
            rows.append({"number": str(key), "value": _compact(value)})
    return pd.DataFrame(rows, columns=["number", "value"])


def _compact(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_compact(inner)}" for key, inner in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_compact(inner) for inner in value)
    return format_number(value) if value is not None else "none"


def assumptions_table(assumptions, defaults, sources: dict[str, str]) -> pd.DataFrame:
    """Each assumption's value in use, its default and where the default comes from."""
    rows = []
    for item in fields(assumptions):
        value, default = getattr(assumptions, item.name), getattr(defaults, item.name)
        rows.append({"assumption": ASSUMPTION_LABELS.get(item.name, item.name),
                     "value": format_number(value) if value is not None else "default",
                     "default": format_number(default) if default is not None else _automatic(item.name),
                     "source": sources.get(item.name, "")})
    return pd.DataFrame(rows)


def _automatic(name: str) -> str:
    return {"price_usd_per_h": "hardware's price", "grid_gco2_per_kwh": "region's intensity",
            "ft_trials": "from the evidence"}.get(name, "automatic")


def hardware_descriptions(hardware: pd.DataFrame) -> dict[str, str]:
    """hardware_id -> a readable machine description (GPU model, else CPU model and cores)."""
    described = {}
    for row in hardware.itertuples():
        if isinstance(row.gpu_model, str) and row.gpu_model:
            described[row.hardware_id] = f"{row.gpu_model} (x{row.gpu_count})"
        else:
            described[row.hardware_id] = f"{row.cpu_model}, {row.cpu_count} cores, {row.memory_gb:.0f} GB"
    return described


def evidence_summary(tables: dict) -> dict[str, str]:
    """The evidence in a few labelled lines: what was measured, where, when and how energy was obtained."""
    runs = tables["runs"]
    machines = hardware_descriptions(tables["hardware"]) if not tables["hardware"].empty else {}
    energy = runs["energy_source"].value_counts()
    return {
        "Runs": f"{len(runs):,}",
        "Datasets": ", ".join(sorted(runs["dataset"].unique())),
        "Backbones": ", ".join(sorted(runs["backbone"].unique())),
        "Methods": ", ".join(sorted(runs["method"].unique())),
        "Images per class": f"{runs['images_per_class'].min():,} to {runs['images_per_class'].max():,}",
        "Grids": ", ".join(f"{grid} ({count})" for grid, count in runs["grid"].value_counts().items()),
        "Hardware": "; ".join(machines.get(h, h) for h in runs["hardware_id"].unique()),
        "Measured": f"{str(runs['started_at'].min())[:16]} to {str(runs['finished_at'].max())[:16]} (UTC)",
        "Energy": "; ".join(f"{count} runs {ENERGY_SOURCES.get(source, source)}" for source, count in energy.items()),
    }


def software_versions(runs: pd.DataFrame) -> pd.DataFrame:
    """Distinct software stacks the runs were measured with, and how many runs each."""
    columns = ["python_version", "torch_version", "timm_version", "sklearn_version", "numpy_version",
               "cuda_version"]
    return runs.fillna({c: "" for c in columns}).groupby(columns, as_index=False).agg(runs=("run_id", "count"))


def commits(runs: pd.DataFrame) -> pd.DataFrame:
    """The code versions (git commits) that produced the runs, with their run counts and dates."""
    return (runs.groupby("git_commit", as_index=False)
            .agg(runs=("run_id", "count"), first_run=("started_at", "min"), last_run=("finished_at", "max"))
            .sort_values("first_run"))


def grid_coverage(runs: pd.DataFrame) -> pd.DataFrame:
    """Per grid and dataset: the backbones, methods, k values and seeds measured."""
    return (runs.groupby(["grid", "dataset"], as_index=False)
            .agg(runs=("run_id", "count"), backbones=("backbone", "nunique"), methods=("method", "nunique"),
                 k_values=("images_per_class", "nunique"), seeds=("seed", "nunique"),
                 resolution_px=("resolution", "max")))


def energy_sources(runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["device_type", "energy_source"], as_index=False).agg(runs=("run_id", "count"))
    counts["meaning"] = counts["energy_source"].map(lambda source: ENERGY_SOURCES.get(source, source))
    return counts
