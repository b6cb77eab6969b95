"""What would make a broken budget fit: for each (budget, the assumption or answer the recommender names as the
fix), one concrete value, checked by asking the advisor again with it. Plain functions, no Streamlit; the Advisor
page turns each into a button that sets that field."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from recommender.advise import BUDGET_COLUMNS
from recommender.carbon import REGIONS
from recommender.hardware import HARDWARE
from webapp.presentation import ASSUMPTION_LABELS, BUDGET_NAMES, QUESTION_LABELS, budget_failures, format_amount


@dataclass(frozen=True)
class Fix:
    budget: str  # the budget field, e.g. budget_money_usd
    kind: str  # "assumption" (Assumptions field) or "answer" (Questionnaire field)
    field: str
    value: object | None  # None: no single value found; the hint only names the field
    label: str  # what the button says
    note: str  # what it changes and why


def field_label(kind: str, field: str) -> str:
    return (ASSUMPTION_LABELS if kind == "assumption" else QUESTION_LABELS).get(field, field.replace("_", " "))


def _fits(advisor, answers, assumptions, budget: str, options: set[str]) -> set[str]:
    """The given options that keep within ``budget`` under these answers and assumptions."""
    advice = advisor.advise(answers, assumptions)
    ok = advice.options[advice.options["option"].isin(options)]
    return {row.option for row in ok.itertuples() if all(v["field"] != budget for v in row.verdicts)}


def _floor(value: float, step: float) -> float:
    return math.floor(value / step + 1e-9) * step


def hints(advisor, advice) -> list[Fix]:
    """One hint per (broken budget, field to change), in the order the budgets were asked."""
    failures = budget_failures(advice)
    answers, assumptions = advice.questionnaire, advice.assumptions
    found = []
    for (budget, kind, field), group in failures.groupby(["field", "fix_kind", "fix_field"], sort=False):
        rows = advice.options[advice.options["option"].isin(group["option"])]
        limit = float(group["limit"].iloc[0])
        found.append(_hint(advisor, answers, assumptions, budget, kind, field, rows, limit)
                     or Fix(budget, kind, field, None, f"Change {field_label(kind, field).lower()}",
                            f"No single value of {field_label(kind, field).lower()} was found that fits the "
                            f"{BUDGET_NAMES[budget]} budget; {group['fix'].iloc[0]} would change it."))
    order = list(answers.budgets)
    return sorted(found, key=lambda fix: order.index(fix.budget) if fix.budget in order else len(order))


def _hint(advisor, answers, assumptions, budget, kind, field, rows, limit) -> Fix | None:
    options = set(rows["option"])
    name = BUDGET_NAMES[budget]
    limit_text = format_amount(BUDGET_COLUMNS[budget], limit)
    if field == "hourly_rate_usd":
        rate = min((limit - r.compute_usd) / r.human_hours for r in rows.itertuples() if r.human_hours > 0)
        value = _floor(rate, 1.0) if rate >= 1 else _floor(rate, 0.01)
        if value <= 0:
            return None
        changed = replace(assumptions, hourly_rate_usd=value)
        if _fits(advisor, answers, changed, budget, options):
            return Fix(budget, kind, field, value, f"Set the engineer hourly rate to ${value:g}",
                       f"At ${value:g} an hour or less (now ${assumptions.hourly_rate_usd:g}) the labour fits the "
                       f"{limit_text} {name} budget. Fewer set-up hours would do it too.")
        return None
    if field in ("setup_hours_fe", "setup_hours_ft"):
        current = getattr(assumptions, field)
        value = _floor(min(limit - (r.human_hours - current) for r in rows.itertuples()), 0.5)
        if value < 0:
            return None
        changed = replace(assumptions, **{field: value})
        if _fits(advisor, answers, changed, budget, options):
            what = "fine-tuning" if field.endswith("_ft") else "feature extraction"
            return Fix(budget, kind, field, value, f"Set the {what} set-up hours to {value:g}",
                       f"With {value:g} set-up hours or fewer (now {current:g}) {what} fits the {limit_text} "
                       f"{name} budget.")
        return None
    if field == "region" and assumptions.grid_gco2_per_kwh is None:
        needed = min(limit * 1000 / r.energy_kwh_with_pue for r in rows.itertuples() if r.energy_kwh_with_pue > 0)
        candidates = sorted((key for key, region in REGIONS.items() if region.grid_gco2_per_kwh <= needed
                             and key != answers.region), key=lambda key: -REGIONS[key].grid_gco2_per_kwh)
        key = candidates[0] if candidates else None
        if key and _fits(advisor, replace(answers, region=key), assumptions, budget, options):
            region = REGIONS[key]
            return Fix(budget, kind, field, key,
                       f"Switch the grid region to {region.name} ({region.grid_gco2_per_kwh:.0f} gCO₂/kWh)",
                       f"The {limit_text} {name} budget needs a grid below {needed:.0f} gCO₂ per kWh (now "
                       f"{REGIONS[answers.region].grid_gco2_per_kwh:.0f}); {region.name} is the closest that fits.")
        return None
    if field in ("region", "grid_gco2_per_kwh"):
        needed = min(limit * 1000 / r.energy_kwh_with_pue for r in rows.itertuples() if r.energy_kwh_with_pue > 0)
        value = _floor(needed, 1.0)
        if value > 0 and _fits(advisor, answers, replace(assumptions, grid_gco2_per_kwh=value), budget, options):
            return Fix(budget, "assumption", "grid_gco2_per_kwh", value,
                       f"Set the grid carbon intensity to {value:g} gCO₂/kWh",
                       f"The {limit_text} {name} budget needs a grid below {needed:.0f} gCO₂ per kWh.")
        return None
    if field == "hardware":
        best = None
        for key, profile in HARDWARE.items():
            if key == answers.hardware:
                continue
            try:
                changed = replace(answers, hardware=key)
                fitting = _fits(advisor, changed, assumptions, budget, options)
            except ValueError:  # no measured backbone runs there
                continue
            if fitting:
                cost = advisor.advise(changed, assumptions).options.set_index("option").loc[sorted(fitting),
                                                                                           "total_usd"].min()
                if best is None or cost < best[1]:
                    best = (key, cost)
        if best:
            profile = HARDWARE[best[0]]
            return Fix(budget, kind, field, best[0], f"Switch to {profile.name}",
                       f"On {profile.name} the {limit_text} {name} budget fits (the cheapest hardware that does; "
                       f"now {HARDWARE[answers.hardware].name}).")
        return None
    return None
