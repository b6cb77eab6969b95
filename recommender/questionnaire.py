"""The practitioner's task and budgets: validated, and round-trippable through a URL's query parameters."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Mapping

from recommender.carbon import REGIONS
from recommender.hardware import HARDWARE

DOMAINS = ["natural objects", "remote sensing", "textures", "medical", "industrial inspection",
           "handwriting / digits", "product photos", "other"]
MAX_CLASSES = 10_000
MAX_IMAGES_PER_CLASS = 1_000_000
# How options are ranked: by the accuracy expected on average, or by the accuracy reached 3 times in 4 (cautious).
RANK_BY = ("expected", "cautious")
BUDGET_FIELDS = ("budget_money_usd", "budget_energy_kwh", "budget_co2_kg", "budget_wall_time_h",
                 "budget_human_hours")


class QuestionnaireError(ValueError):
    """A questionnaire value is unusable; ``field`` names it for the form."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Questionnaire:
    n_classes: int = 10
    images_per_class: int = 20
    domain: str = "natural objects"
    image_size_px: int = 224
    working_resolution_px: int | None = None  # None: chosen from the image size and the backbone (see advise)
    colour: bool = True
    hardware: str = "t4"
    region: str = "world"
    budget_money_usd: float | None = None
    budget_energy_kwh: float | None = None
    budget_co2_kg: float | None = None
    budget_wall_time_h: float | None = None
    budget_human_hours: float | None = None
    accuracy_weight: float = 0.7  # 1 = accuracy only, 0 = cost only
    rank_by: str = "expected"  # one of RANK_BY
    probe: str | None = None  # the user's measured probe curves (python -m study.probe), see encode_probe

    def validate(self) -> "Questionnaire":
        _integer_in(self.n_classes, "n_classes", 2, MAX_CLASSES, "classes")
        _integer_in(self.images_per_class, "images_per_class", 1, MAX_IMAGES_PER_CLASS, "images per class")
        _integer_in(self.image_size_px, "image_size_px", 8, 20_000, "pixels")
        if self.working_resolution_px is not None:
            _integer_in(self.working_resolution_px, "working_resolution_px", 32, 4_096, "pixels")
        _choice(self.domain, "domain", DOMAINS)
        _choice(self.hardware, "hardware", list(HARDWARE))
        _choice(self.region, "region", list(REGIONS))
        _choice(self.rank_by, "rank_by", list(RANK_BY))
        if not isinstance(self.colour, bool):
            raise QuestionnaireError("colour", "must be true or false")
        for name in BUDGET_FIELDS:
            value = getattr(self, name)
            if value is not None and not (_finite(value) and value > 0):
                raise QuestionnaireError(name, f"a budget must be a positive number or left empty, got {value!r}")
        if not (_finite(self.accuracy_weight) and 0 <= self.accuracy_weight <= 1):
            raise QuestionnaireError("accuracy_weight", "must be between 0 (cost only) and 1 (accuracy only)")
        if self.probe is not None:
            parse_probe(self.probe)
        return self

    @property
    def probe_curves(self) -> dict[tuple[str, str], dict[int, float]]:
        """{(method, backbone): {k: accuracy}} measured on the user's images; empty without a probe."""
        return parse_probe(self.probe) if self.probe else {}

    @property
    def budgets(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in BUDGET_FIELDS if getattr(self, name) is not None}

    def to_query(self) -> dict[str, str]:
        return {key: _format(value) for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> "Questionnaire":
        """Parse a shared link's parameters; unknown keys are ignored, bad values raise QuestionnaireError."""
        values = {}
        for item in fields(cls):
            if item.name not in params:
                continue
            raw = params[item.name]
            raw = raw[0] if isinstance(raw, list) else raw
            values[item.name] = _parse(item.name, str(raw).strip(), item.type)
        return cls(**values).validate()


PROBE_METHODS = ("fe_linear", "fe_fne", "ft_full")  # ft_full: the fine-tuning pilot
MAX_PROBE_POINTS = 64


def encode_probe(curves: Mapping[tuple[str, str], Mapping[int, float]]) -> str:
    """{(method, backbone): {k: accuracy}} -> 'method.backbone=k:acc,k:acc;...' (compact, URL-safe, sorted)."""
    parts = []
    for (method, backbone), by_k in sorted(curves.items()):
        points = ",".join(f"{int(k)}:{float(accuracy):.4f}" for k, accuracy in sorted(by_k.items()))
        parts.append(f"{method}.{backbone}={points}")
    return ";".join(parts)


def parse_probe(text: str) -> dict[tuple[str, str], dict[int, float]]:
    """Inverse of ``encode_probe``; anything malformed raises QuestionnaireError('probe', ...)."""
    curves: dict[tuple[str, str], dict[int, float]] = {}
    try:
        for part in filter(None, text.split(";")):
            option, points = part.split("=", 1)
            method, backbone = option.split(".", 1)
            if method not in PROBE_METHODS or not backbone.replace("_", "").isalnum():
                raise ValueError(f"unknown probed option {option[:40]!r}")
            by_k = {}
            for point in points.split(","):
                k, accuracy = point.split(":")
                by_k[int(k)] = float(accuracy)
            if any(k < 1 or not (_finite(a) and 0 <= a <= 1) for k, a in by_k.items()):
                raise ValueError("k must be >= 1 and accuracies fractions between 0 and 1")
            curves[(method, backbone)] = by_k
    except ValueError as error:
        raise QuestionnaireError("probe", f"not a probe measurement ({error})") from None
    if not curves or sum(map(len, curves.values())) > MAX_PROBE_POINTS:
        raise QuestionnaireError("probe", f"a probe has 1 to {MAX_PROBE_POINTS} measured points")
    return curves


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer_in(value, name: str, low: int, high: int, unit: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise QuestionnaireError(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise QuestionnaireError(name, f"must be between {low:,} and {high:,} {unit}, got {value:,}")


def _choice(value, name: str, allowed: list[str]) -> None:
    if value not in allowed:
        shown = ", ".join(allowed[:12]) + (", ..." if len(allowed) > 12 else "")
        raise QuestionnaireError(name, f"unknown value {value!r}; choose one of: {shown}")


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parse(name: str, raw: str, annotation: str):
    if raw == "" and "None" in annotation:
        return None
    try:
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if annotation.startswith("bool"):
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
    except ValueError:
        raise QuestionnaireError(name, f"{raw[:40]!r} is not a valid {annotation.split(' ')[0]}") from None
    return raw
