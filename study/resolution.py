"""``python -m study.resolution``: which working resolution suits small images?

The evidence measures every option at 128 px. A user's 28 px images can be upscaled less (cheaper) or to the
backbones' native 224 px (what they were pretrained at). The ``cpu-resolution`` check runs feature extraction on the
study's small-image datasets at other resolutions; each of its runs is paired with the run of the same spec (dataset,
backbone, method, k, seed) at the evidence's resolution, and the difference in test accuracy is what that resolution
gains or loses. The advisor upscales small images to the resolution these pairs favour (``best_upscale``).

    python -m study.resolution              # tables from data/study.duckdb
    python -m study.resolution --markdown   # the same as the section of data/EVIDENCE.md
"""
from __future__ import annotations

import argparse

import pandas as pd

from study.datasets import native_shorter_side
from study.markdown import markdown_table
from study.spec import finetuning_rows
from study.store import DEFAULT_DB, EvidenceError, read_tables

REFERENCE_PX = 128  # the evidence grid's resolution
SPEC_COLUMNS = ["dataset", "backbone", "method", "k_label", "seed"]


def resolution_pairs(runs: pd.DataFrame, datasets: pd.DataFrame, reference_px: int = REFERENCE_PX) -> pd.DataFrame:
    """One row per pretrained extraction run on small images (the dataset's ``native_size`` smaller than
    ``reference_px``: upscaled at every resolution) at another resolution, with a twin at ``reference_px``: accuracy
    (%) at both and the change. Larger images, downscaled (the smoke grid's 96 px runs), answer another question."""
    runs = runs.merge(datasets[["name", "native_size"]].rename(columns={"name": "dataset"}), on="dataset")
    small = runs["native_size"].map(native_shorter_side) < reference_px
    fe = runs[small & runs["pretrained"] & ~finetuning_rows(runs["method"])]
    reference = fe[fe["resolution"] == reference_px].drop_duplicates(SPEC_COLUMNS).set_index(SPEC_COLUMNS)
    other = fe[fe["resolution"] != reference_px]
    pairs = other.join(reference["accuracy"].rename("accuracy_reference"), on=SPEC_COLUMNS, how="inner")
    pairs = pairs.assign(accuracy=pairs["accuracy"] * 100, accuracy_reference=pairs["accuracy_reference"] * 100,
                         images_per_class=pairs["images_per_class"].round().astype(int))
    pairs["change"] = pairs["accuracy"] - pairs["accuracy_reference"]
    return pairs[["dataset", "native_size", "resolution", "backbone", "method", "images_per_class", "seed",
                  "accuracy", "accuracy_reference", "change"]].reset_index(drop=True)


def by_resolution(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per resolution: runs, datasets, the mean change (points) and its spread over datasets (each dataset's mean
    counts once: runs of one dataset share its images)."""
    per_dataset = pairs.groupby(["resolution", "dataset"])["change"].mean()
    summary = per_dataset.groupby("resolution").agg(datasets="size", mean_change="mean", worst_dataset="min",
                                                    best_dataset="max")
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
    """What the advisor upscales small images to, and the evidence for it: the measured resolution whose extraction
    accuracy on small images was highest on average over datasets (``reference_px`` itself, change 0, where none
    beats it; the smaller of two that tie), its mean change against ``reference_px`` (None: nothing measured), every
    measured resolution's, the datasets and paired runs behind them."""
    changes = {}
    if len(pairs):
        summary = by_resolution(pairs).set_index("resolution")["mean_change"]
        changes = {int(px): float(change) for px, change in summary.items()}
    resolution, change = reference_px, None
    if changes:
        resolution, change = max({reference_px: 0.0, **changes}.items(), key=lambda item: (item[1], -item[0]))
    return {"resolution_px": resolution, "change_points": change, "reference_px": reference_px,
            "change_points_by_px": changes, "datasets": int(pairs["dataset"].nunique()), "runs": len(pairs)}


def render_markdown(pairs: pd.DataFrame, reference_px: int = REFERENCE_PX) -> str:
    if pairs.empty:
        return "Not measured yet: `python -m study.run --grid cpu-resolution` runs the check."
    resolution, change = best_upscale(pairs, reference_px)
    summary = by_resolution(pairs).rename(columns={
        "resolution": "resolution (px)", "mean_change": f"mean change vs {reference_px} px (points)",
        "worst_dataset": "worst dataset", "best_dataset": "best dataset"})
    table = by_dataset(pairs).rename(columns={"resolution": "resolution (px)", "images_per_class": "k",
                                              "accuracy": "accuracy (%)",
                                              "accuracy_reference": f"at {reference_px} px (%)",
                                              "change": "change (points)"})
    verdict = (f"Small images are upscaled to {resolution} px: the best mean extraction accuracy over these datasets"
               + ("." if resolution == reference_px else f" ({change:+.1f} points against {reference_px} px)."))
    return "\n".join([
        f"Feature extraction on the small-image datasets at other resolutions, each run paired with the same spec at "
        f"{reference_px} px (the evidence's); `python -m study.resolution` regenerates these tables. {verdict}", "",
        markdown_table(summary.round(2)), "", markdown_table(table.round(2)), ""])


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
    pairs = resolution_pairs(tables["runs"], tables["datasets"])
    if args.markdown or pairs.empty:
        print(render_markdown(pairs))
    else:
        with pd.option_context("display.width", 160, "display.max_rows", 200):
            print(by_resolution(pairs).round(2).to_string(index=False))
            print(by_dataset(pairs).round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
