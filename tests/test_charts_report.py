"""Charts, PDF reports, wording and link parsing, on advice from the real advisor fitted to a snapshot."""
import io

import pytest
from pypdf import PdfReader

from evidence_snapshot import snapshot_db
from webapp import charts, report
from recommender.advise import Advisor
from recommender.costs import ASSUMPTION_SOURCES, Assumptions
from recommender.evidence import load_tables
from webapp.presentation import budget_checks, evidence_summary, format_amount, numbers_table
from recommender.questionnaire import Questionnaire
from webapp.ui import TABLES, assumptions_from_link, assumptions_to_query, questionnaire_from_link


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return load_tables(snapshot_db(tmp_path_factory.mktemp("evidence")), tables=TABLES)


@pytest.fixture(scope="module")
def advice(tables):
    answers = Questionnaire(n_classes=5, images_per_class=20, hardware="t4", budget_money_usd=200.0,
                            budget_co2_kg=1e-6)
    return Advisor().fit(tables).advise(answers, Assumptions())


def test_charts_mark_the_users_k_the_budget_and_the_pareto_front(advice):
    curves = charts.learning_curves(advice.curves, 20, charts.fe_vs_ft_options(advice.options, advice.recommended))
    spec = str(curves.to_dict())
    assert "your k = 20" in spec
    shown = charts.fe_vs_ft_options(advice.options, advice.recommended)
    assert shown[0] == advice.recommended and len({charts.family(o.split(" · ")[0]) for o in shown}) == len(shown)
    cost = str(charts.accuracy_vs_cost(advice.options, "total_usd", 200.0, advice.recommended).to_dict())
    assert "budget 200" in cost and "Pareto front" in cost and "recommended" in cost
    frame = charts.cost_breakdown_frame(advice.options, advice.questionnaire.budgets)
    assert set(frame["measure"]) == {"Money (USD)", "Compute time (h)", "Energy (kWh)", "CO₂ (kg)",
                                     "Human time (h)"}
    assert frame.loc[frame["measure"] == "CO₂ (kg)", "budget"].eq(1e-6).all()
    assert charts.to_png(charts.cost_breakdown(advice.options)).startswith(b"\x89PNG")


def test_budget_checks_agree_with_the_advice(advice):
    checks = budget_checks(advice)
    assert list(checks["name"]) == ["budget_money_usd", "budget_co2_kg"]
    assert not checks.set_index("name").loc["budget_co2_kg", "passes"]  # a microgram of CO₂ cannot be met


def test_the_personal_report_is_a_multi_page_pdf_naming_the_recommendation(advice, tables):
    pdf = report.personal_report(advice, report.chart_pngs(advice), evidence_summary(tables), Assumptions(),
                                 ASSUMPTION_SOURCES, "http://localhost:8501/advisor?n_classes=5")
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) >= 2
    assert advice.recommended in text and "CO₂" in text and "estimated" in text
    assert "FAIL" in text  # the CO₂ budget check
    assert len(reader.pages[1].images) + len(reader.pages[0].images) >= 1


def test_the_guidelines_document_carries_every_guideline_and_its_numbers(tables):
    from recommender.guidelines import derive

    guidelines = derive(tables)
    text = "\n".join(page.extract_text() for page in
                     PdfReader(io.BytesIO(report.guidelines_document(guidelines, evidence_summary(tables)))).pages)
    for guideline in guidelines:
        assert guideline.title in text
    nested = numbers_table({"medical": {"crossover k": None, "gaps": {5: 7.5}}, "runs": 6})
    assert list(nested["number"]) == ["medical / crossover k", "medical / gaps", "runs"]
    assert list(nested["value"]) == ["none", "5: 7.5", "6"]


def test_amounts_are_given_in_readable_units():
    assert format_amount("time_h", 10 / 3600) == "10 s"
    assert format_amount("time_h", 0.5) == "30 min"
    assert format_amount("energy_kwh", 0.0042) == "4.2 Wh"
    assert format_amount("co2_kg", 0.25) == "250 g"
    assert format_amount("total_usd", 1234.5) == "$1,234.50"


def test_a_link_round_trips_answers_and_edited_assumptions_and_names_bad_values():
    answers = Questionnaire(n_classes=7, images_per_class=3, hardware="l4", budget_energy_kwh=0.5,
                            probe_accuracy=0.61)
    edited = Assumptions(pue=1.2, ft_trials=4)
    query = {**answers.to_query(), **assumptions_to_query(edited)}
    assert questionnaire_from_link(query) == (answers, [])
    assert assumptions_from_link(query) == (edited, [])
    assert set(assumptions_to_query(Assumptions())) == set()

    parsed, messages = questionnaire_from_link({"n_classes": "7", "domain": "space", "images_per_class": "-1"})
    assert parsed == Questionnaire(n_classes=7) and len(messages) == 2
    parsed, messages = assumptions_from_link({"a_pue": "0.3", "a_ft_trials": "2.5", "a_hourly_rate_usd": "80"})
    assert parsed == Assumptions(hourly_rate_usd=80.0) and len(messages) == 2
