"""Evidence explorer: filter the measured runs, chart them, download the filtered rows."""
import streamlit as st

from study.grid_file import evidence_grids, load_grids
from study.labels import backbone_label
from webapp import altair_charts, ui
from webapp.presentation import ENERGY_SOURCES, evidence_first, grid_label, method_label
from webapp.provenance import hardware_descriptions

st.title("Evidence explorer")
st.caption("Every measured run of the study. Filter, look, and download what you filtered. At first only the evidence "
           "grids' runs: the smoke and convergence grids are checks, at another resolution or with another recipe "
           "(add them under Grid).")
evidence = ui.evidence()
runs = evidence.tables["runs"]
machines = hardware_descriptions(evidence.tables["hardware"])

described = {name: grid.get("description", "") for name, grid in load_grids().items() if isinstance(grid, dict)}
evidence_names = evidence_grids()
grid_names, evidence_shown = evidence_first(runs["grid"].unique(), evidence_names)
filters = st.columns([1.5, 1, 1, 1, 1, 1])  # the grid chip names the grid and what it is
grids = filters[0].multiselect("Grid", grid_names, default=evidence_shown, key="f_grid",
                               format_func=lambda name: grid_label(name, evidence_names),
                               help="\n\n".join(f"**{name}**: {described.get(name) or 'not in the grid file'}"
                                                 for name in grid_names))
datasets = filters[1].multiselect("Dataset", sorted(runs["dataset"].unique()), key="f_dataset")
backbones = filters[2].multiselect("Backbone", sorted(runs["backbone"].unique()), format_func=backbone_label,
                                   key="f_backbone")
methods = filters[3].multiselect("Method", sorted(runs["method"].unique()), format_func=method_label, key="f_method")
k_values = filters[4].multiselect("Images per class (k)", sorted(runs["images_per_class"].unique()), key="f_k")
hardware = filters[5].multiselect("Hardware", sorted(runs["hardware_id"].unique()),
                                  format_func=lambda key: machines.get(key, key), key="f_hardware")
selected = runs
for column, chosen in (("grid", grids), ("dataset", datasets), ("backbone", backbones), ("method", methods),
                       ("images_per_class", k_values), ("hardware_id", hardware)):
    if chosen:
        selected = selected[selected[column].isin(chosen)]

st.metric("Runs selected", f"{len(selected):,} of {len(runs):,}")
if selected.empty:
    st.info("No run matches these filters.")
    st.stop()
st.altair_chart(altair_charts.evidence_accuracy_by_k(selected), theme=None)
st.altair_chart(altair_charts.evidence_accuracy_vs_time(selected), width="stretch", theme=None)
st.caption(f"Energy: CPU runs are {ENERGY_SOURCES['estimated']}; GPU runs are {ENERGY_SOURCES['nvml']}.")
table = selected.assign(
    method_name=selected["method"].map(method_label), backbone_name=selected["backbone"].map(backbone_label),
    machine=selected["hardware_id"].map(lambda key: machines.get(key, key)),
    energy=selected["energy_source"].map({"estimated": "estimated", "nvml": "measured (NVML)"}))
columns = {"grid": "Grid", "dataset": "Dataset", "backbone_name": "Backbone", "method_name": "Method",
           "images_per_class": "Images per class (k)", "seed": "Seed", "resolution": "Resolution (px)",
           "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro F1",
           "total_s": "Wall time (s)", "energy_j": "Energy (J)", "energy": "Energy source",
           "peak_memory_mb": "Peak memory (MB)", "machine": "Machine", "n_trials": "Trials",
           "finished_at": "Finished (UTC)"}
st.dataframe(table[list(columns)].rename(columns=columns), hide_index=True)
export = table[list(columns) + ["method", "backbone", "run_id"]].rename(
    columns={**columns, "method": "Method id", "backbone": "Backbone id", "run_id": "Run id"})
st.download_button("Download these runs (CSV)", data=export.to_csv(index=False), file_name="extract-or-tune-runs.csv",
                   mime="text/csv", on_click="ignore")
