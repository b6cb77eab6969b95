"""Malformed input across the questionnaire, shared links, the probe upload and the CLI.

Every case must end in the product's own clear error (or a message in the app), never an unhandled exception
and never a change to what is stored. ``CASES`` is the inventory the reliability figures count.
"""
import io
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from evidence_snapshot import snapshot_db
from recommender.questionnaire import Questionnaire, QuestionnaireError
from study.backbones import BackboneError
from study.probe import probe
from study.run import main
from study.upload import UploadError

APP = str(Path(__file__).resolve().parent.parent / "webapp" / "main.py")
FLOWERS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "flowers5" / "train"


def _questionnaire(**values):
    return lambda tmp: Questionnaire(**values).validate()


def _link(**params):
    return lambda tmp: Questionnaire.from_query({k: str(v) for k, v in params.items()})


def _folder(tmp, classes=("daisy", "rose"), per_class=6, extra=None):
    root = tmp / "upload"
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for source in sorted((FLOWERS / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(source, root / cls)
    if extra:
        extra(root)
    return root


def _zip_of(tmp, entries):
    path = tmp / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries:
            bundle.writestr(name, data)
    return path


def _probe_zip(entries_fn):
    return lambda tmp: probe(_zip_of(tmp, entries_fn()))


def _probe_folder(classes=("daisy", "rose"), per_class=6, extra=None):
    def run(tmp):
        result = probe(_folder(tmp, classes, per_class, extra))
        if result.unreadable:  # a bad file among good ones: reported by name, the probe goes on
            raise UploadError("reported: " + "; ".join(result.unreadable))
        return result
    return run


def _png(width, height, mode="L"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def _cli(*args):
    def run(tmp):
        code = main([*args, "--db", str(tmp / "db.duckdb"), "--no-progress", "--log-file", str(tmp / "log")])
        if code != 2:
            raise AssertionError(f"exit code {code}")
        raise SystemExit(2)
    return run


def _tampered_weights(tmp):
    import os

    from study.backbones import build_backbone, get_spec, weights_file

    original = weights_file(get_spec("mobilenetv2_100"))
    copy = tmp / Path(original).name
    data = bytearray(Path(original).read_bytes())
    data[1000] ^= 0xFF
    copy.write_bytes(bytes(data))
    os.environ["EOT_WEIGHTS_DIR"] = str(tmp)
    try:
        build_backbone("mobilenetv2_100")
    finally:
        del os.environ["EOT_WEIGHTS_DIR"]


CASES = {
    # questionnaire
    "NaN money budget": (_questionnaire(budget_money_usd=float("nan")), QuestionnaireError),
    "negative classes": (_questionnaire(n_classes=-3), QuestionnaireError),
    "zero images per class": (_questionnaire(images_per_class=0), QuestionnaireError),
    "huge images per class": (_questionnaire(images_per_class=10**12), QuestionnaireError),
    "one class": (_questionnaire(n_classes=1), QuestionnaireError),
    "100,000 classes": (_questionnaire(n_classes=100_000), QuestionnaireError),
    "infinite accuracy weight": (_questionnaire(accuracy_weight=float("inf")), QuestionnaireError),
    "zero-pixel images": (_questionnaire(image_size_px=0), QuestionnaireError),
    # shared links (query parameters)
    "non-numeric classes in a link": (_link(n_classes="ten"), QuestionnaireError),
    "unknown hardware in a link": (_link(hardware="quantum"), QuestionnaireError),
    "unknown domain in a link": (_link(domain="astrology"), QuestionnaireError),
    "unknown region in a link": (_link(region="XYZ"), QuestionnaireError),
    "NaN budget in a link": (_link(budget_co2_kg="nan"), QuestionnaireError),
    "huge number in a link": (_link(images_per_class="9" * 400), QuestionnaireError),
    "script in a link": (_link(domain="<script>alert(1)</script>"), QuestionnaireError),
    # probe uploads
    "empty zip": (_probe_zip(lambda: []), UploadError),
    "zero-byte zip": (lambda tmp: probe(_zip_bytes(tmp, b"")), UploadError),
    "truncated zip": (lambda tmp: probe(_zip_bytes(tmp, _zip_of(tmp, [("a/x.jpg", b"1" * 5000)]).read_bytes()[:100])),
                      UploadError),
    "non-image files only": (_probe_zip(lambda: [("a/notes.txt", b"x"), ("b/data.csv", b"1,2")]), UploadError),
    "zip bomb": (_probe_zip(lambda: [("a/bomb.jpg", b"\0" * (40 * 2**20)), ("b/x.jpg", b"x")]), UploadError),
    "path traversal entry": (_probe_zip(lambda: [("../../etc/cron.d/x.jpg", b"x"), ("a/b.jpg", b"x")]), UploadError),
    "absolute path entry": (_probe_zip(lambda: [("/tmp/evil.jpg", b"x"), ("a/b.jpg", b"x")]), UploadError),
    "one class folder": (_probe_folder(classes=("daisy",)), UploadError),
    "a class with one image": (_probe_folder(per_class=1), UploadError),
    "zero-byte image": (_probe_folder(extra=lambda r: (r / "daisy" / "empty.jpg").write_bytes(b"")), UploadError),
    "truncated JPEG": (_probe_folder(extra=lambda r: (r / "rose" / "cut.jpg").write_bytes(
        next(iter((r / "daisy").glob("*.jpg"))).read_bytes()[:1500])), UploadError),
    "100,000-pixel-wide image": (_probe_folder(extra=lambda r: (r / "rose" / "wide.png").write_bytes(
        _png(100_000, 3))), UploadError),
    "decompression bomb PNG": (_probe_folder(extra=lambda r: (r / "rose" / "bomb.png").write_bytes(
        _png(12_000, 12_000, "1"))), UploadError),
    "a text file named .jpg": (_probe_folder(extra=lambda r: (r / "rose" / "fake.jpg").write_text("hello")),
                               UploadError),
    # command line
    "unknown dataset": (_cli("--grid", "cpu-smoke", "--datasets", "imagenet"), SystemExit),
    "unknown grid": (_cli("--grid", "no-such-grid"), SystemExit),
    "unknown backbone filter": (_cli("--grid", "cpu-smoke", "--backbones", "vgg16"), SystemExit),
    "wrong weight checksum": (_tampered_weights, BackboneError),
}


def _zip_bytes(tmp, data):
    path = tmp / "raw.zip"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_gets_a_clear_message(case, tmp_path):
    action, expected = CASES[case]
    with pytest.raises(expected) as error:
        action(tmp_path)
    message = str(error.value)
    if expected is not SystemExit:
        assert len(message) > 15 and "Traceback" not in message, message


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("query", [
    {"n_classes": "NaN"}, {"hardware": "tpu"}, {"region": "Mars"}, {"images_per_class": "-4"},
    {"budget_money_usd": "1e999"}, {"colour": "maybe"}, {"a_pue": "0.1"}, {"a_hourly_rate_usd": "abc"},
])
def test_malformed_links_in_the_app_give_messages_not_stack_traces(query, tmp_path, monkeypatch):
    monkeypatch.setenv("EOT_DB", str(snapshot_db(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.warning or at.error, "a bad link value must be named"
