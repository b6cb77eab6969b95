"""What a pack carries and how: fp16 copies of the verified weights, package datasets as packed ``NAME.npz``
(smallest encoding that fits, lossless unless allowed otherwise, every lossless image checked by decoding it),
ImageFolder datasets copied byte for byte; and size estimates of each, made before anything is written."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from study.backbones import fp16_name, get_spec, load_verified, sha256_of, weights_file
from study.datasets import (LOSSLESS_CODECS, PACKED_FORMAT, decode_images, encode_images, load_images,
                            original_source, shared_datasets_root)
from study.datasets.loaders import _class_folders, _folder_source, _image_files
from study.device.common import DeviceError

ESTIMATE_SLACK = 1.04  # sampled size estimates of encoded images are scaled up by this
TINY_NATIVE_SIDE = 64  # package datasets at most this large travel as compressed native arrays


# ---------------------------------------------------------------------------------------------- weights

def fp16_weights(name: str, folder: Path) -> dict:
    """Write the fp16 copy of a backbone's verified weights into ``folder``; returns its manifest entry."""
    import torch

    spec = get_spec(name)
    original = weights_file(spec)
    state = load_verified(original, spec.sha256)
    half, kept_fp32, max_error = {}, [], 0.0
    for key, value in state.items():
        if value.is_floating_point():
            converted = value.half()
            if not torch.isfinite(converted).all():  # out of fp16 range: keep it exact
                kept_fp32.append(key)
                converted = value
            else:
                max_error = max(max_error, (converted.float() - value.float()).abs().max().item())
            half[key] = converted
        else:
            half[key] = value
    target = folder / fp16_name(spec)
    torch.save(half, target)
    return {"backbone": name, "file": target.name, "bytes": target.stat().st_size,
            "sha256": sha256_of(str(target)), "original_file": os.path.basename(original),
            "original_sha256": spec.sha256, "original_bytes": os.path.getsize(original),
            "max_abs_rounding_error": max_error, "tensors_kept_fp32": kept_fp32}


def weights_estimate(name: str) -> int:
    return os.path.getsize(weights_file(get_spec(name))) // 2 + 64 * 1024


# ---------------------------------------------------------------------------------------------- datasets

def is_package_dataset(name: str) -> bool:
    """Registered but not an ImageFolder under the shared root (elpv, fashion_mnist, mnist5k)."""
    root = shared_datasets_root()
    return not ((root / name / "train").is_dir() and (root / name / "test").is_dir())


def folder_dataset_files(name: str) -> list[tuple[Path, str]]:
    """(source file, path relative to the shared root) of what the loader reads, plus SOURCE.md."""
    root = shared_datasets_root() / name
    classes = [p.name for p in _class_folders(root / "train")]
    files = []
    for split in ("train", "test"):
        for cls in classes:
            folder = root / split / cls
            for path in _image_files(folder) if folder.is_dir() else []:
                files.append((path, f"{name}/{split}/{cls}/{path.relative_to(folder).as_posix()}"))
    if (root / "SOURCE.md").is_file():
        files.append((root / "SOURCE.md", f"{name}/SOURCE.md"))
    return files


@dataclass
class Encoding:
    scope: str  # "native" or "resolution"
    codec: str  # "npz", "webp-lossless", "png", "jpeg"
    quality: int | None = None

    @property
    def lossless(self) -> bool:
        return self.codec in LOSSLESS_CODECS

    def describe(self, resolutions) -> str:
        what = {"npz": "uint8 arrays, zlib-compressed (lossless)", "webp-lossless": "WebP lossless per image",
                "png": "PNG per image (lossless)", "jpeg": f"JPEG quality {self.quality} per image (LOSSY)"}[self.codec]
        if self.scope == "native":
            return f"native size, {what}"
        return (f"decoded at {sorted(resolutions)} px exactly as load_images decodes them here, {what}; "
                "other resolutions are refused")


def _original_pool(name: str) -> tuple[list, list]:
    source = original_source(name)
    return source.train, source.test


def _estimate_encoded(images: list, codec: str, quality: int | None) -> int:
    step = max(1, len(images) // 160)
    sample = images[::step]
    blob, _ = encode_images(sample, codec, quality)
    return int(blob.size * len(images) / max(1, len(sample)) * ESTIMATE_SLACK) + 16 * len(images)


class PackageSizer:
    """Estimated bytes of a package dataset under each encoding (sampled, cached per process)."""

    def __init__(self):
        self._cache: dict = {}

    def native_side(self, name: str) -> int:
        key = ("side", name)
        if key not in self._cache:
            train, _ = _original_pool(name)
            self._cache[key] = max(np.asarray(train[0]).shape[:2])
        return self._cache[key]

    def estimate(self, name: str, encoding: Encoding, resolutions: set[int]) -> int:
        key = (name, encoding.scope, encoding.codec, encoding.quality, tuple(sorted(resolutions)))
        if key not in self._cache:
            if encoding.scope == "native":
                train, test = _original_pool(name)
                if encoding.codec == "npz":
                    import zlib

                    raw = np.stack(train[:500]).tobytes()
                    ratio = len(zlib.compress(raw, 6)) / max(1, len(raw))
                    total = int(sum(np.asarray(a).nbytes for a in train + test) * ratio * ESTIMATE_SLACK)
                else:
                    total = _estimate_encoded(train + test, encoding.codec, encoding.quality)
            else:
                total = 0
                for resolution in resolutions:
                    data = load_images(name, resolution, original=True)
                    total += _estimate_encoded(list(data.train_images) + list(data.test_images), encoding.codec,
                                               encoding.quality)
            self._cache[key] = total + 4096
        return self._cache[key]

    def candidates(self, name: str, allow_lossy: bool, jpeg_quality: int) -> list[Encoding]:
        """Encodings in order of preference: native lossless, exact decoded arrays, then (if allowed) lossy."""
        if self.native_side(name) <= TINY_NATIVE_SIDE:
            return [Encoding("native", "npz")]
        options = [Encoding("native", "webp-lossless"), Encoding("resolution", "webp-lossless")]
        if allow_lossy:
            options.append(Encoding("resolution", "jpeg", jpeg_quality))
        return options

    def best(self, name: str, resolutions: set[int], room: int, allow_lossy: bool, jpeg_quality: int):
        """(encoding, estimated bytes) of the first candidate that fits ``room``, else (None, smallest)."""
        smallest = None
        for encoding in self.candidates(name, allow_lossy, jpeg_quality):
            size = self.estimate(name, encoding, resolutions)
            smallest = size if smallest is None else min(smallest, size)
            if size <= room:
                return encoding, size
        return None, smallest


def pack_package_dataset(name: str, encoding: Encoding, resolutions: set[int], target: Path) -> dict:
    """Write the packed ``NAME.npz`` (format of study.datasets); every lossless image is checked by decoding."""
    source = original_source(name)
    info = asdict(source.info)
    channels = source.info.channels
    arrays: dict[str, np.ndarray] = {"train_labels": source.train_labels, "test_labels": source.test_labels}
    fingerprint = source.fingerprint
    error = {"max_abs": 0, "mean_abs": 0.0}
    if encoding.scope == "native":
        for split, images in (("train", source.train), ("test", source.test)):
            if encoding.codec == "npz":
                arrays[f"{split}_images"] = np.stack(images)
            else:
                blob, offsets = encode_images(images, encoding.codec, encoding.quality)
                _check_roundtrip(blob, offsets, images, channels, encoding, error, f"{name} {split}")
                arrays[f"{split}_blob"], arrays[f"{split}_offsets"] = blob, offsets
    else:
        for resolution in sorted(resolutions):
            data = load_images(name, resolution, original=True)
            for split, images, labels in (("train", data.train_images, data.train_labels),
                                          ("test", data.test_images, data.test_labels)):
                key = f"{split}_{resolution}px"
                blob, offsets = encode_images(list(images), encoding.codec, encoding.quality)
                _check_roundtrip(blob, offsets, images, channels, encoding, error, f"{name} {key}")
                arrays[f"{key}_blob"], arrays[f"{key}_offsets"], arrays[f"{key}_labels"] = blob, offsets, labels
    error.pop("_n", None)
    if not encoding.lossless:
        fingerprint = f"{fingerprint}-{encoding.codec}{encoding.quality}"
    description = encoding.describe(resolutions)
    meta = {"format": PACKED_FORMAT, "name": name, "info": info, "fingerprint": fingerprint,
            "scope": encoding.scope, "codec": encoding.codec, "quality": encoding.quality,
            "lossless": encoding.lossless, "resolutions": sorted(resolutions) if encoding.scope != "native" else None,
            "encoding": description, "error_vs_original": None if encoding.lossless else error}
    arrays["meta"] = np.array(json.dumps(meta))
    partial = target.with_name(target.name + ".partial.npz")
    (np.savez_compressed if encoding.codec == "npz" else np.savez)(partial, **arrays)
    os.replace(partial, target)
    return {"dataset": name, "kind": "package", "file": f"datasets/{target.name}", "bytes": target.stat().st_size,
            "encoding": description, "lossless": encoding.lossless, "fingerprint": fingerprint,
            "resolutions": sorted(resolutions), "error_vs_original": meta["error_vs_original"],
            "n_train_pool": int(len(source.train_labels)), "n_test": int(len(source.test_labels))}


def _check_roundtrip(blob, offsets, images, channels: int, encoding: Encoding, error: dict, what: str) -> None:
    decoded = decode_images(blob, offsets, channels)
    total, count = 0.0, 0
    for got, want in zip(decoded, images):
        want = np.asarray(want)
        want = want[:, :, 0] if want.ndim == 3 and want.shape[2] == 1 else want
        if encoding.lossless:
            if got.shape != want.shape or not np.array_equal(got, want):
                raise DeviceError(f"{what}: {encoding.codec} did not round-trip exactly; refusing to pack it")
            continue
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        error["max_abs"] = max(error["max_abs"], int(diff.max()))
        total += float(diff.mean())
        count += 1
    if count:
        n_before = error.get("_n", 0)
        error["mean_abs"] = (error["mean_abs"] * n_before + total) / (n_before + count)
        error["_n"] = n_before + count


def copy_folder_dataset(name: str, target_root: Path) -> dict:
    """Copy an ImageFolder dataset byte for byte; checks the copy has the original's fingerprint."""
    files = folder_dataset_files(name)
    for source, relative in files:
        destination = target_root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    original = _folder_source(shared_datasets_root() / name, name)
    copy = _folder_source(target_root / name, name)
    if copy.fingerprint != original.fingerprint or not np.array_equal(copy.train_labels, original.train_labels):
        raise DeviceError(f"the copy of {name} differs from the original")
    return {"dataset": name, "kind": "folder", "file": f"shared_datasets/{name}/",
            "bytes": sum((target_root / r).stat().st_size for _, r in files), "n_files": len(files),
            "encoding": "original JPEG files, byte for byte", "lossless": True, "fingerprint": original.fingerprint,
            "n_train_pool": int(len(original.train_labels)), "n_test": int(len(original.test_labels))}
