"""Streamlit page helpers: cached evidence and advisor, the questionnaire form and assumptions bound to the URL,
shared links, and the budget hints' buttons.

The evidence is re-read at most every few minutes (the study may be adding runs); while the database cannot be
read (a writer holds it and no snapshot works) the last good copy keeps the app serving.

The form's widgets take their first values from the link (``seed_form``), then keep what the user typed; a budget
hint's button (``apply_fix``) sets one field, in the widget and in the link, so the next run shows its effect.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import urlencode, urlsplit

import pandas as pd
import streamlit as st

from recommender.carbon import REGIONS
from recommender.costs import ASSUMPTION_SOURCES, DATA_CENTRE_PUE, Assumptions
from recommender.evidence import EvidenceError, load_tables
from recommender.hardware import HARDWARE
from webapp.persisted import TABLES, evidence_fingerprint, fitted
from webapp.presentation import ASSUMPTION_LABELS, QUESTION_LABELS, RANK_BY_LABELS, format_number, readable
from recommender.questionnaire import BUDGET_FIELDS, DOMAINS, RANK_BY, Questionnaire, QuestionnaireError

EVIDENCE_TTL_S = 300
ASSUMPTION_PREFIX = "a_"  # query parameters of edited assumptions: a_pue=1.2
QUESTION_PREFIX = "q_"  # widget keys of the questionnaire form: q_n_classes
ASSUMPTIONS_OPEN = "assumptions_open"  # the assumptions expander's key (a hint opens it)
PUBLIC_URL_ENV = "EOT_PUBLIC_URL"  # the address colleagues reach the app at, e.g. https://eot.example.org/
_EVIDENCE_KEY = "_evidence"
QUESTION_FIELDS = [item.name for item in fields(Questionnaire)]
RESOLUTION_STEP_PX = 32


@dataclass(frozen=True)
class Evidence:
    tables: dict
    db_path: str
    fingerprint: str  # of the tables' content: new runs or a re-probe refit the derived models
    read_at: str
    notice: str | None = None  # set while an older copy is served


@st.cache_resource(ttl=EVIDENCE_TTL_S, show_spinner="Reading the evidence...")
def _read_tables(db_path: str) -> tuple[dict, str]:
    """The tables and their fingerprint, hashed once per read rather than on every rerun."""
    tables = load_tables(db_path, tables=TABLES)
    return tables, evidence_fingerprint(tables)


@st.cache_resource
def _last_good() -> dict[str, Evidence]:
    return {}


def load_evidence(db_path: str) -> Evidence:
    """The evidence tables, or the last good copy while the database is unreadable; with no copy at all the
    page shows what is wrong and how to regenerate it, and stops."""
    try:
        tables, fingerprint = _read_tables(db_path)
    except EvidenceError as error:
        previous = _last_good().get(db_path)
        if previous is None:
            st.error(str(error))
            st.stop()
        return replace(previous, notice=f"The evidence database cannot be read right now ({error}). "
                                        f"Showing the copy read at {previous.read_at}.")
    previous = _last_good().get(db_path)
    if previous is None or previous.fingerprint != fingerprint:
        previous = Evidence(tables, db_path, fingerprint, datetime.now(timezone.utc).strftime("%H:%M:%S UTC"))
        _last_good()[db_path] = previous
    return previous


def share_evidence(evidence: Evidence) -> None:
    """Hand the evidence the page script (webapp/main.py) loaded to the page it runs."""
    st.session_state[_EVIDENCE_KEY] = evidence


def evidence() -> Evidence:
    current = st.session_state[_EVIDENCE_KEY]
    if current.notice:
        st.warning(current.notice)
    return current


@st.cache_resource(max_entries=2, show_spinner="Fitting the advisor to the evidence...")
def _advisor(fingerprint: str, _tables: dict):
    return fitted("advisor", fingerprint, _tables)


def advisor(current: Evidence):
    return _advisor(current.fingerprint, current.tables)


def sources(current: Evidence) -> pd.DataFrame:
    """Every source the advice uses (the GPU pilot while the evidence has no GPU runs), for the Method page and
    the PDFs."""
    from webapp.provenance import sources_table

    return sources_table(advisor(current).costs_.references_, len(current.tables["runs"]))


@st.cache_resource(max_entries=2, show_spinner="Deriving the guidelines...")
def _guidelines(fingerprint: str, _tables: dict) -> list:
    return fitted("guidelines", fingerprint, _tables)


def guidelines(current: Evidence) -> list:
    return _guidelines(current.fingerprint, current.tables)


def _warm_up_pdf() -> None:
    from webapp import renderer, report  # noqa: F401  fpdf2 and PIL, off the advice's path

    renderer.warm_up()


@st.cache_resource
def warm_pdf_renderer() -> threading.Thread:
    """Once per server: load the PDF writer and start the chart renderer in the background while the user reads
    the page, so the first PDF download does not pay for them."""
    thread = threading.Thread(target=_warm_up_pdf, name="warm-pdf-renderer", daemon=True)
    thread.start()
    return thread


@st.cache_data(ttl=EVIDENCE_TTL_S)
def decision_quality() -> tuple[pd.DataFrame | None, dict | None]:
    """The stored leave-one-dataset-out table and its headline figures (None until evaluated)."""
    from recommender.evaluate import load_summary, load_table

    return load_table(), load_summary()


# --- the questionnaire and the assumptions, bound to the URL -------------------------------------------------

def questionnaire_from_link(params: Mapping[str, str]) -> tuple[Questionnaire, list[str]]:
    """A shared link's answers; each unusable value is dropped with a message and the rest still apply."""
    params = {key: value for key, value in params.items() if key in QUESTION_FIELDS}
    messages = []
    while True:
        try:
            return Questionnaire.from_query(params), messages
        except QuestionnaireError as error:
            if error.field not in params:
                return Questionnaire(), messages + [f"The link's answers were not usable ({error.message})."]
            messages.append(f"The link's value for '{QUESTION_LABELS.get(error.field, error.field)}' was ignored: "
                            f"{error.message}.")
            del params[error.field]


def link_has_answers(params: Mapping[str, str]) -> bool:
    return any(key in QUESTION_FIELDS for key in params)


def assumptions_from_link(params: Mapping[str, str]) -> tuple[Assumptions, list[str]]:
    """Edited assumptions carried by a link (a_pue=1.2 ...); unusable values are dropped with a message."""
    values, messages = {}, []
    for item in fields(Assumptions):
        raw = params.get(ASSUMPTION_PREFIX + item.name)
        if raw is None:
            continue
        try:
            number = float(raw)
            values[item.name] = int(number) if item.type.startswith("int") and number.is_integer() else number
            replace(Assumptions(), **{item.name: values[item.name]}).validate()
        except ValueError as error:
            values.pop(item.name, None)
            messages.append(f"The link's value for '{ASSUMPTION_LABELS.get(item.name, item.name)}' was ignored: "
                            f"{readable(error) if str(error) else raw}.")
    return Assumptions(**values), messages


def assumptions_to_query(assumptions: Assumptions) -> dict[str, str]:
    """Only the assumptions that differ from the defaults, so plain links stay short."""
    defaults = Assumptions()
    return {ASSUMPTION_PREFIX + item.name: f"{getattr(assumptions, item.name):g}" for item in fields(Assumptions)
            if getattr(assumptions, item.name) != getattr(defaults, item.name)
            and getattr(assumptions, item.name) is not None}


def public_base_url(seen: str | None = None) -> str:
    """Where colleagues reach the Advisor page, ending in '/': ``EOT_PUBLIC_URL`` when set (the address behind a
    proxy or on the network), else the address this browser uses (``st.context.url``), else the site root."""
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/") + "/"
    seen = st.context.url if seen is None else seen
    if not seen or not urlsplit(seen).scheme:
        return "/"
    return seen.rstrip("/") + "/"


def share_link(answers: Questionnaire, assumptions: Assumptions, seen: str | None = None) -> str:
    """The URL that reopens the Advisor page with these answers and assumptions."""
    return f"{public_base_url(seen)}?{urlencode({**answers.to_query(), **assumptions_to_query(assumptions)})}"


def link_is_local(link: str) -> bool:
    return urlsplit(link).hostname in ("localhost", "127.0.0.1", "::1", None)


def _region_keys() -> list[str]:
    return ["world"] + sorted((key for key in REGIONS if key != "world"), key=lambda key: REGIONS[key].name)


def _widget_value(name: str, value):
    return "" if name == "probe" and value is None else value


def seed_form(initial: Questionnaire, assumptions: Assumptions) -> None:
    """Give the form's and the assumption editor's widgets the link's values the first time they are drawn in
    this session; afterwards they keep what the user typed (or what a hint set)."""
    for name in QUESTION_FIELDS:
        st.session_state.setdefault(QUESTION_PREFIX + name, _widget_value(name, getattr(initial, name)))
    for item in fields(Assumptions):
        st.session_state.setdefault(ASSUMPTION_PREFIX + item.name, getattr(assumptions, item.name))


def _hardware_name(key: str) -> str:
    profile = HARDWARE[key]
    return profile.name + (" (your own machine)" if profile.personal else "")


def questionnaire_form(initial: Questionnaire, assumptions: Assumptions) -> Questionnaire | None:
    """The questionnaire in a form; on submit the validated answers, or None with a message per bad value."""
    seed_form(initial, assumptions)
    regions = _region_keys()
    with st.form("questionnaire"):
        task, budgets = st.columns(2)
        with task:
            st.markdown("**Your task**")
            n_classes = st.number_input(QUESTION_LABELS["n_classes"], value=None, step=1, key="q_n_classes")
            images_per_class = st.number_input(QUESTION_LABELS["images_per_class"], value=None, step=1,
                                               key="q_images_per_class")
            domain = st.selectbox(QUESTION_LABELS["domain"], DOMAINS, index=None, key="q_domain",
                                  help="Finds the closest measured tasks. With a probe, fine-tuning's predicted gain "
                                       "also follows what it gained on the study's datasets of this domain, where "
                                       "there are two or more; choose 'other' if none fits.")
            size, working = st.columns(2)
            image_size_px = size.number_input(QUESTION_LABELS["image_size_px"], value=None, step=1,
                                              key="q_image_size_px")
            working_resolution_px = working.number_input(
                QUESTION_LABELS["working_resolution_px"], value=None, step=RESOLUTION_STEP_PX,
                placeholder="automatic", key="q_working_resolution_px",
                help="The input size the networks run at. Empty = automatic: the backbone's native 224 px when your "
                     "images are at least that big, else their own size rounded up to 32 px (at least 64). Costs "
                     "scale with the number of pixels.")
            colour = st.checkbox(QUESTION_LABELS["colour"], key="q_colour")
            hardware = st.selectbox(QUESTION_LABELS["hardware"], list(HARDWARE), index=None,
                                    format_func=_hardware_name, key="q_hardware")
            region = st.selectbox(QUESTION_LABELS["region"], regions, index=None,
                                  format_func=lambda key: f"{REGIONS[key].name} "
                                                          f"({REGIONS[key].grid_gco2_per_kwh:.0f} gCO₂/kWh)",
                                  key="q_region")
        with budgets:
            st.markdown("**Your budgets** (leave empty for no limit)")
            budget_values = {name: st.number_input(QUESTION_LABELS[name], value=None, step=1.0, format="%g",
                                                   placeholder="no limit", key=f"q_{name}")
                             for name in BUDGET_FIELDS}
            accuracy_weight = st.slider(QUESTION_LABELS["accuracy_weight"], 0.0, 1.0, step=0.05,
                                        key="q_accuracy_weight",
                                        help="0: the cheapest option within budgets; 1: the most accurate one.")
            rank_by = st.radio(QUESTION_LABELS["rank_by"], RANK_BY, key="q_rank_by", horizontal=True,
                               format_func=RANK_BY_LABELS.get,
                               help="Expected: the most accuracy on average over tasks like yours. Cautious: the "
                                    "accuracy an option reaches 3 times in 4, so a prediction a little higher but "
                                    "much less certain (fine-tuning, often) does not win.")
            probe = st.text_input(
                QUESTION_LABELS["probe"] + " (optional)", placeholder="not measured", key="q_probe",
                help="Filled by **Measure your own images** above (or `python -m study.probe YOUR_IMAGES`): the "
                     "accuracy of every feature-extraction option measured on your images at a few k. The "
                     "predictions are anchored on it; clear it to advise from the questionnaire alone.")
        submitted = st.form_submit_button("Recommend", type="primary")
    if not submitted:
        return None
    if None in (n_classes, images_per_class, image_size_px, domain, hardware, region):
        st.error("Classes, labelled images per class, image size, domain, hardware and region are needed.")
        return None
    answers = Questionnaire(n_classes=_whole(n_classes), images_per_class=_whole(images_per_class), domain=domain,
                            image_size_px=_whole(image_size_px), working_resolution_px=_whole(working_resolution_px),
                            colour=colour, hardware=hardware, region=region, accuracy_weight=accuracy_weight,
                            rank_by=rank_by, probe=(probe or "").strip() or None, **budget_values)
    try:
        return answers.validate()
    except QuestionnaireError as error:
        st.error(f"{QUESTION_LABELS.get(error.field, error.field)}: {error.message}")
        return None


def _whole(value):
    """A number input gives a float once a decimal is typed; whole floats are whole numbers."""
    return int(value) if isinstance(value, float) and math.isfinite(value) and value.is_integer() else value


def assumptions_editor(answers: Questionnaire) -> Assumptions:
    """Every cost assumption as an input showing its default, the value in use for these answers and its
    source; invalid edits fall back to the defaults with a message."""
    defaults = Assumptions()
    values = {}
    with st.expander("Assumptions (prices, PUE, grid intensity, hourly rates, trials)", key=ASSUMPTIONS_OPEN,
                     on_change="rerun"):
        st.caption("Edit any value; the costs update at once. Empty means the automatic value.")
        columns = st.columns(2)
        for index, item in enumerate(fields(Assumptions)):
            default = getattr(defaults, item.name)
            whole = item.type.startswith("int")
            with columns[index % 2]:
                values[item.name] = st.number_input(
                    ASSUMPTION_LABELS.get(item.name, item.name), value=None,
                    step=1 if whole else 0.1, format=None if whole else "%g",
                    placeholder=_automatic_placeholder(item.name, answers), key=f"a_{item.name}",
                    help=readable(ASSUMPTION_SOURCES.get(item.name, "")))
                st.caption(f"Default: {format_number(default) if default is not None else 'automatic'}. "
                           f"Source: {readable(ASSUMPTION_SOURCES.get(item.name, 'assumption'))}")
    try:
        return Assumptions(**values).validate()
    except (TypeError, ValueError) as error:
        st.error(f"Assumptions: {readable(error)}. Using the defaults until it is fixed.")
        return defaults


def _automatic_placeholder(name: str, answers: Questionnaire) -> str:
    profile = HARDWARE[answers.hardware]
    if name == "pue":
        other = f"{DATA_CENTRE_PUE:g} in a data centre" if profile.personal else "1.0 on your own machine"
        return f"automatic: {Assumptions().pue_for(answers.hardware):g} here ({other})"
    if name == "price_usd_per_h":
        return f"automatic: {profile.price_usd_per_h:g} ({profile.name})"
    if name == "grid_gco2_per_kwh":
        return f"automatic: {REGIONS[answers.region].grid_gco2_per_kwh:.0f} ({REGIONS[answers.region].name})"
    if name == "ft_trials":
        return "automatic: the evidence's recipe"
    return ""


def apply_fix(kind: str, field: str, value) -> None:
    """A budget hint's button: set one assumption or answer (in its widget and in the link), so the page shows
    the advice with it; an assumption also opens the editor so the change is in view."""
    if kind == "assumption":
        st.session_state[ASSUMPTION_PREFIX + field] = value
        st.session_state[ASSUMPTIONS_OPEN] = True
    else:
        st.session_state[QUESTION_PREFIX + field] = value
        st.query_params[field] = str(value)


# --- bring your own data: the probe ---------------------------------------------------------------------------

def _local_server() -> bool:
    """Folder paths are offered only when the app serves this machine alone (the default binding)."""
    return str(st.get_option("server.address") or "localhost") in ("localhost", "127.0.0.1", "::1")


def probe_panel() -> None:
    """Upload a .zip (or name a local folder) of your images; the probe's measurements fill the form."""
    import tempfile
    from pathlib import Path

    from recommender.questionnaire import encode_probe
    from study.probe import PILOT_DURATION, probe
    from study.upload import MAX_UPLOAD_BYTES, UploadError

    with st.expander("Measure your own images (a quick CPU probe, about a minute)"):
        st.caption("Layout `CLASS/*.jpg` or `train/CLASS/*.jpg` + `test/CLASS/*.jpg` (the probe then tests on your "
                   "test split). At most 60 images per class and 600 in all are "
                   f"used; uploads up to {min(MAX_UPLOAD_BYTES, st.get_option('server.maxUploadSize') * 2**20) // 2**20}"
                   " MiB. Nothing of the upload is kept. The probe measures every feature-extraction option "
                   "(MobileNetV2 and EfficientNet-Lite0 features at 128 px, with a linear classifier or the "
                   "Full-Network Embedding) trained on k = 2, 5, 10, 20 of your images per class and tested on the "
                   "rest; the advice is anchored on these measured curves.")
        upload = st.file_uploader("A .zip of your images", type=["zip"], key="probe_zip")
        pilot = st.checkbox(f"Also fine-tune once: a pilot (another {PILOT_DURATION})", key="probe_pilot",
                            help="The study's fine-tuning recipe on MobileNetV2, trained once on the probe's largest "
                                 "k of your images per class. How much a task gains from fine-tuning is what is "
                                 "hardest to predict; the pilot measures it, and the fine-tuning options are then "
                                 "predicted from it (narrower intervals).")
        folder = st.text_input("…or a folder on this machine", key="probe_folder") if _local_server() else ""
        if not st.button("Probe my images", disabled=upload is None and not folder):
            if "probe_result" in st.session_state:
                _show_probe(st.session_state["probe_result"])
            return
        bar = st.progress(0.0, text="starting")
        with tempfile.TemporaryDirectory(prefix="eot-probe-") as scratch:
            try:
                if upload is not None:
                    source = Path(scratch) / "upload.zip"
                    source.write_bytes(upload.getvalue())
                else:
                    source = Path(folder).expanduser()
                result = probe(source, progress=lambda fraction, message: bar.progress(min(1.0, fraction), message),
                               pilot=pilot)
            except UploadError as error:
                bar.empty()
                st.error(f"The probe could not use these images: {error}")
                return
        bar.empty()
        st.session_state["probe_result"] = result
        # Fill the questionnaire with what was measured (widget keys set before the form is drawn).
        st.session_state.update(q_probe=encode_probe(result.curves), q_n_classes=result.n_classes,
                                q_image_size_px=result.image_size_px, q_colour=result.colour)
        _show_probe(result)
        skipped = [f"{result.skipped_non_image} non-image file(s)"] if result.skipped_non_image else []
        skipped += [f"{result.skipped_links} link(s)"] if result.skipped_links else []
        if skipped:
            st.caption("Skipped: " + ", ".join(skipped) + ".")
        for line in result.unreadable[:20]:
            st.warning(f"Unreadable image skipped: {line}")
        st.info("The form below now holds the measured classes, image size, colour and learning curves: press "
                "**Recommend**.")


def _show_probe(result) -> None:
    """The probe's measured curves as a table (options as rows, k as columns) and the time it took."""
    from webapp.presentation import probe_curves_table

    extraction = len(result.curves) - (result.pilot_k is not None)
    st.success(f"Measured {extraction} feature-extraction options"
               + (f" and a fine-tuning pilot at k={result.pilot_k}" if result.pilot_k is not None else "")
               + f" on {result.images_used} of your images ({result.n_classes} classes) in {result.seconds:.0f} s.")
    st.markdown("**Mean test accuracy, trained on k of your images per class**")
    st.dataframe(probe_curves_table(result.curves), hide_index=True)
    tested = ", ".join(f"k={k}: {n:.1f}" for k, n in sorted(result.tested_per_class.items()))
    st.caption(f"{result.resolution} px; each point is the mean of {result.repeats} random draws (the same draws for "
               f"every option), tested on the images not trained on (per class, {tested})."
               + (" The fine-tuning pilot is one run, on the first draw." if result.pilot_k is not None else ""))


def probe_comparison(advisor, answers: Questionnaire, assumptions: Assumptions) -> pd.DataFrame | None:
    """How the probe changed the advice: each option's interval without and with the measured probe."""
    from webapp.presentation import probe_comparison_table

    if answers.probe is None:
        return None
    with_probe = advisor.advise(answers, assumptions).options
    without = advisor.advise(replace(answers, probe=None), assumptions).options
    return probe_comparison_table(without, with_probe)
