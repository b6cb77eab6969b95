"""Extract or Tune: the Streamlit app (wiring only; logic lives in recommender/ and study/)."""
import streamlit as st

from recommender.evidence import EvidenceError, load_tables

st.set_page_config(page_title="Extract or Tune", layout="wide")
st.title("Extract or Tune")
st.caption("Feature extraction or fine-tuning? Measured evidence for your image-classification task.")

try:
    tables = load_tables()
except EvidenceError as error:
    st.error(str(error))
    st.stop()

runs = tables["runs"]
st.metric("Runs in the evidence", len(runs))
summary = (runs.groupby(["dataset", "backbone", "method", "k_label"], as_index=False)
           .agg(accuracy=("accuracy", "mean"), runs=("run_id", "count"), seconds=("total_s", "mean")))
st.dataframe(summary, hide_index=True, use_container_width=True)
