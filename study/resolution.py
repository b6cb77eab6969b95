"""``python -m study.resolution``: which working resolution suits small images?

The evidence measures every option at 128 px. A user's 28 px images can be upscaled less (cheaper) or to the
backbones' native 224 px (what they were pretrained at). The ``cpu-resolution`` check runs feature extraction, and
fine-tuning, on the study's small-image datasets at other resolutions; each of its runs is paired with the run of
the same spec (dataset, backbone, method, k, seed and fine-tuning recipe) at the evidence's resolution, and the
difference in test accuracy is what that resolution gains or loses. The advisor upscales small images to the
resolution these pairs favour (``best_upscale``), for each family on its own pairs.

    python -m study.resolution              # tables from data/study.duckdb
    python -m study.resolution --markdown   # the same as the section of data/EVIDENCE.md
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from study.datasets import native_shorter_side
from study.markdown import markdown_table, signed
from study.spec import finetuning_rows
from study.store import DEFAULT_DB, EvidenceError, read_tables

REFERENCE_PX = 128  # the evidence grid's resolution
SPEC_COLUMNS = ["dataset", "backbone", "method", "k_label", "seed", "recipe"]
FAMILIES = {False: "feature extraction", True: "fine-tuning"}
MIN_DATASETS = 3  # a resolution measured on fewer small-image datasets is reported, not acted on


def resolution_pairs(runs: pd.DataFrame, datasets: pd.DataFrame, reference_px: int = REFERENCE_PX,
                     finetuning: bool = False) -> pd.DataFrame:
    """One row per pretrained extraction run (``finetuning``: fine-tuning run) on small images (the dataset's
    ``native_size`` smaller than ``reference_px``: upscaled at every resolution) at another resolution, with a twin
    at ``reference_px``: accuracy (%) at both and the change. Larger images, downscaled (the smoke grid's 96 px runs),
    answer another question."""
    runs = runs.merge(datasets[["name", "native_size"]].rename(columns={"name": "dataset"}), on="dataset")
    runs = runs.assign(recipe=runs["recipe"].fillna("") if "recipe" in runs else "")  # extraction has none
    small = runs["native_size"].map(native_shorter_side) < reference_px
    family = runs[small & runs["pretrained"] & (finetuning_rows(runs["method"]) == finetuning)]
    reference = family[family["resolution"] == reference_px].drop_duplicates(SPEC_COLUMNS).set_index(SPEC_COLUMNS)
    other = family[family["resolution"] != reference_px]
    pairs = other.join(reference["accuracy"].rename("accuracy_reference"), on=SPEC_COLUMNS, how="inner")
    pairs = pairs.assign(accuracy=pairs["accuracy"] * 100, accuracy_reference=pairs["accuracy_reference"] * 100,
                         images_per_class=pairs["images_per_class"].round().astype(int))
    pairs["change"] = pairs["accuracy"] - pairs["accuracy_reference"]
    return pairs[["dataset", "native_size", "resolution", "backbone", "method", "images_per_class", "seed",
                  "accuracy", "accuracy_reference", "change"]].reset_index(drop=True)


def pairs_by_family(runs: pd.DataFrame, datasets: pd.DataFrame, reference_px: int = REFERENCE_PX) -> dict:
    """``resolution_pairs`` of each family: {False: extraction, True: fine-tuning}."""
    return {finetuning: resolution_pairs(runs, datasets, reference_px, finetuning) for finetuning in FAMILIES}


def _dataset_changes(pairs: pd.DataFrame) -> pd.Series:
    """Each (resolution, dataset)'s mean change: over datasets each counts once (runs of one dataset share its
    images, so they are not independent evidence)."""
    return pairs.groupby(["resolution", "dataset"])["change"].mean()


def by_resolution(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per resolution: runs, datasets, the mean change (points) over datasets and the worst and best dataset's."""
    summary = _dataset_changes(pairs).groupby("resolution").agg(datasets="size", mean_change="mean",
                                                                worst_dataset="min", best_dataset="max")
    summary.insert(0, "runs", pairs.groupby("resolution").size())
    return summary.reset_index()


def by_dataset(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, resolution and k: the mean change over backbones, methods and seeds."""
    return (pairs.groupby(["dataset", "native_size", "resolution", "images_per_class"], as_index=False)
            .agg(runs=("change", "size"), accuracy=("accuracy", "mean"),
                 accuracy_reference=("accuracy_reference", "mean"), change=("change", "mean")))


def best_upscale(pairs: pd.DataFrame, reference_px: int = REFERENCE_PX) -> tuple[int, float | None]:
    """(resolution, its mean change against ``reference_px`` in points), as ``upscale_rule`` chooses them."""
    rule = upscale_rule(pairs, reference_px)
    return rule["resolution_px"], rule["change_points"]


def upscale_rule(pairs: pd.DataFrame, reference_px: int = REFERENCE_PX) -> dict:
    """What the advisor upscales small images to, and the evidence for it: the measured resolution whose accuracy on
    small images was highest on average over datasets, among those that beat ``reference_px`` by more than the
    standard error of that mean (a gain within the spread over datasets does not justify the extra compute:
    ``reference_px`` itself, change 0, where none does; the smaller of two that tie), its mean change against
    ``reference_px`` (None: nothing to act on), every compared resolution's, the datasets and paired runs behind
    them. Resolutions are compared like with like, on the datasets measured at each of them; one measured on fewer
    than ``MIN_DATASETS`` datasets is left out (``too_few``: its datasets), so a check still running does not decide
    on one or two datasets."""
    measured = pairs.groupby("resolution")["dataset"].nunique() if len(pairs) else pd.Series(dtype=int)
    kept = measured[measured >= MIN_DATASETS].index
    compared = pairs[pairs["resolution"].isin(kept)] if len(pairs) else pairs
    if len(compared):
        common = set.intersection(*(set(group) for _, group in compared.groupby("resolution")["dataset"]))
        compared = compared[compared["dataset"].isin(common)]
    changes, clear = {}, {}
    if len(compared) and compared["dataset"].nunique() >= MIN_DATASETS:
        per_dataset = _dataset_changes(compared).groupby("resolution")
        changes = {int(px): float(change) for px, change in per_dataset.mean().items()}
        error = per_dataset.std() / np.sqrt(per_dataset.size())
        clear = {px: change for px, change in changes.items() if change - float(error[px]) > 0}
    resolution, change = reference_px, None
    if changes:
        resolution, change = max({reference_px: 0.0, **clear}.items(), key=lambda item: (item[1], -item[0]))
    return {"resolution_px": resolution, "change_points": change, "reference_px": reference_px,
            "change_points_by_px": changes, "datasets": int(compared["dataset"].nunique()) if changes else 0,
            "runs": len(compared) if changes else 0,
            "too_few": {int(px): int(n) for px, n in measured.items() if n < MIN_DATASETS}}


def _family_markdown(pairs: pd.DataFrame, finetuning: bool, reference_px: int) -> list[str]:
    family = FAMILIES[finetuning]
    if pairs.empty:
        return [f"{family.capitalize()}: not measured at other resolutions yet; the advisor runs it at "
                f"{reference_px} px, where the evidence measured it.", ""]
    rule = upscale_rule(pairs, reference_px)
    summary = by_resolution(pairs).rename(columns={
        "resolution": "resolution (px)", "mean_change": f"mean change vs {reference_px} px (points)",
        "worst_dataset": "worst dataset", "best_dataset": "best dataset"})
    table = by_dataset(pairs).rename(columns={"resolution": "resolution (px)", "images_per_class": "k",
                                              "accuracy": "accuracy (%)",
                                              "accuracy_reference": f"at {reference_px} px (%)",
                                              "change": "change (points)"})
    too_few = "; ".join(f"{px} px is measured on {n} dataset{'s' if n > 1 else ''} so far"
                        for px, n in rule["too_few"].items())
    too_few = f" Not yet acted on ({MIN_DATASETS} datasets needed): {too_few}." if too_few else ""
    if rule["change_points"] is None:
        verdict = f"The advisor runs {family} at {reference_px} px until then."
    elif rule["resolution_px"] == reference_px:
        verdict = (f"Small images run at {reference_px} px for {family}: no resolution beat it by more than the "
                   f"standard error of its mean change over the {rule['datasets']} datasets measured at every "
                   "resolution compared.")
    else:
        verdict = (f"Small images are upscaled to {rule['resolution_px']} px for {family}: its mean accuracy over the "
                   f"{rule['datasets']} datasets measured at every resolution compared was the best, "
                   f"{signed(rule['change_points'])} points against {reference_px} px (more than its standard error).")
    verdict = too_few.strip() + (" " if too_few else "") + verdict
    return [f"{family.capitalize()} on the small-image datasets at other resolutions, each run paired with the same "
            f"spec at {reference_px} px (the evidence's). {verdict}", "", markdown_table(summary.round(2)), "",
            markdown_table(table.round(2)), ""]


def render_markdown(pairs: dict, reference_px: int = REFERENCE_PX) -> str:
    """The EVIDENCE.md section: each family's pairs (``pairs_by_family``), summarised and per dataset."""
    if all(family.empty for family in pairs.values()):
        return "Not measured yet: `python -m study.run --grid cpu-resolution` runs the check."
    parts = ["`python -m study.resolution` regenerates these tables.", ""]
    for finetuning, family in pairs.items():
        parts += _family_markdown(family, finetuning, reference_px)
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.resolution", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--markdown", action="store_true", help="print the EVIDENCE.md section")
    args = parser.parse_args(argv)
    try:
        tables = read_tables(args.db, ("runs", "datasets"))
    except EvidenceError as error:
        parser.exit(1, f"{error}\n")
    pairs = pairs_by_family(tables["runs"], tables["datasets"])
    if args.markdown:
        print(render_markdown(pairs))
        return 0
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        for finetuning, family in FAMILIES.items():
            print(f"{family}:")
            if pairs[finetuning].empty:
                print("  not measured at other resolutions")
                continue
            print(by_resolution(pairs[finetuning]).round(2).to_string(index=False))
            print(by_dataset(pairs[finetuning]).round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
