"""Accuracy models: accuracy(k) of every option for a described task, with an honest 80% interval.

Everything is modelled on the normalised-logit scale z = logit((accuracy - chance) / (1 - chance)), so predictions
and intervals stay between chance and 100% without being clipped there.

``ProbeAnchoredModel`` (the user ran ``python -m study.probe``): the user's own measured learning curves are the
anchor. A probed feature-extraction option inside the probe's range of k is the measurement itself (interpolated
in log k) plus the mean probe-to-study bias. Everything else (larger k, other backbones' fine-tuning, partial
fine-tuning) is an offset from the probed configuration at the probe's largest k: offset(k) is a ridge regression
over the study datasets on a hat basis in log k, with the anchor's level and the probe curve's slope as
modifiers, so a task whose features already work well (or whose curve is still climbing) moves accordingly; for
fine-tuning also by the probe's FNE gain (how far the Full-Network Embedding beats the linear probe on the same
backbone: where all layers' features beat the last layer's, the pretrained top layers suit the task poorly, which
fine-tuning repairs; leave one dataset out, fine-tuning's error with the probe 6.35 -> 5.82 points, lower on 8 of
10 datasets) and by the task's domain: one indicator per domain of which the evidence has ``DOMAIN_DATASETS`` or
more datasets (one dataset is that dataset, not its domain), shrunk as the other modifiers; none for another domain.
That is the seed paper's point: how much fine-tuning gains over extraction depends on how far the images are from
ImageNet's (in the study, more for the three medical datasets than for the two industrial ones). Leave one dataset
out, fine-tuning's error with the probe 5.82 -> 4.73 points (lower on 8 of 10 datasets: on those with a domain
indicator, and on the rest, whose baseline no longer carries the medical datasets' large gains). Colour and native
image size, tried as the same kind of modifier, made it worse (5.82 -> 6.36 and 6.17).
Offsets transfer across datasets far better than absolute accuracies. Each option's offsets from every probed
option are averaged, its own probe weighing most; fine-tuning has none of its own, and weighs every extraction
anchor alike (which backbone extracts best says little about which fine-tunes best). With the probe's fine-tuning
pilot (one fine-tuning run on the user's images), fine-tuning options are offsets from that measurement instead: how
much a task gains from fine-tuning is what the extraction probe predicts worst. Every fit is Huber-weighted
(``ridge``): with ten datasets, one where fine-tuning gains 20 points would otherwise shift every other task's
prediction.

``QuestionnaireModel`` (no probe): z from a curve in log k shared by all options plus each option's deviation from
it (held flat where the option was not measured) and the number of classes, by ridge regression; its intervals are
correspondingly wider. Domain, colour and image size were tried as features and made the leave-one-dataset-out error
worse (11.6 -> 12.2-19.3 points on the 10 study datasets: a domain seen once or twice says little about how hard the
next dataset of that domain is), so the description enters only through the classes. What a domain does say is how
much fine-tuning gains over extraction: the probe-anchored model uses it there, where the probe measures how hard.

Intervals are leave-one-dataset-out conformal: the 80th percentile of the absolute z errors made on datasets left
out of the fit, per kind of prediction (measured by the probe or by its pilot, predicted offset with or without
the pilot, questionnaire only) and, for probe-anchored predictions, per band of k (``K_BAND_EDGES``: an offset
from a probe point at k = 5 errs differently at k = 5 and at k = 100; questionnaire errors are the dataset's own
and do not change with k). Probe-anchored
extraction errors are measured in accuracy points (sampling noise: a few points next to 100% as at 60%, where the
logit scale alone made intervals far too narrow) and mapped to z at each prediction; the others stay in z. Outside
the range of k the evidence measured on at least ``SUPPORT_DATASETS`` datasets (above it, or below it: fine-tuning
was never measured under 5 images per class), predictions are extrapolations: the offset curve is held flat there
(learning curves saturate) and the interval widens by ``EXTRAPOLATION_WIDENING`` per doubling of k beyond the range
(a stated rule: nothing outside the evidence can calibrate it). Likewise outside the class counts of the study's
datasets (2 to 10 today), the questionnaire model holds the class count's effect at the nearest end and widens per
doubling of classes beyond it (within 2-10 classes the tasks with more classes happened to be easier: extrapolated
linearly, 1000 classes predicted 98% at k = 5). Probe-anchored predictions do not use the class count as a
feature: the probe carries the task's difficulty, and the anchor's level and slope are held inside the study's
range. Predictions, and the low ends of their intervals, never fall as k grows. The same signed calibration errors
give each prediction's expected accuracy (their mean around it), which the advisor ranks by: the option's own where
it has enough (an extraction option's probe reads with its own bias), but for fine-tuning predicted from the probe
or its pilot, its kind's (what the task gains, shared by its options).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from recommender.tasks import dataset_descriptors
from study.evidence import capped_as_max
from study.spec import is_finetuning

KNOTS_K = (1, 2, 5, 10, 20, 50, 100, 200, 400)
PROBE_RESOLUTION = 128
COVERAGE = 0.8
K_BAND_EDGES = (10, 50)  # intervals are calibrated separately for k <= 10, 10 < k <= 50 and k > 50
SUPPORT_DATASETS = 3
EXTRAPOLATION_WIDENING = 0.5  # interval half-width x (1 + this x doublings of k outside the measured range)
Z_CLIP = 0.002  # normalised accuracy kept in [Z_CLIP, 1 - Z_CLIP] before the logit
CURVE_PENALTY, MODIFIER_PENALTY, TASK_PENALTY = 0.3, 3.0, 3.0
DEVIATION_PENALTY, SMOOTH_PENALTY = 0.3, 3.0  # an option's deviation from the shared curve: size, and change per knot
# An offset's change per knot: a knot where the option was never measured (partial fine-tuning at k = 10 and 50)
# lies between its neighbours instead of shrinking to no offset, which had put k = 50 at k = 20's accuracy. Light:
# 3.0, as above, also smoothed the measured knots (extraction error with the probe 2.42 -> 2.51 points).
OFFSET_SMOOTH_PENALTY = 1.0
ANCHOR_METHOD = "fe_linear"
OWN_WEIGHT = 0.6
DOMAIN_DATASETS = 2  # a domain modifies fine-tuning's offsets once the evidence has this many datasets of it
HUBER_K, ROBUST_ITERATIONS = 1.345, 8  # the usual Huber constant (95% efficiency on normal errors)
# Kinds of prediction, each with its own conformal interval.
MEASURED = "measured on your images by the probe"
MEASURED_PILOT = "measured on your images by the fine-tuning pilot"  # one run: a seed's spread, not a 5-draw mean
PREDICTED_FE = "predicted from your probe (extraction)"
PREDICTED_FT = "predicted from your probe (fine-tuning)"
PREDICTED_FT_PILOT = "predicted from your fine-tuning pilot"
QUESTIONNAIRE = "predicted from the task description"


def has_pilot(curves: dict) -> bool:
    """Whether a probe includes the fine-tuning pilot (a probed fine-tuning option)."""
    return any(is_finetuning(method) for method, _ in curves)


def extraction_only(curves: dict) -> dict:
    """A probe without its fine-tuning pilot."""
    return {option: curve for option, curve in curves.items() if not is_finetuning(option[0])}


def predicted_kind(method: str, pilot: bool = False) -> str:
    """The kind of a probe-anchored prediction of an option the probe did not measure at that k (``pilot``: the
    probe includes the fine-tuning pilot, which fine-tuning options are then predicted from)."""
    if not is_finetuning(method):
        return PREDICTED_FE
    return PREDICTED_FT_PILOT if pilot else PREDICTED_FT


def to_z(accuracy, chance) -> np.ndarray:
    chance = np.asarray(chance, float)
    normalised = np.clip((np.asarray(accuracy, float) - chance) / (1 - chance), Z_CLIP, 1 - Z_CLIP)
    return np.log(normalised / (1 - normalised))


def from_z(z, chance) -> np.ndarray:
    chance = np.asarray(chance, float)
    return chance + (1 - chance) / (1 + np.exp(-np.asarray(z, float)))


def k_hats(k) -> np.ndarray:
    """Piecewise-linear hat basis in log k on ``KNOTS_K`` (rows: k values); flat beyond the last knot."""
    log_k = np.clip(np.log(np.atleast_1d(np.asarray(k, float))), np.log(KNOTS_K[0]), np.log(KNOTS_K[-1]))
    knots = np.log(np.asarray(KNOTS_K, float))
    basis = np.zeros((len(log_k), len(knots)))
    index = np.clip(np.searchsorted(knots, log_k, side="right") - 1, 0, len(knots) - 2)
    weight = (log_k - knots[index]) / (knots[index + 1] - knots[index])
    basis[np.arange(len(log_k)), index] = 1 - weight
    basis[np.arange(len(log_k)), index + 1] = weight
    return basis


def block_diag(*blocks) -> np.ndarray:
    """The blocks (matrices or scalars) along a matrix's diagonal, zeros elsewhere: what ``scipy.linalg.block_diag``
    does, without importing SciPy on a shared link's cold start (its import took about a quarter of a second)."""
    blocks = [np.atleast_2d(np.asarray(block, float)) for block in blocks]
    matrix = np.zeros(tuple(np.sum([block.shape for block in blocks], axis=0)))
    row = column = 0
    for block in blocks:
        matrix[row:row + block.shape[0], column:column + block.shape[1]] = block
        row, column = row + block.shape[0], column + block.shape[1]
    return matrix


def ridge(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Least squares with a per-coefficient L2 penalty, Huber-weighted by iteratively reweighted least squares: with
    a handful of datasets, one task where fine-tuning gains 20 points must not move every other task's prediction
    (closed form per iteration; tiny problems)."""
    weights = np.ones(len(y))
    for _ in range(ROBUST_ITERATIONS):
        weighted = x * weights[:, None]
        coef = np.linalg.solve(x.T @ weighted + (np.diag(penalty) if penalty.ndim == 1 else penalty), weighted.T @ y)
        residual = np.abs(y - x @ coef)
        scale = 1.4826 * np.median(residual)  # the residuals' robust spread (MAD)
        if scale < 1e-9:
            break
        weights = np.minimum(1.0, HUBER_K * scale / np.maximum(residual, 1e-12))
    return coef


def evidence_rows(tables: dict) -> pd.DataFrame:
    """Pretrained runs averaged over seeds: one row per (dataset, method, backbone, k), a k capped at the dataset's
    largest being its ``max`` (``capped_as_max``), with the task's descriptors and chance level."""
    runs = tables["runs"]
    runs = capped_as_max(runs[runs["pretrained"]])
    rows = (runs.groupby(["dataset", "method", "backbone", "k_label", "resolution"], as_index=False)
            .agg(images_per_class=("images_per_class", "mean"), accuracy=("accuracy", "mean"),
                 accuracy_sd=("accuracy", "std"), seeds=("seed", "nunique"), n_classes=("n_classes", "first")))
    rows = rows.merge(dataset_descriptors(tables["datasets"]).drop(columns="n_classes"), on="dataset", how="left")
    rows["chance"] = 1.0 / rows["n_classes"]
    return rows


def probe_curves_by_dataset(tables: dict) -> dict[str, dict[tuple[str, str], dict[int, float]]]:
    """{dataset: {(method, backbone): {k: accuracy}}}: the same probe the user runs, run on each study dataset."""
    probes = tables.get("probe_curves")
    if probes is None or probes.empty:
        return {}
    probes = probes[probes["resolution"] == PROBE_RESOLUTION]
    curves: dict = {}
    for row in probes.itertuples(index=False):
        curves.setdefault(row.dataset, {}).setdefault((row.method, row.backbone), {})[int(row.k)] = row.accuracy
    return curves


def _monotone(frame: pd.DataFrame, column: str) -> pd.Series:
    """The running maximum over k within each option (predictions never fall as k grows)."""
    order = frame.sort_values("images_per_class")
    return order.groupby(["method", "backbone"], sort=False)[column].cummax().reindex(frame.index)


MIN_RESIDUALS = 8  # fewer calibration errors than this: fall back to a coarser group's


def _quantile(residuals: np.ndarray, fallback: float) -> float:
    residuals = np.abs(np.asarray(residuals, float))
    if len(residuals) < MIN_RESIDUALS:
        return fallback
    level = min(1.0, np.ceil((len(residuals) + 1) * COVERAGE) / len(residuals))
    return float(np.quantile(residuals, level))


NO_RESIDUALS = pd.DataFrame({"residual": [], "kind": [], "dataset": [], "option": [], "k": [], "z": [], "chance": []})


def z_half_width(z, half_accuracy, chance) -> np.ndarray:
    """The z half-width whose interval reaches ``half_accuracy`` from the predicted accuracy on the side with more
    room (below it when nearer 100%, above it when nearer chance): an accuracy error of a few points stays a few
    points next to 100% or chance, where one z unit is worth little accuracy, and the other side follows in z."""
    z, chance = np.asarray(z, float), np.asarray(chance, float)
    accuracy = from_z(z, chance)
    room_below = accuracy >= (1 + chance) / 2
    target = np.where(room_below, accuracy - half_accuracy, accuracy + half_accuracy)
    return np.abs(to_z(target, chance) - z)


def k_band(k) -> np.ndarray:
    """Which of the ``K_BAND_EDGES`` bands each k falls in (0: k <= 10, 1: up to 50, 2: above)."""
    return np.searchsorted(K_BAND_EDGES, np.asarray(k, float), side="left")


class _Conformal:
    """Leave-one-dataset-out residual quantiles per kind of prediction and, with ``by_k_band``, per band of k
    (falling back to the kind's quantile where a band has too few residuals); and the extrapolation rule.

    Kinds in ``in_accuracy`` have their residuals measured in accuracy points and mapped to z at each prediction
    (``z_half_width``): errors that are sampling noise of a measured accuracy (a few points wherever the accuracy
    is). The others stay in z, where a difference in task difficulty is roughly constant. The options of a kind in
    ``shared`` share its signed errors for their expected accuracy (see ``errors``)."""

    def __init__(self, by_k_band: bool = False, in_accuracy: tuple[str, ...] = (), shared: tuple[str, ...] = ()):
        self.by_k_band, self.in_accuracy, self.shared = by_k_band, tuple(in_accuracy), tuple(shared)

    def _accuracy_kind(self, kinds) -> np.ndarray:
        return np.isin(np.asarray(kinds, dtype=object), self.in_accuracy)

    def calibrate(self, residuals: pd.DataFrame) -> "_Conformal":
        in_accuracy = self._accuracy_kind(residuals["kind"])
        z, chance = residuals["z"].to_numpy(float), residuals["chance"].to_numpy(float)
        accuracy_residual = from_z(z + residuals["residual"].to_numpy(float), chance) - from_z(z, chance)
        residuals = residuals.assign(residual=np.where(in_accuracy, accuracy_residual, residuals["residual"]))
        # with too few residuals: 1.5 in z, 15 points in accuracy
        self.overall_ = {False: _quantile(residuals.loc[~in_accuracy, "residual"], 1.5),
                         True: _quantile(residuals.loc[in_accuracy, "residual"], 0.15)}
        bands = residuals.assign(band=k_band(residuals["k"]) if self.by_k_band else 0)
        by_kind = {kind: group["residual"].to_numpy(float) for kind, group in bands.groupby("kind")}
        by_band = {key: group["residual"].to_numpy(float) for key, group in bands.groupby(["kind", "band"])}
        self.half_width_ = {kind: _quantile(errors, self.overall_[kind in self.in_accuracy])
                            for kind, errors in by_kind.items()}
        self.band_half_width_ = {(kind, band): _quantile(errors, self.half_width_[kind])
                                 for (kind, band), errors in by_band.items()}
        own = ~np.isin(bands["kind"].to_numpy(object), self.shared)
        by_option = {key: group["residual"].to_numpy(float)
                     for key, group in bands[own].groupby(["kind", "band", "option"])}
        # Signed errors keyed by kind, (kind, band) and (kind, band, option): wherever there are enough of them.
        self.signed_errors_ = {key: errors for groups in (by_kind, by_band, by_option)
                               for key, errors in groups.items() if len(errors) >= MIN_RESIDUALS}
        return self

    def errors(self, kind: str, k: float, option) -> np.ndarray:
        """The signed calibration errors behind a prediction's expected accuracy: those of its option and kind in
        its band of k (an extraction option's probe reads its study accuracy with its own bias), except for kinds in
        ``shared`` (fine-tuning predicted from the probe or the pilot: how much a task gains, the task's, not the
        backbone's), whose options share their kind's in the band: per option, about 20 errors from 11 datasets
        gave one backbone's fine-tuning a lead that was noise, and ranked it above the one its median favoured.
        Else those of its kind in its band, else of its kind; none (just the median) if there are too few."""
        band = int(k_band([k])[0]) if self.by_k_band else 0
        for key in ((kind, band, option), (kind, band), kind):
            if key in self.signed_errors_:
                return self.signed_errors_[key]
        return np.zeros(1)

    def half_width(self, kinds, k) -> np.ndarray:
        """The calibrated half-width (accuracy for kinds in ``in_accuracy``, else z) for each prediction's kind at
        its k, inside the measured range."""
        bands = k_band(k) if self.by_k_band else np.zeros(len(kinds), int)
        return np.array([self.band_half_width_.get((kind, band), self.half_width_.get(
            kind, self.overall_[kind in self.in_accuracy])) for kind, band in zip(kinds, bands)])

    def z_half(self, z: np.ndarray, kinds, k, chance) -> np.ndarray:
        """The interval's half-width in z at each prediction, inside the measured range."""
        half = self.half_width(kinds, k)
        return np.where(self._accuracy_kind(kinds), z_half_width(z, half, chance), half)

    def interval(self, z: np.ndarray, kinds, k: np.ndarray, doublings: np.ndarray, chance: np.ndarray):
        """Low, median and high accuracy; widened by EXTRAPOLATION_WIDENING per doubling outside the evidence."""
        half = self.z_half(z, kinds, k, chance) * (1 + EXTRAPOLATION_WIDENING * doublings)
        return from_z(z - half, chance), from_z(z, chance), from_z(z + half, chance)

    def expected(self, z: np.ndarray, kinds, k: np.ndarray, doublings: np.ndarray, chance: np.ndarray,
                 options) -> np.ndarray:
        """The mean accuracy over the calibration errors (widened as the interval is): what a user who wants the
        most accuracy on average should rank by. It differs from the median where errors are skewed: a few tasks
        gain far more from fine-tuning than the typical one, few gain far less. Errors in accuracy points (the
        measurement noise of ``in_accuracy`` kinds) shift the median by their mean: cutting each at 100% first
        made an option near 100% look worse the nearer it was (98.8% expected below 98.3%)."""
        expected = []
        for z_one, kind, k_one, chance_one, widening, option in zip(z, kinds, k, chance,
                                                                    1 + EXTRAPOLATION_WIDENING * doublings, options):
            errors = widening * self.errors(kind, k_one, option)
            if kind in self.in_accuracy:
                expected.append(float(np.clip(from_z(z_one, chance_one) + errors.mean(), chance_one, 1)))
            else:
                expected.append(from_z(z_one + errors, chance_one).mean())
        return np.array(expected)


def doublings_outside(value, low, high) -> np.ndarray:
    """How many doublings ``value`` lies outside [low, high] (0 inside)."""
    value = np.asarray(value, float)
    return np.log2(np.maximum.reduce([np.ones_like(value), value / high, low / value]))


def _measured_k(rows: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """Per option, the (smallest, largest) k measured on at least SUPPORT_DATASETS datasets."""
    measured = {}
    for option, group in rows.groupby(["method", "backbone"]):
        per_dataset = group.groupby("dataset")["images_per_class"]
        rank = min(SUPPORT_DATASETS, per_dataset.ngroups) - 1
        measured[option] = (float(np.sort(per_dataset.min().to_numpy())[rank]),
                            float(np.sort(per_dataset.max().to_numpy())[::-1][rank]))
    return measured


def _classes_range(rows: pd.DataFrame) -> tuple[float, float]:
    """The smallest and largest class count among the evidence's datasets."""
    return float(rows["n_classes"].min()), float(rows["n_classes"].max())


class QuestionnaireModel:
    """Accuracy from the task's description alone: fit(rows) / predict(task rows)."""

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        """A curve shared by every option, each option's deviation from it, and the class count."""
        hats = k_hats(frame["images_per_class"])
        options = list(frame["option"])
        blocks = [hats * np.array([o == option for o in options], float)[:, None] for option in self.options_]
        classes = np.clip(frame["n_classes"].astype(float), *self.classes_range_)  # held flat outside the evidence
        return np.column_stack([hats, *blocks, np.log2(classes)])

    def _penalty(self) -> np.ndarray:
        """Ridge on the shared curve; each option's deviation shrunk to zero and held flat between neighbouring knots,
        so where an option was never measured (fine-tuning below k = 5) it keeps its nearest measured deviation from
        the shared curve instead of falling back to an arbitrary zero."""
        knots = len(KNOTS_K)
        difference = np.diff(np.eye(knots), axis=0)
        deviation = DEVIATION_PENALTY * np.eye(knots) + SMOOTH_PENALTY * difference.T @ difference
        return block_diag(CURVE_PENALTY * np.eye(knots), *[deviation] * len(self.options_), TASK_PENALTY)

    def _fit_coef(self, rows: pd.DataFrame) -> np.ndarray:
        return ridge(self._design(rows), to_z(rows["accuracy"], rows["chance"]), self._penalty())

    def fit(self, rows: pd.DataFrame) -> "QuestionnaireModel":
        rows = rows.assign(option=list(zip(rows["method"], rows["backbone"]))).reset_index(drop=True)
        self.options_ = sorted(set(rows["option"]))
        self.classes_range_ = _classes_range(rows)
        self.coef_ = self._fit_coef(rows)
        self.k_measured_ = _measured_k(rows)
        residuals = []
        for dataset in rows["dataset"].unique():
            held = rows["dataset"] == dataset
            if held.all():
                continue
            fold = QuestionnaireModel()
            fold.options_, fold.classes_range_ = self.options_, _classes_range(rows[~held])
            z = fold._design(rows[held]) @ fold._fit_coef(rows[~held])
            residuals.append(pd.DataFrame({"residual": to_z(rows.loc[held, "accuracy"], rows.loc[held, "chance"]) - z,
                                           "kind": QUESTIONNAIRE, "dataset": dataset,
                                           "option": rows.loc[held, "option"],
                                           "k": rows.loc[held, "images_per_class"], "z": z,
                                           "chance": rows.loc[held, "chance"]}))
        self.conformal_ = _Conformal().calibrate(pd.concat(residuals) if residuals else NO_RESIDUALS)
        return self

    def predict(self, tasks: pd.DataFrame) -> pd.DataFrame:
        """``tasks``: method, backbone, images_per_class and n_classes per row."""
        tasks = tasks.assign(option=list(zip(tasks["method"], tasks["backbone"])))
        z = pd.Series(self._design(tasks) @ self.coef_, index=tasks.index)
        return self._finish(tasks, z, [QUESTIONNAIRE] * len(tasks))

    def _finish(self, tasks: pd.DataFrame, z: pd.Series, kinds: list[str]) -> pd.DataFrame:
        tasks = tasks.assign(z=z)
        z = _monotone(tasks, "z").to_numpy()
        k = tasks["images_per_class"].to_numpy(float)
        k_low, k_high = np.array([self.k_measured_.get(o, (KNOTS_K[0], KNOTS_K[-1])) for o in tasks["option"]],
                                 float).reshape(-1, 2).T
        n_classes = tasks["n_classes"].to_numpy(float)
        chance = 1.0 / n_classes
        # Outside the evidence's k, or (where the class count is a feature: no probe) its class counts.
        doublings = doublings_outside(k, k_low, k_high) + np.where(
            np.asarray(kinds) == QUESTIONNAIRE, doublings_outside(n_classes, *self.classes_range_), 0.0)
        low, median, high = self.conformal_.interval(z, kinds, k, doublings, chance)
        low = _monotone(tasks.assign(low=low), "low").to_numpy()  # more data: the low end does not fall either
        expected = self.conformal_.expected(z, kinds, k, doublings, chance, tasks["option"])
        return pd.DataFrame({"acc_low": low, "acc_median": median, "acc_high": high, "acc_expected": expected,
                             "basis": kinds, "extrapolated": doublings > 1e-9}, index=tasks.index)


def anchor_table(curves: dict, chance: float) -> pd.DataFrame:
    """Every (probed option, probe k) of one probe as a possible anchor: z there, the curve's slope in z per
    doubling of k, fitted by least squares over all its probe points (a difference of neighbouring points is noisy,
    and next to chance, where z is steep, a 2-point rise from chance reads as a huge slope), and the FNE gain: z of
    fe_fne minus z of fe_linear on the anchor's backbone at that k (NaN where the probe lacks either). A one-point
    curve (the fine-tuning pilot) has no slope of its own: it takes the linear probe's on its backbone, the same
    images' learning curve, which says how steeply fine-tuning's climbs below and above the pilot's k better than
    nothing does (leave one dataset out, fine-tuning's error with the pilot 3.21 -> 2.95 points, lower on 9 of 11
    datasets; mean regret with the pilot 0.72 -> 0.69)."""
    records = []
    for anchor, curve in curves.items():
        ks = sorted(curve)
        z = {k: float(to_z(curve[k], chance)) for k in ks}
        shape = curve if len(curve) > 1 else curves.get((ANCHOR_METHOD, anchor[1]), curve)
        shape_ks = sorted(shape)
        slope = float(np.polyfit(np.log2(shape_ks), to_z([shape[k] for k in shape_ks], chance), 1)[0]) \
            if len(shape_ks) > 1 else 0.0
        fne, linear = curves.get(("fe_fne", anchor[1]), {}), curves.get(("fe_linear", anchor[1]), {})
        for k in ks:
            fne_gain = float(to_z(fne[k], chance) - to_z(linear[k], chance)) if k in fne and k in linear else np.nan
            records.append({"anchor": anchor, "anchor_k": k, "z_anchor": z[k], "slope": slope, "fne_gain": fne_gain})
    return pd.DataFrame(records, columns=["anchor", "anchor_k", "z_anchor", "slope", "fne_gain"])


class ProbeAnchoredModel(QuestionnaireModel):
    """Accuracy anchored on the user's probe: fit(rows, probes) / predict(task rows, probe curves)."""

    @staticmethod
    def anchor(option: tuple[str, str], curves: dict) -> tuple[str, str] | None:
        """The probed option an option is mainly predicted from: itself if probed; for fine-tuning, the pilot, else
        none (every extraction anchor alike: fine-tuning retrains the features, and on the study's datasets which
        backbone extracted best said little about which fine-tuned best, the two leads' correlation 0.4, 0.5 and -0.3
        at k = 5, 20 and 100 over 10 datasets; weighing its own backbone's probe 60%, leave one dataset out, fine-tuning
        error 4.54 against 4.26 points alike, regret 0.93 against 0.78); for extraction, the linear probe of its
        backbone, else the first linear probe measured."""
        if option in curves:
            return option
        pilot = sorted(o for o in curves if is_finetuning(o[0]))
        if is_finetuning(option[0]):
            return pilot[0] if pilot else None
        same_backbone = (ANCHOR_METHOD, option[1])
        if same_backbone in curves:
            return same_backbone
        linear = sorted(o for o in curves if o[0] == ANCHOR_METHOD)
        return linear[0] if linear else (sorted(curves)[0] if curves else None)

    def _offset_design(self, k: np.ndarray, anchor_k: np.ndarray, z_anchor: np.ndarray, slope: np.ndarray,
                       fne_gain: np.ndarray, domain: np.ndarray):
        """The offset's hat basis in log k, and as modifiers the anchor's level and slope, the FNE gain (NaN: not
        known or not used, taken as the evidence's mean), held inside the range the study's probes spanned (a probe
        at chance, or a curve steeper than any seen, is not extrapolated linearly), and one indicator per domain of
        the evidence (a domain it has not seen, or not used: none)."""
        span = np.log2(np.clip(k, 1.0, KNOTS_K[-1]) / anchor_k)  # flat beyond the last knot, as the hat basis
        z_anchor, slope = np.clip(z_anchor, *self.z_range_), np.clip(slope, *self.slope_range_)
        fne_gain = np.where(np.isnan(fne_gain), self.fne_gain_centre_, np.clip(fne_gain, *self.fne_gain_range_))
        known = np.array(list(self.domain_datasets_), object)
        domains = (np.asarray(domain, object)[:, None] == known[None, :]).astype(float)
        return np.column_stack([k_hats(k), span * (z_anchor - self.z_centre_), span * slope,
                                fne_gain - self.fne_gain_centre_, domains])

    @staticmethod
    def _finetuning_only(option, values, unused):
        """The FNE gain and the domain modify fine-tuning's offsets only (extraction options are measured, or near
        the probe)."""
        return np.where([is_finetuning(o[0]) for o in option], values, unused)

    @staticmethod
    def _anchored(rows: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
        """Every evidence row paired with every anchor of its dataset's probe; ``offset`` = z(row) - z(anchor)."""
        paired = rows.merge(anchors, on="dataset")
        return paired.assign(offset=paired["z"] - paired["z_anchor"])

    def _fit_offsets(self, anchored: pd.DataFrame) -> dict:
        """One ridge per (option, probed anchor option, anchor k): the offset's curve in log k (smooth between knots)
        and its modifiers."""
        difference = np.diff(np.eye(len(KNOTS_K)), axis=0)
        penalty = block_diag(CURVE_PENALTY * np.eye(len(KNOTS_K)) + OFFSET_SMOOTH_PENALTY * difference.T @ difference,
                             MODIFIER_PENALTY * np.eye(3 + len(self.domain_datasets_)))
        x = self._offset_design(anchored["images_per_class"].to_numpy(float), anchored["anchor_k"].to_numpy(float),
                                anchored["z_anchor"].to_numpy(float), anchored["slope"].to_numpy(float),
                                self._finetuning_only(anchored["option"], anchored["fne_gain"].to_numpy(float), np.nan),
                                self._finetuning_only(anchored["option"], anchored["domain"].to_numpy(object), None))
        y = anchored["offset"].to_numpy(float)
        groups = anchored.groupby(["option", "anchor", "anchor_k"], sort=False).indices
        return {(option, anchor, int(anchor_k)): ridge(x[index], y[index], penalty)
                for (option, anchor, anchor_k), index in groups.items()}

    @staticmethod
    def _bias(anchored: pd.DataFrame) -> dict:
        """Per (option, probed option): the median z difference between the study's measurement of the option and
        the probe's measurement of the probed option at the same k. With the probed option itself this is the
        probe-to-study bias; with the others, what their probes say about it. The median, so one odd dataset does
        not move all."""
        same_k = anchored[anchored["images_per_class"].round() == anchored["anchor_k"]]
        return {key: float(value) for key, value in same_k.groupby(["option", "anchor"])["offset"].median().items()}

    def fit(self, rows: pd.DataFrame, probes: dict) -> "ProbeAnchoredModel":
        rows = rows[rows["dataset"].isin(probes)].reset_index(drop=True)
        rows = rows.assign(option=list(zip(rows["method"], rows["backbone"])), z=to_z(rows["accuracy"], rows["chance"]))
        chance = rows.groupby("dataset")["chance"].first()
        anchors = pd.concat([anchor_table(probes[d], chance[d]).assign(dataset=d) for d in chance.index])
        self.options_ = sorted(set(rows["option"]))
        self.k_measured_, self.classes_range_ = _measured_k(rows), _classes_range(rows)
        anchored = self._anchored(rows, anchors)
        self._fit_parts(anchored)
        residuals = []
        for dataset in chance.index:
            held = anchored["dataset"] == dataset
            if held.all():
                continue
            fold = ProbeAnchoredModel()
            fold.options_, fold.k_measured_ = self.options_, self.k_measured_
            fold._fit_parts(anchored[~held])
            tasks = rows[rows["dataset"] == dataset]
            # Errors with the extraction probe and, where the dataset has a pilot, those of the pilot's own kinds
            # with it: each prediction once (twice would shrink conformal's finite-sample margin), and extraction
            # calibrated as most users will have it, without a pilot.
            known = [(extraction_only(probes[dataset]), None)]
            if has_pilot(probes[dataset]):
                known.append((probes[dataset], (MEASURED_PILOT, PREDICTED_FT_PILOT)))
            for curves, only_kinds in known:
                z, kinds = fold._z(tasks, curves)
                found = pd.DataFrame({"residual": tasks["z"].to_numpy() - z, "kind": kinds, "dataset": dataset,
                                      "option": tasks["option"].to_numpy(),
                                      "k": tasks["images_per_class"].to_numpy(), "z": z,
                                      "chance": 1.0 / tasks["n_classes"].to_numpy(float)})
                residuals.append(found if only_kinds is None else found[found["kind"].isin(only_kinds)])
        # Anchored on probe points at k <= 20, errors grow with the distance from the anchor: calibrated per band.
        # Extraction errors are measurement noise (the probe's test images against the study's), a few points
        # wherever the accuracy is: in accuracy, as are the pilot's own point's (one run against the study's: a
        # seed's spread, wider than the probe's 5-draw means). Fine-tuning's are how much a task gains from it: in z.
        self.conformal_ = _Conformal(by_k_band=True, in_accuracy=(MEASURED, MEASURED_PILOT, PREDICTED_FE),
                                     shared=(PREDICTED_FT, PREDICTED_FT_PILOT)).calibrate(
            pd.concat(residuals) if residuals else NO_RESIDUALS)
        return self

    def _fit_parts(self, anchored: pd.DataFrame) -> None:
        self.z_centre_ = float(anchored["z_anchor"].mean()) if len(anchored) else 0.0
        self.z_range_ = (anchored["z_anchor"].min(), anchored["z_anchor"].max()) if len(anchored) else (0.0, 0.0)
        self.slope_range_ = (anchored["slope"].min(), anchored["slope"].max()) if len(anchored) else (0.0, 0.0)
        fne_gain = anchored["fne_gain"].dropna()
        self.fne_gain_range_ = (fne_gain.min(), fne_gain.max()) if len(fne_gain) else (0.0, 0.0)
        self.fne_gain_centre_ = float(fne_gain.mean()) if len(fne_gain) else 0.0
        datasets = anchored.groupby("domain")["dataset"].nunique()  # sorted by domain: the indicators' order
        self.domain_datasets_ = {domain: int(n) for domain, n in datasets.items() if n >= DOMAIN_DATASETS}
        self.offsets_ = self._fit_offsets(anchored)
        self.fitted_anchor_ks_ = {}  # (option, probed option) -> the anchor k with fitted offsets
        for option, anchor, anchor_k in self.offsets_:
            self.fitted_anchor_ks_.setdefault((option, anchor), set()).add(anchor_k)
        self.bias_ = self._bias(anchored)

    def _measured(self, option, k: float, chance: float, curves: dict) -> float | None:
        """Inside the probe's range of k, for a probed option: its measurement (interpolated in log k), averaged
        with what the other probed options of its family say about it (OWN_WEIGHT for its own; the fine-tuning pilot
        and the extraction options do not speak for each other)."""
        curve = curves.get(option)
        if not curve or not min(curve) <= k <= max(curve) or (option, option) not in self.bias_:
            return None
        family = is_finetuning(option[0])
        curves = {probed: other for probed, other in curves.items() if is_finetuning(probed[0]) == family}
        said, weights = [], []
        for probed, other in curves.items():
            if (option, probed) in self.bias_ and min(other) <= k <= max(other):
                ks = np.array(sorted(other), float)
                z_points = to_z([other[int(p)] for p in ks], chance)
                said.append(np.interp(np.log(k), np.log(ks), z_points) + self.bias_[(option, probed)])
                weights.append(OWN_WEIGHT if probed == option else (1 - OWN_WEIGHT) / max(1, len(curves) - 1))
        return float(np.average(said, weights=weights))

    def _predicted(self, option, k: float, anchors: dict, preferred, domain) -> float:
        """Offsets from every probed option, each anchored at its probe k nearest to ``k`` (among those the study's
        probes had), averaged (OWN_WEIGHT for the preferred anchor, if any; else alike). ``anchors``: probed option ->
        rows of (anchor k, z there, slope, FNE gain) as from ``anchor_table``; ``domain``: the task's (None: not
        known)."""
        said, weights = [], []
        used_domain = self._finetuning_only([option], np.array([domain], object), None)
        for anchor, points in anchors.items():
            fitted = self.fitted_anchor_ks_.get((option, anchor), set())
            if not fitted:
                continue
            anchor_k, z_anchor, slope, fne_gain = min(points, key=lambda point: abs(np.log(k / point[0])))
            # A probe of a tiny dataset can stop at a k the study's probes never had: the nearest one's offsets.
            fitted_k = min(fitted, key=lambda known: abs(np.log(anchor_k / known)))
            x = self._offset_design(np.array([k]), np.array([anchor_k], float), np.array([z_anchor]),
                                    np.array([slope]), self._finetuning_only([option], np.array([fne_gain]), np.nan),
                                    used_domain)
            said.append(z_anchor + float((x @ self.offsets_[(option, anchor, fitted_k)])[0]))
            weights.append(OWN_WEIGHT if anchor == preferred else (1 - OWN_WEIGHT) / max(1, len(anchors) - 1))
        if not said:
            raise ValueError(f"no evidence to predict {option} from a probe")
        return float(np.average(said, weights=weights))

    def _z(self, tasks: pd.DataFrame, curves: dict) -> tuple[np.ndarray, list[str]]:
        """z predictions and their kind (MEASURED, MEASURED_PILOT, PREDICTED_FE, PREDICTED_FT or PREDICTED_FT_PILOT)
        per task row."""
        z, kinds = np.zeros(len(tasks)), []
        # The pilot counts where the evidence has pilots to learn its offsets from; else it is set aside.
        pilot = any(is_finetuning(anchor[0]) and anchor in curves for _, anchor in self.fitted_anchor_ks_)
        curves = curves if pilot else extraction_only(curves)
        tables = {}
        for position, row in enumerate(tasks.itertuples(index=False)):
            option, chance, k = (row.method, row.backbone), 1.0 / row.n_classes, float(row.images_per_class)
            domain = getattr(row, "domain", None)
            measured = self._measured(option, k, chance, curves)
            if measured is not None:
                z[position] = measured
                kinds.append(MEASURED_PILOT if is_finetuning(row.method) else MEASURED)
                continue
            if chance not in tables:
                table = anchor_table(curves, chance)
                tables[chance] = {anchor: list(zip(group["anchor_k"], group["z_anchor"], group["slope"],
                                                   group["fne_gain"]))
                                  for anchor, group in table.groupby("anchor", sort=False)}
            z[position] = self._predicted(option, k, tables[chance], self.anchor(option, curves), domain)
            kinds.append(predicted_kind(row.method, pilot))
        return z, kinds

    def predict(self, tasks: pd.DataFrame, curves: dict) -> pd.DataFrame:
        tasks = tasks.assign(option=list(zip(tasks["method"], tasks["backbone"])))
        z, kinds = self._z(tasks, curves)
        return self._finish(tasks, pd.Series(z, index=tasks.index), kinds)
