"""Evidence explorer: filter the measured runs, chart them, download the filtered rows."""
import streamlit as st

from webapp import charts, ui
from webapp.presentation import hardware_descriptions

st.title("Evidence explorer")
st.caption("Every measured run of the study. Filter, look, and download what you filtered.")
evidence = ui.evidence()
runs = evidence.tables["runs"]
machines = hardware_descriptions(evidence.tables["hardware"])

filters = st.columns(5)
datasets = filters[0].multiselect("Dataset", sorted(runs["dataset"].unique()), key="f_dataset")
backbones = filters[1].multiselect("Backbone", sorted(runs["backbone"].unique()), key="f_backbone")
methods = filters[2].multiselect("Method", sorted(runs["method"].unique()), key="f_method")
k_values = filters[3].multiselect("Images per class (k)", sorted(runs["images_per_class"].unique()), key="f_k")
hardware = filters[4].multiselect("Hardware", sorted(runs["hardware_id"].unique()),
                                  format_func=lambda key: machines.get(key, key), key="f_hardware")
selected = runs
for column, chosen in (("dataset", datasets), ("backbone", backbones), ("method", methods),
                       ("images_per_class", k_values), ("hardware_id", hardware)):
    if chosen:
        selected = selected[selected[column].isin(chosen)]

st.metric("Runs selected", f"{len(selected):,} of {len(runs):,}")
if selected.empty:
    st.info("No run matches these filters.")
    st.stop()
st.altair_chart(charts.evidence_accuracy_by_k(selected), theme=None)
st.altair_chart(charts.evidence_accuracy_vs_time(selected), width="stretch", theme=None)
st.caption("CPU energy in these runs is an estimate (energy_source = 'estimated'), GPU energy an NVML measurement.")
columns = ["dataset", "backbone", "method", "images_per_class", "seed", "resolution", "accuracy",
           "balanced_accuracy", "macro_f1", "total_s", "energy_j", "energy_source", "peak_memory_mb", "device_type",
           "n_trials", "finished_at"]
st.dataframe(selected[columns], hide_index=True)
st.download_button("Download these runs (CSV)", data=selected.to_csv(index=False), file_name="extract-or-tune-runs.csv",
                   mime="text/csv", on_click="ignore")
