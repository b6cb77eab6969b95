"""Charts, PDF reports, wording, sources and link parsing, on advice from the real advisor fitted to a snapshot."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema
from pypdf import PdfReader

from evidence_snapshot import snapshot_db
from webapp import altair_charts, charts, fixes, renderer, report
from recommender.advise import Advisor
from recommender.costs import ASSUMPTION_SOURCES, Assumptions
from recommender.evidence import load_tables
from recommender.questionnaire import Questionnaire, encode_probe
from webapp.presentation import (answers_table, budget_checks, budget_failures, format_amount, format_number,
                                 numbers_tables, options_csv, options_table, probe_would_narrow_sentence, readable)
from webapp.provenance import (baseline_comparison, baseline_share_sentence, evaluation_summary, evaluation_tables,
                               evidence_summary, one_run_sentence, prediction_quality, regret_by_policy, sources_table)
from webapp.ui import (PUBLIC_URL_ENV, TABLES, assumptions_from_link, assumptions_to_query, questionnaire_from_link,
                       share_link)

ROOT = Path(__file__).resolve().parent.parent
INTERNAL_ID = re.compile(r"\b(fe|ft)_(linear|fne|full|partial)\b|\b(mobilenetv2_100|efficientnet_lite\d)\b")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return load_tables(snapshot_db(tmp_path_factory.mktemp("evidence")), tables=TABLES)


@pytest.fixture(scope="module")
def advisor(tables):
    return Advisor().fit(tables)


@pytest.fixture(scope="module")
def advice(advisor):
    answers = Questionnaire(n_classes=5, images_per_class=20, hardware="t4", budget_money_usd=200.0,
                            budget_co2_kg=1e-6)
    return advisor.advise(answers, Assumptions())


def vega_lite_checked(spec: dict) -> dict:
    """The spec, after checking it against Vega-Lite's JSON schema (what st.altair_chart would check)."""
    validate_jsonschema(spec, load_schema())
    return spec


def test_charts_name_options_mark_your_k_the_budget_and_log_no_infinite_extents(advice):
    shown = charts.fe_vs_ft_options(advice.options, advice.recommended)
    curves = str(vega_lite_checked(charts.learning_curves(advice.curves, 20, shown)))
    assert "your k = 20" in curves and "extrapolated" in curves
    assert shown[0] == advice.recommended and len({charts.family(o.split(" · ")[0]) for o in shown}) == len(shown)
    cost = vega_lite_checked(charts.accuracy_vs_cost(advice.options, "total_usd", 200.0, advice.recommended))
    text = str(cost)
    assert "your budget, $200.00" in text and "Pareto front" in text and "recommended" in text
    assert cost["autosize"]["type"] == "pad"  # Vega's "fit" only works for single and layered views
    breakdown = str(vega_lite_checked(charts.cost_breakdown(advice.options, advice.questionnaire.budgets)))
    for spec in (curves, text, breakdown):
        assert not INTERNAL_ID.search(spec), INTERNAL_ID.search(spec)
        assert "mean_budget" not in spec and "mean(budget)" not in spec  # a budget rule has its own finite data
        assert "⟨" not in spec  # every placeholder of the memoised layouts is filled
    frame = charts.cost_breakdown_frame(advice.options, advice.questionnaire.budgets)
    assert set(frame["measure"]) == {"Money", "Compute time", "Energy with PUE", "CO₂", "Human time"}
    assert frame.loc[frame["measure"] == "CO₂", "budget"].eq(1e-6).all()
    assert set(frame.loc[frame["measure"] == "Energy with PUE", "component"]) == {"device",
                                                                               "data-centre overhead (PUE)"}
    assert renderer.render_png(charts.cost_breakdown(advice.options)).startswith(b"\x89PNG")


@pytest.mark.parametrize("log_scale", [False, True])
@pytest.mark.parametrize("with_budget", [False, True])
def test_every_variant_of_the_accuracy_and_cost_layout_is_valid_vega_lite(log_scale, with_budget):
    layout = vega_lite_checked(altair_charts.accuracy_vs_cost_layout(log_scale, with_budget))
    scale = layout["hconcat"][1]["layer"][0]["encoding"]["x"]["scale"]
    assert (scale.get("type") == "log") == log_scale
    assert ("⟨budget⟩" in str(layout["title"])) == with_budget


def test_the_layouts_are_built_once_persisted_and_read_back_by_the_next_server(tmp_path, monkeypatch, advice):
    monkeypatch.setenv("EOT_CACHE_DIR", str(tmp_path))
    charts.layouts.cache_clear()
    built = charts.layouts()
    assert list((tmp_path / "models").glob("chart-layouts-*.pkl"))
    assert set(built) == {"learning_curves", "cost_breakdown"} | {
        ("accuracy_vs_cost", log_scale, with_budget) for log_scale in (False, True) for with_budget in (False, True)}
    charts.layouts.cache_clear()  # a fresh server: reads them, never builds (nor imports Altair)

    def refuse():
        raise AssertionError("built again although persisted")

    monkeypatch.setattr(charts, "_build_layouts", refuse)
    assert charts.layouts() == built
    assert charts.learning_curves(advice.curves, 20)["layer"] == built["learning_curves"]["layer"]
    charts.layouts.cache_clear()


def test_a_cold_server_answers_without_importing_altair_the_pdf_writer_or_scipy(tmp_path):
    """The advisor page's modules and its three charts, in fresh interpreters: the first server builds and persists
    the layouts (with Altair); the next one reads them and imports neither Altair nor fpdf2 (half a second), and
    neither server imports SciPy (the accuracy models' one use of it, block_diag, is numpy's)."""
    code = ("import sys; from webapp import charts, fixes, presentation, provenance, ui; charts.layouts(); "
            "print(sorted({'altair', 'fpdf', 'scipy'} & set(sys.modules)))")
    env = {**os.environ, "EOT_CACHE_DIR": str(tmp_path)}
    imported = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1] for _ in range(2)]
    assert imported == ["['altair']", "[]"]


def test_each_chart_carries_its_own_data_and_the_recommended_option_in_bold(advisor):
    """The layouts are memoised: two different answers must still give two charts of their own."""
    small = advisor.advise(Questionnaire(n_classes=5, images_per_class=3, hardware="cpu_2core"), Assumptions())
    large = advisor.advise(Questionnaire(n_classes=5, images_per_class=300, hardware="h100",
                                         budget_wall_time_h=2.0), Assumptions())
    for one in (small, large):
        k = one.questionnaire.images_per_class
        curves = charts.learning_curves(one.curves, k)
        assert curves["datasets"]["your_k"] == [{"k": k}] and f"your k = {k:,}" in str(curves["title"])
        assert {row["acc_median"] for row in curves["datasets"]["curves"]} == set(one.curves["acc_median"])
        cost = charts.accuracy_vs_cost(one.options, "time_h", one.questionnaire.budget_wall_time_h, one.recommended)
        rows = sorted(cost["datasets"]["options"], key=lambda row: row["rank"])
        assert [row["rank"] for row in rows] == list(range(len(one.options)))
        assert [row["acc_median"] for row in rows] == sorted(one.options["acc_median"], reverse=True)
        bold = cost["hconcat"][0]["layer"][0]["encoding"]["y"]["axis"]["labelFontWeight"]["expr"]
        recommended = charts._names(one.options[one.options["option"] == one.recommended])[0]
        assert bold == f"datum.value == {json.dumps(recommended)} ? 'bold' : 'normal'"
        assert ("budget" in cost["datasets"]) == (one.questionnaire.budget_wall_time_h is not None)
    for costs in (charts.cost_breakdown(small.options), charts.cost_breakdown(large.options, large.questionnaire.budgets)):
        panels = sorted({(row["panel_rank"], row["panel"]) for row in costs["datasets"]["costs"]})
        assert [panel for _, panel in panels][0] == "Money (USD)" and len(panels) == 5


def test_time_axes_use_a_unit_people_read():
    import pandas as pd

    assert charts.time_unit(pd.Series([10 / 3600]))[0] == "s"
    assert charts.time_unit(pd.Series([0.5]))[0] == "min"
    assert charts.time_unit(pd.Series([3.0]))[0] == "h"


def test_budget_checks_and_failures_name_the_component_and_the_fix(advice):
    checks = budget_checks(advice)
    assert list(checks["name"]) == ["budget_money_usd", "budget_co2_kg"]
    co2 = checks.set_index("name").loc["budget_co2_kg"]
    assert not co2["passes"] and "grid" in co2["component"]  # a microgram of CO₂ cannot be met
    failures = budget_failures(advice)
    assert set(failures["option"]) == set(advice.options.loc[~advice.options["feasible"], "option"])
    assert failures["component"].str.len().gt(0).all() and failures["fix_field"].str.len().gt(0).all()


def test_a_hint_finds_the_value_that_fits_and_the_advisor_agrees(advisor):
    advice = advisor.advise(Questionnaire(n_classes=20, images_per_class=500, hardware="t4", budget_money_usd=50.0))
    hint = next(h for h in fixes.hints(advisor, advice) if h.budget == "budget_money_usd")
    assert hint.kind == "assumption" and hint.field == "hourly_rate_usd" and 0 < hint.value < 60
    fixed = advisor.advise(advice.questionnaire, Assumptions(hourly_rate_usd=hint.value))
    assert "money" not in fixed.recommended_row["violations"]
    tiny = advisor.advise(Questionnaire(n_classes=5, images_per_class=3, hardware="cpu_laptop", budget_co2_kg=1e-7))
    region = next(h for h in fixes.hints(advisor, tiny) if h.budget == "budget_co2_kg")
    assert region.kind == "answer" and region.field == "region" and region.value
    assert advisor.advise(Questionnaire(n_classes=5, images_per_class=3, hardware="cpu_laptop", budget_co2_kg=1e-7,
                                        region=region.value)).feasible_exists


def test_tables_and_the_csv_name_options_for_people_and_keep_the_id_in_one_column(advice):
    table = options_table(advice.options)
    assert not INTERNAL_ID.search(table.to_csv()), INTERNAL_ID.search(table.to_csv())
    assert {"Pareto front", "Working resolution", "CO₂ (kg)", "Energy with PUE (kWh)"} <= set(table.columns)
    assert all(" " in column or column[0].isupper() for column in table.columns)  # no snake_case headings
    csv = options_csv(advice.options)
    assert list(csv["Option id"]) == list(advice.options["option"])
    assert not INTERNAL_ID.search(csv.drop(columns="Option id").to_csv())
    assert not any("_" in column for column in csv.columns)


def test_the_charts_render_in_worker_processes_and_the_server_process_never_loads_the_renderer(tmp_path):
    """vl-convert holds the GIL while it renders: the report's charts render in the renderer's processes, so the
    server process (here a fresh interpreter) never imports it, and each PNG is the one rendering in-process gives."""
    spec = json.dumps({"data": {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 1}]}, "mark": "line",
                       "encoding": {"x": {"field": "x", "type": "quantitative"},
                                    "y": {"field": "y", "type": "quantitative", "title": "CO₂ (kg)"}}})
    code = ("import json, sys\nfrom webapp import renderer\n"
            f"specs = [json.loads({spec!r}), {{**json.loads({spec!r}), 'mark': 'point'}}]\n"
            "pngs = renderer.Rendering(specs).pngs()\n"
            "open(sys.argv[1], 'wb').write(pngs[0]); open(sys.argv[2], 'wb').write(pngs[1])\n"
            "print('vl_convert' in sys.modules, all(p.startswith(b'\\x89PNG') for p in pngs), pngs[0] != pngs[1])")
    paths = [tmp_path / "line.png", tmp_path / "point.png"]
    out = subprocess.run([sys.executable, "-c", code, *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "False True True"
    assert paths[0].read_bytes() == renderer.render_png(json.loads(spec))


def test_the_renderer_processes_exit_with_the_server_process_even_when_it_is_killed():
    """A stopped server must not leave its renderer processes running (about 90 MB each)."""
    import signal
    import time

    code = ("import os, subprocess, time\nfrom webapp import renderer\nrenderer.warm_up()\n"
            "print(subprocess.run(['pgrep', '-P', str(os.getpid())], capture_output=True, text=True).stdout.split(),"
            " flush=True)\ntime.sleep(120)")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    children = json.loads(server.stdout.readline().replace("'", '"'))
    assert len(children) >= 3  # the renderer processes (and multiprocessing's resource tracker)
    server.send_signal(signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{child}").exists() for child in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [child for child in children if Path(f"/proc/{child}").exists()]


def test_without_renderer_processes_the_report_renders_its_charts_in_this_process(advice, tables, monkeypatch,
                                                                                    caplog):
    def cannot_spawn():
        raise OSError("no processes here")

    monkeypatch.setattr(renderer, "start", cannot_spawn)
    pdf = report.personal_report(advice, report.chart_specs(advice), evidence_summary(tables), Assumptions(),
                                 ASSUMPTION_SOURCES)
    assert sum(len(page.images) for page in PdfReader(io.BytesIO(pdf)).pages) == 3
    assert "rendering in the server process" in caplog.text


def test_the_personal_report_names_options_failures_resolution_and_every_source(advice, tables, advisor):
    provenance = sources_table(advisor.costs_.references_, len(tables["runs"]))
    pdf = report.personal_report(advice, report.chart_specs(advice), evidence_summary(tables), Assumptions(),
                                 ASSUMPTION_SOURCES, "http://eot.example.org/?n_classes=5", provenance)
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert len(reader.pages) >= 2
    assert f"Recommended: {advice.recommended_row['label']}" in flat and not INTERNAL_ID.search(text)
    assert "CO₂" in text and "estimated" in text and "FAIL" in text  # the CO₂ budget check
    assert "Every option that breaks a budget" in flat and "What breaks it" in flat
    assert "Accuracy was measured at" in flat and "Working resolution" in flat
    assert "Sources" in text and "H200 pilot" in flat and "GPU-NOTES" not in text
    assert "with PUE" in flat
    assert "No probe of your images yet" in flat and "with its fine-tuning pilot" in flat  # what measuring would do
    assert sum(len(page.images) for page in reader.pages) >= 1  # the charts
    assert not re.search(rb" Tw\b", reader.pages[0].get_contents().get_data())  # left-aligned, not justified


def test_the_answers_say_how_options_are_ranked_in_words():
    answers = answers_table(Questionnaire(rank_by="cautious")).set_index("Question")["Answer"]
    assert answers["Rank options by"] == "accuracy reached 3 times in 4"


def test_a_report_table_writes_numbers_and_flags_as_people_read_them():
    document = report._Document("Numbers")
    document.add_page()
    document.table(pd.DataFrame({"option": ["a", "b"], "accuracy": [0.8512, 12500.0], "feasible": [True, False]}))
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(document.bytes())).pages).split())
    assert "0.85" in text and "12,500" in text and "yes" in text and "no" in text


def test_the_guidelines_document_carries_every_guideline_its_numbers_and_the_sources(tables, advisor):
    from recommender.guidelines import derive

    guidelines = derive(tables)
    document = report.guidelines_document(guidelines, evidence_summary(tables),
                                          sources_table(advisor.costs_.references_))
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)
    for guideline in guidelines:
        assert readable(guideline.title) in text
    assert "H200 pilot" in " ".join(text.split()) and not INTERNAL_ID.search(text)
    lone, = numbers_tables({"medical": {"crossover k": None, "gaps": {5: 7.5}}, "runs": 6})
    assert list(lone["Number"]) == ["medical / crossover k", "medical / gaps", "runs"]
    assert list(lone["Value"]) == ["none", "5: 7.5", "6"]


def test_a_guidelines_records_read_as_a_table_with_a_column_per_field():
    """One row per dataset and a column per figure, not six figures squeezed into one cut-off cell; a figure a
    dataset lacks is blank, and a lone group of numbers stays one row."""
    lone, records = numbers_tables({
        "medical": {"brain": {"crossover k": 5, "gain (points)": 14.1},
                    "pbc": {"crossover k": 5, "gain (points)": 15.2, "budget x2 change (points)": 0.44}},
        "textures": {"dtd": {"crossover k": None, "gain (points)": -2.3}},
        "Pearson r": 0.82, "points by trials": {1: -0.4, 2: 0.0}})
    assert list(lone["Number"]) == ["Pearson r", "points by trials"]
    assert list(lone["Value"]) == ["0.82", "1: -0.4, 2: 0"]
    assert list(records.columns) == ["Case", "crossover k", "gain (points)", "budget x2 change (points)"]
    assert records.values.tolist() == [["medical / brain", "5", "14.1", ""], ["medical / pbc", "5", "15.2", "0.44"],
                                       ["textures / dtd", "none", "-2.3", ""]]


def test_sources_name_the_gpu_pilot_while_the_evidence_has_no_gpu_runs(advisor):
    from recommender.costs import GPU_PILOT_SOURCE

    table = sources_table(advisor.costs_.references_)
    gpu = table.set_index("What").loc["GPU time and energy", "Source"]
    if advisor.costs_.references_["gpu"]["basis"] == GPU_PILOT_SOURCE:
        assert GPU_PILOT_SOURCE in gpu
    assert table["What"].str.startswith("Hardware profile: ").sum() >= 5
    assert not table["Source"].str.contains(r"recommender/|\.py\b|GPU-NOTES").any()


def test_the_evaluation_reads_with_human_column_names():
    import pandas as pd

    regret, predictions = evaluation_tables(pd.DataFrame({
        "dataset": ["elpv"], "recommender_regret": [0.5], "always_ft_regret": [9.0], "mae_probe": [3.017],
        "coverage_probe": [0.851], "width_probe": [7.614], "coverage_questionnaire": [0.8]}))
    assert regret.values.tolist() == [["elpv", "0.5", "9"]]
    assert list(regret.columns) == ["Held-out dataset", "The recommender with the probe", "Always fine-tune"]
    assert list(predictions.columns) == ["Held-out dataset", "With the probe: error", "With the probe: coverage",
                                         "With the probe: width", "The description only: coverage"]
    assert predictions.values.tolist() == [["elpv", "3.02", "85%", "7.61", "80%"]]
    summary = evaluation_summary({"held_out_datasets": 8, "mean_regret_points": {"recommender": 0.34},
                                  "probe_informed": {"interval_coverage": 0.831}})
    assert list(summary["Measure"]) == ["Held-out datasets", "Mean regret (accuracy points below the best): the "
                                        "recommender with the probe", "With the probe: 80% interval coverage"]
    assert list(summary["Value"]) == ["8", "0.34", "83%"]


def test_the_evaluation_headline_is_two_small_tables_and_a_sentence():
    """The Method page leads with the stored evaluation's figures a reader compares, not its every key."""
    from recommender.evaluate import load_summary

    summary = load_summary()
    regret = regret_by_policy(summary).set_index("Policy")
    assert list(regret.columns) == ["All decisions", "Compute <= 60 s", "Human <= 4 h", "No budget", "Budgets broken"]
    assert regret.loc["The recommender with the probe", "All decisions"] == format_number(
        summary["mean_regret_points"]["recommender"])
    assert regret.loc["Always extract", "No budget"] == format_number(
        summary["mean_regret_by_scenario_points"]["no budget"]["always_fe"])
    assert regret.loc["Always fine-tune", "Budgets broken"] == format_number(summary["budget_violations"]["always_ft"])
    quality = prediction_quality(summary).set_index("Known")
    assert list(quality.index) == ["The description only", "With the probe: every option", "With the probe: extraction",
                                   "With the probe: fine-tuning",
                                   "With the probe and its fine-tuning pilot: every option",
                                   "With the probe and its fine-tuning pilot: extraction",
                                   "With the probe and its fine-tuning pilot: fine-tuning"]
    assert quality.loc["With the probe: extraction", "Accuracy error (points)"] == format_number(
        summary["probe_informed"]["extraction_options"]["accuracy_mae_points"])
    assert quality.loc["The description only", "80% interval coverage"] == (
        f"{summary['questionnaire_only']['interval_coverage']:.0%}")
    share = round(summary["share_datasets_recommender_at_or_below_every_baseline"] * summary["held_out_datasets"])
    assert f"on {share} of the {summary['held_out_datasets']} held-out datasets with the probe (" in (
        baseline_share_sentence(summary))
    compared = baseline_comparison(summary).set_index(["Recommender", "Against"])
    row = compared.loc[("The recommender with the probe", "The best fixed option")]
    versus = summary["versus_baselines"]["recommender"]["best_fixed"]
    assert sum(int(n) for n in row["Held-out datasets: lower / same / higher regret"].split(" / ")) == (
        summary["held_out_datasets"])
    assert row["Mean difference (points)"] == format_number(versus["mean_difference_points"])
    assert row["90% interval (points)"] == (f"{format_number(versus['difference_90_low_points'])} to "
                                            f"{format_number(versus['difference_90_high_points'])}")
    assert len(baseline_comparison(summary, "versus_baselines_within_budget")) == len(compared) == 12
    assert baseline_share_sentence({}) == "" and prediction_quality({}).empty and regret_by_policy({}).empty
    assert baseline_comparison({}).empty
    one_run = summary["one_run_each"]
    assert one_run["decisions"] > 0
    sentence = one_run_sentence(summary)
    assert f"would have lost {format_number(one_run['mean_regret_points']['one_run_each'])} points" in sentence
    assert f"on the {one_run['decisions']} decisions" in sentence and one_run_sentence({}) == ""


def test_amounts_are_given_in_one_unit_system_with_times_for_humans():
    assert format_amount("time_h", 10 / 3600) == "10 s"
    assert format_amount("time_h", 0.5) == "30.0 min"
    assert format_amount("time_h", 1e-6) == "< 0.1 s"  # never "0.0 s"
    assert format_amount("human_hours", 2.0) == "2.0 h"
    assert format_amount("energy_kwh", 0.0042) == "0.0042 kWh"
    assert format_amount("energy_kwh_with_pue", 0.0000056) == "0.0000056 kWh"
    assert format_amount("co2_kg", 0.25) == "0.25 kg"
    assert format_amount("total_usd", 1234.5) == "$1,234.50"
    assert readable("2.07e-06 kWh, fe_fne · mobilenetv2_100 (recommender/hardware.py)") == \
        "0.00000207 kWh, Feature extraction — MobileNetV2, Full-Network Embedding + linear SVM"


def test_a_link_round_trips_answers_and_edited_assumptions_and_names_bad_values():
    probe = encode_probe({("fe_linear", "mobilenetv2_100"): {2: 0.4, 5: 0.61}})
    answers = Questionnaire(n_classes=7, images_per_class=3, hardware="l4", budget_energy_kwh=0.5,
                            working_resolution_px=160, probe=probe)
    edited = Assumptions(pue=1.2, ft_trials=4)
    query = {**answers.to_query(), **assumptions_to_query(edited)}
    assert questionnaire_from_link(query) == (answers, [])
    assert assumptions_from_link(query) == (edited, [])
    assert set(assumptions_to_query(Assumptions())) == set()

    parsed, messages = questionnaire_from_link({"n_classes": "7", "domain": "space", "images_per_class": "-1"})
    assert parsed == Questionnaire(n_classes=7) and len(messages) == 2
    parsed, messages = assumptions_from_link({"a_pue": "0.3", "a_ft_trials": "2.5", "a_hourly_rate_usd": "80"})
    assert parsed == Assumptions(hourly_rate_usd=80.0) and len(messages) == 2


def test_a_shared_link_uses_the_public_address_with_a_path(monkeypatch):
    answers = Questionnaire(n_classes=7)
    monkeypatch.delenv(PUBLIC_URL_ENV, raising=False)
    assert share_link(answers, Assumptions(), seen="http://localhost:8599").startswith("http://localhost:8599/?")
    assert share_link(answers, Assumptions(), seen="").startswith("/?n_classes=7")
    monkeypatch.setenv(PUBLIC_URL_ENV, "https://eot.example.org/tools/eot")
    link = share_link(answers, Assumptions(), seen="http://localhost:8599")
    assert link.startswith("https://eot.example.org/tools/eot/?n_classes=7&")


def test_without_a_probe_the_advice_says_what_a_probe_did_to_decisions():
    narrow = {"probed": False, "width_now_points": 35.2, "width_with_probe_extraction_points": 7.4,
              "width_with_probe_fine_tuning_points": 15.9, "width_with_pilot_fine_tuning_points": 10.1}
    evaluation = {"mean_regret_points": {"recommender_without_probe": 1.13, "best_fixed": 0.98, "recommender": 0.64,
                                         "recommender_with_pilot": 0.63}}
    sentence = probe_would_narrow_sentence(narrow, "probe", "tick the pilot", evaluation)
    assert "about 35 points wide" in sentence and "about 7 points for extraction and 16 for fine-tuning" in sentence
    assert ("decisions lost 1.1 points of accuracy against hindsight on average from the description alone, 1.0 "
            "always taking the one option best on average, and 0.6 with the probe.") in sentence
    assert "hindsight" not in probe_would_narrow_sentence(narrow, "probe", "tick the pilot")  # not evaluated yet


def test_with_a_probe_the_advice_says_when_the_families_are_undecided_and_what_the_pilot_did():
    narrow = {"probed": True, "width_now_points": 22.4, "width_with_pilot_fine_tuning_points": 12.6,
              "best_extraction_interval_pct": (70.1, 79.6), "best_fine_tuning_interval_pct": (66.0, 88.3),
              "families_overlap": True}
    evaluation = {"mean_regret_points": {"recommender": 1.55, "recommender_with_pilot": 0.86}}
    undecided = probe_would_narrow_sentence(narrow, "probe", "tick the pilot", evaluation)
    assert "not yet told apart" in undecided and "70–80%" in undecided and "66–88%" in undecided
    assert "from about 22 to about 13 points" in undecided and "1.6 points" in undecided and "0.9 with" in undecided
    assert "1.6 points" not in probe_would_narrow_sentence(narrow, "probe", "tick the pilot")  # not evaluated yet
    decided = probe_would_narrow_sentence({**narrow, "families_overlap": False}, "probe", "tick the pilot", evaluation)
    assert "not yet told apart" not in decided and "would narrow it to about 13 points" in decided
