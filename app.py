"""Extract or Tune: the Streamlit app (wiring only; logic lives in recommender/ and study/).

    streamlit run app.py              # on the shipped evidence, data/study.duckdb
    EOT_DB=other.duckdb streamlit run app.py
"""
import os

import streamlit as st

from webapp import ui
from recommender.evidence import DEFAULT_DB

st.set_page_config(page_title="Extract or Tune", layout="wide")
ui.share_evidence(ui.load_evidence(os.environ.get("EOT_DB") or str(DEFAULT_DB)))
page = st.navigation([
    st.Page("webapp/pages/advisor.py", title="Advisor", default=True),
    st.Page("webapp/pages/evidence.py", title="Evidence explorer", url_path="evidence"),
    st.Page("webapp/pages/guidelines.py", title="Guidelines", url_path="guidelines"),
    st.Page("webapp/pages/method.py", title="Method & provenance", url_path="method"),
])
page.run()
