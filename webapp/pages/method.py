"""Method & provenance page: how the evidence was produced and how good the recommender's decisions are."""
import pandas as pd
import streamlit as st

from webapp import ui
from recommender.evidence import REGENERATE_COMMAND
from webapp.presentation import (commits, energy_sources, evidence_summary, grid_coverage,
                                      hardware_descriptions, software_versions)

st.title("Method & provenance")
evidence = ui.evidence()
tables = evidence.tables
runs = tables["runs"]
st.markdown(
    "Each run is one (dataset, backbone, method, images per class k, seed, resolution) measured by "
    f"`python -m study.run`; `{REGENERATE_COMMAND}` regenerates the shipped grid. Feature extraction trains a "
    "linear classifier on frozen ImageNet features (C chosen by cross-validation on the training subset); "
    "fine-tuning selects its learning rate and stopping point on a validation split of the training subset. "
    "Nothing is selected on test data.")
st.subheader("The evidence at a glance")
summary = evidence_summary(tables)
st.table(pd.DataFrame({"": list(summary), "value": list(summary.values())}))
st.subheader("Energy: measured or estimated")
st.warning("CPU energy is an **estimate** (10 W per busy thread x threads x wall time), not a measurement; "
           "GPU energy is measured with NVIDIA's NVML counter. Every run records which.")
st.dataframe(energy_sources(runs), hide_index=True)
st.subheader("Grids")
st.dataframe(grid_coverage(runs), hide_index=True)
st.subheader("Hardware")
machines = hardware_descriptions(tables["hardware"])
st.dataframe(tables["hardware"].assign(description=tables["hardware"]["hardware_id"].map(machines)),
             hide_index=True)
st.subheader("Software versions and code")
st.dataframe(software_versions(runs), hide_index=True)
st.dataframe(commits(runs), hide_index=True)
failures = tables.get("failures")
st.caption(f"{len(tables['trials']):,} fine-tuning trials stored; "
           f"{0 if failures is None else len(failures):,} failed runs recorded (retried on the next resume).")

st.subheader("Decision quality of the recommender")
st.markdown("Leave one dataset out: the advisor, fitted without a dataset, advises on it; its pick is scored by "
            "that dataset's own measurements against the best option in hindsight (regret, accuracy points) and "
            "against always fine-tuning, always extracting and a k-threshold rule of thumb.")
quality, headline = ui.decision_quality()
if quality is None:
    st.info("Not evaluated yet. Run `python -m recommender.evaluate` to measure it.")
else:
    st.dataframe(quality, hide_index=True)
    st.caption("Regret columns: mean accuracy points below the best within-budget option in hindsight (lower is "
               "better); mae columns: mean absolute error of the predicted accuracy, in points.")
if headline:
    st.json(headline, expanded=False)
