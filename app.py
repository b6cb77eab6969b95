"""Extract or Tune: the Streamlit app (wiring only; the pages are webapp/main.py, logic lives in recommender/,
study/ and webapp/).

    streamlit run app.py              # on the shipped evidence, data/study.duckdb
    EOT_DB=other.duckdb streamlit run app.py

``streamlit run`` finds the ``st.App`` below and serves ``webapp/main.py`` with it; its lifespan starts importing
what the first page needs as soon as the server is up (``webapp.warm``), while the first browser loads.
"""
from contextlib import asynccontextmanager

import streamlit as st

from webapp import warm


@asynccontextmanager
async def lifespan(_app):
    warm.start()
    yield


app = st.App("webapp/main.py", lifespan=lifespan)
