"""Sanity checks on the shipped evidence (data/study.duckdb): if these fail, the evidence is wrong."""
import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from study.convergence import (TOLERANCE_POINTS, budget_gained_sentence, budget_gains, budget_pairs, load,
                               report)
from study.evidence import (accuracy_table, best_by_family, crossovers, matched_cost_ratios, pilot_table, probe_machines, render,
                            seed_spread, verdict)
from study.grid_file import evidence_grids
from study.markdown import signed
from study.resolution import REFERENCE_PX, best_upscale, by_resolution, resolution_pairs, upscale_rule
from study.spec import FinetuneConfig
from study.store import DEFAULT_DB

PROVENANCE = ["run_id", "grid", "dataset", "backbone", "method", "k_label", "seed", "resolution", "accuracy",
              "balanced_accuracy", "macro_f1", "total_s", "energy_j", "energy_source", "images_processed",
              "peak_memory_mb", "device_type", "hardware_id", "spec", "python_version", "torch_version",
              "timm_version", "sklearn_version", "numpy_version", "git_commit", "started_at", "finished_at"]


@pytest.fixture(scope="module")
def runs():
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        return con.execute("SELECT * FROM runs").df()


def test_every_run_has_its_provenance(runs):
    assert len(runs) >= 250 and runs["dataset"].nunique() >= 3
    assert runs[PROVENANCE].notna().all().all()
    assert not runs["git_commit"].isin(["unknown", ""]).any()
    assert set(runs.loc[runs["device_type"] == "cpu", "energy_source"]) == {"estimated"}
    assert set(runs.loc[runs["device_type"] == "cuda", "energy_source"]) <= {"nvml"}
    assert runs["run_id"].is_unique


def test_accuracy_rises_with_images_per_class(runs):
    """Per (dataset, backbone, method, resolution): the curve trends up (noise allowed between neighbours)."""
    curves = runs[runs["pretrained"]].groupby(["dataset", "backbone", "method", "resolution", "images_per_class"])[
        "accuracy"].mean().reset_index()
    correlations, rises = [], []
    for key, curve in curves.groupby(["dataset", "backbone", "method", "resolution"]):
        if curve["images_per_class"].nunique() < 3:
            continue
        correlations.append(spearmanr(curve["images_per_class"], curve["accuracy"]).statistic)
        curve = curve.sort_values("images_per_class")
        rises.append(curve["accuracy"].iloc[-1] > curve["accuracy"].iloc[0])
    assert len(correlations) >= 10
    assert all(rises)
    assert np.mean(np.array(correlations) > 0.7) >= 0.9, correlations


def test_pretrained_features_beat_random_init(runs):
    random_init = runs[~runs["pretrained"]].assign(backbone=lambda r: r["backbone"].str.removesuffix("_random_init"))
    assert random_init["dataset"].nunique() >= 8, "the cpu grid's random-init baseline is missing"
    keys = ["dataset", "backbone", "method", "k_label", "seed", "resolution"]
    matched = random_init.merge(runs[runs["pretrained"]], on=keys, suffixes=("_random", "_pretrained"))
    gain = matched["accuracy_pretrained"] - matched["accuracy_random"]
    assert len(matched) >= 16 and gain.mean() > 0.1 and (gain > 0).mean() >= 0.8


def test_fine_tuning_costs_more_time_and_energy_than_extraction(runs):
    both = matched_cost_ratios(runs[runs["grid"].isin(evidence_grids())])
    assert len(both) >= 6
    time_ratio, energy_ratio = both["time_ratio"], both["energy_ratio"]
    assert time_ratio.median() > 2 and energy_ratio.median() > 2
    # Single runs can invert where the shared extraction ran on a loaded machine (data/EVIDENCE.md shows the
    # throughput spread); most matched runs must still show fine-tuning as the dearer option.
    assert (time_ratio > 1).mean() >= 0.9 and (energy_ratio > 1).mean() >= 0.9


def test_cost_ratios_pair_runs_of_one_machine_only(runs):
    """A fine-tuning run on a slower CPU than its extraction twin would inflate the ratio by the machines' gap."""
    pair = matched_cost_ratios(runs).iloc[0]
    keys = ["dataset", "backbone", "k_label", "seed", "resolution", "hardware_id"]
    twins = runs[(runs[keys] == pair[keys]).all(axis=1) & runs["method"].isin(["fe_linear", "ft_full"])]
    assert len(matched_cost_ratios(twins)) == 1
    moved = twins.assign(hardware_id=np.where(twins["method"] == "ft_full", "another machine", twins["hardware_id"]))
    assert matched_cost_ratios(moved).empty


def test_evidence_report_renders_from_the_database():
    text = render(DEFAULT_DB)
    assert "## Accuracy by method x images per class" in text and "estimated" in text


def test_a_k_the_dataset_capped_at_its_whole_pool_is_shown_as_its_max(runs):
    """DTD's k = 100 ran on its 80 images a class, the same as its max: one column, with every seed of the cell."""
    largest = runs[runs["k_label"] == "max"].groupby("dataset")["images_per_class"].max()
    capped = runs[(runs["k_label"] != "max") & (runs["images_per_class"] == runs["dataset"].map(largest))]
    dataset, label = capped[["dataset", "k_label"]].iloc[0]
    table = accuracy_table(runs, dataset).set_index("option")
    assert label not in table.columns and "max" in table.columns
    of_dataset = runs[(runs["dataset"] == dataset) & (runs["images_per_class"] == largest[dataset])]
    for (method, backbone, resolution), cell in of_dataset.groupby(["method", "backbone", "resolution"]):
        shown = table.loc[f"{method} · {backbone} @{resolution}", "max"]
        assert shown == f"{100 * cell['accuracy'].mean():.1f} ({cell['seed'].nunique()})"


def test_the_study_reports_read_the_database_while_a_run_holds_it_for_writing(tmp_path, capsys):
    """A study run holds the file's write lock; the reports wait, then read a snapshot copy, as the app does
    (they had failed with DuckDB's lock error)."""
    import subprocess
    import sys

    from evidence_snapshot import snapshot_db
    from study import resolution

    path = snapshot_db(tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); sys.stdin.read()", str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(path), read_only=True)
        assert "Evidence shipped in data/study.duckdb" in render(path)
        assert resolution.main(["--db", str(path)]) == 0 and "224" in capsys.readouterr().out
        assert load(path)["trials"]["run_id"].isin(load(DEFAULT_DB)["runs"]["run_id"]).all()
    finally:
        writer.communicate("", timeout=30)


@pytest.mark.parametrize("module", ["study.evidence", "study.convergence", "study.resolution"])
def test_a_report_on_a_missing_database_says_which_command_makes_it(module, tmp_path, capsys):
    import importlib

    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(["--db", str(tmp_path / "none.duckdb")])
    message = capsys.readouterr().err
    assert stopped.value.code == 1 and not (tmp_path / "none.duckdb").exists()
    assert "No evidence database at" in message and "python -m study.run --grid cpu-smoke" in message


def test_every_study_dataset_has_its_probe_and_pilot_with_provenance():
    """The pilots the recommender learns a user's pilot from: one run per study dataset, beside its probe, with the
    commit and date; the evidence report's table recomputes the gain over the best probed extraction."""
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        probes = con.execute("SELECT * FROM probe_curves").df()
        datasets = set(con.execute("SELECT DISTINCT dataset FROM runs").df()["dataset"])
    pilots = probes[probes["method"] == "ft_full"]
    assert set(pilots["dataset"]) == set(probes["dataset"]) == datasets
    assert (pilots["repeats"] == 1).all() and (pilots["k"] == 20).all() and pilots["accuracy"].between(0, 1).all()
    assert not probes["git_commit"].str.endswith("+dirty").any() and probes["created_at"].notna().all()
    table = pilot_table(probes).set_index("dataset")
    at_20 = probes[(probes["k"] == 20) & (probes["method"] != "ft_full")].groupby("dataset")["accuracy"].max()
    assert table["pilot_gain_points"].to_numpy() == pytest.approx(
        (100 * (pilots.set_index("dataset")["accuracy"] - at_20)).loc[table.index].to_numpy(), abs=0.051)
    assert "## The probe's fine-tuning pilot on the study datasets" in render(DEFAULT_DB)


def test_a_probe_names_the_machine_it_ran_on_or_says_it_was_not_recorded():
    hardware = pd.DataFrame({"hardware_id": ["a"], "cpu_model": ["AMD EPYC (AVX2)"]})
    probes = pd.DataFrame({"dataset": ["x", "x", "y"], "hardware_id": ["a", "a", None]})
    assert probe_machines(probes, hardware).to_dict() == {"x": "AMD EPYC (AVX2)", "y": "not recorded"}
    # a database from before probes recorded their machine
    assert probe_machines(probes.drop(columns="hardware_id"), hardware).to_dict() == {"x": "not recorded",
                                                                                      "y": "not recorded"}


def test_every_fine_tuning_run_stores_its_trials_and_one_selected():
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        counts = con.execute("""SELECT r.run_id, r.n_trials, count(t.run_id) AS stored, sum(t.selected::INT) AS chosen
                                FROM runs r LEFT JOIN trials t USING (run_id)
                                WHERE r.method LIKE 'ft_%' GROUP BY ALL""").df()
    assert not counts.empty
    assert (counts["stored"] == counts["n_trials"]).all() and (counts["chosen"] == 1).all()


def _finetune_config(spec_json: str) -> FinetuneConfig:
    settings = json.loads(spec_json)["finetune"]
    return FinetuneConfig(**{**settings, "learning_rates": tuple(settings["learning_rates"])})


def test_no_fine_tuning_run_is_cut_below_its_recipes_epoch_budget():
    """Every trial of every fine-tuning run trained its recipe's whole epoch budget: no step cap, no early stop."""
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        trials = con.execute("""SELECT r.run_id, r.recipe, r.spec, r.n_train, t.steps_planned, t.steps_run,
                                       t.epochs_planned
                                FROM runs r JOIN trials t USING (run_id) WHERE r.method LIKE 'ft_%'""").df()
    assert not trials.empty and trials["recipe"].notna().all()
    for row in trials.itertuples():
        config = _finetune_config(row.spec)
        assert config.recipe_id == row.recipe
        epoch_budget = math.ceil(config.epochs_for(row.n_train) * row.n_train / config.batch_size)
        assert row.steps_planned >= epoch_budget and row.steps_run == row.steps_planned, row.run_id
        assert row.epochs_planned >= config.epochs_for(row.n_train) - 1e-9


def test_every_fine_tuning_trial_has_its_validation_curve():
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        curves = con.execute("""SELECT t.run_id, t.trial_index, count(c.check_index) AS checks,
                                       max(c.step) AS last_step, any_value(t.steps_run) AS steps_run,
                                       any_value(r.spec) AS spec
                                FROM trials t JOIN runs r USING (run_id)
                                LEFT JOIN trial_curves c USING (run_id, trial_index)
                                WHERE r.recipe IS NOT NULL GROUP BY ALL""").df()
    assert not curves.empty
    for row in curves.itertuples():
        assert row.checks >= min(_finetune_config(row.spec).evaluations, row.steps_run) - 1, row.run_id
        assert row.last_step == row.steps_run


def test_the_fine_tuning_gap_at_the_largest_k_is_reported_for_each_dataset(runs):
    evidence = runs[runs["grid"].isin(evidence_grids())]
    gaps = crossovers(evidence)
    with_ft = set(evidence.loc[evidence["method"].str.startswith("ft_"), "dataset"])
    assert with_ft and set(gaps["dataset"]) == with_ft
    assert gaps["points_at_largest_k"].notna().all() and gaps["crossover_k"].notna().all()
    assert (gaps["time_multiple_at_largest_k"] > 1).all()  # fine-tuning is the dearer option everywhere
    crossed = ~gaps["crossover_k"].str.startswith("none")
    assert (gaps.loc[crossed, "points_at_largest_k"] > 0).all()  # a crossover means fine-tuning leads (a tie is none)
    beyond = gaps["verdict_at_largest_k"] != "within seed noise"
    assert (gaps.loc[beyond, "points_at_largest_k"].abs() > gaps.loc[beyond, "seed_noise_at_largest_k"]).all()
    text = render(DEFAULT_DB)
    assert "## When fine-tuning overtakes extraction" in text
    assert all(f"| {dataset} |" in text for dataset in with_ft)


def test_of_two_options_tied_on_accuracy_the_cheaper_is_the_familys_best_whatever_the_row_order(runs):
    """A tie (pbc_blood_cells' two full fine-tunings at max averaged 96.17% each) must not be broken by the rows'
    order: the report's wall-time multiple flipped between them when unrelated runs were added."""
    evidence = runs[runs["grid"].isin(evidence_grids())]
    cell = evidence[(evidence["dataset"] == "flowers5") & (evidence["k_label"] == "20")]
    best = best_by_family(cell).iloc[0]
    own = cell[(cell["method"] == best["FT_method"]) & (cell["backbone"] == best["FT_backbone"])]
    for factor, expected_backbone in ((2.0, best["FT_backbone"]), (0.5, "twin")):
        twin = own.assign(backbone="twin", total_s=own["total_s"] * factor)  # the same accuracies, another cost
        for rows in (pd.concat([cell, twin]), pd.concat([twin, cell]), pd.concat([cell, twin]).iloc[::-1]):
            chosen = best_by_family(rows).iloc[0]
            assert chosen["FT_backbone"] == expected_backbone
            assert chosen["FT_accuracy"] == best["FT_accuracy"]
    shuffled = evidence.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(best_by_family(shuffled), best_by_family(evidence))


def test_a_single_runs_seed_noise_shrinks_as_the_training_set_grows(runs):
    spread = seed_spread(runs[runs["grid"].isin(evidence_grids())])
    assert spread[("FE", "5")] > spread[("FE", "20")] > spread[("FE", "100")] > 0
    assert spread[("FT", "5")] > 0  # fine-tuning's seeds 1-2 are in the evidence


def test_a_lead_within_two_standard_errors_is_called_noise():
    assert verdict(2.0, noise=3.0) == "within seed noise" and verdict(-2.9, noise=3.0) == "within seed noise"
    assert verdict(3.5, noise=3.0) == "fine-tuning ahead" and verdict(-3.5, noise=3.0) == "extraction ahead"
    assert verdict(0.5, noise=None) == "fine-tuning ahead"  # without repeated seeds, the sign is all there is


def test_a_signed_change_that_rounds_to_zero_reads_plus_zero_never_minus_zero():
    assert [signed(-0.04), signed(-0.4), signed(0.04), signed(-0.004, 2), signed(1.234, 2)] == \
        ["+0.0", "-0.4", "+0.0", "+0.00", "+1.23"]


def test_the_convergence_check_pairs_each_doubled_run_with_its_grid_twin(runs):
    """On the shipped DB: twice-the-budget runs on at least 3 datasets at k = 20 and 100, each paired with the grid
    run of the same dataset, k and seed; the verdict is the mean change against the 1-point tolerance, and the
    per-dataset means cover every pair."""
    pairs = budget_pairs(runs)
    assert pairs["dataset"].nunique() >= 3 and {"20", "100"} <= set(pairs["k_label"])
    assert pairs["seed"].nunique() >= 2 and not pairs.duplicated(["dataset", "k_label", "seed"]).any()
    budget = report(load(DEFAULT_DB))["budget"]
    assert budget["not_budget_bound"] == (abs(pairs["change"].mean()) < TOLERANCE_POINTS)
    assert budget["by_dataset"]["runs"].sum() == len(pairs)


def test_a_dataset_where_doubling_the_budget_gained_a_point_is_named():
    gains = budget_gains(pd.DataFrame({"dataset": ["a", "a", "b", "b"], "change": [1.5, 2.0, 0.5, -0.5]}))
    sentence = budget_gained_sentence(gains)
    assert "a (+1.8 points over 2 runs)" in sentence and "b (" not in sentence
    assert budget_gained_sentence(gains[gains["dataset"] == "b"]) == ""


def test_the_resolution_check_pairs_each_run_with_its_twin_at_the_evidence_resolution(runs):
    """On the shipped DB: every small-image dataset's extraction runs at 64 and 224 px, each paired once with the
    128 px run of the same dataset, backbone, method, k and seed, whose accuracy it carries; the advisor's choice is
    the resolution with the best mean over datasets (128 px itself where none beats it)."""
    with duckdb.connect(str(DEFAULT_DB), read_only=True) as con:
        datasets = con.execute("SELECT * FROM datasets").df()
    pairs = resolution_pairs(runs, datasets)
    assert set(pairs["resolution"]) == {64, 224} and pairs["dataset"].nunique() >= 4
    assert not pairs.duplicated(["dataset", "backbone", "method", "images_per_class", "seed", "resolution"]).any()
    assert "flowers5" not in set(pairs["dataset"])  # 160 px images, downscaled at 96 px: another question
    row = pairs.iloc[0]
    twin = runs[(runs["dataset"] == row["dataset"]) & (runs["backbone"] == row["backbone"])
                & (runs["method"] == row["method"]) & (runs["seed"] == row["seed"])
                & (runs["resolution"] == REFERENCE_PX) & (runs["images_per_class"].round() == row["images_per_class"])]
    assert len(twin) == 1 and twin["accuracy"].iloc[0] * 100 == pytest.approx(row["accuracy_reference"])
    resolution, change = best_upscale(pairs)
    means = by_resolution(pairs).set_index("resolution")["mean_change"]
    assert change == max(0.0, means.max()) and (resolution == REFERENCE_PX) == (means.max() <= 0)


def test_the_best_upscale_weighs_each_dataset_once():
    """One dataset with many runs must not decide for all: 224 px gains on a's 4 runs but loses more on b's and
    c's one each; a gain must also exceed its standard error over datasets to count."""
    pairs = pd.DataFrame({"dataset": ["a"] * 4 + ["b", "c"], "resolution": [224] * 6,
                          "change": [3.0, 3.0, 3.0, 3.0, -2.5, -2.5]})
    assert best_upscale(pairs) == (REFERENCE_PX, 0.0)
    assert best_upscale(pairs.assign(change=pairs["change"] + 3)) == (224, pytest.approx(3 - 2 / 3))  # 2.3 > 1.8
    assert best_upscale(pairs.assign(change=pairs["change"] + 1)) == (REFERENCE_PX, 0.0)  # +0.3 within its error
    assert best_upscale(pairs.iloc[:0]) == (REFERENCE_PX, None)


def test_resolutions_are_compared_on_the_same_datasets_and_not_on_too_few():
    """A check still running: 64 px measured on 4 datasets, 224 px on 2 so far. 224 px is reported, not acted on;
    where both have 3 or more, they are compared on the datasets measured at both."""
    pairs = pd.DataFrame({"dataset": list("abcd") + list("ab"), "resolution": [64] * 4 + [224] * 2,
                          "change": [1.0, 1.5, 2.0, 2.5, 4.0, 4.0]})
    rule = upscale_rule(pairs)
    assert rule["change_points_by_px"] == {64: pytest.approx(1.75)} and rule["too_few"] == {224: 2}
    assert (rule["resolution_px"], rule["datasets"]) == (64, 4)
    more = pd.concat([pairs, pd.DataFrame({"dataset": ["c"], "resolution": [224], "change": [3.5]})])
    rule = upscale_rule(more)  # on a, b and c: 64 px +1.5, 224 px +3.83; d (64 px only) is left out
    assert rule["change_points_by_px"] == {64: pytest.approx(1.5), 224: pytest.approx(23 / 6)}
    assert (rule["resolution_px"], rule["datasets"], rule["too_few"]) == (224, 3, {})
    assert upscale_rule(pairs[pairs["dataset"].isin(["a", "b"])])["change_points"] is None
