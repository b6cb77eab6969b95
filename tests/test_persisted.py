"""Fitted models persisted on disk for the next server: keyed by the evidence and the code, never stale, never lost."""
import pytest

from webapp.persisted import KEEP_PER_MODEL, MODELS, TABLES, evidence_fingerprint, load_or_fit, main, model_path


def refuse():
    raise AssertionError("refitted although a persisted model was there")


def test_a_persisted_model_is_read_back_instead_of_refitted(tmp_path):
    fitted = load_or_fit("advisor", "evidence-a", lambda: {"coef": [1.0, 2.0]}, root=tmp_path)
    assert load_or_fit("advisor", "evidence-a", refuse, root=tmp_path) == fitted
    assert load_or_fit("advisor", "evidence-b", lambda: {"coef": [3.0]}, root=tmp_path) == {"coef": [3.0]}
    assert load_or_fit("guidelines", "evidence-a", lambda: ["rule"], root=tmp_path) == ["rule"]


def test_a_corrupt_file_is_refitted_and_replaced(tmp_path):
    load_or_fit("advisor", "evidence-a", lambda: {"coef": 1}, root=tmp_path)
    path = model_path("advisor", "evidence-a", tmp_path)
    path.write_bytes(path.read_bytes()[:10])  # a copy cut short
    assert load_or_fit("advisor", "evidence-a", lambda: {"coef": 2}, root=tmp_path) == {"coef": 2}
    assert load_or_fit("advisor", "evidence-a", refuse, root=tmp_path) == {"coef": 2}


def test_an_unwritable_cache_costs_only_the_refit(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    assert load_or_fit("advisor", "evidence-a", lambda: {"coef": 1}, root=blocked) == {"coef": 1}
    assert load_or_fit("advisor", "evidence-a", lambda: {"coef": 2}, root=blocked) == {"coef": 2}


def test_only_the_newest_models_are_kept(tmp_path):
    for version in range(KEEP_PER_MODEL + 3):
        load_or_fit("advisor", f"evidence-{version}", lambda: version, root=tmp_path)
    assert len(list((tmp_path / "models").glob("advisor-*.pkl"))) == KEEP_PER_MODEL
    assert load_or_fit("advisor", f"evidence-{KEEP_PER_MODEL + 2}", refuse, root=tmp_path) == KEEP_PER_MODEL + 2


@pytest.fixture(scope="module")
def tables():
    from recommender.evidence import DEFAULT_DB, load_tables

    return load_tables(DEFAULT_DB, tables=("runs", "probe_curves"))


def test_the_fingerprint_follows_the_evidence_content(tables):
    fingerprint = evidence_fingerprint(tables)
    assert evidence_fingerprint({name: frame.copy() for name, frame in tables.items()}) == fingerprint
    changed = tables["runs"].copy()
    changed.loc[changed.index[0], "accuracy"] += 0.001  # one run's accuracy
    assert evidence_fingerprint({**tables, "runs": changed}) != fingerprint
    assert evidence_fingerprint({**tables, "runs": tables["runs"].iloc[1:]}) != fingerprint  # one run fewer
    reprobed = tables["probe_curves"].assign(created_at="2999-01-01T00:00:00Z")
    assert evidence_fingerprint({**tables, "probe_curves": reprobed}) != fingerprint


def test_bootstrap_persists_what_the_apps_first_server_reads():
    """``python -m webapp.persisted`` (run by bootstrap.sh) fits every model for the evidence the app reads, under
    the key the app looks up, so the app's first server fits nothing."""
    from recommender.evidence import DEFAULT_DB, load_tables

    assert main(["--db", str(DEFAULT_DB)]) == 0
    fingerprint = evidence_fingerprint(load_tables(DEFAULT_DB, tables=TABLES))
    for name in MODELS:
        assert load_or_fit(name, fingerprint, refuse) is not None
