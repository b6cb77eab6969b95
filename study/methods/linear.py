"""Feature-extraction methods: a linear classifier on the frozen backbone's features. Never fitted on test data."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from study import precision
from study.methods.base import MethodResult, register_method

LOGISTIC_C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
FNE_LOW, FNE_HIGH = -0.25, 0.15  # ternarisation thresholds of the Full-Network Embedding paper
FNE_SVM_C = 1.0


@threadpool_limits.wrap(limits=1)
def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, seed: int):
    """Standardise on the training subset, choose C by stratified CV on it (default C=1 when a class has 1 image).

    The fit runs with one BLAS/OpenMP thread whatever ``--threads`` says: on these small problems (at most a few
    thousand rows) more threads only contend. Measured on the idle 2-core CPU, 1280-d mobilenetv2_100 features:
    flowers5 250 rows 0.75 s with 1 thread vs 5.6 s with 2; mnist5k 3500 rows (the study's largest) 7.5 s vs 31.9 s.
    """
    scaler = StandardScaler().fit(train_x)
    scaled = scaler.transform(train_x)
    min_count = int(np.unique(train_y, return_counts=True)[1].min())
    if min_count >= 2:
        folds = StratifiedKFold(n_splits=min(5, min_count), shuffle=True, random_state=seed)
        model = LogisticRegressionCV(Cs=list(LOGISTIC_C_GRID), cv=folds, max_iter=2000, random_state=seed,
                                     l1_ratios=(0.0,), scoring="accuracy", use_legacy_attributes=False)
        model.fit(scaled, train_y)
        chosen_c, selection = float(np.atleast_1d(model.C_)[0]), f"{folds.n_splits}-fold CV"
    else:
        model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(scaled, train_y)
        chosen_c, selection = 1.0, "default (1 image per class: no CV possible)"
    return scaler, model, {"C": chosen_c, "C_selection": selection}


def fne_ternarise(train_x: np.ndarray, other_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both with the training subset's statistics, then map to {-1, 0, +1}."""
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std[std < 1e-8] = 1.0

    def ternary(x):
        z = (x - mean) / std
        return np.where(z > FNE_HIGH, 1.0, np.where(z < FNE_LOW, -1.0, 0.0)).astype(np.float32)

    return ternary(train_x), ternary(other_x)


def fit_fne_classifier(train_x: np.ndarray, train_y: np.ndarray, other_x: np.ndarray, seed: int):
    """The Full-Network Embedding classifier: ternarise with the training subset's statistics, then the paper's
    LinearSVC (fixed C). Returns (model, ``other_x`` ternarised for ``model.predict``, hyperparams)."""
    train_t, other_t = fne_ternarise(train_x, other_x)
    model = LinearSVC(C=FNE_SVM_C, dual="auto", max_iter=5000, random_state=seed).fit(train_t, train_y)
    hyperparams = {"C": FNE_SVM_C, "C_selection": "fixed (paper)", "thresholds": [FNE_LOW, FNE_HIGH],
                   "dims": int(train_t.shape[1])}
    return model, other_t, hyperparams


def _feature_method(spec, context, kind: str) -> MethodResult:
    features = context.features(spec)
    subset = context.subset(spec)
    train_y = features.train_labels[subset]
    clock = context.clock()
    with clock.phase("fit"):
        if kind == "pooled":
            scaler, model, hyperparams = fit_linear_probe(features.pooled_train[subset], train_y, spec.seed)
        else:
            model, test_x, hyperparams = fit_fne_classifier(features.fne_train[subset], train_y, features.fne_test,
                                                            spec.seed)
    hyperparams["extraction_precision"] = precision.describe(context.device)["inference"]
    with clock.phase("eval"):
        if kind == "pooled":
            predictions = model.predict(scaler.transform(features.pooled_test))
        else:
            predictions = model.predict(test_x)
    n_images = len(subset) + len(features.test_labels)
    clock.seconds["extract"], clock.joules["extract"] = features.attributed_cost(n_images)
    return MethodResult(predictions, len(subset), 0, hyperparams, clock.seconds, clock.joules, n_images,
                        features.extraction["energy_source"], features.extraction["peak_memory_mb"],
                        warmup_s=features.extraction["warmup_s"], extraction_id=features.extraction["extraction_id"])


@register_method("fe_linear")
def fe_linear(spec, context) -> MethodResult:
    """Frozen backbone, pooled penultimate features, multinomial logistic regression with CV-chosen C."""
    return _feature_method(spec, context, "pooled")


@register_method("fe_fne")
def fe_fne(spec, context) -> MethodResult:
    """Full-Network Embedding: every stage's spatial mean + pooled features, standardised, ternarised, LinearSVC."""
    return _feature_method(spec, context, "fne")
