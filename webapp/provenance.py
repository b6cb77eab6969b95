"""Where the app's numbers come from, for people: the evidence at a glance, every source the advice uses (the GPU
pilot included while the evidence has no GPU runs), hardware, software, and the recommender's evaluation, with
human column names. Shared by the Method page and the PDFs."""
from __future__ import annotations

import pandas as pd

from recommender.carbon import SOURCE as GRID_SOURCE
from recommender.evidence import measured_backbone_params
from recommender.hardware import HARDWARE
from study.labels import backbone_label, backbone_scope
from webapp.presentation import ENERGY_SOURCES, format_number, method_label, readable

POLICY_NAMES = {
    "recommender": "the recommender with the probe", "recommender_without_probe": "the recommender without a probe",
    "recommender_with_pilot": "the recommender with the probe and its fine-tuning pilot",
    "best_fixed": "the best fixed option", "always_fe": "always extract", "always_ft": "always fine-tune",
    "paper_rule": "the paper's k-threshold rule", "rule_of_thumb": "the k-threshold rule of thumb",
    "oracle": "the best option in hindsight",
    "one_run_each": "one run of each option, the best in hindsight",
}
SETTING_NAMES = {"probe": "with the probe", "probe_informed": "with the probe", "questionnaire": "the description only",
                 "questionnaire_only": "the description only", "pilot": "with the probe and its fine-tuning pilot",
                 "pilot_informed": "with the probe and its fine-tuning pilot"}
MEASURE_NAMES = {
    "decisions": "Decisions scored",
    "mean_regret_within_budget_points": "Mean regret within a budget (points)",
    "mean_regret_by_scenario_points": "Mean regret by budget scenario (points)",
    "held_out_datasets": "Held-out datasets", "mean_regret_points": "Mean regret (accuracy points below the best)",
    "budget_violations": "Budgets broken", "accuracy_mae_points": "Accuracy error (points)",
    "interval_coverage": "80% interval coverage", "median_interval_width_points": "Median interval width (points)",
    "predictions": "Predictions scored", "extraction_options": "extraction options",
    "fine_tuning_options": "fine-tuning options", "coverage_by_basis": "80% interval coverage by basis",
    "below_chance_intervals": "Intervals reaching below chance", "seconds": "Evaluation time (s)",
    "share_datasets_recommender_below_every_baseline": "Share of datasets where the recommender beats every baseline",
    "share_datasets_recommender_at_or_below_every_baseline":
        "Share of datasets where the recommender matches or beats every baseline",
    "share_datasets_recommender_below_every_baseline_within_budget":
        "Within a budget: share of datasets where the recommender beats every baseline",
    "share_datasets_recommender_at_or_below_every_baseline_within_budget":
        "Within a budget: share of datasets where the recommender matches or beats every baseline",
    "share_datasets_recommender_with_pilot_below_every_baseline":
        "With the fine-tuning pilot: share of datasets where the recommender beats every baseline",
    "share_datasets_recommender_with_pilot_at_or_below_every_baseline":
        "With the fine-tuning pilot: share of datasets where the recommender matches or beats every baseline",
    "share_datasets_recommender_with_pilot_below_every_baseline_within_budget":
        "With the fine-tuning pilot, within a budget: share of datasets where the recommender beats every baseline",
    "share_datasets_recommender_with_pilot_at_or_below_every_baseline_within_budget":
        "With the fine-tuning pilot, within a budget: share of datasets where the recommender matches or beats "
        "every baseline",
    "versus_baselines": "Against each baseline",
    "versus_baselines_within_budget": "Within a budget, against each baseline",
    "datasets_lower": "held-out datasets with lower regret", "datasets_same": "with the same regret",
    "datasets_higher": "with higher regret",
    "mean_difference_points": "mean difference in regret (points)",
    "difference_90_low_points": "its 90% interval's low end", "difference_90_high_points": "its high end",
    **SETTING_NAMES, **POLICY_NAMES,
}


def _words(key: str) -> str:
    return MEASURE_NAMES.get(key, str(key).replace("_", " "))


def _capital(text: str) -> str:
    """The first letter upper case, the rest as it is (names such as MobileNetV2 keep their case)."""
    return text[:1].upper() + text[1:]


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
        "Backbones": ", ".join(sorted(backbone_label(b) for b in runs["backbone"].unique())),
        **({"Scope": backbone_scope(params)} if (params := measured_backbone_params(tables)) else {}),
        "Methods": "; ".join(sorted(method_label(m) for m in runs["method"].unique())),
        "Images per class": f"{runs['images_per_class'].min():,} to {runs['images_per_class'].max():,}",
        "Grids": ", ".join(f"{grid} ({count})" for grid, count in runs["grid"].value_counts().items()),
        "Hardware": "; ".join(machines.get(h, h) for h in runs["hardware_id"].unique()),
        "Measured": f"{str(runs['started_at'].min())[:16]} to {str(runs['finished_at'].max())[:16]} (UTC)",
        "Energy": "; ".join(f"{count} runs {ENERGY_SOURCES.get(source, source)}" for source, count in energy.items()),
    }


def sources_table(cost_references: dict | None = None, n_runs: int | None = None,
                  hardware_keys: list[str] | None = None) -> pd.DataFrame:
    """Every source the advice uses, one row each: the study's runs, the GPU pilot (while the evidence has no GPU
    runs), the hardware profiles, grid intensity, PUE, the energy models and the assumptions."""
    from recommender.costs import ASSUMPTION_SOURCES, GPU_PILOT_SOURCE

    references = cost_references or {}
    runs = f" ({n_runs:,} runs)" if n_runs else ""
    rows = [("Accuracy of every option", f"the study's measured runs{runs}, and your probe when you measure one: "
                                         "a model fitted to them, its 80% intervals calibrated by leaving one "
                                         "dataset out"),
            ("CPU time and energy", "the study's runs on its 2-core CPU; energy " + ENERGY_SOURCES["estimated"])]
    gpu = references.get("gpu")
    if gpu is None or gpu.get("basis") == GPU_PILOT_SOURCE:
        rows.append(("GPU time and energy", f"{GPU_PILOT_SOURCE}: images per second and joules per image of "
                                            "MobileNetV2 and EfficientNet-Lite0 at 224 px, extraction and training; "
                                            "used while the study has no GPU runs"))
    else:
        rows.append(("GPU time and energy", f"the study's GPU runs on {HARDWARE[gpu['hardware']].name}; energy "
                                            f"{readable(gpu.get('energy_basis', 'NVML counter'))}"))
    rows.append(("Other hardware", "scaled from the measured machine by the geometric mean of the compute and "
                                   "memory-bandwidth ratios of the hardware profiles below (a stated model)"))
    rows.append(("Other resolutions", "costs scaled by pixel count from the resolution they were measured at"))
    for key in hardware_keys or list(HARDWARE):
        profile = HARDWARE[key]
        rows.append((f"Hardware profile: {profile.name}",
                     f"{profile.source} ({profile.date}); {profile.board_power_w:g} W, "
                     f"${profile.price_usd_per_h:g}/h" + (", your own machine (PUE 1.0)" if profile.personal else "")))
    rows += [("Grid carbon intensity", readable(GRID_SOURCE)),
             ("Power usage effectiveness (PUE)", readable(ASSUMPTION_SOURCES["pue"])),
             ("Human hours and hourly rate", "assumptions you can edit: set-up hours per method, hours per "
                                             "fine-tuning trial, engineer hourly rate"),
             ("Fine-tuning trials", readable(ASSUMPTION_SOURCES["ft_trials"]))]
    return pd.DataFrame(rows, columns=["What", "Source"])


def hardware_table(hardware: pd.DataFrame) -> pd.DataFrame:
    machines = hardware_descriptions(hardware)
    return pd.DataFrame({
        "Machine": hardware["hardware_id"].map(machines), "Device": hardware["device_type"].str.upper(),
        "CPU": hardware["cpu_model"], "Cores": hardware["cpu_count"], "PyTorch threads": hardware["torch_threads"],
        "Memory (GB)": hardware["memory_gb"].round(1), "GPU": hardware["gpu_model"].fillna("none"),
        "GPUs": hardware["gpu_count"], "Machine id": hardware["hardware_id"]})


def software_versions(runs: pd.DataFrame) -> pd.DataFrame:
    """Distinct software stacks the runs were measured with, and how many runs each."""
    names = {"python_version": "Python", "torch_version": "PyTorch", "timm_version": "timm",
             "sklearn_version": "scikit-learn", "numpy_version": "NumPy", "cuda_version": "CUDA"}
    table = runs.fillna({c: "" for c in names}).groupby(list(names), as_index=False).agg(runs=("run_id", "count"))
    return table.rename(columns={**names, "runs": "Runs"})


def commits(runs: pd.DataFrame) -> pd.DataFrame:
    """The code versions (git commits) that produced the runs, with their run counts and dates."""
    table = (runs.groupby("git_commit", as_index=False)
             .agg(runs=("run_id", "count"), first_run=("started_at", "min"), last_run=("finished_at", "max"))
             .sort_values("first_run"))
    return table.rename(columns={"git_commit": "Code version (git commit)", "runs": "Runs", "first_run": "First run",
                                 "last_run": "Last run"})


def grid_coverage(runs: pd.DataFrame) -> pd.DataFrame:
    """Per grid and dataset: the backbones, methods, k values and seeds measured."""
    table = (runs.groupby(["grid", "dataset"], as_index=False)
             .agg(runs=("run_id", "count"), backbones=("backbone", "nunique"), methods=("method", "nunique"),
                  k_values=("images_per_class", "nunique"), seeds=("seed", "nunique"),
                  resolution_px=("resolution", "max")))
    return table.rename(columns={"grid": "Grid", "dataset": "Dataset", "runs": "Runs", "backbones": "Backbones",
                                 "methods": "Methods", "k_values": "Values of k", "seeds": "Seeds",
                                 "resolution_px": "Resolution (px)"})


def energy_sources(runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs.groupby(["device_type", "energy_source"], as_index=False).agg(runs=("run_id", "count"))
    return pd.DataFrame({"Device": counts["device_type"].str.upper(), "Runs": counts["runs"],
                         "Energy": counts["energy_source"].map(lambda s: ENERGY_SOURCES.get(s, s))})


def _percent(share: float) -> str:
    return "" if pd.isna(share) else f"{share:.0%}"


def evaluation_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-dataset evaluation as two readable tables: each policy's mean regret, and the accuracy predictions'
    error, 80% coverage and median width per thing known (one table of seventeen columns ran off the page)."""
    datasets = {"Held-out dataset": table["dataset"]}
    regret_columns = [column for column in table.columns if column.endswith("_regret")]
    decided = table[regret_columns].notna().any(axis=1)  # a dataset without fine-tuning runs has no decision
    regret = pd.DataFrame({**datasets, **{
        _capital(POLICY_NAMES.get(column.removesuffix("_regret"), _words(column.removesuffix("_regret")))):
            table[column].map(format_number) for column in regret_columns}})[decided]
    measures = (("mae_", "error", format_number), ("coverage_", "coverage", _percent),
                ("width_", "width", format_number))
    settings = list(dict.fromkeys(column.split("_", 1)[1] for column in table.columns
                                  if column.startswith(tuple(prefix for prefix, _, _ in measures))))
    predictions = pd.DataFrame({**datasets, **{
        f"{_capital(SETTING_NAMES.get(setting, _words(setting)))}: {measure}": table[prefix + setting].map(shown)
        for setting in settings for prefix, measure, shown in measures if prefix + setting in table}})
    return regret, predictions


def regret_by_policy(summary: dict) -> pd.DataFrame:
    """The headline decisions: each policy's mean regret over all decisions and per budget scenario, and the
    budgets its picks broke (one row per policy, the recommender's settings first)."""
    scenarios = summary.get("mean_regret_by_scenario_points", {})
    rows = []
    for policy, regret in summary.get("mean_regret_points", {}).items():
        row = {"Policy": _capital(_words(policy)), "All decisions": format_number(regret)}
        row.update({_capital(scenario): format_number(by_policy.get(policy))
                    for scenario, by_policy in scenarios.items()})
        row["Budgets broken"] = format_number(summary.get("budget_violations", {}).get(policy))
        rows.append(row)
    return pd.DataFrame(rows)


def prediction_quality(summary: dict) -> pd.DataFrame:
    """The headline predictions: accuracy error, 80% interval coverage and median width by what the advisor knew
    (the description, the probe, the probe and its pilot) and, with a probe, per family of options."""
    groups = [(_capital(SETTING_NAMES["questionnaire_only"]), summary.get("questionnaire_only") or {})]
    for key in ("probe_informed", "pilot_informed"):
        informed = summary.get(key) or {}
        known = _capital(SETTING_NAMES[key])
        groups += [(f"{known}: every option", informed),
                   (f"{known}: extraction", informed.get("extraction_options") or {}),
                   (f"{known}: fine-tuning", informed.get("fine_tuning_options") or {})]
    return pd.DataFrame([{"Known": known, "Accuracy error (points)": format_number(scores["accuracy_mae_points"]),
                          "80% interval coverage": f"{scores['interval_coverage']:.0%}",
                          "Median interval width (points)": format_number(scores["median_interval_width_points"]),
                          "Predictions scored": format_number(scores["predictions"])}
                         for known, scores in groups if scores],
                        columns=["Known", "Accuracy error (points)", "80% interval coverage",
                                 "Median interval width (points)", "Predictions scored"])


def baseline_share_sentence(summary: dict) -> str:
    """On how many held-out datasets the recommender's mean regret matched or beat every fixed policy's ('' before
    an evaluation with those shares)."""
    datasets = summary.get("held_out_datasets")
    keys = ("share_datasets_recommender_at_or_below_every_baseline",
            "share_datasets_recommender_at_or_below_every_baseline_within_budget",
            "share_datasets_recommender_with_pilot_at_or_below_every_baseline")
    if not datasets or not all(key in summary for key in keys):
        return ""
    probe, within_budget, pilot = (round(summary[key] * datasets) for key in keys)
    return ("The recommender's mean regret matched or beat every fixed policy's (best fixed option, always extract, "
            f"always fine-tune, the paper's rule) on {probe} of the {datasets} held-out datasets with the probe "
            f"({within_budget} of {datasets} within a budget), and on {pilot} of {datasets} with the probe and its "
            "fine-tuning pilot.")


def one_run_sentence(summary: dict) -> str:
    """What run-to-run noise alone costs: the regret of a user who measured every option once on the held-out
    dataset and took the best, next to the recommender's on the same decisions ('' before an evaluation with it)."""
    compared = summary.get("one_run_each") or {}
    regret = compared.get("mean_regret_points") or {}
    if not compared.get("decisions") or None in regret.values():
        return ""
    return (f"Run-to-run noise: a user who measured every option within budget once on the held-out dataset itself "
            f"(one seed each) and took the best would have lost {format_number(regret['one_run_each'])} points "
            f"against the other seeds' mean, on the {compared['decisions']} decisions where every option had two or "
            f"more seeds. On the same decisions the recommender lost {format_number(regret['recommender'])} with "
            f"the probe, {format_number(regret['recommender_with_pilot'])} with its pilot and "
            f"{format_number(regret['recommender_without_probe'])} from the description alone; the best fixed "
            f"option {format_number(regret['best_fixed'])}. Differences in regret below the first figure are of "
            "the size that noise moves a pick made from measurements.")


def baseline_comparison(summary: dict, key: str = "versus_baselines") -> pd.DataFrame:
    """Each setting of the recommender against each baseline (``key``: over all decisions, or
    ``versus_baselines_within_budget``): on how many held-out datasets its mean regret was lower, the same or
    higher, and the mean difference with its 90% bootstrap interval over the datasets (empty before an evaluation
    with these figures)."""
    return pd.DataFrame([{"Recommender": _capital(POLICY_NAMES[policy]), "Against": _capital(POLICY_NAMES[baseline]),
                          "Held-out datasets: lower / same / higher regret":
                              f"{compared['datasets_lower']} / {compared['datasets_same']} / "
                              f"{compared['datasets_higher']}",
                          "Mean difference (points)": format_number(compared["mean_difference_points"]),
                          "90% interval (points)": f"{format_number(compared['difference_90_low_points'])} to "
                                                   f"{format_number(compared['difference_90_high_points'])}"}
                         for policy, against in summary.get(key, {}).items() for baseline, compared in against.items()],
                        columns=["Recommender", "Against", "Held-out datasets: lower / same / higher regret",
                                 "Mean difference (points)", "90% interval (points)"])


def evaluation_summary(summary: dict) -> pd.DataFrame:
    """The evaluation's headline figures as (measure, value) rows; nested groups joined with commas."""
    rows = []

    def walk(prefix: list[str], value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(prefix + [key], inner)
            return
        words = [_words(part) for part in prefix]
        rest = [word[0].lower() + word[1:] if word[:1].isupper() and not word[1:2].isupper() else word
                for word in words[1:]]
        label = words[0] + (": " + ", ".join(rest) if rest else "")
        shown = f"{value:.0%}" if isinstance(value, float) and ("share" in prefix[0] or "coverage" in prefix[-1]
                                                                  or prefix[0] == "coverage_by_basis") \
            else format_number(value)
        rows.append({"Measure": readable(label[0].upper() + label[1:]), "Value": shown})
    walk([], summary)
    return pd.DataFrame(rows, columns=["Measure", "Value"])
