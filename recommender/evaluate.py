"""Decision and prediction quality, measured: leave one dataset out, advise on it, compare with hindsight.

For each held-out dataset, the advisor is fitted without it (its runs and its probe), then asked, at every k the
study measured on it and under each budget scenario, with what a user may know: the description only, the
extraction probe of that dataset (the probe a user would run on their images), and the probe with its fine-tuning
pilot. Its realised accuracy and cost are the held-out dataset's own measurements.

Decisions are scored at the k where the held-out dataset has fine-tuning measured and every baseline's pick too;
the recommender chooses among the options measured there. A pick that breaks the scenario's budget cannot be
carried out: it is counted as a violation and scored as the cheapest option (the fallback a user is left with),
never credited with its accuracy.
A dataset without fine-tuning runs has no decision to score; its predictions are scored all the same.

Policies compared with the recommender: the oracle (best realised option within budget), the best single fixed
option in hindsight over the training datasets (the strongest static policy), always extract (the best fixed
extraction option), always fine-tune (full fine-tuning with the backbone that did best on the training datasets),
and the seed paper's rule (extract below a k threshold, fine-tune above; threshold fitted on the training datasets).
Each baseline is a ranking of options by their mean accuracy on the training datasets (always fine-tune: fine-tuning
options only, full fine-tuning with its best backbone first; always extract and the paper's rule below its
threshold: extraction options only). Under a budget it takes its highest-ranked option that the advisor's cost model
predicts fits, as a practitioner following that rule would, knowing the same costs the recommender knows: the
policies differ in how they judge accuracy, not in what they know of cost. Taking its first choice blind to the
budget, the best fixed option broke it in every budgeted decision and was scored as the fallback, the cheapest
option, which on several datasets is the best that fits: credit for breaking the budget.
Against each baseline, the summary counts the held-out datasets where the recommender's mean regret is lower, the
same or higher, and gives the mean difference with a 90% bootstrap interval over the held-out datasets.
Run-to-run noise puts a floor under regret: each realised accuracy is the mean of a few seeds. The decisions are
also scored for a user who measured every option within budget once on the held-out dataset itself (one seed each)
and took the best in hindsight, against the other seeds' mean (``one_run_regret``): what choosing from one
measurement of each option loses to that noise.
Accuracy predictions are scored on every option: absolute error, 80%-interval coverage and width.

    python -m recommender.evaluate        # writes data/recommender_evaluation.csv and .json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.accuracy import PROBE_RESOLUTION, evidence_rows, extraction_only, has_pilot, probe_curves_by_dataset
from recommender.advise import Advisor, option_name
from recommender.costs import Assumptions
from recommender.evidence import DEFAULT_DB, evidence_only, load_tables, reference_hardware
from recommender.questionnaire import Questionnaire, encode_probe
from recommender.tasks import dataset_descriptors
from study.evidence import capped_as_max
from study.spec import finetuning_rows, is_finetuning

DATA = Path(__file__).resolve().parent.parent / "data"
TABLE_PATH = DATA / "recommender_evaluation.csv"
SUMMARY_PATH = DATA / "recommender_evaluation.json"
EVALUATION_HARDWARE = "cpu_2core"  # where the evidence was measured, so realised costs are measurements
# Budget scenarios: none, and budgets that bind at some k (compute seconds on the study's CPU; human hours).
SCENARIOS = {"no budget": {}, "compute <= 60 s": {"budget_wall_time_h": 60 / 3600},
             "human <= 4 h": {"budget_human_hours": 4.0}}
QUESTIONNAIRE_ONLY, PROBE, PROBE_AND_PILOT = "questionnaire", "probe", "probe + pilot"  # what the advisor knew
RECOMMENDERS = ("recommender", "recommender_with_pilot", "recommender_without_probe")
BASELINES = ("best_fixed", "always_fe", "always_ft", "paper_rule")
POLICIES = (*RECOMMENDERS, *BASELINES)
ONE_RUN_EACH = "one_run_each"  # hindsight from one measured run of each option: the noise floor, not a policy
TIE_POINTS = 1e-9  # mean regrets this close are the same (both 0 where both picked the best option)
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0


def _without(tables: dict, dataset: str) -> dict:
    runs = tables["runs"][tables["runs"]["dataset"] != dataset]
    kept = {**tables, "runs": runs, "datasets": tables["datasets"][tables["datasets"]["name"] != dataset]}
    for name in ("trials", "trial_curves"):
        if name in tables:
            kept[name] = tables[name][tables[name]["run_id"].isin(runs["run_id"])]
    kept["extractions"] = tables["extractions"][tables["extractions"]["dataset"] != dataset]
    if "probe_curves" in tables:
        kept["probe_curves"] = tables["probe_curves"][tables["probe_curves"]["dataset"] != dataset]
    return kept


def _scored_runs(tables: dict, dataset: str) -> pd.DataFrame:
    """The runs a held-out dataset's decisions are scored on: pretrained, on a CPU, a capped k read as ``max``."""
    runs = tables["runs"]
    return capped_as_max(runs[(runs["dataset"] == dataset) & runs["pretrained"] & (runs["device_type"] == "cpu")])


def realised_outcomes(tables: dict, dataset: str, assumptions: Assumptions) -> pd.DataFrame:
    """Measured accuracy (mean over seeds) and cost of every option on ``dataset`` at each k (a k capped at the
    dataset's largest is its ``max``: one decision, not two). Time is the mean of the runs on the CPU the cost
    model reads (``reference_hardware``), where the cell has any: a cell whose seeds ran on two machines would
    otherwise average their speeds (elsewhere, the mean of its runs)."""
    runs = _scored_runs(tables, dataset)
    cell = ["method", "backbone", "k_label"]
    outcome = (runs.groupby(cell, as_index=False)
               .agg(images_per_class=("images_per_class", "mean"), accuracy=("accuracy", "mean"),
                    time_s=("total_s", "mean"), trials=("n_trials", "max")))
    on_reference = (runs[runs["hardware_id"].isin(reference_hardware(tables, "cpu"))]
                    .groupby(cell)["total_s"].mean())
    outcome["time_s"] = on_reference.reindex(pd.MultiIndex.from_frame(outcome[cell])).fillna(
        outcome.set_index(cell)["time_s"]).to_numpy()
    fe = ~finetuning_rows(outcome["method"])
    outcome["human_hours"] = np.where(fe, assumptions.setup_hours_fe,
                                      assumptions.setup_hours_ft + assumptions.hours_per_trial * outcome["trials"])
    outcome["time_h"] = outcome["time_s"] / 3600
    outcome["option"] = [option_name(m, b) for m, b in zip(outcome["method"], outcome["backbone"])]
    return outcome


def seed_accuracies(tables: dict, dataset: str) -> pd.DataFrame:
    """Measured accuracy per seed (columns) of every option at each k on ``dataset`` (rows: k label, option), a k
    capped at the dataset's largest being its ``max``; the runs ``realised_outcomes`` averages."""
    runs = _scored_runs(tables, dataset)
    runs = runs.assign(option=[option_name(m, b) for m, b in zip(runs["method"], runs["backbone"])])
    return runs.pivot_table(index=["k_label", "option"], columns="seed", values="accuracy")


def one_run_regret(accuracy: pd.DataFrame) -> float:
    """Points lost by picking the best option from one run of each (one seed), scored on the mean of the other
    seeds, averaged over the seeds; ``accuracy``: one row per option, one column per seed. Only the seeds every
    option has count; NaN with fewer than two (nothing to score a pick on)."""
    accuracy = accuracy.dropna(axis=1)
    if accuracy.shape[1] < 2:
        return float("nan")
    lost = []
    for seed in accuracy.columns:
        others = accuracy.drop(columns=seed).mean(axis=1)
        lost.append(others.max() - others[accuracy[seed].idxmax()])
    return 100 * float(np.mean(lost))


def _within(row: pd.Series, budgets: dict) -> bool:
    limits = {"budget_wall_time_h": "time_h", "budget_human_hours": "human_hours"}
    return all(row[limits[name]] <= limit for name, limit in budgets.items())


def realised_regret(realised: pd.DataFrame, pick: str, budgets: dict) -> tuple[float, bool]:
    """(points below the best option within budget, whether the pick breaks a budget). ``realised``: one row per
    option (index) with accuracy, time_h and human_hours. An over-budget plan cannot be carried out, so it earns
    nothing for its accuracy: the user is left with the cheapest option."""
    feasible = realised[[_within(row, budgets) for _, row in realised.iterrows()]]
    violates = not _within(realised.loc[pick], budgets)
    carried_out = realised["time_h"].idxmin() if violates else pick
    return 100 * (feasible["accuracy"].max() - realised.loc[carried_out, "accuracy"]), violates


def fixed_policies(tables: dict) -> dict:
    """The baselines' rankings of options, learned from the training datasets only (best first): every option,
    extraction options, fine-tuning options (full fine-tuning with the best backbone first), and the paper rule's
    (extraction ranking, fine-tuning ranking, k threshold)."""
    rows = evidence_rows(evidence_only(tables))
    mean = rows.groupby(["method", "backbone"])["accuracy"].mean().sort_values(ascending=False, kind="stable")
    fe = mean[[not is_finetuning(m) for m, _ in mean.index]]
    ft = mean[[is_finetuning(m) for m, _ in mean.index]]
    full = ft[[m == "ft_full" for m, _ in ft.index]]
    best_fe = fe.index[0]
    best_ft = full.index[0] if len(full) else best_fe
    pivot = rows.assign(option=list(zip(rows["method"], rows["backbone"])))
    pivot = pivot[pivot["option"].isin([best_fe, best_ft])].pivot_table(
        index=["dataset", "k_label"], columns="option", values=["accuracy", "images_per_class"])
    threshold = 10**9
    if best_ft != best_fe and len(pivot.dropna()):
        pivot = pivot.dropna()
        k = pivot["images_per_class"].mean(axis=1)
        candidates = sorted(k.round().unique()) + [10**9]
        scores = {t: np.where(k < t, pivot[("accuracy", best_fe)], pivot[("accuracy", best_ft)]).mean()
                  for t in candidates}
        threshold = int(max(scores, key=lambda t: (scores[t], t)))

    def names(options) -> list[str]:
        return [option_name(*option) for option in options]
    tuning = names([best_ft] + [option for option in ft.index if option != best_ft]) if len(full) else names(fe.index)
    return {"best_fixed": names(mean.index), "always_fe": names(fe.index), "always_ft": tuning,
            "paper_rule": (names(fe.index), tuning, threshold)}


def fixed_pick(ranking: list[str], measured: set[str], fits: set[str]) -> str:
    """A baseline's choice among the ``measured`` options: the highest-ranked that ``fits`` the budget (by the cost
    model's prediction), else its first choice (which breaks the budget)."""
    ranked = [option for option in ranking if option in measured]
    return next((option for option in ranked if option in fits), ranked[0])


def evaluate(tables: dict, assumptions: Assumptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions: one row per dataset x k x scenario, predictions: one row per dataset x k x option x probe)."""
    assumptions = assumptions or Assumptions()
    tables = evidence_only(tables)
    descriptors = dataset_descriptors(tables["datasets"]).set_index("dataset")
    probes = probe_curves_by_dataset(tables)
    decisions, predictions = [], []
    for dataset in sorted(tables["runs"]["dataset"].unique()):
        outcome = realised_outcomes(tables, dataset, assumptions)
        if outcome.empty:
            continue
        seeds = seed_accuracies(tables, dataset)
        training = _without(tables, dataset)
        advisor = Advisor().fit(training)
        fixed = fixed_policies(training)
        d = descriptors.loc[dataset]
        known = {QUESTIONNAIRE_ONLY: None}
        if dataset in probes:
            known[PROBE] = encode_probe(extraction_only(probes[dataset]))
            if has_pilot(probes[dataset]):
                known[PROBE_AND_PILOT] = encode_probe(probes[dataset])
        for k_label, at_k in outcome.groupby("k_label"):
            k = int(round(at_k["images_per_class"].mean()))
            base = dict(n_classes=int(d["n_classes"]), images_per_class=max(1, k), domain=d["domain"],
                        image_size_px=int(d["native_px"]), colour=not bool(d["grey"]), hardware=EVALUATION_HARDWARE,
                        working_resolution_px=PROBE_RESOLUTION, accuracy_weight=1.0)
            realised = at_k.set_index("option")
            for knowing, probe in known.items():
                advice = advisor.advise(Questionnaire(**base, probe=probe), assumptions)
                for _, option in advice.options.iterrows():
                    if option["option"] in realised.index:
                        predictions.append({
                            "dataset": dataset, "k": k, "option": option["option"], "method": option["method"],
                            "chance": 1.0 / base["n_classes"],
                            "known": knowing, "basis": option["accuracy_basis"],
                            "extrapolated": option["extrapolated"], "predicted": option["acc_median"],
                            "low": option["acc_low"], "high": option["acc_high"],
                            "realised": realised.loc[option["option"], "accuracy"]})
            measured = set(realised.index)
            rankings = {policy: fixed[policy] for policy in ("best_fixed", "always_fe", "always_ft")}
            rankings["paper_rule"] = fixed["paper_rule"][0] if k < fixed["paper_rule"][2] else fixed["paper_rule"][1]
            first_choices = {ranking[0] for ranking in rankings.values()}  # the paper rule's are always_fe's and _ft's
            if not finetuning_rows(realised["method"]).any() or not first_choices <= measured:
                continue  # no extract-or-tune decision to score here, or a baseline's first choice was not measured
            for scenario, budgets in SCENARIOS.items():
                feasible = realised[[_within(row, budgets) for _, row in realised.iterrows()]]
                if feasible.empty:
                    continue
                advice = {knowing: advisor.advise(Questionnaire(**base, **budgets, probe=probe), assumptions, measured)
                          for knowing, probe in known.items()}
                recommended = {knowing: one.recommended for knowing, one in advice.items()}
                options = advice[QUESTIONNAIRE_ONLY].options
                fits = set(options.loc[options["feasible"], "option"])  # predicted costs: the same with any probe
                picks = {"recommender_without_probe": recommended[QUESTIONNAIRE_ONLY],
                         "recommender": recommended.get(PROBE, recommended[QUESTIONNAIRE_ONLY]),
                         "recommender_with_pilot": recommended.get(
                             PROBE_AND_PILOT, recommended.get(PROBE, recommended[QUESTIONNAIRE_ONLY])),
                         **{policy: fixed_pick(ranking, measured, fits) for policy, ranking in rankings.items()}}
                row = {"dataset": dataset, "k": k, "scenario": scenario, "oracle": feasible["accuracy"].max(),
                       "paper_threshold_k": fixed["paper_rule"][2]}
                for policy, pick in picks.items():
                    row[f"{policy}_pick"] = pick
                    row[f"{policy}_regret"], row[f"{policy}_violates"] = realised_regret(realised, pick, budgets)
                row[f"{ONE_RUN_EACH}_regret"] = one_run_regret(seeds.loc[k_label].loc[feasible.index])
                decisions.append(row)
    return pd.DataFrame(decisions), pd.DataFrame(predictions)


def _prediction_scores(group: pd.DataFrame) -> dict:
    error = 100 * (group["predicted"] - group["realised"]).abs()
    covered = (group["realised"] >= group["low"]) & (group["realised"] <= group["high"])
    return {"accuracy_mae_points": round(float(error.mean()), 2),
            "interval_coverage": round(float(covered.mean()), 3),
            "median_interval_width_points": round(float(100 * (group["high"] - group["low"]).median()), 1),
            "predictions": len(group)}


def _regret_differences(decisions: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Per held-out dataset (rows) and baseline (columns): ``policy``'s mean regret minus the baseline's (negative:
    the policy lost fewer points there)."""
    per_dataset = decisions.groupby("dataset")[[f"{p}_regret" for p in (policy, *BASELINES)]].mean()
    return pd.DataFrame({baseline: per_dataset[f"{policy}_regret"] - per_dataset[f"{baseline}_regret"]
                         for baseline in BASELINES})


def _shares(decisions: pd.DataFrame, suffix: str, policy: str = "recommender") -> dict:
    """The share of held-out datasets where ``policy``'s mean regret is below (and at or below) every
    baseline's."""
    difference = _regret_differences(decisions, policy).to_numpy()
    return {f"share_datasets_{policy}_below_every_baseline{suffix}": round(
                float((difference < -TIE_POINTS).all(axis=1).mean()), 2),
            f"share_datasets_{policy}_at_or_below_every_baseline{suffix}": round(
                float((difference <= TIE_POINTS).all(axis=1).mean()), 2)}


def versus_baselines(decisions: pd.DataFrame, policy: str = "recommender") -> dict:
    """Per baseline: on how many held-out datasets ``policy``'s mean regret is lower, the same or higher, and the
    mean over datasets of the difference (``policy``'s minus the baseline's; negative: fewer points lost) with its
    90% bootstrap interval over the held-out datasets. No static policy is best on every dataset, so "below every
    baseline on each dataset" mostly says which datasets were held out; the interval says whether a difference on
    average is more than that."""
    difference = _regret_differences(decisions, policy)
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(difference),
                                                           (BOOTSTRAP_RESAMPLES, len(difference)))
    compared = {}
    for baseline in BASELINES:
        points = difference[baseline].to_numpy()
        low, high = np.quantile(points[draws].mean(axis=1), [0.05, 0.95])
        compared[baseline] = {"datasets_lower": int((points < -TIE_POINTS).sum()),
                              "datasets_same": int((np.abs(points) <= TIE_POINTS).sum()),
                              "datasets_higher": int((points > TIE_POINTS).sum()),
                              **{key: round(float(value), 2) + 0.0  # + 0.0: never -0.0
                                 for key, value in (("mean_difference_points", points.mean()),
                                                    ("difference_90_low_points", low),
                                                    ("difference_90_high_points", high))}}
    return compared


def one_run_comparison(decisions: pd.DataFrame) -> dict:
    """Mean regret of one measured run of each option (hindsight, ``one_run_regret``) and, on the same decisions,
    of the recommender's settings and the best fixed option: how far their losses are from run-to-run noise."""
    scored = decisions.dropna(subset=[f"{ONE_RUN_EACH}_regret"])
    return {"decisions": len(scored), "mean_regret_points": {
        policy: round(float(scored[f"{policy}_regret"].mean()), 2) if len(scored) else None
        for policy in (ONE_RUN_EACH, *RECOMMENDERS, "best_fixed")}}


def summarise(decisions: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """Headline figures: mean regret per policy (overall, within budget, per scenario), budgets broken, the share
    of held-out datasets on which the recommender matches or beats every baseline, accuracy MAE, coverage, width."""
    budgeted = decisions[decisions["scenario"] != "no budget"]
    summary = {"decisions": len(decisions), "held_out_datasets": int(decisions["dataset"].nunique()),
               "mean_regret_points": {p: round(float(decisions[f"{p}_regret"].mean()), 2) for p in POLICIES},
               "mean_regret_within_budget_points": {p: round(float(budgeted[f"{p}_regret"].mean()), 2)
                                                    for p in POLICIES},
               "mean_regret_by_scenario_points": {
                   scenario: {p: round(float(group[f"{p}_regret"].mean()), 2) for p in POLICIES}
                   for scenario, group in decisions.groupby("scenario")},
               "budget_violations": {p: int(decisions[f"{p}_violates"].astype(bool).sum()) for p in POLICIES},
               **_shares(decisions, ""), **_shares(budgeted, "_within_budget"),
               **_shares(decisions, "", "recommender_with_pilot"),
               **_shares(budgeted, "_within_budget", "recommender_with_pilot"),
               "versus_baselines": {policy: versus_baselines(decisions, policy) for policy in RECOMMENDERS},
               "versus_baselines_within_budget": {policy: versus_baselines(budgeted, policy)
                                                  for policy in RECOMMENDERS},
               ONE_RUN_EACH: one_run_comparison(decisions)}
    for knowing, name in ((PROBE, "probe_informed"), (PROBE_AND_PILOT, "pilot_informed")):
        informed = predictions[predictions["known"] == knowing]
        summary[name] = {**_prediction_scores(informed),
                         "extraction_options": _prediction_scores(informed[~finetuning_rows(informed["method"])]),
                         "fine_tuning_options": _prediction_scores(
                             informed[finetuning_rows(informed["method"])])} if len(informed) else {}
    summary["questionnaire_only"] = _prediction_scores(predictions[predictions["known"] == QUESTIONNAIRE_ONLY])
    summary["coverage_by_basis"] = {basis: _prediction_scores(group)["interval_coverage"]
                                    for basis, group in predictions.groupby("basis")}
    summary["below_chance_intervals"] = int((predictions["low"] < predictions["chance"] - 1e-9).sum())
    return summary


def per_dataset_table(decisions: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    regrets = decisions.groupby("dataset")[[f"{p}_regret" for p in (*POLICIES, ONE_RUN_EACH)]].mean().round(2)
    scored = predictions.assign(error=100 * (predictions["predicted"] - predictions["realised"]).abs(),
                                covered=(predictions["realised"] >= predictions["low"])
                                & (predictions["realised"] <= predictions["high"]),
                                width=100 * (predictions["high"] - predictions["low"]))
    parts = []
    for knowing, name in ((PROBE, "probe"), (PROBE_AND_PILOT, "pilot"), (QUESTIONNAIRE_ONLY, "questionnaire")):
        group = scored[scored["known"] == knowing].groupby("dataset")
        parts.append(pd.DataFrame({f"mae_{name}": group["error"].mean(), f"coverage_{name}": group["covered"].mean(),
                                   f"width_{name}": group["width"].median()}))
    # outer: a dataset with no fine-tuning measured has no decision to score, but its predictions are scored
    return regrets.join(pd.concat(parts, axis=1).round(3), how="outer").rename_axis("dataset").reset_index()


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
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
