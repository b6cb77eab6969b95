"""The Streamlit script every page view runs (``app.py`` serves it): evidence in, the four pages wired (logic lives
in recommender/, study/ and the rest of webapp/)."""
import os

from webapp import warm

warm.wait()  # the server's warm-up imports (app.py): finished before this thread imports the same modules

import streamlit as st  # noqa: E402

from webapp import ui  # noqa: E402
from recommender.evidence import DEFAULT_DB  # noqa: E402

st.set_page_config(page_title="Extract or Tune", layout="wide")
ui.share_evidence(ui.load_evidence(os.environ.get("EOT_DB") or str(DEFAULT_DB)))
page = st.navigation([
    st.Page("pages/advisor.py", title="Advisor", default=True),
    st.Page("pages/evidence.py", title="Evidence explorer", url_path="evidence"),
    st.Page("pages/guidelines.py", title="Guidelines", url_path="guidelines"),
    st.Page("pages/method.py", title="Method & provenance", url_path="method"),
])
page.run()
