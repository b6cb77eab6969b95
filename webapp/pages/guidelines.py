"""Guidelines page: what the evidence says in general, each guideline with its numbers; download as PDF."""
import streamlit as st

from webapp import report, ui
from webapp.presentation import numbers_tables, readable
from webapp.provenance import evidence_summary

st.title("Guidelines")
st.caption("Derived from the measured runs, with the numbers behind each; they change as the evidence grows.")
evidence = ui.evidence()
guidelines = ui.guidelines(evidence)
summary = evidence_summary(evidence.tables)
if "Scope" in summary:
    st.caption(summary["Scope"])
for number, guideline in enumerate(guidelines, start=1):
    with st.container(border=True):
        st.subheader(f"{number}. {readable(guideline.title)}")
        st.markdown(readable(guideline.statement))
        if guideline.points:
            st.markdown("\n".join(f"- {readable(point)}" for point in guideline.points))
        for table in numbers_tables(guideline.numbers or {}):
            st.dataframe(table, hide_index=True)
provenance = ui.sources(evidence)
ui.warm_pdf_renderer()
st.download_button("Download the guidelines (PDF)", on_click="ignore", file_name="extract-or-tune-guidelines.pdf",
                   mime="application/pdf", data=lambda: report.guidelines_document(guidelines, summary, provenance))
