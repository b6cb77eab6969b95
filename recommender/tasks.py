"""Task descriptors shared by evidence and questionnaire: what the accuracy model knows about a dataset."""
from __future__ import annotations

import pandas as pd

from recommender.questionnaire import Questionnaire
from study.datasets import native_shorter_side

# Keywords in a dataset's recorded domain (free text) -> the questionnaire's domain groups; the first match wins.
DOMAIN_KEYWORDS = {
    "remote sensing": ("remote sensing", "aerial", "satellite", "earth observation", "land use", "land cover",
                       "sentinel", "landsat"),
    "textures": ("texture",),
    "medical": ("medical", "mri", "x-ray", "xray", "histolog", "patholog", "radiolog", "derm", "retina", "fundus",
                "ultrasound", "endoscop", "mammo", "tumor", "tumour", "lesion", "clinical", "blood", "haemat", "hemat"),
    "industrial inspection": ("industrial", "defect", "steel", "solar", "inspection", "manufactur", "weld", "crack",
                              "casting"),
    "handwriting / digits": ("handwrit", "digit", "character"),
    "product photos": ("product", "fashion", "retail", "grocery", "clothing", "apparel"),
    "natural objects": ("natural", "flower", "animal", "bird", "object", "plant", "leaf", "food", "fruit", "insect",
                        "dog"),
}
FEATURES = ["log2_k", "log2_classes", "grey", "native_px", "resolution", "domain", "method", "backbone"]


def domain_group(recorded_domain: str) -> str:
    text = (recorded_domain or "").lower()
    for group, keywords in DOMAIN_KEYWORDS.items():
        if any(word in text for word in keywords):
            return group
    return "other"


def native_px(native_size: str) -> float:
    return float(native_shorter_side(native_size))


def dataset_descriptors(datasets: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: its domain group, class count, colour and native size."""
    return pd.DataFrame({
        "dataset": datasets["name"],
        "domain": datasets["domain"].map(domain_group),
        "n_classes": datasets["n_classes"].astype(int),
        "grey": (datasets["channels"] == 1).astype(int),
        "native_px": datasets["native_size"].map(native_px),
    }).reset_index(drop=True)


def questionnaire_descriptor(q: Questionnaire) -> dict:
    return {"domain": q.domain, "n_classes": q.n_classes, "grey": int(not q.colour),
            "native_px": float(q.image_size_px)}
