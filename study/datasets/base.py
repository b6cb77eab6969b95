"""What every part of the dataset code agrees on: the error, the metadata and image records, the undecoded
source a loader returns, where datasets and the decode cache live, and how a fixed test split is drawn."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_SEED = 0
TEST_FRACTION = 0.3
MAX_IMAGE_PIXELS = 50_000_000  # refuse absurd images before decoding them (decompression bombs)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
MAX_ASPECT_RATIO = 20


class DatasetError(ValueError):
    """A dataset cannot be used (unknown name, bad layout, too few classes or images)."""


@dataclass
class DatasetInfo:
    name: str
    domain: str
    n_classes: int
    class_names: list[str]
    channels: int
    native_size: str
    licence: str
    source: str
    split: str  # how the test split was made
    split_seed: int | None
    n_train_pool: int = 0
    n_test: int = 0
    n_skipped_corrupt: int = 0
    skipped_files: list[str] = field(default_factory=list)

    def to_row(self) -> dict:
        row = asdict(self)
        row["class_names"] = json.dumps(self.class_names)
        row["skipped_files"] = json.dumps(self.skipped_files[:50])
        return row


@dataclass
class ImageData:
    """Decoded images of one dataset at one resolution: uint8 NHWC arrays and int64 labels."""
    info: DatasetInfo
    resolution: int
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    content_key: str = ""  # which files, decoded how (the decode cache's name): caches of what was computed from them


@dataclass
class _Source:
    """Undecoded dataset: samples are native uint8 arrays or image file paths.

    ``decoded`` (packed datasets stored at the resolutions their runs use): resolution -> (train images, train
    labels, test images, test labels), already exactly what decoding the native samples at that size gives.
    """
    info: DatasetInfo
    train: list
    train_labels: np.ndarray
    test: list
    test_labels: np.ndarray
    fingerprint: str
    decoded: Callable[[int], tuple] | None = None


def shared_datasets_root() -> Path:
    return Path(os.environ.get("EOT_SHARED_DATASETS", PROJECT_ROOT.parent / "shared" / "datasets"))


def cache_root() -> Path:
    return Path(os.environ.get("EOT_CACHE_DIR", PROJECT_ROOT / ".cache"))


def _stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED, fraction: float = TEST_FRACTION):
    """(train indices, test indices): ``fraction`` of each class, at least one, goes to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(1, int(round(len(idx) * fraction)))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def _cap_per_class(labels: np.ndarray, cap: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Indices of at most ``cap`` images of each class, drawn with a recorded seed."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == cls))[:cap] for cls in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def is_grey(mode: str) -> bool:
    """Whether a PIL image mode is single-channel (1, L, LA, I, I;16*, F), so the dataset is stored as grey."""
    return Image.getmodebase(mode) == "L"


def is_hidden(path: Path, root: Path) -> bool:
    """Whether ``path``, or a folder between ``root`` and it, is hidden (``.DS_Store``, macOS's ``._photo.jpg``):
    not an image of the dataset, whatever its suffix."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def is_path(name: str) -> bool:
    """A folder path given in place of a registered name."""
    return os.sep in name or name.startswith(".")
