"""``python -m study.evidence``: writes data/EVIDENCE.md from the DuckDB — what ran, where, when, and headline
tables — so the shipped evidence describes itself and never drifts from the database."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from study.convergence import budget_gained_sentence, render_markdown, report
from study.resolution import pairs_by_family, render_markdown as resolution_markdown
from study.grid_file import evidence_grids
from study.markdown import markdown_table
from study.spec import finetuning_rows
from study.store import DEFAULT_DB, EvidenceError, read_tables

OUTPUT = DEFAULT_DB.parent / "EVIDENCE.md"
K_ORDER = ["1", "2", "5", "10", "20", "50", "100", "max"]


def capped_as_max(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose k label the dataset capped at its largest k (DTD's 100 at its 80 images per class) relabelled
    ``max``: the same training images are one cell, not two. Extraction measures them identically, so two labels
    would count one measurement twice. The grid no longer plans a capped k beside its max (``study.grid``); this
    reads the runs stored before it stopped, and a capped k whose seed the max cell lacks, as that one cell."""
    largest = runs.loc[runs["k_label"] == "max"].groupby("dataset")["images_per_class"].max()
    capped = (runs["k_label"] != "max") & (runs["images_per_class"] == runs["dataset"].map(largest))
    return runs.assign(k_label=runs["k_label"].where(~capped, "max"))


def accuracy_table(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean test accuracy (%) over seeds by option (method · backbone @ resolution) and k; a k the dataset capped at
    its whole pool is its max (``capped_as_max``)."""
    rows = capped_as_max(runs[runs["dataset"] == dataset])
    rows["option"] = rows["method"] + " · " + rows["backbone"] + " @" + rows["resolution"].astype(str)
    table = rows.pivot_table(index="option", columns="k_label", values="accuracy", aggfunc="mean") * 100
    seeds = rows.pivot_table(index="option", columns="k_label", values="seed", aggfunc="nunique")
    cells = table.round(1).astype(str) + " (" + seeds.astype("Int64").astype(str) + ")"
    cells = cells.where(table.notna())
    cells = cells[[k for k in K_ORDER if k in cells.columns]]
    return cells.reset_index()


def matched_cost_ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """ft_full vs fe_linear on the same (dataset, backbone, k, seed, resolution) and the same machine: both runs'
    time and energy and their FT/FE ratios, one row per matched pair. Same machine, not just the same kind: the
    study's CPUs fine-tune up to 2.5x apart, so a pair across two of them would measure the machines."""
    keys = ["dataset", "backbone", "k_label", "seed", "resolution", "device_type", "hardware_id"]
    fe = runs[runs["method"] == "fe_linear"].set_index(keys)[["total_s", "energy_j"]]
    ft = runs[runs["method"] == "ft_full"].set_index(keys)[["total_s", "energy_j", "n_trials"]]
    both = fe.join(ft, how="inner", suffixes=("_fe", "_ft"))
    both["time_ratio"] = both["total_s_ft"] / both["total_s_fe"]
    both["energy_ratio"] = both["energy_j_ft"] / both["energy_j_fe"]
    return both.reset_index()


def family_of(methods: pd.Series) -> np.ndarray:
    """'FT' for fine-tuning methods, 'FE' for feature extraction."""
    return np.where(finetuning_rows(methods), "FT", "FE")


def seed_spread(runs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """{(family, k label): the seed-to-seed standard deviation of test accuracy (points)}, pooled (root mean
    variance) over every dataset and option with two or more seeds there, pretrained backbones only. A seed draws
    both the training images and the initialisation: it is the noise a single run's accuracy carries."""
    runs = runs[runs["pretrained"]]
    per_option = (runs.assign(family=family_of(runs["method"]))
                  .groupby(["family", "k_label", "dataset", "method", "backbone"])["accuracy"].var().dropna())
    return {key: float(100 * np.sqrt(variance)) for key, variance in per_option.groupby(["family", "k_label"]).mean()
            .items()}


def _spread_at(spread: dict, family: str, k_label: str) -> float | None:
    """The seed spread of ``family`` at ``k_label``, else at the nearest smaller measured k (a single run's noise
    shrinks as k grows, so this errs wide), else the nearest larger; None if the family has no repeated seeds."""
    position = K_ORDER.index(k_label)
    measured = sorted((K_ORDER.index(k), sd) for (f, k), sd in spread.items() if f == family and k in K_ORDER)
    if not measured:
        return None
    below = [sd for k, sd in measured if k <= position]
    return below[-1] if below else measured[0][1]


def best_by_family(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, k): the best feature-extraction and the best fine-tuning option (mean accuracy over seeds),
    their accuracies and mean wall times; pretrained backbones only. Of options tied on accuracy, the cheaper (a
    practitioner's pick; an unstable sort had let the rows' order choose, and the reported wall time with it)."""
    runs = runs[runs["pretrained"]]
    means = (runs.groupby(["dataset", "k_label", "method", "backbone"], as_index=False)
             .agg(images_per_class=("images_per_class", "mean"), accuracy=("accuracy", "mean"),
                  total_s=("total_s", "mean"), seeds=("seed", "nunique")))
    means["family"] = family_of(means["method"])
    best = (means.sort_values(["accuracy", "total_s"], ascending=[True, False], kind="stable")
            .groupby(["dataset", "k_label", "family"]).tail(1))
    wide = best.pivot(index=["dataset", "k_label"], columns="family",
                      values=["accuracy", "total_s", "method", "backbone", "images_per_class", "seeds"])
    wide.columns = [f"{family}_{value}" for value, family in wide.columns]
    return wide.reset_index()


def _k_text(row: pd.Series) -> str:
    """A measured k for reading: its label, with the images per class when the label is 'max'."""
    return f"max ({row['k']:.0f})" if row["k_label"] == "max" else str(row["k_label"])


def gap_noise(top: pd.Series, spread: dict) -> float | None:
    """Two standard errors (points) of one FT - FE gap: each family's seed spread at that k over the square root
    of its seeds there. None where either family's spread is unmeasured."""
    spreads = [_spread_at(spread, family, top["k_label"]) for family in ("FT", "FE")]
    if None in spreads:
        return None
    return 2 * float(np.sqrt(sum(sd**2 / float(top[f"{family}_seeds"]) for sd, family in zip(spreads, ("FT", "FE")))))


def verdict(gap: float, noise: float | None) -> str:
    """Who leads, or that the lead is within seed noise (two standard errors of the gap)."""
    if noise is not None and abs(gap) <= noise:
        return "within seed noise"
    return "fine-tuning ahead" if gap > 0 else "extraction ahead"


def crossovers(runs: pd.DataFrame, ks=("5", "20", "100", "max")) -> pd.DataFrame:
    """Per dataset: FT - FE (points, best option of each family) at the given k, the crossover (the smallest
    measured k from which fine-tuning wins at every larger measured k, or none up to the largest), and the points
    gained, two standard errors of that gain from the measured seed spreads (``gap_noise``), who leads beyond that
    noise and the wall-time multiple at the largest k where both were measured."""
    best = best_by_family(runs)
    if not {"FE_accuracy", "FT_accuracy"} <= set(best.columns):
        return pd.DataFrame()
    best = best.dropna(subset=["FE_accuracy", "FT_accuracy"])
    spread = seed_spread(runs)
    rows = []
    for dataset, group in best.groupby("dataset"):
        group = group.assign(k=group["FE_images_per_class"].astype(float)).sort_values("k")
        gap = 100 * (group["FT_accuracy"].astype(float) - group["FE_accuracy"].astype(float))
        wins = gap.to_numpy() > 1e-6  # a tie (to floating-point noise) is not a win
        ahead = [i for i in range(len(wins)) if wins[i:].all()]
        top = group.iloc[-1]
        row = {"dataset": dataset, **{f"FT-FE k={k}": round(float(gap[group["k_label"] == k].iloc[0]), 1)
                                      if (group["k_label"] == k).any() else None for k in ks},
               "crossover_k": _k_text(group.iloc[ahead[0]]) if ahead else f"none up to {_k_text(top)}",
               "crossover_images_per_class": float(group["k"].iloc[ahead[0]]) if ahead else None,
               "largest_k": _k_text(top), "points_at_largest_k": round(float(gap.iloc[-1]), 1)}
        noise = gap_noise(top, spread)
        row.update({"seed_noise_at_largest_k": None if noise is None else round(noise, 1),
                    "verdict_at_largest_k": verdict(float(gap.iloc[-1]), noise),
                    "time_multiple_at_largest_k": round(float(top["FT_total_s"]) / float(top["FE_total_s"]), 1)})
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Median FT/FE wall-time and energy ratios per dataset and device."""
    both = matched_cost_ratios(runs)
    if both.empty:
        return pd.DataFrame()
    out = both.groupby(["dataset", "device_type"]).agg(
        matched_runs=("time_ratio", "size"), ft_trials=("n_trials", "max"),
        fe_s=("total_s_fe", "median"), ft_s=("total_s_ft", "median"),
        time_ratio=("time_ratio", "median"), energy_ratio=("energy_ratio", "median")).round(2)
    return out.reset_index()


def _recipes(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (grid, fine-tuning recipe): runs, and the recipe's settings."""
    ft = runs[finetuning_rows(runs["method"])]
    rows = []
    for (grid, recipe), group in ft.groupby(["grid", "recipe"], dropna=False):
        settings = json.loads(group["spec"].iloc[0])["finetune"]
        rows.append({"grid": grid, "recipe": recipe, "runs": len(group),
                     "learning rates": ", ".join(f"{r:g}" for r in settings["learning_rates"]),
                     "epochs (<= 256 images)": settings["epochs"], "min epochs": settings.get("min_epochs", ""),
                     "min steps": settings["min_steps"], "budget x": settings.get("budget_scale", 1.0),
                     "batch": settings["batch_size"], "checks": settings["evaluations"]})
    return pd.DataFrame(rows)


def pilot_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Per study dataset with a fine-tuning pilot: the pilot's accuracy at its k, the best probed extraction option
    there and the difference (the probe's own measurements, ``python -m study.probe --study-datasets
    --finetune-pilot``), with the probe's time, commit and date."""
    tuned = finetuning_rows(probes["method"])
    pilots = probes[tuned]
    extraction = probes[~tuned].merge(pilots[["dataset", "k"]], on=["dataset", "k"])
    best = extraction.groupby("dataset")["accuracy"].max().rename("best_probed_extraction")
    table = pilots.set_index("dataset").join(best)
    return pd.DataFrame({
        "dataset": table.index, "k": table["k"].to_numpy(),
        "pilot_%": (100 * table["accuracy"]).round(1).to_numpy(),
        "best_probed_extraction_%": (100 * table["best_probed_extraction"]).round(1).to_numpy(),
        "pilot_gain_points": (100 * (table["accuracy"] - table["best_probed_extraction"])).round(1).to_numpy(),
        "probe_and_pilot_s": table["seconds"].round(0).to_numpy(), "git_commit": table["git_commit"].str[:7].to_numpy(),
        "created_at": table["created_at"].to_numpy()}).sort_values("dataset")


def probe_machines(probes: pd.DataFrame, hardware: pd.DataFrame) -> pd.Series:
    """Per probed dataset, the CPU its probe ran on; "not recorded" for probes stored before probes recorded it."""
    datasets = sorted(probes["dataset"].unique())
    ids = probes.groupby("dataset")["hardware_id"].first() if "hardware_id" in probes else pd.Series(index=datasets)
    return ids.reindex(datasets).map(hardware.set_index("hardware_id")["cpu_model"]).fillna("not recorded")


def render(db: Path) -> str:
    tables = read_tables(db, ("runs", "trials", "trial_curves", "hardware", "datasets", "extractions",
                              "probe_curves", "failures"))
    failures = len(tables["failures"])
    runs, hardware, datasets = tables["runs"], tables["hardware"], tables["datasets"]
    evidence = runs[runs["grid"].isin(evidence_grids())]
    spread = (tables["extractions"].groupby(["backbone", "resolution", "hardware_id"])
              .agg(extractions=("images_per_s", "size"), min_img_s=("images_per_s", "min"),
                   median_img_s=("images_per_s", "median"), max_img_s=("images_per_s", "max"),
                   median_cpu_utilisation=("cpu_utilisation", "median")).round(2).reset_index())
    lines = ["# Evidence shipped in data/study.duckdb", "",
             "Generated by `python -m study.evidence` from the database; every number below is a real run of "
             "`python -m study.run` on real data.", "",
             f"- runs: **{len(runs)}** over **{runs['dataset'].nunique()}** datasets, "
             f"{runs['backbone'].nunique()} backbones, methods {', '.join(sorted(runs['method'].unique()))}",
             f"- fine-tuning runs: **{int(runs['method'].str.startswith('ft_').sum())}**, with "
             f"**{len(tables['trials'])}** trainings (each learning rate its own) and "
             f"{len(tables['trial_curves'])} validation checks stored as curves",
             f"- recorded failures: {failures}",
             f"- dates: {runs['started_at'].min()} to {runs['finished_at'].max()}",
             f"- git commits: {', '.join(sorted(runs['git_commit'].unique()))}",
             f"- software: torch {', '.join(sorted(runs['torch_version'].unique()))}; timm "
             f"{', '.join(sorted(runs['timm_version'].unique()))}; scikit-learn "
             f"{', '.join(sorted(runs['sklearn_version'].unique()))}; Python "
             f"{', '.join(sorted(runs['python_version'].unique()))}", ""]
    counts = (runs.groupby(["grid", "device_type", "energy_source", "method"], dropna=False).size()
              .rename("runs").reset_index())
    lines += ["## What ran, where", "",
              f"The recommender learns from the grids marked as evidence ({', '.join(sorted(evidence_grids()))}); "
              "the others are checks (a smoke test, the convergence check).", "", markdown_table(counts), ""]
    recipes = _recipes(runs)
    if not recipes.empty:
        lines += ["### Fine-tuning recipes", "",
                  "Every fine-tuning run records its recipe (`runs.recipe`, the full settings in `runs.spec`). "
                  "Budgets are epochs, never capped by a step limit: the epochs below up to 256 training images, "
                  "then shrinking as the square root of the set's size down to the minimum, with a floor of steps "
                  "for few-shot sets; every trial runs its whole warm-up + cosine schedule and keeps its final "
                  "weights; the validation split chooses the learning rate.", "", markdown_table(recipes), ""]
    hw = hardware[["hardware_id", "device_type", "cpu_model", "cpu_count", "torch_threads", "memory_gb",
                   "gpu_model", "gpu_count"]]
    lines += ["### Hardware", "", markdown_table(hw), "",
              "Energy: `nvml` = the GPU's total-energy counter; `estimated` = CPU runs, no energy counter, "
              "10 W per busy thread x threads x wall time (a stated model, not a measurement).", ""]
    per_machine = runs.merge(hardware[["hardware_id", "cpu_model"]], on="hardware_id", how="left").pivot_table(
        index="dataset", columns="cpu_model", values="run_id", aggfunc="count", fill_value=0)
    lines += ["Runs per dataset on each machine (times and estimated energy compare only within one machine; the "
              "cost model reads the machine with the most runs of its kind):", "",
              markdown_table(per_machine.reset_index()), ""]
    ds = datasets[["name", "domain", "n_classes", "channels", "n_train_pool", "n_test", "split", "licence"]]
    lines += ["## Datasets", "", markdown_table(ds), ""]
    lines += ["## Accuracy by method x images per class", "",
              "Mean test accuracy in % over seeds (number of seeds in brackets), evidence grids only. "
              "`_random_init` backbones are the no-transfer baseline.", ""]
    for dataset in sorted(evidence["dataset"].unique()):
        lines += [f"### {dataset}", "", markdown_table(accuracy_table(evidence, dataset)), ""]
    gaps, convergence = crossovers(evidence), report(tables)
    if not gaps.empty:
        lines += ["## When fine-tuning overtakes extraction", "",
                  "Best fine-tuning option minus best feature-extraction option (points, means over seeds) at each "
                  "k; the crossover is the smallest measured k from which fine-tuning wins at every larger measured "
                  "k; the seed noise is two standard errors of the gap at the largest k, from the seed-to-seed "
                  "spread measured per family and k (at the nearest smaller k where a k has no repeated seeds); "
                  "the time multiple is FT / FE wall time at the largest k.", "", markdown_table(gaps), ""]
        gained = budget_gained_sentence(convergence["budget"]["by_dataset"])
        lines += [gained, ""] if gained else []
    pilots = pilot_table(tables["probe_curves"])
    if not pilots.empty:
        pilots["machine"] = probe_machines(tables["probe_curves"], hardware).reindex(pilots["dataset"]).to_numpy()
        lines += ["## The probe's fine-tuning pilot on the study datasets", "",
                  "One run of the fine-tuning recipe (`ft_full`, mobilenetv2_100, 128 px) on the probe's first draw "
                  "of each dataset's train split, tested on the probe's test images (at most 50 a class), beside "
                  "the best extraction option the probe measured at the same k (mean of 5 draws). The recommender "
                  "learns from these what a user's pilot means. Seconds: the whole probe, pilot included, on the "
                  "2-core CPU named (times compare only within one machine).", "", markdown_table(pilots), ""]
    lines += ["## Convergence of the fine-tuning recipe", "", render_markdown(convergence), ""]
    lines += ["## Working resolution for small images", "",
              resolution_markdown(pairs_by_family(tables["runs"], datasets)), ""]
    utilisation = runs[runs["device_type"] == "cpu"].groupby(["grid", "method"])["cpu_utilisation"].describe(
        percentiles=[0.1, 0.5])[["count", "min", "10%", "50%"]].round(2).astype({"count": int}).reset_index()
    lines += ["## Measurement conditions", "",
              "CPU utilisation = CPU seconds the run's process used / (wall seconds x torch threads). Fine-tuning "
              "near 1 ran alone; well below 1, other work shared the cores and its timings are pessimistic. "
              "Feature runs sit lower by design (their scikit-learn fits use one thread). Runs made before this was "
              "recorded show no value.", "", markdown_table(utilisation), "",
              "Throughput of the one shared feature extraction per dataset, backbone and resolution, per machine:",
              "", markdown_table(spread), ""]
    ratios = ratio_table(evidence)
    if not ratios.empty:
        lines += ["## Fine-tuning vs feature extraction: cost ratios", "",
                  "Median over matched runs of ft_full (all learning-rate trials) / fe_linear (its share of the "
                  "shared extraction + fit).", "", markdown_table(ratios), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write data/EVIDENCE.md from the study database.")
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--out", default=str(OUTPUT))
    args = parser.parse_args(argv)
    try:
        text = render(Path(args.db))
    except EvidenceError as error:
        parser.exit(1, f"{error}\n")
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
