"""Grid carbon intensity per region: CO2 = energy x PUE x intensity."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "data" / "grid_intensity.csv"
SOURCE = "codecarbon 3.3.2 global energy mix (Our World in Data / Ember)"  # details: data/SOURCES.md here
WORLD_AVERAGE_GCO2_PER_KWH = 475.0  # IEA world average, also codecarbon's fallback


@dataclass(frozen=True)
class Region:
    name: str
    grid_gco2_per_kwh: float
    source: str


def _load() -> dict[str, Region]:
    regions = {"world": Region("World average", WORLD_AVERAGE_GCO2_PER_KWH, "IEA world average (codecarbon default)")}
    with open(TABLE, newline="") as handle:
        for row in csv.DictReader(handle):
            regions[row["iso_code"]] = Region(row["country"], float(row["grid_gco2_per_kwh"]),
                                              f"{SOURCE}, year {row['year']}")
    return regions


REGIONS: dict[str, Region] = _load()


def co2_kg(energy_kwh: float, region: str, pue: float) -> float:
    return energy_kwh * pue * REGIONS[region].grid_gco2_per_kwh / 1000.0
