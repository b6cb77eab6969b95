"""Advice for a described task: every option's predicted accuracy and costs, the budgets each breaks, the
recommended option and a rationale that cites the evidence."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recommender.accuracy import AccuracyModel, evidence_rows
from recommender.costs import Assumptions, CostModel
from recommender.hardware import HARDWARE
from recommender.questionnaire import Questionnaire
from recommender.tasks import dataset_descriptors, questionnaire_descriptor

METHOD_NAMES = {"fe_linear": "feature extraction + logistic regression",
                "fe_fne": "Full-Network Embedding + linear SVM",
                "ft_full": "full fine-tuning", "ft_partial": "partial fine-tuning (first half frozen)"}
BUDGET_COLUMNS = {"budget_money_usd": "total_usd", "budget_energy_kwh": "energy_kwh", "budget_co2_kg": "co2_kg",
                  "budget_wall_time_h": "time_h", "budget_human_hours": "human_hours"}
BUDGET_LABELS = {"budget_money_usd": "money", "budget_energy_kwh": "energy", "budget_co2_kg": "CO₂",
                 "budget_wall_time_h": "wall time", "budget_human_hours": "human hours"}
CURVE_K = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Accuracy points one would give up to halve the cost, at accuracy_weight w: 4 * (1 - w) / w.
COST_POINTS_PER_DOUBLING_AT_HALF_WEIGHT = 4.0


@dataclass
class Advice:
    questionnaire: Questionnaire
    assumptions: Assumptions
    options: pd.DataFrame
    recommended: str
    rationale: list[str]
    curves: pd.DataFrame
    feasible_exists: bool = True
    evidence_used: dict = field(default_factory=dict)

    @property
    def recommended_row(self) -> pd.Series:
        return self.options.set_index("option").loc[self.recommended]


def option_name(method: str, backbone: str) -> str:
    return f"{method} · {backbone}"


def pareto_front(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other option is at least as accurate and as cheap, and strictly better in one."""
    front = np.ones(len(accuracy), dtype=bool)
    for i in range(len(accuracy)):
        dominated = (accuracy >= accuracy[i]) & (cost <= cost[i]) & ((accuracy > accuracy[i]) | (cost < cost[i]))
        front[i] = not dominated.any()
    return front


class Advisor:
    """fit(tables) once, then advise(questionnaire, assumptions) per request (fast, deterministic)."""

    def fit(self, tables: dict) -> "Advisor":
        self.rows_ = evidence_rows(tables)
        self.model_ = AccuracyModel().fit(self.rows_)
        self.probe_model_ = AccuracyModel(use_probe=True).fit(self.rows_.dropna(subset=["probe_accuracy"]))
        self.costs_ = CostModel().fit(tables)
        self.descriptors_ = dataset_descriptors(tables["datasets"])
        self.native_resolution_ = tables["backbones"].set_index("name")["native_resolution"].to_dict()
        self.options_ = sorted({(m, b) for m, b in zip(self.rows_["method"], self.rows_["backbone"])},
                               key=lambda mb: (list(METHOD_NAMES).index(mb[0]), mb[1]))
        return self

    def _task_rows(self, q: Questionnaire, options, k_values) -> pd.DataFrame:
        descriptor = questionnaire_descriptor(q)
        rows = []
        for method, backbone in options:
            resolution = self.costs_.working_resolution(q.hardware, self.native_resolution_.get(backbone, 224))
            for k in k_values:
                rows.append({**descriptor, "method": method, "backbone": backbone, "images_per_class": k,
                             "resolution": resolution, "probe_accuracy": q.probe_accuracy})
        return pd.DataFrame(rows)

    def _predict(self, q: Questionnaire, rows: pd.DataFrame) -> pd.DataFrame:
        model = self.probe_model_ if q.probe_accuracy is not None else self.model_
        return pd.concat([rows, model.predict(rows)], axis=1)

    def advise(self, q: Questionnaire, assumptions: Assumptions | None = None) -> Advice:
        q.validate()
        assumptions = (assumptions or Assumptions()).validate()
        options = [(m, b) for m, b in self.options_ if self.costs_.supports(q.hardware, m, b)]
        if not options:
            raise ValueError(f"the evidence has no measured backbone that runs on {HARDWARE[q.hardware].name}")
        predicted = self._predict(q, self._task_rows(q, options, [q.images_per_class]))
        records = []
        for _, row in predicted.iterrows():
            cost = self.costs_.estimate(row["method"], row["backbone"], q.n_classes, q.images_per_class,
                                        q.hardware, int(row["resolution"]), q.region, assumptions)
            violations = [BUDGET_LABELS[name] for name, limit in q.budgets.items()
                          if cost[BUDGET_COLUMNS[name]] > limit]
            records.append({"option": option_name(row["method"], row["backbone"]), "method": row["method"],
                            "backbone": row["backbone"], "resolution": int(row["resolution"]),
                            "acc_low": row["acc_low"], "acc_median": row["acc_median"], "acc_high": row["acc_high"],
                            **cost, "violations": violations, "feasible": not violations})
        table = pd.DataFrame(records)
        table["pareto"] = pareto_front(table["acc_median"].to_numpy(), table["total_usd"].to_numpy())
        table["utility"] = self._utility(table, q.accuracy_weight)
        feasible = table[table["feasible"]]
        feasible_exists = not feasible.empty
        if feasible_exists:
            best = feasible.sort_values(["utility", "total_usd"], ascending=[False, True]).iloc[0]
        else:  # nothing fits: the option that overshoots its budgets least
            overshoot = table.apply(lambda r: sum(np.log(r[BUDGET_COLUMNS[n]] / lim) for n, lim in q.budgets.items()
                                                  if r[BUDGET_COLUMNS[n]] > lim), axis=1)
            best = table.loc[overshoot.idxmin()]
        curves = self._predict(q, self._task_rows(q, options, sorted(set(CURVE_K) | {q.images_per_class})))
        curves["option"] = [option_name(m, b) for m, b in zip(curves["method"], curves["backbone"])]
        curves = curves[["option", "method", "backbone", "images_per_class", "acc_low", "acc_median", "acc_high"]]
        return Advice(q, assumptions, table.sort_values("utility", ascending=False).reset_index(drop=True),
                      best["option"], self._rationale(q, table, best, feasible_exists), curves, feasible_exists,
                      {"rows": len(self.rows_), "datasets": int(self.rows_["dataset"].nunique())})

    @staticmethod
    def _utility(table: pd.DataFrame, weight: float) -> pd.Series:
        """Accuracy points minus the points the user would trade per doubling of total cost."""
        points_per_doubling = COST_POINTS_PER_DOUBLING_AT_HALF_WEIGHT * (1 - weight) / max(weight, 0.05)
        relative_cost = np.log2(table["total_usd"].clip(lower=1e-6) / table["total_usd"].clip(lower=1e-6).min())
        return 100 * table["acc_median"] - points_per_doubling * relative_cost

    def nearest_datasets(self, q: Questionnaire, n: int = 2) -> pd.DataFrame:
        d = self.descriptors_.copy()
        descriptor = questionnaire_descriptor(q)
        d["distance"] = (2.0 * (d["domain"] != descriptor["domain"])
                         + np.abs(np.log2(d["n_classes"] / descriptor["n_classes"]))
                         + 0.5 * np.abs(d["grey"] - descriptor["grey"])
                         + 0.5 * np.abs(np.log2(d["native_px"] / descriptor["native_px"])))
        return d.sort_values(["distance", "dataset"]).head(n)

    def _measured_gap(self, dataset: str, k: int) -> str | None:
        rows = self.rows_[self.rows_["dataset"] == dataset]
        fe, ft = rows[rows["method"].str.startswith("fe_")], rows[rows["method"].str.startswith("ft_")]
        if fe.empty:
            return None
        common = sorted(set(fe["images_per_class"].round()) & set(ft["images_per_class"].round())) or \
            sorted(set(fe["images_per_class"].round()))
        nearest = min(common, key=lambda value: abs(np.log2(value / k)))
        best_fe = fe[fe["images_per_class"].round() == nearest].sort_values("accuracy").iloc[-1]
        text = (f"{dataset} at k={nearest:g}: best extraction {best_fe['method']} · {best_fe['backbone']} "
                f"{100 * best_fe['accuracy']:.1f}%")
        ft_at = ft[ft["images_per_class"].round() == nearest]
        if not ft_at.empty:
            best_ft = ft_at.sort_values("accuracy").iloc[-1]
            gap = 100 * (best_ft["accuracy"] - best_fe["accuracy"])
            text += (f", best fine-tuning {best_ft['method']} · {best_ft['backbone']} {100 * best_ft['accuracy']:.1f}%"
                     f" ({gap:+.1f} points)")
        return text + f" [{int(best_fe['seeds'])} seeds, {int(best_fe['resolution'])} px]"

    def _rationale(self, q: Questionnaire, table: pd.DataFrame, best: pd.Series, feasible_exists: bool) -> list[str]:
        lines = []
        name = f"{METHOD_NAMES[best['method']]} with {best['backbone']}"
        lines.append(f"Recommended: {name}. Predicted accuracy {100 * best['acc_median']:.1f}% "
                     f"(80% interval {100 * best['acc_low']:.1f}–{100 * best['acc_high']:.1f}%) at "
                     f"{q.images_per_class} images per class, for {best['time_h'] * 60:.1f} compute-minutes, "
                     f"{best['human_hours']:.1f} human hours and ${best['total_usd']:,.2f} in all.")
        if not feasible_exists:
            lines.append("No option fits every budget; this one overshoots them the least. Relax a budget or "
                         "collect the evidence on cheaper hardware.")
        fe = table[table["method"].str.startswith("fe_")].sort_values("acc_median").iloc[-1]
        ft = table[table["method"].str.startswith("ft_")]
        if not ft.empty:
            ft = ft.sort_values("acc_median").iloc[-1]
            gap = 100 * (ft["acc_median"] - fe["acc_median"])
            ratio = ft["total_usd"] / max(fe["total_usd"], 1e-9)
            lines.append(f"Best fine-tuning ({ft['option']}) is predicted {gap:+.1f} points versus the best "
                         f"extraction ({fe['option']}), for {ratio:.1f}× the total cost "
                         f"({ft['trials']} learning-rate trials from the measured tuning curve).")
        excluded = table[~table["feasible"]]
        for _, row in excluded.head(3).iterrows():
            lines.append(f"{row['option']} breaks the {', '.join(row['violations'])} budget.")
        for _, near in self.nearest_datasets(q).iterrows():
            gap = self._measured_gap(near["dataset"], q.images_per_class)
            if gap:
                lines.append(f"Closest measured task — {near['domain']}, {near['n_classes']} classes: {gap}.")
        lines.append(f"Costs are {best['cost_basis']}; energy is {best['energy_basis']}.")
        if q.probe_accuracy is not None:
            lines.append(f"Your probe measured {100 * q.probe_accuracy:.1f}% with a linear probe on your own images; "
                         "the prediction is conditioned on it.")
        return lines
