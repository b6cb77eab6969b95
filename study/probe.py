"""``python -m study.probe PATH``: a one-minute CPU probe of the user's own images that calibrates the advice.

It measures what the recommender's probe feature means on the study's datasets: a linear probe (the study's
``fe_linear``) on the smallest backbone at 128 px, trained on k images per class and tested on the rest of a
stratified subsample (<= 30 per class, <= 300 in all), repeated over seeds, at a few k.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from study.datasets import DatasetError, list_datasets, load_images, native_shorter_side, to_square
from study.upload import UploadError, intake

PROBE_BACKBONE = "mobilenetv2_100"
PROBE_RESOLUTION = 128
PROBE_K = 10  # the k whose accuracy feeds the recommender
PROBE_KS = (2, 5, 10, 20)
MAX_PER_CLASS, MAX_IMAGES, MAX_CLASSES = 30, 300, 150
REPEATS = 5
MAX_PIXELS_PER_IMAGE = 40_000_000
log = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    n_classes: int
    class_names: list[str]
    images_used: int
    image_size_px: int  # median shorter side of the images used
    colour: bool
    accuracy_by_k: dict[int, float]
    probe_k: int
    probe_accuracy: float
    seconds: float
    backbone: str = PROBE_BACKBONE
    resolution: int = PROBE_RESOLUTION
    skipped_non_image: int = 0
    skipped_links: int = 0
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        curve = ", ".join(f"k={k}: {100 * a:.1f}%" for k, a in self.accuracy_by_k.items())
        return (f"{self.n_classes} classes, {self.images_used} images probed in {self.seconds:.1f} s "
                f"({self.backbone} @ {self.resolution} px, linear probe): {curve}. "
                f"Probe accuracy (k={self.probe_k}): {100 * self.probe_accuracy:.1f}%.")


def subsample(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Stratified indices: at most MAX_PER_CLASS per class and MAX_IMAGES in all."""
    n_classes = len(np.unique(labels))
    per_class = max(2, min(MAX_PER_CLASS, MAX_IMAGES // n_classes))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in np.unique(labels)]))


def cross_validated_accuracy(features: np.ndarray, labels: np.ndarray, k: int, repeats: int = REPEATS) -> float:
    """Mean test accuracy of fe_linear trained on k images per class, tested on the remaining images."""
    from study.methods import fit_linear_probe

    scores = []
    for seed in range(repeats):
        rng = np.random.default_rng([seed, k])
        train = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c in np.unique(labels)])
        test = np.setdiff1d(np.arange(len(labels)), train)
        scaler, model, _ = fit_linear_probe(features[train], labels[train], seed)
        scores.append(float(np.mean(model.predict(scaler.transform(features[test])) == labels[test])))
    return float(np.mean(scores))


def probe_arrays(images: np.ndarray, labels: np.ndarray, class_names: list[str], image_size_px: int, colour: bool,
                 progress: Callable[[float, str], None] | None = None, started: float | None = None) -> ProbeResult:
    """The probe on decoded uint8 images at PROBE_RESOLUTION (already subsampled)."""
    import torch

    from study.backbones import build_backbone, data_config
    from study.features import embed

    started = started or time.perf_counter()
    report = progress or (lambda fraction, message: None)
    report(0.5, "extracting features")
    model = build_backbone(PROBE_BACKBONE)
    pooled, _ = embed(model, images, data_config(PROBE_BACKBONE), torch.device("cpu"))
    smallest = int(np.bincount(labels).min())
    ks = [k for k in PROBE_KS if k < smallest] or [max(1, smallest - 1)]
    accuracy = {}
    for index, k in enumerate(ks):
        report(0.7 + 0.3 * index / len(ks), f"linear probe at k={k}")
        accuracy[k] = cross_validated_accuracy(pooled, labels, k)
    probe_k = PROBE_K if PROBE_K in accuracy else max(accuracy)
    report(1.0, "done")
    return ProbeResult(len(class_names), class_names, len(labels), image_size_px, colour, accuracy, probe_k,
                       accuracy[probe_k], time.perf_counter() - started)


def probe(source: str | Path, progress: Callable[[float, str], None] | None = None) -> ProbeResult:
    """Probe a folder or .zip of the user's images (see study.upload for layouts and limits)."""
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
        chosen = subsample(labels)
        images, kept, sizes, colours, unreadable = [], [], [], [], []
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
                    colours.append(image.mode not in ("L", "1", "I;16", "I"))
                images.append(to_square(path, PROBE_RESOLUTION, 3))
                kept.append(labels[index])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                unreadable.append(f"{path.relative_to(found.root)}: {error}")
        kept = np.array(kept, dtype=np.int64)
        counts = np.bincount(kept, minlength=len(class_names))
        if (counts < 2).any():
            short = [class_names[i] for i in np.flatnonzero(counts < 2)]
            raise UploadError(f"class(es) {', '.join(short[:5])} have fewer than 2 readable images "
                              f"(unreadable: {'; '.join(unreadable[:5])})")
        result = probe_arrays(np.stack(images), kept, class_names, int(np.median(sizes)), bool(np.mean(colours) > 0.5),
                              progress, started)
        result.skipped_non_image = len(found.skipped_non_image)
        result.skipped_links = len(found.skipped_links)
        result.unreadable = unreadable
        return result


def probe_study_dataset(name: str) -> ProbeResult:
    """The same probe on a study dataset's train pool (what the recommender learns the probe feature from)."""
    data = load_images(name, PROBE_RESOLUTION)
    chosen = subsample(data.train_labels)
    images = data.train_images[chosen]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return probe_arrays(images, data.train_labels[chosen], data.info.class_names,
                        native_shorter_side(data.info.native_size), data.info.channels == 3)


def store_study_probes(db: str, names: list[str]) -> None:
    """Probe each study dataset and store the results in the ``probes`` table."""
    from study.measure import git_commit, utc_now
    from study.store import DuckStore

    store = DuckStore(db)
    for name in names:
        result = probe_study_dataset(name)
        store.write_probe({"dataset": name, "backbone": result.backbone, "resolution": result.resolution,
                           "probe_k": result.probe_k, "probe_accuracy": result.probe_accuracy,
                           "accuracy_by_k": json.dumps(result.accuracy_by_k), "images_used": result.images_used,
                           "seconds": result.seconds, "git_commit": git_commit(), "created_at": utc_now()})
        print(f"{name}: {result.summary()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", help="a folder or .zip: CLASS/*.jpg or {train,test}/CLASS/*.jpg")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--study-datasets", action="store_true",
                        help="probe every study dataset and store the results in the DuckDB `probes` table")
    parser.add_argument("--db", default=None, help="DuckDB file for --study-datasets")
    args = parser.parse_args(argv)
    if args.study_datasets:
        from study.store import DEFAULT_DB

        store_study_probes(args.db or str(DEFAULT_DB), list_datasets())
        return 0
    if not args.path:
        parser.error("give a folder or .zip to probe, or --study-datasets")
    try:
        result = probe(args.path, progress=None if args.json else
                       lambda fraction, message: print(f"\r[{fraction:4.0%}] {message:40}", end="", file=sys.stderr))
    except (UploadError, DatasetError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    print("", file=sys.stderr)
    print(json.dumps(asdict(result), indent=2) if args.json else result.summary())
    if result.unreadable:
        print(f"{len(result.unreadable)} unreadable image(s) skipped: " + "; ".join(result.unreadable[:10]),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
