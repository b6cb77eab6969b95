"""``python -m study.probe PATH``: a one-minute CPU probe of the user's own images that anchors the advice.

It measures every feature-extraction option of the study on the user's images: the study's ``fe_linear`` (linear
probe) and ``fe_fne`` (Full-Network Embedding + linear SVM) heads on ``mobilenetv2_100`` and ``efficientnet_lite0``
features at 128 px, trained on k images per class and tested on the rest of a stratified subsample (<= 30 per
class, <= 300 in all), 5 repeats, at k = 2, 5, 10, 20 (those below the smallest class count). The images are
decoded once, each backbone is built once and makes one pass over them, and the four options share the same
train/test draws, so their learning curves are comparable. ``--study-datasets`` runs the same probe on every
study dataset's train pool and stores the curves in the DuckDB ``probe_curves`` table (what the recommender
learns from).

``--finetune-pilot`` adds one measurement of fine-tuning: the study's own ``ft_full`` code and the CPU grid's
converged recipe on ``mobilenetv2_100``, trained once on the probe's first draw at its largest k and tested as the
probe tests (about 2 minutes on 2 idle CPU cores; the probe runs on the CPU). How much a task gains from
fine-tuning is what a description, and the extraction probe, predict worst; the pilot measures it on the user's
images.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from study.datasets import (DatasetError, dataset_info, dataset_name, is_grey, list_datasets, load_images,
                            native_shorter_side, to_square)
from study.labels import backbone_label, probed_option_label
from study.upload import UploadError, intake

PROBE_BACKBONES = ("mobilenetv2_100", "efficientnet_lite0")
PROBE_METHODS = ("fe_linear", "fe_fne")
PROBE_RESOLUTION = 128
PROBE_KS = (2, 5, 10, 20)
# The fine-tuning pilot, at the probe's largest k: the recipe's 250-step floor makes k = 20 cost what k = 5 does,
# and across the study's datasets the fine-tuning gain at k = 20 tracks the gain at k = 100 better (correlation
# 0.87 against 0.76 at k = 5).
PILOT_METHOD, PILOT_BACKBONE, PILOT_RECIPE_GRID = "ft_full", "mobilenetv2_100", "cpu"
PILOT_DURATION = "2-3 minutes on a 2-core CPU"  # measured: 110-127 s on each study dataset, the CPU otherwise idle
# Fitting cost grows with the training images only, so the probe tests on as many images as decoding allows:
# its accuracies are means over the test images, and 20 a class left a few points of noise (measured on the
# study datasets: errors shared by every option and k of a dataset).
MAX_PER_CLASS, MAX_IMAGES, MAX_CLASSES = 60, 600, 150
# With a test split: up to 21 training images a class (k = 20 plus one) and 50 test images a class.
MAX_TRAIN_PER_CLASS, MAX_TRAIN_IMAGES, MAX_TEST_PER_CLASS, MAX_TEST_IMAGES = 21, 300, 50, 500
REPEATS = 5
MAX_PIXELS_PER_IMAGE = 40_000_000
log = logging.getLogger(__name__)

Curves = dict[tuple[str, str], dict[int, float]]


@dataclass
class ProbeResult:
    n_classes: int
    class_names: list[str]
    images_used: int
    image_size_px: int  # median shorter side of the images used
    colour: bool
    curves: Curves  # {(method, backbone): {k: mean test accuracy over the repeats}}
    curve_sd: Curves  # the standard deviation over the repeats
    tested_per_class: dict[int, float]  # mean number of test images per class at each k
    seconds: float
    backbones: list[str] = field(default_factory=lambda: list(PROBE_BACKBONES))
    resolution: int = PROBE_RESOLUTION
    repeats: int = REPEATS
    seconds_by_step: dict[str, float] = field(default_factory=dict)  # decode, extract <backbone>, fit <backbone>
    tested_on: str = "the images not trained on (no test split given)"
    skipped_non_image: int = 0
    skipped_links: int = 0
    unreadable: list[str] = field(default_factory=list)
    pilot_k: int | None = None  # the k of the fine-tuning pilot (one run, in ``curves``), if it ran

    @property
    def ks(self) -> list[int]:
        return sorted(self.tested_per_class)

    def table(self) -> list[dict]:
        """One row per option: its people's name, method, backbone and {k: (accuracy, sd)}; the pilot last."""
        options = [(method, backbone) for backbone in self.backbones for method in PROBE_METHODS]
        options += [option for option in sorted(self.curves) if option not in options]
        return [{"option": probed_option_label(method, backbone), "method": method, "backbone": backbone,
                 "points": {k: (accuracy, self.curve_sd[(method, backbone)][k])
                            for k, accuracy in sorted(self.curves[(method, backbone)].items())}}
                for method, backbone in options if (method, backbone) in self.curves]

    def summary(self) -> str:
        rows = self.table()
        width = max(len(row["option"]) for row in rows)
        header = f"{'option (k = training images per class)':<{width}}" + "".join(f"{f'k={k}':>10}" for k in self.ks)
        lines = [f"{self.n_classes} classes, {self.images_used} images probed in {self.seconds:.1f} s "
                 f"({self.resolution} px; trained on k images per class, tested on {self.tested_on}, "
                 f"{self.repeats} repeats; mean test accuracy):", header]
        for row in rows:
            lines.append(f"{row['option']:<{width}}" + "".join(
                f"{100 * row['points'][k][0]:>9.1f}%" if k in row["points"] else f"{'':>10}" for k in self.ks))
        lines.append(f"{'test images per class':<{width}}" + "".join(f"{self.tested_per_class[k]:>10.1f}"
                                                                      for k in self.ks))
        if self.pilot_k is not None:
            lines.append(f"The fine-tuning pilot is one run (the CPU grid's recipe) at k={self.pilot_k}, on the first "
                         f"draw; it took {self.seconds_by_step.get('fine-tuning pilot', 0):.0f} s.")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """JSON-ready: option keys as 'method.backbone' strings (the questionnaire's encoding), k keys as strings."""
        data = asdict(self)
        for name in ("curves", "curve_sd"):
            data[name] = {f"{method}.{backbone}": {str(k): value for k, value in by_k.items()}
                          for (method, backbone), by_k in getattr(self, name).items()}
        data["tested_per_class"] = {str(k): value for k, value in self.tested_per_class.items()}
        return data


def subsample(labels: np.ndarray, is_test: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Stratified indices: without a test split, at most MAX_PER_CLASS per class and MAX_IMAGES in all (the probe
    cross-validates within them); with one (``is_test``), up to the train and test caps from each side."""
    n_classes = len(np.unique(labels))
    rng = np.random.default_rng(seed)

    def take(pool: np.ndarray, per_class: int) -> list[np.ndarray]:
        return [rng.permutation(pool[labels[pool] == c])[:per_class] for c in np.unique(labels)]

    everything = np.arange(len(labels))
    if is_test is None or not is_test.any():
        return np.sort(np.concatenate(take(everything, max(2, min(MAX_PER_CLASS, MAX_IMAGES // n_classes)))))
    train = take(everything[~is_test], max(2, min(MAX_TRAIN_PER_CLASS, MAX_TRAIN_IMAGES // n_classes)))
    test = take(everything[is_test], max(1, min(MAX_TEST_PER_CLASS, MAX_TEST_IMAGES // n_classes)))
    return np.sort(np.concatenate(train + test))


def probe_ks(labels: np.ndarray, is_test: np.ndarray) -> list[int]:
    """The k to measure: PROBE_KS up to the smallest class's training images (below it without a test split, so
    every class keeps a test image)."""
    if is_test.any():
        smallest = int(np.bincount(labels[~is_test], minlength=labels.max() + 1).min())
        return [k for k in PROBE_KS if k <= smallest] or [max(1, smallest)]
    smallest = int(np.bincount(labels).min())
    return [k for k in PROBE_KS if k < smallest] or [max(1, smallest - 1)]


def draws(labels: np.ndarray, is_test: np.ndarray, k: int, repeats: int = REPEATS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) indices per repeat: k random training images per class; the test split where there is one,
    else the rest of the images. Every probed option uses these same draws."""
    splits = []
    everything = np.arange(len(labels))
    for seed in range(repeats):
        rng = np.random.default_rng([seed, k])
        pool = everything[~is_test]
        train = np.sort(np.concatenate([rng.permutation(pool[labels[pool] == c])[:k] for c in np.unique(labels)]))
        test = everything[is_test] if is_test.any() else np.setdiff1d(everything, train)
        splits.append((train, test))
    return splits


def option_accuracy(method: str, pooled: np.ndarray, fne: np.ndarray, labels: np.ndarray, train: np.ndarray,
                    test: np.ndarray, seed: int) -> float:
    """Test accuracy of one study method fitted on ``train`` (the study's own fitting code)."""
    from study.methods.linear import fit_fne_classifier, fit_linear_probe

    if method == "fe_linear":
        scaler, model, _ = fit_linear_probe(pooled[train], labels[train], seed)
        predictions = model.predict(scaler.transform(pooled[test]))
    elif method == "fe_fne":
        model, test_x, _ = fit_fne_classifier(fne[train], labels[train], fne[test], seed)
        predictions = model.predict(test_x)
    else:
        raise ValueError(f"unknown probe method {method!r}")
    return float(np.mean(predictions == labels[test]))


def finetune_pilot(images: np.ndarray, labels: np.ndarray, is_test: np.ndarray, k: int, n_classes: int,
                   recipe=None) -> float:
    """Test accuracy of ``PILOT_METHOD`` on ``PILOT_BACKBONE`` with the CPU grid's recipe (or ``recipe``, a
    ``study.spec.FinetuneConfig``), trained on the probe's first draw of k images per class (its validation split
    taken from them, as in the study) and tested on that draw's test images: the study's own fine-tuning code, run
    in a study context over these images."""
    import torch

    from study.datasets.base import DatasetInfo, ImageData
    from study.grid import recipe_of
    from study.methods.base import METHODS
    from study.runner import Context
    from study.spec import RunSpec

    train, test = draws(labels, is_test, k, repeats=1)[0]
    info = DatasetInfo("your images", "", n_classes, [str(c) for c in range(n_classes)], 3, "", "", "", "probe", None)
    data = ImageData(info, PROBE_RESOLUTION, images[train], labels[train], images[test], labels[test])

    class ProbeImages(Context):
        def images(self, spec):
            return data

        def subset(self, spec):
            return np.arange(len(data.train_labels))

    spec = RunSpec(info.name, PILOT_BACKBONE, PILOT_METHOD, k, 0, PROBE_RESOLUTION,
                   recipe or recipe_of(PILOT_RECIPE_GRID))
    result = METHODS[PILOT_METHOD](spec, ProbeImages(torch.device("cpu")))
    return float(np.mean(result.predictions == labels[test]))


@lru_cache(maxsize=len(PROBE_BACKBONES))
def probe_model(backbone: str):
    """A probed backbone, built once per process (verified weights, eval mode, channels_last as the study)."""
    import torch

    from study.backbones import build_backbone

    return build_backbone(backbone).eval().to(memory_format=torch.channels_last)


def features(backbone: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled, FNE) features of uint8 NHWC images in one pass (``study.features.embed``, on the CPU)."""
    import torch

    from study.backbones import data_config
    from study.features import embed

    return embed(probe_model(backbone), images, data_config(backbone), torch.device("cpu"))


def probe_arrays(images: np.ndarray, labels: np.ndarray, class_names: list[str], image_size_px: int, colour: bool,
                 progress: Callable[[float, str], None] | None = None, started: float | None = None,
                 seconds_by_step: dict[str, float] | None = None, is_test: np.ndarray | None = None,
                 pilot: bool = False, pilot_recipe=None) -> ProbeResult:
    """The probe on decoded uint8 RGB images at PROBE_RESOLUTION (already subsampled); ``is_test`` marks the
    images of the user's test split, if they gave one: the probe then tests there, as the study does. ``pilot``:
    also the fine-tuning pilot at the largest k."""
    started = started or time.perf_counter()
    report = progress or (lambda fraction, message: None)
    steps = dict(seconds_by_step or {})
    is_test = np.zeros(len(labels), bool) if is_test is None else np.asarray(is_test, bool)
    ks = probe_ks(labels, is_test)
    splits = {k: draws(labels, is_test, k) for k in ks}
    tested = {k: float(np.mean([len(test) for _, test in splits[k]])) / len(class_names) for k in ks}
    scores: dict[tuple[str, str], dict[int, list[float]]] = {}
    extraction_share = 0.2 if pilot else 0.6  # of the progress bar: the pilot takes longer than all the rest
    for index, backbone in enumerate(PROBE_BACKBONES):
        base, share = (0.4 + extraction_share * index / len(PROBE_BACKBONES),
                       extraction_share / len(PROBE_BACKBONES))
        report(base, f"extracting {backbone} features")
        clock = time.perf_counter()
        pooled, fne = features(backbone, images)
        steps[f"extract {backbone}"] = time.perf_counter() - clock
        clock = time.perf_counter()
        for position, k in enumerate(ks):
            report(base + share * (0.3 + 0.7 * position / len(ks)), f"{backbone_label(backbone)}: classifiers at k={k}")
            for seed, (train, test) in enumerate(splits[k]):
                for method in PROBE_METHODS:
                    scores.setdefault((method, backbone), {}).setdefault(k, []).append(
                        option_accuracy(method, pooled, fne, labels, train, test, seed))
        steps[f"fit {backbone}"] = time.perf_counter() - clock
    if pilot:
        report(0.4 + extraction_share,
               f"fine-tuning pilot: {backbone_label(PILOT_BACKBONE)} at k={ks[-1]} ({PILOT_DURATION})")
        clock = time.perf_counter()
        scores[(PILOT_METHOD, PILOT_BACKBONE)] = {ks[-1]: [finetune_pilot(images, labels, is_test, ks[-1],
                                                                          len(class_names), pilot_recipe)]}
        steps["fine-tuning pilot"] = time.perf_counter() - clock
    report(1.0, "done")
    curves = {option: {k: float(np.mean(values)) for k, values in by_k.items()} for option, by_k in scores.items()}
    curve_sd = {option: {k: float(np.std(values)) for k, values in by_k.items()} for option, by_k in scores.items()}
    return ProbeResult(len(class_names), class_names, len(labels), image_size_px, colour, curves, curve_sd, tested,
                       time.perf_counter() - started, seconds_by_step=steps, pilot_k=ks[-1] if pilot else None,
                       **({"tested_on": "the test split"} if is_test.any() else {}))


def probe(source: str | Path, progress: Callable[[float, str], None] | None = None, pilot: bool = False) -> ProbeResult:
    """Probe a folder or .zip of the user's images (see study.upload for layouts and limits); ``pilot``: with the
    fine-tuning pilot."""
    from PIL import Image

    started = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    report(0.0, "checking the upload")
    with intake(source) as found:
        class_names = sorted(found.files)
        if len(class_names) > MAX_CLASSES:
            raise UploadError(f"{len(class_names):,} classes; the probe handles up to {MAX_CLASSES}")
        paths = [path for name in class_names for path in found.files[name]]
        labels = np.array([i for i, name in enumerate(class_names) for _ in found.files[name]], dtype=np.int64)
        in_test = np.array([path in found.test_files for path in paths], bool)
        chosen = subsample(labels, in_test)
        images, kept, kept_test, sizes, colours, unreadable = [], [], [], [], [], []
        clock = time.perf_counter()
        for position, index in enumerate(chosen):
            path = paths[index]
            report(0.4 * position / len(chosen), f"decoding {len(chosen)} images")
            try:
                if path.stat().st_size == 0:
                    raise OSError("zero-byte file")
                with Image.open(path) as image:
                    if image.width * image.height > MAX_PIXELS_PER_IMAGE:
                        raise OSError(f"{image.width}x{image.height} exceeds {MAX_PIXELS_PER_IMAGE:,} pixels")
                    sizes.append(min(image.size))
                    colours.append(not is_grey(image.mode))
                images.append(to_square(path, PROBE_RESOLUTION, 3))
                kept.append(labels[index])
                kept_test.append(in_test[index])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                if len(sizes) > len(images):  # the header was read but the pixels were not
                    sizes.pop(), colours.pop()
                unreadable.append(f"{path.relative_to(found.root)}: {error}")
        decode_s = time.perf_counter() - clock
        kept = np.array(kept, dtype=np.int64)
        counts = np.bincount(kept, minlength=len(class_names))
        if (counts < 2).any():
            short = [class_names[i] for i in np.flatnonzero(counts < 2)]
            raise UploadError(f"class(es) {', '.join(short[:5])} have fewer than 2 readable images "
                              f"(unreadable: {'; '.join(unreadable[:5])})")
        result = probe_arrays(np.stack(images), kept, class_names, int(np.median(sizes)), bool(np.mean(colours) > 0.5),
                              progress, started, {"decode": decode_s}, np.array(kept_test, bool), pilot)
        result.skipped_non_image = len(found.skipped_non_image)
        result.skipped_links = len(found.skipped_links)
        result.unreadable = unreadable
        return result


def probe_study_dataset(name: str, pilot: bool = False) -> ProbeResult:
    """The same probe on a study dataset, trained on its train pool and tested on its test split, as a user with
    a train/test layout would probe (what the recommender learns the probe's meaning from)."""
    started = time.perf_counter()
    data = load_images(name, PROBE_RESOLUTION)
    labels = np.concatenate([data.train_labels, data.test_labels])
    is_test = np.r_[np.zeros(len(data.train_labels), bool), np.ones(len(data.test_labels), bool)]
    chosen = subsample(labels, is_test)
    images = np.concatenate([data.train_images, data.test_images])[chosen]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return probe_arrays(images, labels[chosen], data.info.class_names, native_shorter_side(data.info.native_size),
                        data.info.channels == 3, started=started,
                        seconds_by_step={"decode": time.perf_counter() - started}, is_test=is_test[chosen],
                        pilot=pilot)


def curve_rows(dataset: str, result: ProbeResult, provenance: dict) -> list[dict]:
    """The ``probe_curves`` rows of one probed dataset: one per (backbone, method, k); the pilot is one run.
    ``provenance``: what every row records of where and when it was measured (hardware_id, software versions,
    git_commit, created_at)."""
    return [{"dataset": dataset, "backbone": backbone, "method": method, "resolution": result.resolution, "k": k,
             "accuracy": accuracy, "accuracy_sd": result.curve_sd[(method, backbone)][k],
             "tested_per_class": result.tested_per_class[k],
             "repeats": 1 if method == PILOT_METHOD else result.repeats,
             "images_used": result.images_used, "seconds": result.seconds, **provenance}
            for (method, backbone), by_k in sorted(result.curves.items()) for k, accuracy in sorted(by_k.items())]


def store_study_probes(db: str, names: list[str], pilot: bool = False) -> None:
    """Probe each study dataset and store its curves in the ``probe_curves`` table (one transaction each), with the
    machine and the software that measured them (the probe runs on the CPU)."""
    from study import measure
    from study.store import COLUMNS, DuckStore

    store = DuckStore(db)
    machine = measure.hardware("cpu")
    versions = {name: value for name, value in measure.software().items() if name in COLUMNS["probe_curves"]}
    for name in names:
        result = probe_study_dataset(name, pilot)
        provenance = {"hardware_id": machine["hardware_id"], **versions, "created_at": measure.utc_now()}
        store.write_probe(dataset_name(name), curve_rows(dataset_name(name), result, provenance), machine)
        print(f"{dataset_name(name)}: {result.summary()}\n")


def _progress_printer(stream) -> Callable[[float, str], None]:
    """On a terminal one line redrawn in place; in a log file one line per step (not one per percent)."""
    if stream.isatty():
        return lambda fraction, message: print(f"\r[{fraction:4.0%}] {message:44}", end="", file=stream)
    last = [None]

    def step(fraction: float, message: str) -> None:
        if message != last[0]:
            last[0] = message
            print(f"[{fraction:4.0%}] {message}", file=stream)
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="a folder or .zip: CLASS/*.jpg or {train,test}/CLASS/*.jpg")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--study-datasets", action="store_true",
                        help="probe every study dataset and store the curves in the DuckDB `probe_curves` table")
    parser.add_argument("--datasets", default=None, help="with --study-datasets: only these (comma-separated)")
    parser.add_argument("--db", default=None, help="DuckDB file for --study-datasets")
    parser.add_argument("--finetune-pilot", action="store_true",
                        help=f"also fine-tune once at the largest k (the study's recipe; {PILOT_DURATION})")
    args = parser.parse_args(argv)
    if args.study_datasets:
        from study.store import DEFAULT_DB

        names = [name.strip() for name in args.datasets.split(",") if name.strip()] if args.datasets \
            else list_datasets()
        if not names:
            parser.error("--datasets names no dataset")
        try:
            for name in names:
                dataset_info(name)  # an unknown name fails here, before anything is probed
            store_study_probes(args.db or str(DEFAULT_DB), names, args.finetune_pilot)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.datasets:
        parser.error("--datasets goes with --study-datasets")
    if not args.path:
        parser.error("give a folder or .zip to probe, or --study-datasets")
    try:
        result = probe(args.path, progress=None if args.json else _progress_printer(sys.stderr),
                       pilot=args.finetune_pilot)
    except (UploadError, DatasetError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    print("", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.summary())
    if result.unreadable:
        print(f"{len(result.unreadable)} unreadable image(s) skipped: " + "; ".join(result.unreadable[:10]),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
