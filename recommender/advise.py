"""Advice for a described task: every option's predicted accuracy and costs at the resolution it would run at,
the budgets each breaks (and what breaks them), the recommended option and a rationale that cites the evidence."""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from recommender.accuracy import (COVERAGE, PREDICTED_FT_PILOT, SUPPORT_DATASETS, ProbeAnchoredModel,
                                  QuestionnaireModel, evidence_rows, from_z, has_pilot, is_finetuning, predicted_kind,
                                  probe_curves_by_dataset, to_z)
from recommender.costs import Assumptions, CostModel
from recommender.evidence import evidence_only, measured_backbone_params
from recommender.hardware import HARDWARE
from recommender.questionnaire import Questionnaire
from recommender.tasks import dataset_descriptors, questionnaire_descriptor
from study.convergence import budget_gains, budget_pairs
from study.labels import backbone_scope, format_duration, option_label
from study.markdown import signed
from study.resolution import pairs_by_family, upscale_rule
from study.spec import finetuning_rows, is_finetuning

METHOD_ORDER = ("fe_linear", "fe_fne", "ft_full", "ft_partial")
BUDGET_COLUMNS = {"budget_money_usd": "total_usd", "budget_energy_kwh": "energy_kwh_with_pue",
                  "budget_co2_kg": "co2_kg", "budget_wall_time_h": "time_h", "budget_human_hours": "human_hours"}
BUDGET_LABELS = {"budget_money_usd": "money", "budget_energy_kwh": "energy", "budget_co2_kg": "CO₂",
                 "budget_wall_time_h": "wall time", "budget_human_hours": "human hours"}
CURVE_K = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Accuracy points one would give up to halve the cost, at accuracy_weight w: 4 * (1 - w) / w.
COST_POINTS_PER_DOUBLING_AT_HALF_WEIGHT = 4.0
# Options are ranked by their expected accuracy (the mean over the calibrated errors: the most accuracy on average)
# or, for a cautious user, by the accuracy they reach 3 times in 4 (the predictive distribution's lower quartile: an
# uncertain prediction a hair above a well-measured one then does not win). Deferring to the best fixed option in
# hindsight unless another is expected to beat it by X points (X of 0 to 8, or always, chosen on the other held-out
# datasets' decisions) was tried, leave one dataset out: mean regret with the probe 0.66 -> 0.72, with its pilot
# 0.59 -> 0.69, from the description alone 1.05 -> 1.03 (2026-12-02, 213 decisions); so options are ranked by their
# own prediction.
CAUTIOUS_QUANTILE = 0.25
RANKING_COLUMNS = {"expected": "acc_expected", "cautious": "acc_cautious"}
RANKING_WORDS = {"expected": "the accuracy they are expected to reach on average",
                 "cautious": "the accuracy they reach 3 times in 4"}
SMALLEST_INPUT_PX = 64  # below this the backbones' five stride-2 stages leave almost nothing to pool


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
    # Without a probe or its fine-tuning pilot: interval widths now, and with them (points; ``_probe_would_narrow``)
    probe_would_narrow: dict | None = None

    @property
    def recommended_row(self) -> pd.Series:
        return self.options.set_index("option").loc[self.recommended]


def option_name(method: str, backbone: str) -> str:
    """The option's id (machine key, kept in CSV exports); people read ``study.labels.option_label``."""
    return f"{method} · {backbone}"


def pareto_front(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """True where no other option is at least as accurate and as cheap, and strictly better in one."""
    front = np.ones(len(accuracy), dtype=bool)
    for i in range(len(accuracy)):
        dominated = (accuracy >= accuracy[i]) & (cost <= cost[i]) & ((accuracy > accuracy[i]) | (cost < cost[i]))
        front[i] = not dominated.any()
    return front


def working_resolution(q: Questionnaire, native_px: int, upscale: dict | None = None,
                       finetuning: bool = False) -> tuple[int, str]:
    """(pixels, why): the input size the option would run at for this task. ``upscale``: per family (False:
    extraction, True: fine-tuning) the ``study.resolution.upscale_rule``. Where the resolution check measured the
    option's family on small images, those smaller than its reference resolution are upscaled to the resolution it
    found most accurate (at most the backbone's native input); fine-tuning, where the check has not measured it,
    runs at the reference resolution, where its accuracy was measured; without the check, at SMALLEST_INPUT_PX at
    least."""
    if q.working_resolution_px is not None:
        return q.working_resolution_px, "your choice of working resolution"
    if q.image_size_px >= native_px:
        return native_px, (f"your {q.image_size_px} px images downscaled to the backbone's native {native_px} px "
                           "input (what it was pretrained at)")
    rules = upscale or {}
    rule, extraction = rules.get(finetuning), rules.get(False)
    if rule and rule["change_points"] is not None and q.image_size_px < rule["reference_px"]:
        size = min(rule["resolution_px"], native_px)
        changes = ", ".join(f"{px} px {signed(change)} points" for px, change in rule["change_points_by_px"].items())
        return size, (f"your {q.image_size_px} px images upscaled to {size} px, the resolution the study's "
                      f"{rule['datasets']} datasets of small images favoured for "
                      f"{'fine-tuning' if finetuning else 'feature extraction'} (on average against "
                      f"{rule['reference_px']} px: {changes}; a gain within its standard error over datasets does "
                      f"not count; {rule['runs']} paired runs)")
    if finetuning and extraction and extraction["change_points"] is not None \
            and q.image_size_px < extraction["reference_px"]:
        size = extraction["reference_px"]
        return size, (f"your {q.image_size_px} px images upscaled to {size} px, where fine-tuning's accuracy was "
                      "measured (the resolution check has not measured it at other resolutions on enough datasets)")
    if q.image_size_px < SMALLEST_INPUT_PX:
        return SMALLEST_INPUT_PX, (f"your {q.image_size_px} px images upscaled to {SMALLEST_INPUT_PX} px, the "
                                   "smallest input these backbones pool well")
    size = int(np.ceil(q.image_size_px / 32) * 32)
    return size, f"your images at their own size (shorter side {q.image_size_px} px, rounded up to {size}), not upscaled"


def cautious_accuracy(acc_low, acc_median, chance: float) -> np.ndarray:
    """The CAUTIOUS_QUANTILE of the predicted accuracy: the 80% interval's low end is its 10th percentile (symmetric
    with the high end in z, unless raised so that it does not fall as k grows), so the quantile sits at the matching
    fraction of the way from the median to the low end."""
    z_median, z_low = to_z(acc_median, chance), to_z(acc_low, chance)
    fraction = NormalDist().inv_cdf(CAUTIOUS_QUANTILE) / NormalDist().inv_cdf((1 - COVERAGE) / 2)
    return from_z(z_median + fraction * (z_low - z_median), chance)


def _plain(value: float) -> str:
    """Two significant digits without an exponent: 0.0000021, 0.35, 120."""
    return np.format_float_positional(value, precision=2, unique=False, fractional=False, trim="-")


def budget_verdict(budget: str, limit: float, cost: dict, q: Questionnaire, method: str) -> dict:
    """What breaks a budget (the component) and the one answer or assumption that would change it."""
    value = cost[BUDGET_COLUMNS[budget]]
    if budget == "budget_money_usd":
        labour = cost["human_usd"] >= cost["compute_usd"]
        component = (f"labour: {cost['human_hours']:.1f} h x the hourly rate = ${cost['human_usd']:,.0f}" if labour
                     else f"compute: {format_duration(cost['time_h'])} x the hardware price = "
                          f"${cost['compute_usd']:,.2f}")
        fix = (("assumption", "hourly_rate_usd", "the engineer hourly rate (or the set-up hours)") if labour
               else ("answer", "hardware", "cheaper hardware"))
    elif budget == "budget_human_hours":
        component = f"labour: {cost['human_hours']:.1f} h of set-up" + (
            f" and {cost['trials']} fine-tuning trials" if is_finetuning(method) else "")
        fix = ("assumption", "setup_hours_ft" if is_finetuning(method) else "setup_hours_fe", "the set-up hours")
    elif budget == "budget_wall_time_h":
        component = f"compute time: {format_duration(cost['time_h'])} on {HARDWARE[q.hardware].name}"
        fix = ("answer", "hardware", "faster hardware (or a lower working resolution)")
    elif budget == "budget_energy_kwh":
        component = (f"compute energy: {_plain(cost['energy_kwh'])} kWh x PUE {cost['pue']:.2f} = "
                     f"{_plain(cost['energy_kwh_with_pue'])} kWh")
        fix = ("answer", "hardware", "more efficient hardware (or the PUE assumption)")
    else:
        component = (f"compute energy: {_plain(cost['energy_kwh_with_pue'])} kWh (with PUE) x the grid's carbon "
                     f"intensity = {_plain(cost['co2_kg'])} kg")
        fix = ("answer", "region", "a lower-carbon grid region (or the grid intensity assumption)")
    return {"budget": BUDGET_LABELS[budget], "field": budget, "limit": limit, "value": value, "component": component,
            "fix_kind": fix[0], "fix_field": fix[1], "fix": fix[2]}


def best_measured(rows: pd.DataFrame) -> dict[tuple[str, bool], pd.DataFrame]:
    """Per (dataset, fine-tuning or not): the most accurate option measured at each k (rounded; the index), what the
    rationale quotes of the closest measured tasks: looked up per request instead of filtering every row (a third of
    ``advise``'s time, profiled). Equal accuracies: the last by method and backbone name, a fixed choice."""
    table = rows.assign(k=rows["images_per_class"].round(), finetuning=finetuning_rows(rows["method"]))
    best = table.sort_values(["accuracy", "method", "backbone"]).groupby(["dataset", "finetuning", "k"]).tail(1)
    return {(dataset, bool(finetuning)): group.set_index("k")
            for (dataset, finetuning), group in best.groupby(["dataset", "finetuning"])}


def _seeds(row: pd.Series) -> str:
    """How many runs an evidence row's accuracy is the mean of: each option's own (partial fine-tuning had one
    seed where extraction had three)."""
    return "one seed" if int(row["seeds"]) == 1 else f"mean of {int(row['seeds'])} seeds"


class Advisor:
    """fit(tables) once, then advise(questionnaire, assumptions) per request (fast, deterministic)."""

    def fit(self, tables: dict) -> "Advisor":
        # the convergence and resolution checks' runs are not evidence: read first
        gains = budget_gains(budget_pairs(tables["runs"]))
        gained = gains[gains["gained"]]
        self.budget_gained_ = dict(zip(gained["dataset"], gained["mean_change"].astype(float)))
        self.upscale_ = {finetuning: upscale_rule(pairs)
                         for finetuning, pairs in pairs_by_family(tables["runs"], tables["datasets"]).items()}
        tables = evidence_only(tables)
        self.rows_ = evidence_rows(tables)
        self.best_measured_ = best_measured(self.rows_)
        self.probes_ = probe_curves_by_dataset(tables)
        self.model_ = QuestionnaireModel().fit(self.rows_)
        self.probe_model_ = ProbeAnchoredModel().fit(self.rows_, self.probes_) if self.probes_ else None
        self.costs_ = CostModel().fit(tables)
        self.descriptors_ = dataset_descriptors(tables["datasets"])
        self.native_resolution_ = tables["backbones"].set_index("name")["native_resolution"].to_dict()
        self.backbone_params_ = measured_backbone_params(tables)
        self.evidence_resolutions_ = sorted(int(r) for r in self.rows_["resolution"].unique())
        self.evidence_datasets_ = self.rows_.groupby(["method", "backbone"])["dataset"].nunique().to_dict()
        self.options_ = sorted({(m, b) for m, b in zip(self.rows_["method"], self.rows_["backbone"])},
                               key=lambda mb: (METHOD_ORDER.index(mb[0]) if mb[0] in METHOD_ORDER else 9, mb[1]))
        return self

    def _tasks(self, q: Questionnaire, options, k_values) -> pd.DataFrame:
        descriptor = questionnaire_descriptor(q)
        return pd.DataFrame([{**descriptor, "method": m, "backbone": b, "images_per_class": k}
                             for m, b in options for k in k_values])

    def _predict(self, q: Questionnaire, tasks: pd.DataFrame) -> pd.DataFrame:
        curves = q.probe_curves
        if curves and self.probe_model_ is not None:
            return pd.concat([tasks, self.probe_model_.predict(tasks, curves)], axis=1)
        return pd.concat([tasks, self.model_.predict(tasks)], axis=1)

    def _probe_would_narrow(self, q: Questionnaire, at_k: pd.DataFrame) -> dict | None:
        """What measuring more would do to the median 80% interval width, at the same predicted accuracies (a
        measurement would also move the predictions): without a probe, its width now and with a probe per family
        (and fine-tuning with the probe's pilot); with a probe but no pilot, fine-tuning's width now and with it."""
        if self.probe_model_ is None or (q.probe_curves and has_pilot(q.probe_curves)):
            return None
        chance = 1.0 / q.n_classes
        z = to_z(at_k["acc_median"], chance)
        fine_tuning = at_k["method"].map(is_finetuning).to_numpy()
        now = 100 * (at_k["acc_high"] - at_k["acc_low"])

        def width(pilot: bool, family: np.ndarray) -> float | None:
            if not family.any():
                return None
            kinds = [predicted_kind(m, pilot) for m in at_k["method"]]
            half = self.probe_model_.conformal_.z_half(z, kinds, at_k["images_per_class"], chance)
            return float(pd.Series(100 * (from_z(z + half, chance) - from_z(z - half, chance)))[family].median())

        pilot = width(True, fine_tuning) if PREDICTED_FT_PILOT in self.probe_model_.conformal_.half_width_ else None
        if q.probe_curves:
            return {"probed": True, "width_now_points": width(False, fine_tuning),
                    "width_with_pilot_fine_tuning_points": pilot,
                    **self._families_overlap(at_k, fine_tuning)} if pilot is not None else None
        return {"probed": False, "width_now_points": float(now.median()),
                "width_with_probe_extraction_points": width(False, ~fine_tuning),
                "width_with_probe_fine_tuning_points": width(False, fine_tuning),
                "width_with_pilot_fine_tuning_points": pilot}

    @staticmethod
    def _families_overlap(at_k: pd.DataFrame, fine_tuning: np.ndarray) -> dict:
        """The 80% intervals (%) of the best extraction and the best fine-tuning option (by expected accuracy), and
        whether they overlap: then the extraction probe has not decided between the families, and the pilot can."""
        if fine_tuning.all() or not fine_tuning.any():
            return {}
        best = {family: at_k[mask].loc[at_k.loc[mask, "acc_expected"].idxmax()]
                for family, mask in (("extraction", ~fine_tuning), ("fine_tuning", fine_tuning))}
        low = {family: 100 * float(row["acc_low"]) for family, row in best.items()}
        high = {family: 100 * float(row["acc_high"]) for family, row in best.items()}
        return {"best_extraction_interval_pct": (low["extraction"], high["extraction"]),
                "best_fine_tuning_interval_pct": (low["fine_tuning"], high["fine_tuning"]),
                "families_overlap": (low["fine_tuning"] <= high["extraction"]
                                     and low["extraction"] <= high["fine_tuning"])}

    def advise(self, q: Questionnaire, assumptions: Assumptions | None = None, only: set[str] | None = None) -> Advice:
        """``only``: option ids to choose among (default every option the evidence and the hardware support)."""
        q.validate()
        assumptions = (assumptions or Assumptions()).validate()
        options = [(m, b) for m, b in self.options_ if self.costs_.supports(q.hardware, m, b)
                   and (only is None or option_name(m, b) in only)]
        if not options:
            raise ValueError(f"the evidence has no measured backbone that runs on {HARDWARE[q.hardware].name}")
        ks = sorted(set(CURVE_K) | {q.images_per_class})
        curves = self._predict(q, self._tasks(q, options, ks))
        at_k = curves[curves["images_per_class"] == q.images_per_class].reset_index(drop=True)
        records = []
        for _, row in at_k.iterrows():
            resolution, why = working_resolution(q, self.native_resolution_.get(row["backbone"], 224), self.upscale_,
                                                 is_finetuning(row["method"]))
            cost = self.costs_.estimate(row["method"], row["backbone"], q.n_classes, q.images_per_class,
                                        q.hardware, resolution, q.region, assumptions)
            verdicts = [budget_verdict(name, limit, cost, q, row["method"]) for name, limit in q.budgets.items()
                        if cost[BUDGET_COLUMNS[name]] > limit]
            records.append({"option": option_name(row["method"], row["backbone"]),
                            "label": option_label(row["method"], row["backbone"]), "method": row["method"],
                            "backbone": row["backbone"], "resolution": resolution, "resolution_reason": why,
                            "accuracy_resolution": ", ".join(f"{r} px" for r in self.evidence_resolutions_),
                            "acc_low": row["acc_low"], "acc_median": row["acc_median"], "acc_high": row["acc_high"],
                            "acc_expected": row["acc_expected"], "accuracy_basis": row["basis"],
                            "extrapolated": bool(row["extrapolated"]),
                            "evidence_datasets": int(self.evidence_datasets_[(row["method"], row["backbone"])]),
                            **cost, "violations": [v["budget"] for v in verdicts], "verdicts": verdicts,
                            "feasible": not verdicts})
        table = pd.DataFrame(records)
        table["pareto"] = pareto_front(table["acc_median"].to_numpy(), table["total_usd"].to_numpy())
        table["acc_cautious"] = cautious_accuracy(table["acc_low"], table["acc_median"], 1.0 / q.n_classes)
        table["acc_ranked"] = table[RANKING_COLUMNS[q.rank_by]]
        table["utility"] = self._utility(table, table["acc_ranked"], q.accuracy_weight)
        feasible = table[table["feasible"]]
        feasible_exists = not feasible.empty
        if feasible_exists:
            # An option measured on fewer than SUPPORT_DATASETS datasets is shown, not recommended: its prediction
            # rests on too few tasks to generalise (or to calibrate its interval), unless nothing better supported fits.
            supported = feasible[feasible["evidence_datasets"] >= SUPPORT_DATASETS]
            best = (supported if len(supported) else feasible).sort_values(
                ["utility", "total_usd"], ascending=[False, True]).iloc[0]
        else:  # nothing fits: the option that overshoots its budgets least
            overshoot = table.apply(lambda r: sum(np.log(r[BUDGET_COLUMNS[n]] / lim) for n, lim in q.budgets.items()
                                                  if r[BUDGET_COLUMNS[n]] > lim), axis=1)
            best = table.loc[overshoot.idxmin()]
        curves["option"] = [option_name(m, b) for m, b in zip(curves["method"], curves["backbone"])]
        curves["label"] = [option_label(m, b) for m, b in zip(curves["method"], curves["backbone"])]
        curves = curves[["option", "label", "method", "backbone", "images_per_class", "acc_low", "acc_median",
                         "acc_high", "basis", "extrapolated"]]
        return Advice(q, assumptions, table.sort_values("utility", ascending=False).reset_index(drop=True),
                      best["option"], self._rationale(q, table, best, feasible_exists), curves, feasible_exists,
                      {"rows": len(self.rows_), "datasets": int(self.rows_["dataset"].nunique()),
                       "probe_datasets": len(self.probes_)},
                      self._probe_would_narrow(q, at_k))

    def _extrapolation_sentence(self, q: Questionnaire, best: pd.Series) -> str:
        """Why the recommended option's accuracy is an extrapolation: k, or (without a probe) the class count."""
        model = self.probe_model_ if q.probe_curves and self.probe_model_ is not None else self.model_
        k_low, k_high = model.k_measured_[(best["method"], best["backbone"])]
        classes_low, classes_high = model.classes_range_
        outside, classes_outside = [], not q.probe_curves and not classes_low <= q.n_classes <= classes_high
        if not k_low <= q.images_per_class <= k_high:
            outside.append(f"{q.images_per_class} images per class is outside the range of k the study measured for "
                           f"this option on several datasets ({k_low:g}–{k_high:g})")
        if classes_outside:
            outside.append(f"{q.n_classes} classes is outside the class counts of the study's datasets "
                           f"({classes_low:g}–{classes_high:g})")
        return (" and ".join(outside) + ": the accuracy is an extrapolation, and its interval is wider."
                + (" A probe on your images would anchor it on a measurement." if classes_outside else ""))

    def _domain_sentence(self, q: Questionnaire, ft: pd.Series) -> str:
        """With a probe, how far the task's domain moved fine-tuning's prediction, and on how many datasets that rests
        ("" where it did not count: no probe, a domain the evidence lacks, or under half a point)."""
        if not q.probe_curves or self.probe_model_ is None or q.domain not in self.probe_model_.domain_datasets_:
            return ""
        task = self._tasks(q, [(ft["method"], ft["backbone"])], [q.images_per_class])
        with_domain, without = (float(self.probe_model_.predict(t, q.probe_curves)["acc_median"].iloc[0])
                                for t in (task, task.assign(domain=None)))
        shift = 100 * (with_domain - without)
        if abs(shift) < 0.5:
            return ""
        return (f" Your domain moves this prediction by {signed(shift)} points: fine-tuning did "
                f"{'better' if shift > 0 else 'worse'} on the study's {self.probe_model_.domain_datasets_[q.domain]} "
                f"{q.domain} datasets than the other datasets' evidence predicts.")

    @staticmethod
    def _utility(table: pd.DataFrame, accuracy: pd.Series, weight: float) -> pd.Series:
        """``accuracy`` in points minus the points the user would trade per doubling of total cost."""
        points_per_doubling = COST_POINTS_PER_DOUBLING_AT_HALF_WEIGHT * (1 - weight) / max(weight, 0.05)
        relative_cost = np.log2(table["total_usd"].clip(lower=1e-6) / table["total_usd"].clip(lower=1e-6).min())
        return 100 * accuracy - points_per_doubling * relative_cost

    def nearest_datasets(self, q: Questionnaire, n: int = 2) -> pd.DataFrame:
        d = self.descriptors_.copy()
        descriptor = questionnaire_descriptor(q)
        d["distance"] = (2.0 * (d["domain"] != descriptor["domain"])
                         + np.abs(np.log2(d["n_classes"] / descriptor["n_classes"]))
                         + 0.5 * np.abs(d["grey"] - descriptor["grey"])
                         + 0.5 * np.abs(np.log2(d["native_px"] / descriptor["native_px"])))
        return d.sort_values(["distance", "dataset"]).head(n)

    def _measured_gap(self, dataset: str, k: int) -> str | None:
        fe, ft = self.best_measured_.get((dataset, False)), self.best_measured_.get((dataset, True))
        if fe is None:
            return None
        common = sorted(set(fe.index) & set(() if ft is None else ft.index)) or sorted(fe.index)
        nearest = min(common, key=lambda value: abs(np.log2(value / k)))
        best_fe = fe.loc[nearest]
        text = (f"{dataset} at {nearest:g} images per class: best extraction "
                f"({option_label(best_fe['method'], best_fe['backbone'])}) {100 * best_fe['accuracy']:.1f}% "
                f"({_seeds(best_fe)})")
        resolutions = [int(best_fe["resolution"])]
        if ft is not None and nearest in ft.index:
            best_ft = ft.loc[nearest]
            gap = 100 * (best_ft["accuracy"] - best_fe["accuracy"])
            text += (f", best fine-tuning ({option_label(best_ft['method'], best_ft['backbone'])}) "
                     f"{100 * best_ft['accuracy']:.1f}% ({_seeds(best_ft)}; {signed(gap)} points)")
            resolutions.append(int(best_ft["resolution"]))
        return text + f" [{' and '.join(f'{px} px' for px in dict.fromkeys(resolutions))}]"

    def _rationale(self, q: Questionnaire, table: pd.DataFrame, best: pd.Series, feasible_exists: bool) -> list[str]:
        lines = [f"Recommended: {best['label']}. Predicted accuracy {100 * best['acc_median']:.1f}% (80% interval "
                 f"{100 * best['acc_low']:.1f}–{100 * best['acc_high']:.1f}%) at {q.images_per_class} images per "
                 f"class, for {format_duration(best['time_h'])} of compute, {best['human_hours']:.1f} human hours "
                 f"and ${best['total_usd']:,.2f} in all."]
        if best["extrapolated"]:
            lines.append(self._extrapolation_sentence(q, best))
        # Would an option win on its median? Then the spread of its errors is what ranked it lower (with the cost).
        on_median = self._utility(table, table["acc_median"], q.accuracy_weight)
        rival = table[table["feasible"] & (on_median > on_median[best.name] + 1e-9)
                      & (table["evidence_datasets"] >= SUPPORT_DATASETS)]
        if feasible_exists and len(rival):
            rival = rival.sort_values("acc_median").iloc[-1]
            why = ("so a prediction a little higher but much less certain does not win" if q.rank_by == "cautious"
                   else "which weighs how far predictions for such tasks have erred, and in which direction")
            # accuracy points its extra cost is worth to this user (0 at accuracy weight 1)
            cost_points = (100 * rival["acc_ranked"] - rival["utility"]) - (100 * best["acc_ranked"] - best["utility"])
            cost = (f", less {cost_points:.1f} points for its {rival['total_usd'] / best['total_usd']:.1f}× cost at "
                    "your accuracy weight" if cost_points > 0.05 else "")
            lines.append(f"{rival['label']} has a higher median ({100 * rival['acc_median']:.1f}%) but is not "
                         f"recommended: options are ranked by {RANKING_WORDS[q.rank_by]}, {why}: "
                         f"{100 * rival['acc_ranked']:.1f}% for it{cost}, against {100 * best['acc_ranked']:.1f}% "
                         "for the recommended option.")
        if not feasible_exists:
            lines.append("No option fits every budget; this one overshoots them the least. What breaks each budget "
                         "and what would change it is listed below.")
        fe = table[~finetuning_rows(table["method"])].sort_values("acc_median").iloc[-1]
        ft = table[finetuning_rows(table["method"])]
        if not ft.empty:
            ft = ft.sort_values("acc_median").iloc[-1]
            gap = 100 * (ft["acc_median"] - fe["acc_median"])
            ratio = ft["total_usd"] / max(fe["total_usd"], 1e-9)
            lines.append(f"Best fine-tuning ({ft['label']}) is predicted {signed(gap)} points versus the best "
                         f"extraction ({fe['label']}), for {ratio:.1f}× the total cost ({ft['trials']} "
                         "learning-rate trials, as in the study's recipe)." + self._domain_sentence(q, ft))
        thin = table[table["evidence_datasets"] < SUPPORT_DATASETS]
        if len(thin):
            lines.append(f"Not recommended while the study has measured them on fewer than {SUPPORT_DATASETS} "
                         f"datasets: {', '.join(thin['label'])} (shown, with wider uncertainty than the interval "
                         "can express).")
        failing = table[~table["feasible"]]
        if len(failing):
            broken = sorted({v["budget"] for verdicts in failing["verdicts"] for v in verdicts})
            lines.append(f"{len(failing)} of {len(table)} options break the {' and '.join(broken)} budget"
                         f"{'s' if len(broken) > 1 else ''}; what breaks each, and what would change it, is listed "
                         "with the options.")
        lines.append(f"Working resolution: {best['resolution']} px, {best['resolution_reason']}. Accuracy was "
                     f"measured at {best['accuracy_resolution']}; costs are {best['cost_basis']}.")
        for _, near in self.nearest_datasets(q).iterrows():
            gap = self._measured_gap(near["dataset"], q.images_per_class)
            if gap:
                gained = self.budget_gained_.get(near["dataset"])
                lines.append(f"Closest measured task — {near['domain']}, {near['n_classes']} classes: {gap}."
                             + (f" Twice the fine-tuning budget gained {signed(gained)} points on this dataset in the "
                                "convergence check: its fine-tuning figures may be that much low." if gained else ""))
        lines.append(f"Energy is {best['energy_basis']}; CO₂ includes a PUE of {best['pue']:.2f}.")
        lines.append(backbone_scope(self.backbone_params_))
        if q.probe_curves:
            lines.append(f"Predictions are anchored on your probe: {best['accuracy_basis']}.")
        return lines
