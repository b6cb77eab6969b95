"""Images as runs see them: decoded once per resolution (shorter side resized, centre crop) and cached on disk as
uint8 arrays, so every run at that resolution reuses them; grey datasets keep one channel (models see it
replicated to three). Plus the class-balanced, seeded subsets runs train on."""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np
from PIL import Image, ImageOps

from study.datasets.base import MAX_ASPECT_RATIO, DatasetError, ImageData, cache_root
from study.datasets.loaders import _source, original_source

log = logging.getLogger(__name__)
# In the decode cache's file names: a change to how images are decoded (EXIF orientation, deep scans) decodes afresh.
DECODE_VERSION = 2


def to_eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image (scans, microscopy) stretched from its own range to 8-bit grey.

    PIL's ``convert`` clips such pixels at 255, which turns a 16-bit scan almost white and a float image black;
    and how many of the 16 bits a scanner fills (12, say) varies, so the image's own range is the scale.
    """
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def to_square(sample, resolution: int, channels: int) -> np.ndarray:
    """Shorter side resized to ``resolution`` (bicubic), centre crop, as HWC uint8; a photo turned upright by its
    EXIF orientation first, as a viewer shows it."""
    if isinstance(sample, np.ndarray):
        image = Image.fromarray(sample)
    else:
        image = Image.open(sample)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    width, height = image.size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(f"{width}x{height} is too elongated to centre-crop (aspect ratio over {MAX_ASPECT_RATIO})")
    image = to_eight_bit(image).convert("L" if channels == 1 else "RGB")
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    array = np.asarray(image.crop((left, top, left + resolution, top + resolution)), dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def _decode(samples: list, labels: np.ndarray, resolution: int, channels: int, skipped: list[str]):
    images, kept = [], []
    for sample, label in zip(samples, labels):
        try:
            images.append(to_square(sample, resolution, channels))
            kept.append(label)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            skipped.append(f"{sample}: {type(error).__name__}")
            log.warning("skipped unreadable image %s (%s)", sample, error)
    shape = (0, resolution, resolution, channels)
    return (np.stack(images) if images else np.zeros(shape, np.uint8)), np.array(kept, dtype=np.int64)


def load_images(name: str, resolution: int, original: bool = False) -> ImageData:
    """Decoded train pool and test split of a dataset at ``resolution``, cached on disk per resolution.

    ``original``: read the dataset from its own loader even where a packed copy is configured.
    """
    source = original_source(name) if original else _source(name)
    info = source.info
    cache = cache_root() / "images" / f"{info.name}-{resolution}px-{source.fingerprint}-d{DECODE_VERSION}.npz"
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        meta = json.loads(str(stored["info"]))
        info.n_skipped_corrupt, info.skipped_files = meta["n_skipped_corrupt"], meta["skipped_files"]
        arrays = [stored[key] for key in ("train_images", "train_labels", "test_images", "test_labels")]
    else:
        skipped: list[str] = []
        if source.decoded is not None:
            train_x, train_y, test_x, test_y = source.decoded(resolution)
        else:
            train_x, train_y = _decode(source.train, source.train_labels, resolution, info.channels, skipped)
            test_x, test_y = _decode(source.test, source.test_labels, resolution, info.channels, skipped)
        info.n_skipped_corrupt, info.skipped_files = len(skipped), skipped
        arrays = [train_x, train_y, test_x, test_y]
        cache.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: parallel workers (Ray tasks of other backbones) may decode the same dataset at once.
        partial = cache.with_name(f"{cache.name}.{os.getpid()}-{os.urandom(4).hex()}.partial.npz")
        np.savez(partial, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                 info=json.dumps({"n_skipped_corrupt": len(skipped), "skipped_files": skipped}))
        os.replace(partial, cache)
    info.n_train_pool, info.n_test = len(arrays[1]), len(arrays[3])
    for cls_index, cls in enumerate(info.class_names):
        if (arrays[1] == cls_index).sum() == 0:
            raise DatasetError(f"class {cls!r} of {info.name} has no readable training image")
    return ImageData(info, resolution, *arrays, content_key=cache.stem)



def sample_subset(labels: np.ndarray, images_per_class: int | None, seed: int) -> np.ndarray:
    """Class-balanced subset: the first ``images_per_class`` of a seeded permutation of each class.

    Subsets are nested across k for a given seed (learning curves vary only by k), and each seed draws another
    subset. ``None`` means the whole pool. A class smaller than k contributes all it has (the cap is recorded).
    """
    chosen = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        order = np.random.default_rng([seed, int(cls)]).permutation(idx)
        chosen.append(order if images_per_class is None else order[:images_per_class])
    return np.sort(np.concatenate(chosen))


def native_shorter_side(native_size: str, default: int = 160) -> int:
    """Shorter side of a recorded native size like '300x300' or '160x160 (1960), ...'."""
    sizes = [(int(a), int(b)) for a, b in re.findall(r"(\d+)x(\d+)", native_size or "")]
    return min(sizes[0]) if sizes else default

