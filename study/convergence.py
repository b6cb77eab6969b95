"""``python -m study.convergence``: is the fine-tuning recipe budget-bound, and are its learning rates enough?

Three checks on the stored runs (the ``cpu-convergence`` grid next to the ``cpu`` grid):
  budget          every run whose spec differs from another's only by ``budget_scale`` x2: test accuracy at 1x and
                  2x the budget. The recipe is not budget-bound when doubling changes the mean by < 1 point.
  learning rates  runs trained with more learning rates than the recipe's: test accuracy of the trial the
                  validation split chooses among the recipe's learning rates only, among each 3 of them that
                  include the recipe's, and among all; the recipe's are enough when they lose < 1 point to three.
  checkpoints     trials that scored the test split at every check (``test_curve``, analysis only): the final
                  weights (what the recipe keeps) vs the check the validation split would have picked.

    python -m study.convergence                 # tables and verdicts from data/study.duckdb
    python -m study.convergence --markdown      # the same as the section of data/EVIDENCE.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from study.grid_file import recipe_of
from study.markdown import markdown_table, signed
from study.selection import select_trial
from study.spec import finetuning_rows
from study.store import DEFAULT_DB, EvidenceError, read_tables

TOLERANCE_POINTS = 1.0


def _base_spec(spec_json: str) -> tuple[str, float]:
    """(the spec without its budget scale, the budget scale)."""
    spec = json.loads(spec_json)
    finetune = dict(spec["finetune"])
    scale = float(finetune.pop("budget_scale", 1.0))
    return json.dumps({**spec, "finetune": finetune}, sort_keys=True), scale


def budget_pairs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a twin at twice its budget: accuracies (%) at 1x and 2x and their difference."""
    ft = runs[finetuning_rows(runs["method"])].copy()
    if ft.empty:
        return pd.DataFrame()
    ft[["base", "scale"]] = pd.DataFrame(ft["spec"].map(_base_spec).tolist(), index=ft.index)
    doubled = ft.assign(scale=ft["scale"] / 2).set_index(["base", "scale"])["accuracy"].rename("accuracy_2x")
    pairs = ft.join(doubled, on=["base", "scale"], how="inner")
    pairs["accuracy_1x"] = pairs["accuracy"] * 100
    pairs["accuracy_2x"] = pairs["accuracy_2x"] * 100
    pairs["change"] = pairs["accuracy_2x"] - pairs["accuracy_1x"]
    return pairs[["dataset", "backbone", "method", "k_label", "seed", "scale", "accuracy_1x", "accuracy_2x",
                  "change"]].reset_index(drop=True)


def budget_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and k: seeds, mean accuracy at 1x and 2x, change (points)."""
    table = pairs.groupby(["dataset", "backbone", "method", "k_label"], sort=True).agg(
        seeds=("seed", "nunique"), accuracy_1x=("accuracy_1x", "mean"), accuracy_2x=("accuracy_2x", "mean"),
        change=("change", "mean"))
    return table.round(2).reset_index()


def budget_gains(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: matched runs and the mean change (points) from doubling the budget, and whether it reaches
    ``TOLERANCE_POINTS``: there the recipe may be budget-bound, and its fine-tuning figures that much low."""
    if pairs.empty:
        return pd.DataFrame({"dataset": pd.Series(dtype=object), "runs": pd.Series(dtype=int),
                             "mean_change": pd.Series(dtype=float), "gained": pd.Series(dtype=bool)})
    gains = pairs.groupby("dataset", sort=True).agg(runs=("change", "size"), mean_change=("change", "mean"))
    return gains.assign(gained=gains["mean_change"] >= TOLERANCE_POINTS).round(2).reset_index()


def learning_rate_table(runs: pd.DataFrame, trials: pd.DataFrame, recipe_rates: tuple[float, ...]) -> pd.DataFrame:
    """Per run with more learning rates than the recipe's (all of the recipe's among them): the test accuracy (%)
    of the validation-chosen trial among the recipe's rates, each three including them, and all of them."""
    rows = []
    for run_id, group in trials.groupby("run_id"):
        rates = sorted(group["learning_rate"])
        if len(rates) <= len(recipe_rates) or not set(recipe_rates) <= set(rates):
            continue
        records = group.to_dict("records")
        chosen = lambda pool: select_trial(pool)[0]["test_accuracy"] * 100  # noqa: E731
        recipe_pick = chosen([t for t in records if t["learning_rate"] in recipe_rates])
        others = [r for r in rates if r not in recipe_rates]
        three = [chosen([t for t in records if t["learning_rate"] in (*recipe_rates, extra)]) for extra in others]
        run = runs.loc[runs["run_id"] == run_id].iloc[0]
        rows.append({"dataset": run["dataset"], "k_label": run["k_label"], "seed": run["seed"],
                     **{f"lr {rate:g}": t["test_accuracy"] * 100 for rate in rates
                        for t in records if t["learning_rate"] == rate},
                     "recipe's 2": recipe_pick, "best of 3": float(np.mean(three)), f"all {len(rates)}": chosen(records),
                     "loss vs 3": float(np.mean(three)) - recipe_pick})
    return pd.DataFrame(rows).round(2)


def checkpoint_table(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per trial scored on test at every check: test accuracy (%) of the final weights and of the check with the
    best validation accuracy (ties: lower loss), the rule an early-stopping recipe would use."""
    scored = curves.dropna(subset=["test_accuracy", "val_accuracy"])
    rows = []
    for (run_id, trial_index), curve in scored.groupby(["run_id", "trial_index"]):
        curve = curve.sort_values("check_index")
        best = curve.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
        run = runs.loc[runs["run_id"] == run_id].iloc[0]
        rows.append({"dataset": run["dataset"], "k_label": run["k_label"],
                     "learning_rate": f"{curve['learning_rate'].max():g}",
                     "final_weights": round(curve["test_accuracy"].iloc[-1] * 100, 2),
                     "best_validation_check": round(best["test_accuracy"] * 100, 2),
                     "picked_at_fraction": round(best["step"] / curve["step"].max(), 2)})
    return pd.DataFrame(rows)


def load(db: str | Path) -> dict[str, pd.DataFrame]:
    """The runs, trials and validation curves the checks read (safe while a study run writes)."""
    return read_tables(db, ("runs", "trials", "trial_curves"))


def report(tables: dict[str, pd.DataFrame], grid: str = "cpu") -> dict:
    """The three checks, their tables and verdicts (None where the evidence has no such runs yet)."""
    runs, trials = tables["runs"], tables["trials"]
    recipe = recipe_of(grid)
    pairs = budget_pairs(runs)
    rates = learning_rate_table(runs, trials, recipe.learning_rates)
    checkpoints = checkpoint_table(runs, tables["trial_curves"])
    mean_change = float(pairs["change"].mean()) if not pairs.empty else None
    rate_loss = float(rates["loss vs 3"].mean()) if not rates.empty else None
    return {
        "recipe": recipe.recipe_id, "learning_rates": list(recipe.learning_rates),
        "budget": {"pairs": len(pairs), "datasets": int(pairs["dataset"].nunique()) if len(pairs) else 0,
                   "mean_change_points": mean_change,
                   "mean_abs_change_points": float(pairs["change"].abs().mean()) if len(pairs) else None,
                   "not_budget_bound": None if mean_change is None else abs(mean_change) < TOLERANCE_POINTS,
                   "table": budget_table(pairs) if len(pairs) else pd.DataFrame(),
                   "by_dataset": budget_gains(pairs)},
        "learning_rates_check": {"runs": len(rates), "mean_loss_vs_3_points": rate_loss,
                                 "enough": None if rate_loss is None else rate_loss < TOLERANCE_POINTS,
                                 "table": rates},
        "checkpoints": {"trials": len(checkpoints), "table": checkpoints,
                        "final_minus_best_validation_points": float(
                            (checkpoints["final_weights"] - checkpoints["best_validation_check"]).mean())
                        if len(checkpoints) else None},
    }


def budget_gained_sentence(by_dataset: pd.DataFrame) -> str:
    """The datasets where doubling the budget gained a point or more on average, and what that means ('' if none)."""
    gained = by_dataset[by_dataset["gained"]]
    if gained.empty:
        return ""
    return ("Twice the fine-tuning budget gained a point or more on average on "
            + ", ".join(f"{row.dataset} ({signed(row.mean_change)} points over {row.runs} runs)"
                        for row in gained.itertuples())
            + ": there the recipe may be budget-bound, and fine-tuning's figures (and its gap to extraction) that "
              "much low.")


def _verdict(value, good: str, bad: str) -> str:
    return "not measured yet" if value is None else (good if value else bad)


def render_markdown(result: dict) -> str:
    budget, rates, checkpoints = result["budget"], result["learning_rates_check"], result["checkpoints"]
    lines = [f"Recipe `{result['recipe']}` (learning rates {', '.join(f'{r:g}' for r in result['learning_rates'])}); "
             "`python -m study.convergence` regenerates these tables.", "",
             f"**Budget x2** ({budget['pairs']} matched runs, {budget['datasets']} datasets): mean change "
             + ("n/a" if budget["mean_change_points"] is None else
                f"{signed(budget['mean_change_points'], 2)} points (mean absolute {budget['mean_abs_change_points']:.2f})")
             + f" -> {_verdict(budget['not_budget_bound'], 'not budget-bound (< 1 point)', 'BUDGET-BOUND')}.", ""]
    if len(budget["table"]):
        lines += [markdown_table(budget["table"]), ""]
        gained = budget_gained_sentence(budget["by_dataset"])
        lines += ["Per dataset, mean change over its matched runs: " + ", ".join(
            f"{row.dataset} {signed(row.mean_change, 2)} ({row.runs} runs)" for row in budget["by_dataset"].itertuples())
            + "." + (f" {gained}" if gained else ""), ""]
    lines += [f"**Learning rates** ({rates['runs']} runs with more rates than the recipe's): the recipe's "
              f"{len(result['learning_rates'])} lose "
              + ("n/a" if rates["mean_loss_vs_3_points"] is None else f"{signed(rates['mean_loss_vs_3_points'], 2)} points")
              + f" to three -> {_verdict(rates['enough'], 'enough (< 1 point)', 'NOT enough')}.", ""]
    if len(rates["table"]):
        lines += [markdown_table(rates["table"]), ""]
    if checkpoints["trials"]:
        margin = checkpoints["final_minus_best_validation_points"]
        lines += [f"**Checkpoints** ({checkpoints['trials']} trials scored on test at every check, analysis only): "
                  f"the final weights score {signed(margin, 2)} points against the check with the best validation accuracy"
                  + (", so the recipe keeps the final weights." if margin >= 0
                     else ": early stopping on validation would do better here."), "",
                  markdown_table(checkpoints["table"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.convergence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--grid", default="cpu", help="the grid whose recipe is checked (default: cpu)")
    parser.add_argument("--markdown", action="store_true", help="print the EVIDENCE.md section")
    args = parser.parse_args(argv)
    try:
        result = report(load(args.db), args.grid)
    except EvidenceError as error:
        parser.exit(1, f"{error}\n")
    if args.markdown:
        print(render_markdown(result))
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for name, key in (("Budget x2", "budget"), ("Learning rates", "learning_rates_check"),
                          ("Checkpoints", "checkpoints")):
            section = result[key]
            print(f"== {name}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in section.items() if not isinstance(v, pd.DataFrame)))
            print(section["table"].to_string(index=False) if len(section["table"]) else "(no runs yet)")
            if len(section.get("by_dataset", ())):
                print(section["by_dataset"].to_string(index=False))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
