"""The Streamlit app through streamlit.testing.v1.AppTest, on a snapshot of the shipped evidence."""
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evidence_snapshot import snapshot_db
from recommender.evidence import REGENERATE_COMMAND, EvidenceError, load_tables
from study.grid_file import evidence_grids

APP = str(Path(__file__).resolve().parent.parent / "webapp" / "main.py")
SUBMIT = "FormSubmitter:questionnaire-Recommend"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return snapshot_db(tmp_path_factory.mktemp("evidence"))


@pytest.fixture
def app(db, monkeypatch):
    monkeypatch.setenv("EOT_DB", str(db))

    def start(query: dict | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update(query or {})
        return at.run()
    return start


def recommendation(at: AppTest) -> str:
    headings = [h.value for h in at.subheader if h.value.startswith("Recommended:")]
    assert len(headings) == 1, [h.value for h in at.subheader]
    return headings[0]


def no_crash(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_submitting_the_form_shows_recommendation_charts_and_downloads(app):
    at = app()
    no_crash(at)
    assert not at.get("vega_lite_chart")
    at.number_input(key="q_n_classes").set_value(6)
    at.number_input(key="q_images_per_class").set_value(5)
    at.selectbox(key="q_domain").set_value("textures")
    at.selectbox(key="q_hardware").set_value("cpu_2core")
    at.number_input(key="q_budget_money_usd").set_value(500.0)
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    assert recommendation(at)
    assert len(at.get("vega_lite_chart")) == 3  # learning curves, accuracy vs cost, cost breakdown
    labels = [button.proto.label for button in at.get("download_button")]
    assert "Download your report (PDF)" in labels and "Download every option (CSV)" in labels
    assert any(("pass" in m.value or "fail" in m.value) and "Money budget" in m.value for m in at.markdown)
    assert at.query_params["n_classes"] == "6" and at.query_params["hardware"] == "cpu_2core"
    assert not any(" · " in s.value or "_" in s.value for s in at.subheader)  # named for people, not by id


def test_a_shared_link_reproduces_the_recommendation(app):
    at = app()
    at.number_input(key="q_images_per_class").set_value(50)
    at.selectbox(key="q_hardware").set_value("a100")
    at.number_input(key="q_budget_human_hours").set_value(4.0)
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    link = {key: value for key, value in at.query_params.items()}
    shared = app(link)
    no_crash(shared)
    assert recommendation(shared) == recommendation(at)
    assert [m.value for m in shared.metric] == [m.value for m in at.metric]
    assert shared.number_input(key="q_images_per_class").value == 50  # the form shows the link's answers


def test_editing_an_assumption_changes_the_costs(app):
    at = app({"n_classes": "10", "images_per_class": "20", "hardware": "t4"})
    no_crash(at)
    money_before = at.metric[1].value
    at.number_input(key="a_hourly_rate_usd").set_value(200.0).run()
    no_crash(at)
    assert at.metric[1].value != money_before
    assert at.query_params["a_hourly_rate_usd"] == "200"
    again = app({key: value for key, value in at.query_params.items()})
    assert again.metric[1].value == at.metric[1].value  # the link carries the edited assumption


@pytest.mark.parametrize("key, value, message", [
    ("q_n_classes", 0, "must be between 2"),
    ("q_images_per_class", -3, "must be between 1"),
    ("q_image_size_px", 10 ** 9, "must be between 8"),
    ("q_budget_co2_kg", -1.0, "a budget must be a positive number"),
])
def test_absurd_answers_give_a_message_not_advice(app, key, value, message):
    at = app()
    at.number_input(key=key).set_value(value)
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    assert any(message in error.value for error in at.error), [e.value for e in at.error]
    assert not at.get("vega_lite_chart")


def test_bad_values_in_a_link_are_named_and_the_rest_still_applies(app):
    at = app({"n_classes": "8", "hardware": "quantum-computer", "region": "atlantis", "colour": "maybe",
              "a_pue": "0.2", "a_hourly_rate_usd": "lots"})
    no_crash(at)
    warnings = " ".join(w.value for w in at.warning)
    for field in ("Hardware", "Electricity grid region", "Colour images", "Power usage effectiveness",
                  "Engineer hourly rate"):
        assert field in warnings, warnings
    assert recommendation(at)
    assert at.number_input(key="q_n_classes").value == 8


def test_an_invalid_assumption_edit_falls_back_to_defaults_with_a_message(app):
    at = app({"n_classes": "10"})
    at.number_input(key="a_pue").set_value(0.5).run()
    no_crash(at)
    assert any("pue" in error.value for error in at.error)
    assert recommendation(at)


def test_a_missing_database_names_the_command_that_regenerates_it(tmp_path, monkeypatch):
    for path in (tmp_path / "missing.duckdb", _empty_db(tmp_path / "empty.duckdb"), _not_a_db(tmp_path / "x.duckdb")):
        monkeypatch.setenv("EOT_DB", str(path))
        at = AppTest.from_file(APP, default_timeout=60).run()
        no_crash(at)
        assert len(at.error) == 1 and REGENERATE_COMMAND in at.error[0].value, [e.value for e in at.error]


def test_an_unreadable_database_keeps_the_app_serving_the_last_good_copy(app, monkeypatch):
    from webapp import ui

    query = {"n_classes": "10", "images_per_class": "20"}
    before = recommendation(app(query))
    ui._read_tables.clear()

    def locked(*args, **kwargs):
        raise EvidenceError("data/study.duckdb is in use and no readable snapshot could be taken")
    monkeypatch.setattr(ui, "load_tables", locked)
    at = app(query)
    no_crash(at)
    assert any("cannot be read right now" in w.value for w in at.warning)
    assert recommendation(at) == before
    ui._read_tables.clear()


def test_the_other_pages_render_with_charts_tables_and_downloads(app, db):
    at = app()
    at.switch_page("pages/evidence.py").run()
    no_crash(at)
    assert len(at.get("vega_lite_chart")) == 2 and at.dataframe
    runs = load_tables(db, ("runs",))["runs"]

    def shown(grids: set[str], method: str | None = None) -> str:
        return f"{(runs['grid'].isin(grids) & (method is None or runs['method'] == method)).sum():,} of {len(runs):,}"

    evidence = evidence_grids()
    assert shown(evidence) != shown(set(runs["grid"]))  # the shipped database holds the check grids' runs too
    assert at.metric[0].value == shown(evidence)  # the evidence only, at first
    assert set(at.dataframe[0].value["Grid"]) == evidence & set(runs["grid"])
    at.multiselect(key="f_grid").select("cpu-smoke").run()
    no_crash(at)
    assert at.metric[0].value == shown(evidence | {"cpu-smoke"})
    at.multiselect(key="f_method").select("fe_linear").run()
    no_crash(at)
    assert at.metric[0].value == shown(evidence | {"cpu-smoke"}, "fe_linear")
    assert [b.proto.label for b in at.get("download_button")] == ["Download these runs (CSV)"]

    at.switch_page("pages/guidelines.py").run()
    no_crash(at)
    assert at.subheader and "Download the guidelines (PDF)" in [b.proto.label for b in at.get("download_button")]

    at.switch_page("pages/method.py").run()
    no_crash(at)
    assert any("estimate" in w.value for w in at.warning)
    assert any("Decision quality" in s.value for s in at.subheader)
    assert {"All decisions", "Within a budget"} <= {tab.label for tab in at.tabs}
    compared = [table.value for table in at.table if "Against" in table.value.index.names]
    assert len(compared) == 2 and all(len(table) == 12 for table in compared)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_the_image_size_changes_the_compute_cost_and_the_advice_says_where_accuracy_was_measured(app):
    at = app({"n_classes": "6", "images_per_class": "50", "hardware": "cpu_2core", "image_size_px": "128"})
    no_crash(at)
    small = metric(at, "Compute time"), next(c.value for c in at.caption if c.value.startswith("compute $"))
    assert "Working resolution 128 px" in texts(at) and "Accuracy was measured at 128 px" in texts(at)
    at.number_input(key="q_image_size_px").set_value(512)
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    large = metric(at, "Compute time"), next(c.value for c in at.caption if c.value.startswith("compute $"))
    assert large != small, (small, large)
    assert "Working resolution 224 px" in texts(at) and "your 512 px images downscaled" in texts(at)
    assert "Accuracy was measured at 128 px" in texts(at) and "by pixel count" in texts(at)

    at.number_input(key="q_working_resolution_px").set_value(448)  # the user's own choice, 4x the pixels
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    assert "Working resolution 448 px" in texts(at) and "your choice" in texts(at)
    assert at.query_params["working_resolution_px"] == "448"


def test_a_broken_budget_names_its_component_and_a_button_changes_the_field_that_fits_it(app):
    at = app({"n_classes": "20", "images_per_class": "500", "hardware": "t4", "budget_money_usd": "50"})
    no_crash(at)
    assert any("fail" in m.value and "broken by labour" in m.value for m in at.markdown), texts(at)
    header = next(m.value for m in at.markdown if re.search(r"broken by \d+ of \d+ options", m.value))
    listed = next(m.value for m in at.markdown if m.value.startswith("- ") and "from labour" in m.value)
    assert listed.count("from labour") == int(re.search(r"broken by (\d+) of", header).group(1))  # every one
    fix = next(b for b in at.button if b.label.startswith("Set the engineer hourly rate to"))
    fix.click().run()
    no_crash(at)
    assert "a_hourly_rate_usd" in at.query_params
    assert any("pass" in m.value and "Money budget" in m.value for m in at.markdown), texts(at)


def test_without_a_probe_the_advice_says_how_much_one_would_narrow_it(app):
    at = app({"n_classes": "5", "images_per_class": "3", "hardware": "cpu_laptop"})
    no_crash(at)
    assert any("would narrow it to about" in i.value for i in at.info), [i.value for i in at.info]
    assert any("from the description alone" in i.value and "with the probe." in i.value for i in at.info)


def test_fine_tuning_options_are_named_for_people(app, db):
    from recommender.advise import Advisor
    from recommender.evidence import load_tables
    from recommender.questionnaire import Questionnaire
    from webapp.ui import TABLES

    query = {"n_classes": "10", "images_per_class": "50", "hardware": "cpu_2core"}
    advice = Advisor().fit(load_tables(db, tables=TABLES)).advise(Questionnaire.from_query(query))
    if not advice.options["method"].str.startswith("ft_").any():
        pytest.skip("the evidence has no fine-tuning runs the advisor uses yet (they arrive over hours)")
    at = app(query)
    no_crash(at)
    at.toggle(key="all_curves").set_value(True).run()
    shown = texts(at) + " ".join(s.value for s in at.subheader)
    assert "Fine-tuning — " in shown and not re.search(r"\bft_(full|partial)\b", shown)


def _empty_db(path: Path) -> Path:
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR)")
    return path


def _not_a_db(path: Path) -> Path:
    path.write_text("not a database")
    return path


def _flower_folder(tmp_path: Path) -> Path:
    """A user's folder of real photos: 3 classes, 12 each."""
    import shutil

    from study.datasets import shared_datasets_root

    folder = tmp_path / "mine"
    for cls in ("daisy", "rose", "tulip"):
        (folder / cls).mkdir(parents=True)
        for source in sorted((shared_datasets_root() / "flowers5" / "train" / cls).glob("*.jpg"))[:12]:
            shutil.copy(source, folder / cls)
    return folder


def test_probing_a_local_folder_fills_the_form_and_shows_what_changed(app, tmp_path):
    folder = _flower_folder(tmp_path)
    at = app()
    at.text_input(key="probe_folder").set_value(str(folder)).run()
    next(b for b in at.button if b.label == "Probe my images").click().run()
    no_crash(at)
    assert any("feature-extraction options" in s.value for s in at.success), [s.value for s in at.success]
    measured = at.text_input(key="q_probe").value
    assert measured and "=" in measured and at.number_input(key="q_n_classes").value == 3
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    assert recommendation(at)
    assert any("What your probe changed" in m.value for m in at.markdown)
    assert at.query_params["probe"] == measured
    assert not any("No probe of your images yet" in i.value for i in at.info)  # the probe is there
    assert any("fine-tuning pilot" in i.value and "would narrow" in i.value for i in at.info)  # not its pilot


def test_probing_a_folder_with_one_class_gives_a_message(app, tmp_path):
    (tmp_path / "only" / "daisy").mkdir(parents=True)
    at = app()
    at.text_input(key="probe_folder").set_value(str(tmp_path / "only")).run()
    next(b for b in at.button if b.label == "Probe my images").click().run()
    no_crash(at)
    assert any("could not use these images" in e.value for e in at.error)


def test_a_reprobe_of_the_study_datasets_refits_the_advisor(db, tmp_path):
    """The evidence's fingerprint (what the fitted advisor is cached under) changes when the probes change, not
    only when runs are added: re-probing the study datasets must not leave a running app on the old fit."""
    import shutil

    import duckdb

    from webapp.ui import _read_tables, load_evidence

    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    before = load_evidence(str(copy)).fingerprint
    _read_tables.clear()  # what the read cache's time-to-live does
    assert load_evidence(str(copy)).fingerprint == before
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE probe_curves SET created_at = '2999-01-01T00:00:00Z' WHERE k = 2")
    _read_tables.clear()
    assert load_evidence(str(copy)).fingerprint != before


def test_the_probe_panel_runs_the_finetuning_pilot_when_asked(app, tmp_path, monkeypatch):
    from dataclasses import replace

    from study import grid

    recipe = grid.recipe_of("cpu")
    # A short schedule of the same recipe: the wiring, not the accuracy (tests/test_probe.py checks what it trains on).
    monkeypatch.setattr(grid, "recipe_of", lambda name: replace(recipe, min_steps=3, epochs=1, min_epochs=1,
                                                                evaluations=1))
    at = app()
    at.text_input(key="probe_folder").set_value(str(_flower_folder(tmp_path)))
    at.checkbox(key="probe_pilot").check().run()
    next(b for b in at.button if b.label == "Probe my images").click().run()
    no_crash(at)
    assert any("and a fine-tuning pilot at k=10" in s.value for s in at.success), [s.value for s in at.success]
    assert "ft_full.mobilenetv2_100=10:" in at.text_input(key="q_probe").value
    at.button(key=SUBMIT).click().run()
    no_crash(at)
    assert recommendation(at)
    assert not any("would narrow it" in i.value for i in at.info)  # probe and pilot are both there


def test_the_servers_start_imports_what_the_first_page_needs_in_the_background():
    """app.py's lifespan (what ``streamlit run app.py`` runs when the server starts) warms the page's imports, in a
    fresh interpreter: pandas and the recommender are imported once the page script's ``wait`` returns, Altair and
    the PDF writer are not (the first answer does not need them)."""
    import subprocess
    import sys

    code = ("import asyncio, sys\n"
            "import app\n"
            "from webapp import warm\n"
            "before = 'pandas' in sys.modules\n"
            "async def serve():\n"
            "    async with app.lifespan(app.app):\n"
            "        warm.wait()\n"
            "asyncio.run(serve())\n"
            "print(before, sorted({'pandas', 'duckdb', 'webapp.ui', 'recommender.advise', 'altair', 'fpdf'}"
            " & set(sys.modules)))")
    root = Path(APP).parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False ['duckdb', 'pandas', 'recommender.advise', 'webapp.ui']"
