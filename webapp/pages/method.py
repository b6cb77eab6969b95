"""Method & provenance page: how the evidence was produced, every source the advice uses, and how good the
recommender's decisions are."""
import pandas as pd
import streamlit as st

from webapp import ui
from recommender.evidence import REGENERATE_COMMAND
from webapp.provenance import (baseline_comparison, baseline_share_sentence, commits, energy_sources,
                               evaluation_summary, evaluation_tables, evidence_summary, grid_coverage, hardware_table,
                               one_run_sentence, prediction_quality, regret_by_policy, software_versions)

st.title("Method & provenance")
evidence = ui.evidence()
tables = evidence.tables
runs = tables["runs"]
st.markdown(
    "Each run is one (dataset, backbone, method, images per class k, seed, resolution), measured by the study's "
    f"own code (`{REGENERATE_COMMAND}` regenerates the shipped grid). Feature extraction trains a linear classifier "
    "on frozen ImageNet features (its regularisation chosen by cross-validation on the training images); "
    "fine-tuning selects its learning rate and stopping point on a validation split of the training images. "
    "Nothing is selected on test data.")
st.subheader("The evidence at a glance")
summary = evidence_summary(tables)
st.table(pd.DataFrame({"What": list(summary), "Value": list(summary.values())}).set_index("What"))

st.subheader("Sources of every number the advice uses")
st.markdown("Accuracy comes from the study's runs (and your probe); time and energy from measured throughputs, "
            "translated to your hardware and resolution; CO₂, money and people's time from the stated sources and "
            "assumptions below. The Advisor's report (PDF) carries the same list.")
st.table(ui.sources(evidence).set_index("What"))

st.subheader("Energy: measured or estimated")
st.warning("CPU energy is an **estimate** (10 W per busy thread x threads x wall time), not a measurement; "
           "GPU energy is measured with NVIDIA's NVML counter. Every run records which.")
st.dataframe(energy_sources(runs), hide_index=True)
st.subheader("Grids")
st.dataframe(grid_coverage(runs), hide_index=True)
st.subheader("Hardware")
st.dataframe(hardware_table(tables["hardware"]), hide_index=True)
st.subheader("Software versions and code")
st.dataframe(software_versions(runs), hide_index=True)
st.dataframe(commits(runs), hide_index=True)
failures = tables.get("failures")
st.caption(f"{len(tables['trials']):,} fine-tuning trials stored; "
           f"{0 if failures is None else len(failures):,} failed runs recorded (retried on the next resume).")

st.subheader("Decision quality of the recommender")
st.markdown("Leave one dataset out: the advisor, fitted without a dataset, advises on it (from the description "
            "alone, with that dataset's extraction probe, and with the probe and its fine-tuning pilot) at every k "
            "where fine-tuning was measured, with no budget and under a compute and a "
            "human-time budget. Its pick is scored by that dataset's own measurements against the best option "
            "within budget in hindsight (regret, in accuracy points), and so are fixed policies: the best fixed "
            "option in hindsight, always extract, always fine-tune, and the seed paper's k-threshold rule. Under a "
            "budget, a fixed policy takes its highest-ranked option that the cost model predicts fits, knowing the "
            "costs the recommender knows. A pick that breaks the budget is counted as a violation and scored as "
            "the cheapest option, the fallback a user is left with. The recommender ranks by expected accuracy "
            "here (the default); mean regret is the average over decisions, which is what expected accuracy "
            "maximises.")
quality, headline = ui.decision_quality()
if quality is None and not headline:
    st.info("Not evaluated yet. Run `python -m recommender.evaluate` to measure it.")
if headline:
    st.markdown("**Decisions: mean regret per policy** (accuracy points below the best option within budget in "
                "hindsight; lower is better)")
    st.table(regret_by_policy(headline).set_index("Policy"))
    st.markdown(baseline_share_sentence(headline))
    st.markdown(one_run_sentence(headline))
    if "versus_baselines" in headline:
        st.markdown("**Against each baseline** (the recommender's mean regret minus the baseline's, averaged over the "
                    "held-out datasets; negative: it lost fewer points. The 90% interval resamples the held-out "
                    "datasets: with a dozen of them, no fixed policy is beaten on every one, and the interval says "
                    "whether a difference on average is more than which datasets happened to be held out.)")
        for tab, key in zip(st.tabs(["All decisions", "Within a budget"]),
                            ("versus_baselines", "versus_baselines_within_budget")):
            tab.table(baseline_comparison(headline, key).set_index(["Recommender", "Against"]))
    st.markdown("**Accuracy predictions** (error against the held-out dataset's measurements; an honest 80% interval "
                "covers about 80% of them)")
    st.table(prediction_quality(headline).set_index("Known"))
    with st.expander("Every figure of the evaluation"):
        st.table(evaluation_summary(headline).set_index("Measure"))
if quality is not None:
    regret, predictions = evaluation_tables(quality)
    st.markdown("**Per held-out dataset: mean regret** (accuracy points below the best within-budget option in "
                "hindsight; lower is better; one run of each option: over the decisions where every option had two "
                "or more seeds)")
    st.table(regret.set_index("Held-out dataset"))
    st.markdown("**Per held-out dataset: accuracy predictions** (error: mean absolute difference between the "
                "predicted and the measured accuracy, in points; coverage of the 80% intervals; their median width, "
                "in points)")
    st.table(predictions.set_index("Held-out dataset"))
