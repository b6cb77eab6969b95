"""Decision quality, measured: leave one dataset out, advise on it, and compare with hindsight and rules of thumb.

For each held-out dataset, k and budget scenario, the advisor (fitted without that dataset) picks an option; its
realised accuracy and cost are the held-out dataset's own measurements. The oracle is the best realised option
within budget; the baselines are "always fine-tune", "always extract" and the seed paper's rule of thumb (extract
below a k threshold, fine-tune above; threshold fitted on the other datasets). Accuracy prediction error and 80%
interval coverage are measured on every option, with and without the probe feature.

    python -m recommender.evaluate        # writes data/recommender_evaluation.csv and .md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.accuracy import evidence_rows, probe_accuracies
from recommender.advise import Advisor, option_name
from recommender.costs import Assumptions
from recommender.evidence import DEFAULT_DB, load_tables
from recommender.questionnaire import Questionnaire
from recommender.tasks import dataset_descriptors

DATA = Path(__file__).resolve().parent.parent / "data"
TABLE_PATH = DATA / "recommender_evaluation.csv"
SUMMARY_PATH = DATA / "recommender_evaluation.json"
EVALUATION_HARDWARE = "cpu_2core"  # where the evidence was measured, so realised costs are measurements
EVALUATION_RESOLUTION = 128
ALWAYS_FT = ("ft_full", "mobilenetv2_100")
ALWAYS_FE = ("fe_linear", "mobilenetv2_100")
# Budget scenarios: none, and compute-time budgets that bind at some k (seconds on the study's CPU).
SCENARIOS = {"no budget": {}, "compute <= 60 s": {"budget_wall_time_h": 60 / 3600},
             "human <= 4 h": {"budget_human_hours": 4.0}}


def _without(tables: dict, dataset: str) -> dict:
    runs = tables["runs"][tables["runs"]["dataset"] != dataset]
    return {**tables, "runs": runs, "trials": tables["trials"][tables["trials"]["run_id"].isin(runs["run_id"])],
            "datasets": tables["datasets"][tables["datasets"]["name"] != dataset],
            "extractions": tables["extractions"][tables["extractions"]["dataset"] != dataset]}


def realised_outcomes(tables: dict, dataset: str, assumptions: Assumptions) -> pd.DataFrame:
    """Measured accuracy and cost of every option on ``dataset`` at each k (means over seeds)."""
    runs = tables["runs"]
    runs = runs[(runs["dataset"] == dataset) & runs["pretrained"] & (runs["resolution"] == EVALUATION_RESOLUTION)
                & (runs["device_type"] == "cpu")]
    outcome = (runs.groupby(["method", "backbone", "k_label"], as_index=False)
               .agg(images_per_class=("images_per_class", "mean"), accuracy=("accuracy", "mean"),
                    time_s=("total_s", "mean"), energy_j=("energy_j", "mean"), trials=("n_trials", "max")))
    fe = outcome["method"].str.startswith("fe_")
    outcome["human_hours"] = np.where(fe, assumptions.setup_hours_fe,
                                      assumptions.setup_hours_ft + assumptions.hours_per_trial * outcome["trials"])
    outcome["time_h"] = outcome["time_s"] / 3600
    outcome["option"] = [option_name(m, b) for m, b in zip(outcome["method"], outcome["backbone"])]
    return outcome


def _within(row: pd.Series, budgets: dict) -> bool:
    limits = {"budget_wall_time_h": "time_h", "budget_human_hours": "human_hours"}
    return all(row[limits[name]] <= limit for name, limit in budgets.items())


def fit_rule_of_thumb(tables: dict) -> int:
    """The k threshold (extract below, fine-tune at or above) that maximises mean accuracy on these datasets."""
    rows = evidence_rows(tables)
    rows = rows[rows["resolution"] == EVALUATION_RESOLUTION]
    pivot = rows[rows["backbone"] == ALWAYS_FE[1]].pivot_table(index=["dataset", "images_per_class"],
                                                               columns="method", values="accuracy")
    if not {ALWAYS_FE[0], ALWAYS_FT[0]} <= set(pivot.columns):
        return 10**9
    pivot = pivot.dropna(subset=[ALWAYS_FE[0], ALWAYS_FT[0]]).reset_index()
    candidates = sorted(pivot["images_per_class"].round().unique()) + [10**9]
    scores = {t: np.where(pivot["images_per_class"] < t, pivot[ALWAYS_FE[0]], pivot[ALWAYS_FT[0]]).mean()
              for t in candidates}
    return int(max(scores, key=lambda t: (scores[t], t)))


def evaluate(tables: dict, assumptions: Assumptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions: one row per dataset x k x scenario, predictions: one row per dataset x k x option)."""
    assumptions = assumptions or Assumptions()
    descriptors = dataset_descriptors(tables["datasets"]).set_index("dataset")
    probes = probe_accuracies(tables["runs"], tables.get("probes"))
    decisions, predictions = [], []
    for dataset in sorted(tables["runs"]["dataset"].unique()):
        outcome = realised_outcomes(tables, dataset, assumptions)
        if outcome.empty:
            continue
        training = _without(tables, dataset)
        advisor = Advisor().fit(training)
        threshold = fit_rule_of_thumb(training)
        d = descriptors.loc[dataset]
        for k_label, at_k in outcome.groupby("k_label"):
            k = int(round(at_k["images_per_class"].mean()))
            base = dict(n_classes=int(d["n_classes"]), images_per_class=max(1, k), domain=d["domain"],
                        image_size_px=int(d["native_px"]), colour=not bool(d["grey"]), hardware=EVALUATION_HARDWARE,
                        accuracy_weight=1.0)
            realised = at_k.set_index("option")
            for probe in (None, probes.get(dataset)):
                advice = advisor.advise(Questionnaire(**base, probe_accuracy=probe), assumptions)
                for _, option in advice.options.iterrows():
                    if option["option"] in realised.index:
                        actual = realised.loc[option["option"], "accuracy"]
                        predictions.append({"dataset": dataset, "k": k, "option": option["option"],
                                            "probe": probe is not None, "predicted": option["acc_median"],
                                            "low": option["acc_low"], "high": option["acc_high"], "realised": actual})
            for scenario, budgets in SCENARIOS.items():
                advice = advisor.advise(Questionnaire(**base, **budgets), assumptions)
                feasible = realised[[_within(row, budgets) for _, row in realised.iterrows()]]
                if feasible.empty:
                    continue
                oracle = feasible["accuracy"].max()
                rule = ALWAYS_FE if k < threshold else ALWAYS_FT
                picks = {"recommender": advice.recommended, "always_ft": option_name(*ALWAYS_FT),
                         "always_fe": option_name(*ALWAYS_FE), "rule_of_thumb": option_name(*rule)}
                row = {"dataset": dataset, "k": k, "scenario": scenario, "oracle": oracle,
                       "rule_threshold_k": threshold}
                for policy, pick in picks.items():
                    if pick not in realised.index:  # not measured on this dataset at this k
                        row[f"{policy}_regret"], row[f"{policy}_violates"] = np.nan, np.nan
                        continue
                    chosen = realised.loc[pick]
                    row[f"{policy}_regret"] = 100 * (oracle - chosen["accuracy"])
                    row[f"{policy}_violates"] = not _within(chosen, budgets)
                    row[f"{policy}_pick"] = pick
                decisions.append(row)
    return pd.DataFrame(decisions), pd.DataFrame(predictions)


POLICIES = ("recommender", "always_ft", "always_fe", "rule_of_thumb")


def summarise(decisions: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """Headline figures: mean regret per policy (over decisions where every policy's pick was measured), the
    share of datasets on which the recommender beats every baseline, accuracy MAE and interval coverage."""
    complete = decisions.dropna(subset=[f"{p}_regret" for p in POLICIES])
    per_dataset = complete.groupby("dataset")[[f"{p}_regret" for p in POLICIES]].mean()
    beats_all = (per_dataset["recommender_regret"].to_frame().values
                 < per_dataset[[f"{p}_regret" for p in POLICIES[1:]]].values).all(axis=1)
    beats_or_ties = (per_dataset["recommender_regret"].to_frame().values
                     <= per_dataset[[f"{p}_regret" for p in POLICIES[1:]]].values).all(axis=1)
    summary = {"decisions": len(decisions), "decisions_all_policies_measured": len(complete),
               "held_out_datasets": int(decisions["dataset"].nunique()),
               "mean_regret_points": {p: round(float(complete[f"{p}_regret"].mean()), 2) for p in POLICIES},
               "budget_violations": {p: int(complete[f"{p}_violates"].astype(bool).sum()) for p in POLICIES},
               "share_datasets_recommender_below_every_baseline": round(float(beats_all.mean()), 2),
               "share_datasets_recommender_at_or_below_every_baseline": round(float(beats_or_ties.mean()), 2)}
    for probe, group in predictions.groupby("probe"):
        key = "probe_informed" if probe else "questionnaire_only"
        summary[key] = {"accuracy_mae_points": round(float(100 * (group["predicted"] - group["realised"]).abs().mean()), 2),
                        "interval_coverage": round(float(((group["realised"] >= group["low"])
                                                          & (group["realised"] <= group["high"])).mean()), 3),
                        "predictions": len(group)}
    return summary


def per_dataset_table(decisions: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    regrets = decisions.groupby("dataset")[[f"{p}_regret" for p in POLICIES]].mean().round(2)
    mae = predictions.assign(error=100 * (predictions["predicted"] - predictions["realised"]).abs()).pivot_table(
        index="dataset", columns="probe", values="error", aggfunc="mean").round(2)
    mae.columns = ["mae_questionnaire_only" if not c else "mae_probe_informed" for c in mae.columns]
    return regrets.join(mae).reset_index()


def load_table(path: Path = TABLE_PATH) -> pd.DataFrame | None:
    """The stored per-dataset evaluation table, or None if ``python -m recommender.evaluate`` has not run."""
    return pd.read_csv(path) if Path(path).exists() else None


def load_summary(path: Path = SUMMARY_PATH) -> dict | None:
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--table", default=str(TABLE_PATH))
    parser.add_argument("--summary", default=str(SUMMARY_PATH))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tables = load_tables(args.db)
    decisions, predictions = evaluate(tables)
    table = per_dataset_table(decisions, predictions)
    summary = summarise(decisions, predictions)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    table.to_csv(args.table, index=False)
    Path(args.summary).write_text(json.dumps(summary, indent=2))
    print(table.to_string(index=False))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
