"""Guidelines page: what the evidence says in general, each guideline with its numbers; download as PDF."""
import streamlit as st

from webapp import report, ui
from webapp.presentation import evidence_summary, numbers_table

st.title("Guidelines")
st.caption("Derived from the measured runs by recommender.guidelines; they change as the evidence grows.")
evidence = ui.evidence()
guidelines = ui.guidelines(evidence)
for number, guideline in enumerate(guidelines, start=1):
    with st.container(border=True):
        st.subheader(f"{number}. {guideline.title}")
        st.markdown(guideline.statement)
        if guideline.numbers:
            st.dataframe(numbers_table(guideline.numbers), hide_index=True)
summary = evidence_summary(evidence.tables)
ui.warm_pdf_renderer()
st.download_button("Download the guidelines (PDF)", on_click="ignore", file_name="extract-or-tune-guidelines.pdf",
                   mime="application/pdf", data=lambda: report.guidelines_document(guidelines, summary))
