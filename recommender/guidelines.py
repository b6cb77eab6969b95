"""Guidelines derived from the evidence, each with the numbers behind it.

``python -m recommender.guidelines`` regenerates data/GUIDELINES.md from the DuckDB; the app prints the same list.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.accuracy import evidence_rows
from recommender.costs import tuning_curve
from recommender.evidence import DEFAULT_DB, evidence_only, load_tables, measured_backbone_params
from study.convergence import budget_gained_sentence, budget_gains, budget_pairs
from study.evidence import crossovers, matched_cost_ratios, pilot_table
from study.labels import backbone_scope
from study.markdown import signed
from study.resolution import FAMILIES, REFERENCE_PX, by_resolution, pairs_by_family, upscale_rule

OUTPUT = Path(__file__).resolve().parent.parent / "data" / "GUIDELINES.md"


@dataclass
class Guideline:
    title: str
    statement: str
    numbers: dict = field(default_factory=dict)
    points: list[str] = field(default_factory=list)  # the statement's details, one bullet each (e.g. per domain)


def crossover(runs: pd.DataFrame, rows: pd.DataFrame, gains: pd.DataFrame | None = None) -> Guideline:
    """Per dataset and per domain: the k from which fine-tuning wins, the points it gains, what it costs; and
    (``gains``, from ``study.convergence.budget_gains``) where twice the fine-tuning budget gained a point or more."""
    per_dataset = crossovers(runs)
    gains = budget_gains(pd.DataFrame()) if gains is None else gains
    budget_change = gains.set_index("dataset")["mean_change"]
    if per_dataset.empty:
        return Guideline("When fine-tuning overtakes extraction", "No dataset has both FE and FT runs yet.")
    domains = rows.groupby("dataset")["domain"].first()
    per_dataset["domain"] = per_dataset["dataset"].map(domains)
    numbers, parts = {}, []
    for domain, group in per_dataset.groupby("domain"):
        never = group["crossover_k"].str.startswith("none")
        numbers[domain] = {row["dataset"]: {"crossover k": row["crossover_k"],
                                            "FT - FE at the largest k (points)": row["points_at_largest_k"],
                                            "largest k": row["largest_k"],
                                            "seed noise there (2 SE, pooled over datasets, points)":
                                                row["seed_noise_at_largest_k"],
                                            "verdict there": row["verdict_at_largest_k"],
                                            "FT / FE wall time there": row["time_multiple_at_largest_k"],
                                            **({"budget x2 change in the convergence check (points)":
                                                float(budget_change[row["dataset"]])}
                                               if row["dataset"] in budget_change.index else {})}
                           for _, row in group.iterrows()}
        found = group.loc[~never, "crossover_images_per_class"].astype(int)
        gain = group["points_at_largest_k"].mean()
        multiple = group["time_multiple_at_largest_k"].median()
        noisy = int((group["verdict_at_largest_k"] == "within seed noise").sum())
        parts.append(f"{domain}: " + (f"fine-tuning wins from k={found.min()}" + (f"-{found.max()}" if
                                      found.max() != found.min() else "") if len(found) else "extraction never beaten")
                     + (f" on {len(found)} of {len(group)} datasets" if 0 < len(found) < len(group) else "")
                     + f", {signed(gain)} points at the largest k"
                     + (" (within seed noise)" if noisy == len(group) else
                        f" (within seed noise on {noisy} of {len(group)})" if noisy else "")
                     + f" for {multiple:.0f}x the wall time")
    gained = budget_gained_sentence(gains)
    return Guideline("When fine-tuning overtakes extraction",
                     _crossover_headline(per_dataset) + " Per domain below: the smallest measured k from which the "
                     "best fine-tuning beats the best feature extraction at every larger measured k (per dataset in "
                     "the numbers), the points it gains at the largest measured k, whether that lead exceeds two "
                     "standard errors of seed noise, and its wall-time multiple there." + (f" {gained}" if gained else ""),
                     numbers, [f"{part}." for part in parts])


def _crossover_headline(per_dataset: pd.DataFrame) -> str:
    """Who led at each dataset's largest measured k, beyond seed noise, and for what wall time: the guideline itself."""
    verdicts = per_dataset["verdict_at_largest_k"]
    ahead = per_dataset[verdicts == "fine-tuning ahead"]
    behind = int((verdicts == "extraction ahead").sum())
    level = int((verdicts == "within seed noise").sum())
    where = ", ".join(f"{count} {domain}" for domain, count in ahead["domain"].value_counts().sort_index().items())
    return (f"At each dataset's largest measured k, fine-tuning led by more than seed noise on {len(ahead)} of "
            f"{len(per_dataset)} datasets{f' ({where})' if where else ''} and extraction on {behind}; on the other "
            f"{level} extraction came within seed noise of fine-tuning for a fraction of its wall time (fine-tuning "
            f"took a median {per_dataset['time_multiple_at_largest_k'].median():.0f}x extraction's, over all "
            f"{len(per_dataset)}).")


def cost_ratios(runs: pd.DataFrame) -> Guideline:
    both = matched_cost_ratios(runs)
    if both.empty:
        return Guideline("What fine-tuning costs", "No matched FE/FT runs yet.")
    time_ratio, energy_ratio = both["time_ratio"], both["energy_ratio"]
    devices = sorted(both["device_type"].unique())
    sources = sorted(runs.loc[runs["method"].isin(["fe_linear", "ft_full"]), "energy_source"].unique())
    numbers = {"matched runs": len(both), "time ratio median": round(float(time_ratio.median()), 1),
               "time ratio range": [round(float(time_ratio.min()), 1), round(float(time_ratio.max()), 1)],
               "energy ratio median": round(float(energy_ratio.median()), 1), "devices": devices,
               "energy sources": sources}
    note = " (CPU energy is an estimate from a stated power model)" if "estimated" in sources else ""
    return Guideline("What fine-tuning costs",
                     f"Fine-tuning all layers (every learning-rate trial) took a median {numbers['time ratio median']}× "
                     f"the wall time and {numbers['energy ratio median']}× the energy of extraction + logistic "
                     f"regression on the same data ({len(both)} matched runs on {', '.join(devices)}){note}.",
                     numbers)


def fne_vs_linear(rows: pd.DataFrame) -> Guideline:
    keys = ["dataset", "backbone", "k_label", "resolution"]
    lin = rows[rows["method"] == "fe_linear"].set_index(keys)["accuracy"]
    fne = rows[rows["method"] == "fe_fne"].set_index(keys)["accuracy"]
    both = pd.concat({"linear": lin, "fne": fne, "k": rows[rows["method"] == "fe_fne"].set_index(keys)[
        "images_per_class"]}, axis=1).dropna()
    if both.empty:
        return Guideline("Full-Network Embedding or a linear probe", "No matched FE runs yet.")
    both["bucket"] = pd.cut(both["k"], [0, 5, 50, np.inf], labels=["k<=5", "5<k<=50", "k>50"])
    numbers = {}
    for bucket, group in both.groupby("bucket", observed=True):
        numbers[str(bucket)] = {"FNE win rate": round(float((group["fne"] > group["linear"]).mean()), 2),
                                "mean gain (points)": round(float(100 * (group["fne"] - group["linear"]).mean()), 1),
                                "cases": len(group)}
    parts = [f"{b}: FNE wins {v['FNE win rate']:.0%} of {v['cases']} cases ({signed(v['mean gain (points)'])} points)"
             for b, v in numbers.items()]
    return Guideline("Full-Network Embedding or a linear probe",
                     "Ternarised multi-layer features against pooled features with a tuned logistic regression — "
                     + "; ".join(parts) + ".", numbers)


def small_image_resolution(pairs_by_family: dict) -> Guideline | None:
    """What upscaling small images to each measured resolution gained against the evidence's, per family
    (``study.resolution.pairs_by_family``; None where the resolution check has not run)."""
    if all(pairs.empty for pairs in pairs_by_family.values()):
        return None
    numbers, sentences = {}, []
    for finetuning, pairs in pairs_by_family.items():
        family = FAMILIES[finetuning]
        if pairs.empty:
            sentences.append(f"{family.capitalize()} was not measured at other resolutions: the advisor runs it at "
                             f"{REFERENCE_PX} px, where it was.")
            continue
        rule = upscale_rule(pairs)
        summary = by_resolution(pairs).set_index("resolution")
        reference = rule["reference_px"]
        numbers.update({f"{family}, {px} px": {
            f"mean change vs {reference} px (points)": round(float(row.mean_change), 1), "datasets": int(row.datasets),
            "worst dataset (points)": round(float(row.worst_dataset), 1),
            "best dataset (points)": round(float(row.best_dataset), 1), "paired runs": int(row.runs)}
            for px, row in summary.iterrows()})
        parts = [f"at {px} px {signed(row.mean_change)} points on average against {reference} px "
                 f"({signed(row.worst_dataset)} to {signed(row.best_dataset)} by dataset; {int(row.datasets)} datasets, "
                 f"{int(row.runs)} paired runs)"
                 for px, row in summary.iterrows()]
        advice = (f"upscale such images to {rule['resolution_px']} px for {family}, as the advisor does (a gain "
                  "within its standard error over datasets does not count)"
                  if rule["change_points"] is not None else
                  f"until more datasets are measured, the advisor runs {family} at {reference} px")
        sentences.append(f"{family.capitalize()} on the study's datasets of images smaller than {reference} px "
                         f"scored " + "; ".join(parts) + f": {advice}.")
    return Guideline("Working resolution for small images", " ".join(sentences), numbers)


def partial_vs_full(rows: pd.DataFrame) -> Guideline | None:
    keys = ["dataset", "backbone", "k_label", "resolution"]
    full = rows[rows["method"] == "ft_full"].set_index(keys)["accuracy"]
    partial = rows[rows["method"] == "ft_partial"].set_index(keys)["accuracy"]
    both = pd.concat({"full": full, "partial": partial}, axis=1).dropna()
    if both.empty:
        return None
    win = float((both["partial"] > both["full"]).mean())
    gain = float(100 * (both["partial"] - both["full"]).mean())
    return Guideline("Partial or full fine-tuning",
                     f"Freezing the first half of the network beat full fine-tuning in {win:.0%} of {len(both)} "
                     f"matched cases ({signed(gain)} points on average).",
                     {"partial win rate": round(win, 2), "mean gain (points)": round(gain, 1) + 0.0, "cases": len(both)})  # never -0.0


def tuning_cost(trials: pd.DataFrame) -> Guideline:
    curve = tuning_curve(trials)
    if curve.empty:
        return Guideline("What tuning costs", "No fine-tuning trials yet.")
    lost = {int(n): round(float(100 * v), 1) for n, v in zip(curve["n_trials"], curve["accuracy_vs_full_grid"])}
    full = int(curve["n_trials"].max())
    return Guideline("What tuning costs",
                     f"Trying one learning rate instead of {full} changed test accuracy by {signed(lost[1])} points on "
                     f"average (the choice made on validation, scored on test; {int(curve['runs'].iloc[0])} "
                     "fine-tuning runs); each extra trial costs a full training run.",
                     {"points vs full grid by trials": lost, "runs": int(curve["runs"].iloc[0])})


def transfer_gain(runs: pd.DataFrame) -> Guideline | None:
    random_init = runs[~runs["pretrained"]]
    if random_init.empty:
        return None
    base = random_init.assign(backbone=random_init["backbone"].str.removesuffix("_random_init"))
    keys = ["dataset", "backbone", "method", "k_label", "resolution", "seed"]
    joined = base.set_index(keys)[["accuracy"]].join(runs[runs["pretrained"]].set_index(keys)[["accuracy"]],
                                                      suffixes=("_random", "_pretrained"), how="inner")
    if joined.empty:
        return None
    gain = 100 * (joined["accuracy_pretrained"] - joined["accuracy_random"])
    return Guideline("Why transfer at all",
                     f"ImageNet weights beat the same network with random weights by {gain.mean():.1f} points on "
                     f"average (in {(gain > 0).mean():.0%} of {len(gain)} matched runs).",
                     {"mean gain (points)": round(float(gain.mean()), 1), "win rate": round(float((gain > 0).mean()), 2),
                      "cases": len(gain)})


PILOT_GAIN_POINTS = 3.0  # a pilot gain this large or larger reads as "fine-tuning pays here"


def pilot_gain(runs: pd.DataFrame, probes: pd.DataFrame) -> Guideline | None:
    """How well the probe's fine-tuning pilot (one run at the probe's largest k) foretells the gain fine-tuning
    measured with more data: the pilots' gains (``study.evidence.pilot_table``) against the measured best-FT minus
    best-FE gaps (``study.evidence.crossovers``)."""
    if probes is None or probes.empty:
        return None
    pilots = pilot_table(probes).set_index("dataset")
    gaps = crossovers(runs).set_index("dataset")[["FT-FE k=100", "FT-FE k=max"]]
    table = pilots.join(gaps, how="inner").rename(columns={"pilot_gain_points": "pilot gain", "FT-FE k=100":
                                                           "gain at k=100", "FT-FE k=max": "gain at max"})
    table = table[["k", "pilot gain", "gain at k=100", "gain at max"]].astype(float).dropna()
    if len(table) < 3:
        return None
    pays = table["pilot gain"] >= PILOT_GAIN_POINTS
    r_100, r_max = (float(np.corrcoef(table["pilot gain"], table[column])[0, 1]) for column in ("gain at k=100",
                                                                                                "gain at max"))
    numbers = {"Pearson r, pilot gain vs gain at k=100": round(r_100, 2),
               "Pearson r, pilot gain vs gain at max": round(r_max, 2),
               **{dataset: {key: round(float(row[key]), 1) for key in ("pilot gain", "gain at k=100", "gain at max")}
                  for dataset, row in table.iterrows()}}
    return Guideline(
        "Measure the fine-tuning gain before paying for it",
        f"The probe's fine-tuning pilot (`python -m study.probe YOUR_IMAGES --finetune-pilot`: one run of the "
        f"study's recipe at k = {int(table['k'].max())}, minutes on a CPU) measures how much fine-tuning gains "
        f"over the best extraction on the task's own images. Across {len(table)} study datasets its gain tracks the "
        f"gain measured at k = 100 (Pearson r = {r_100:.2f}) and at the largest k (r = {r_max:.2f}). Where the pilot "
        f"gained {PILOT_GAIN_POINTS:g} points or more ({int(pays.sum())} datasets), fine-tuning gained "
        f"{signed(table.loc[pays, 'gain at k=100'].mean())} points on average at k = 100; elsewhere "
        f"{signed(table.loc[~pays, 'gain at k=100'].mean())}.", numbers)


def derive(tables: dict) -> list[Guideline]:
    # the convergence and resolution checks' runs are not evidence: read first
    gains = budget_gains(budget_pairs(tables["runs"]))
    resolution = small_image_resolution(pairs_by_family(tables["runs"], tables["datasets"]))
    tables = evidence_only(tables)
    rows = evidence_rows(tables)
    found = [crossover(tables["runs"], rows, gains), cost_ratios(tables["runs"]), fne_vs_linear(rows),
             resolution, partial_vs_full(rows), tuning_cost(tables["trials"]), transfer_gain(tables["runs"]),
             pilot_gain(tables["runs"], tables.get("probe_curves"))]
    return [g for g in found if g is not None]


def to_markdown(guidelines: list[Guideline], tables: dict) -> str:
    runs = evidence_only(tables)["runs"]  # what ``derive`` learns from: the checks' runs are not counted
    grids = ", ".join(sorted(runs["grid"].unique()))
    lines = ["# Guidelines derived from the evidence", "",
             f"Generated by `python -m recommender.guidelines` from the {len(runs)} runs of the evidence grids "
             f"({grids}) over {runs['dataset'].nunique()} datasets (last run {runs['finished_at'].max()}).", ""]
    if params := measured_backbone_params(tables):
        lines += [backbone_scope(params), ""]
    for number, guideline in enumerate(guidelines, 1):
        lines += [f"## {number}. {guideline.title}", "", guideline.statement, ""]
        if guideline.points:
            lines += [f"- {point}" for point in guideline.points] + [""]
        lines += _bullets(guideline.numbers)
        lines.append("")
    return "\n".join(lines)


def _bullets(numbers: dict, depth: int = 0) -> list[str]:
    """Nested numbers as nested bullet lists (never a raw dict)."""
    lines = []
    for key, value in numbers.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * depth}- {key}:", *_bullets(value, depth + 1)]
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            lines.append(f"{'  ' * depth}- {key}: {shown}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate data/GUIDELINES.md from the evidence.")
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--out", default=str(OUTPUT))
    args = parser.parse_args(argv)
    tables = load_tables(args.db)
    Path(args.out).write_text(to_markdown(derive(tables), tables))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
