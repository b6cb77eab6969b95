"""Packed datasets: the device machine has neither the dataset packages nor Debian's Fashion-MNIST, so
``python -m study.device pack`` serialises them into one ``NAME.npz`` each, and ``EOT_PACKED_DATASETS`` points
here at that folder. A packed dataset replaces the loader of the same name: same split, labels, metadata and
fingerprint (a lossy copy gets its own fingerprint). Images are stored either at native size (uint8 arrays, or
one encoded image each) or, where native size is too large to carry, already decoded at each resolution the
packed runs use (the exact arrays ``load_images`` gives here, losslessly encoded), which is all a run reads.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from study.datasets.base import DatasetError, DatasetInfo, _Source, is_path

PACKED_FORMAT = 1
LOSSLESS_CODECS = ("npz", "png", "webp-lossless")


def packed_datasets_root() -> Path | None:
    value = os.environ.get("EOT_PACKED_DATASETS")
    return Path(value) if value else None


def packed_file(name: str) -> Path | None:
    root = packed_datasets_root()
    if root is None or is_path(name):
        return None
    path = root / f"{name}.npz"
    return path if path.is_file() else None


def encode_images(images, codec: str, quality: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (HW or HWC uint8) -> (concatenated encoded bytes, offsets of each image, n + 1 of them)."""
    parts, offsets = [], [0]
    for image in images:
        array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        buffer = io.BytesIO()
        if codec == "webp-lossless":
            Image.fromarray(array).save(buffer, "WEBP", lossless=True, quality=100, method=4)
        elif codec == "png":
            Image.fromarray(array).save(buffer, "PNG", optimize=True)
        elif codec == "jpeg":
            Image.fromarray(array).save(buffer, "JPEG", quality=quality or 95, subsampling=0)
        else:
            raise ValueError(f"unknown image codec {codec!r}")
        parts.append(buffer.getvalue())
        offsets.append(offsets[-1] + len(parts[-1]))
    blob = np.frombuffer(b"".join(parts), dtype=np.uint8) if parts else np.zeros(0, np.uint8)
    return blob, np.array(offsets, dtype=np.int64)


def decode_images(blob: np.ndarray, offsets: np.ndarray, channels: int) -> list[np.ndarray]:
    """Inverse of ``encode_images``: HW arrays for grey (``channels == 1``), HWC for colour."""
    images = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        with Image.open(io.BytesIO(blob[start:end].tobytes())) as image:
            images.append(np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8))
    return images


def _stack(images: list[np.ndarray], resolution: int, channels: int) -> np.ndarray:
    if not images:
        return np.zeros((0, resolution, resolution, channels), np.uint8)
    stacked = np.stack(images)
    return stacked[..., None] if stacked.ndim == 3 else stacked


def _packed_source(path: Path, name: str) -> _Source:
    try:
        stored = np.load(path, allow_pickle=False)
        meta = json.loads(str(stored["meta"]))
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path} is not a packed dataset: {error}") from None
    if meta.get("format") != PACKED_FORMAT or meta.get("name") != name:
        raise DatasetError(f"{path} is not a format-{PACKED_FORMAT} packed copy of {name!r}")
    info = DatasetInfo(**meta["info"])
    codec = meta["codec"]

    def native(split: str) -> list:
        if codec == "npz":
            return list(stored[f"{split}_images"])
        return decode_images(stored[f"{split}_blob"], stored[f"{split}_offsets"], info.channels)

    if meta["scope"] == "native":
        return _Source(info, native("train"), stored["train_labels"], native("test"), stored["test_labels"],
                       meta["fingerprint"])
    resolutions = [int(r) for r in meta["resolutions"]]

    def decoded(resolution: int) -> tuple:
        if resolution not in resolutions:
            raise DatasetError(f"the packed copy of {name!r} holds its images at {resolutions} px only "
                               f"({meta['encoding']}); pack it again for {resolution} px")
        arrays = []
        for split in ("train", "test"):
            key = f"{split}_{resolution}px"
            images = decode_images(stored[f"{key}_blob"], stored[f"{key}_offsets"], info.channels)
            arrays += [_stack(images, resolution, info.channels), stored[f"{key}_labels"]]
        return tuple(arrays)

    return _Source(info, [], stored["train_labels"], [], stored["test_labels"], meta["fingerprint"], decoded)
