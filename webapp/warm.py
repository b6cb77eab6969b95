"""Warm-up at server start: import the modules the first page needs while the first browser is still loading
Streamlit's JavaScript, so the first visit (a shared link's answer above all) does not wait for them.

A fresh server is idle for most of a second between answering and the first page's script (the browser fetches and
parses Streamlit's bundle meanwhile); pandas, DuckDB and the recommender took 0.7-0.9 s to import at the start of
that script (measured with ``python -X importtime`` under ``streamlit run``, AVX2 EPYC). ``app.py`` starts this
thread from the server's lifespan; the page script calls ``wait`` first, so the two threads never import the same
module at once. Altair and the PDF writer stay out: the first answer does not need them (``webapp.charts``).
"""
from __future__ import annotations

import importlib
import logging
import threading

# What the advisor page imports before its first answer (the other pages need a subset of it).
MODULES = ("duckdb", "pandas", "webapp.ui", "webapp.presentation", "webapp.provenance", "webapp.charts",
           "webapp.fixes", "recommender.advise")
WAIT_LIMIT_S = 60.0  # a warm-up that hangs must not hang the page: it imports the modules itself after this
log = logging.getLogger(__name__)
_started: list[threading.Thread] = []


def _import_modules() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import of it reports the error to the user
            log.exception("warm-up: importing %s failed", name)


def start() -> threading.Thread:
    """Import ``MODULES`` in a background thread (once per process)."""
    if not _started:
        thread = threading.Thread(target=_import_modules, name="warm-up-imports", daemon=True)
        thread.start()
        _started.append(thread)
    return _started[0]


def wait() -> None:
    """Until the warm-up (if this process started one) has finished."""
    if _started:
        _started[0].join(WAIT_LIMIT_S)
