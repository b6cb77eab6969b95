"""Advisor page: the questionnaire (bound to the URL), the recommendation, its rationale, charts and report."""
import streamlit as st

from webapp import ui
from recommender.costs import ASSUMPTION_SOURCES, Assumptions
from webapp.presentation import (COSTS, budget_checks, cost_label, evidence_summary, format_amount,
                                      options_table, probe_curves_table)

st.title("Extract or Tune: advisor")
st.caption("Feature extraction or fine-tuning? Describe your task and budgets; the advice rests on measured runs.")
evidence = ui.evidence()

params = st.query_params.to_dict()
linked, link_messages = ui.questionnaire_from_link(params)
linked_assumptions, assumption_messages = ui.assumptions_from_link(params)
for message in link_messages + assumption_messages:
    st.warning(message)

ui.probe_panel()
submitted = ui.questionnaire_form(linked)
assumptions = ui.assumptions_editor(linked_assumptions)
if submitted is not None:
    answers = submitted
elif ui.link_has_answers(params):
    answers = linked
else:
    st.info("Answer the questions and press **Recommend**. A link to the answers reproduces the advice.")
    st.stop()
st.query_params.from_dict({**answers.to_query(), **ui.assumptions_to_query(assumptions)})

# Imported only now that advice is wanted (scikit-learn, Altair, fpdf2), so a cold start shows the form sooner.
from webapp import charts, report# noqa: E402
from recommender.advise import BUDGET_COLUMNS  # noqa: E402

try:
    advice = ui.advisor(evidence).advise(answers, assumptions)
except ValueError as error:
    st.error(f"No advice for these answers: {error}")
    st.stop()
row = advice.recommended_row

with st.container(border=True):
    st.subheader(f"Recommended: {advice.recommended}")
    accuracy, money, time, carbon, human = st.columns(5)
    accuracy.metric("Predicted accuracy", f"{row['acc_median']:.1%}",
                    help="Median prediction; the caption gives the 80% interval.")
    accuracy.caption(f"80% interval {row['acc_low']:.1%} to {row['acc_high']:.1%}")
    money.metric("Money", format_amount("total_usd", row["total_usd"]))
    money.caption(f"compute {format_amount('compute_usd', row['compute_usd'])} + labour "
                  f"{format_amount('human_usd', row['human_usd'])}")
    time.metric("Compute time", format_amount("time_h", row["time_h"]))
    carbon.metric("CO₂", format_amount("co2_kg", row["co2_kg"]))
    carbon.caption(f"energy {format_amount('energy_kwh', row['energy_kwh'])}")
    human.metric("Human time", format_amount("human_hours", row["human_hours"]))
    checks = budget_checks(advice)
    if checks.empty:
        st.caption("No budgets set: every option is feasible.")
    for check in checks.itertuples():
        verdict = ":green[**pass**]" if check.passes else ":red[**fail**]"
        column = BUDGET_COLUMNS[check.name]
        st.markdown(f"{verdict} {check.budget}: predicted {format_amount(column, check.predicted)} "
                    f"against {format_amount(column, check.limit)}")
    st.caption(f"Costs are {row['cost_basis']}.")

st.markdown("#### Why")
st.markdown("\n".join(f"- {line}" for line in advice.rationale))
if answers.probe is not None:
    st.markdown("#### Your probe: measured accuracy on your images, trained on k images per class")
    st.dataframe(probe_curves_table(answers.probe_curves), hide_index=True)
probe_effect = ui.probe_comparison(ui.advisor(evidence), answers, assumptions)
if probe_effect is not None:
    st.markdown("#### What your probe changed (predicted accuracy, 80% interval)")
    st.dataframe(probe_effect, hide_index=True)

budget_columns = [BUDGET_COLUMNS[name] for name in answers.budgets]
cost_column = st.selectbox("Cost axis", list(COSTS), format_func=cost_label, key="cost_axis",
                           index=list(COSTS).index(budget_columns[0]) if budget_columns else 0)
budget_for_axis = next((limit for name, limit in answers.budgets.items()
                        if BUDGET_COLUMNS[name] == cost_column), None)
curves_chart, cost_chart = st.columns(2)
show_all = curves_chart.toggle("Every option's curve", key="all_curves")
shown = None if show_all else charts.fe_vs_ft_options(advice.options, advice.recommended)
curves_chart.altair_chart(charts.learning_curves(advice.curves, answers.images_per_class, shown), width="stretch",
                          theme=None)
cost_chart.altair_chart(charts.accuracy_vs_cost(advice.options, cost_column, budget_for_axis, advice.recommended),
                        width="stretch", theme=None)
st.altair_chart(charts.cost_breakdown(advice.options, answers.budgets), theme=None)

st.markdown("#### Every option")
st.dataframe(options_table(advice.options), hide_index=True)

summary = evidence_summary(evidence.tables)
ui.warm_pdf_renderer()
link = ui.share_link(answers, assumptions)
pdf_column, csv_column = st.columns(2)
pdf_column.download_button(
    "Download your report (PDF)", on_click="ignore", file_name="extract-or-tune-report.pdf", mime="application/pdf",
    data=lambda: report.personal_report(advice, report.chart_pngs(advice, cost_column), summary, Assumptions(),
                                        ASSUMPTION_SOURCES, link))
csv_column.download_button("Download every option (CSV)", on_click="ignore", file_name="extract-or-tune-options.csv",
                           mime="text/csv", data=advice.options.to_csv(index=False))
st.caption(f"Link to these answers: {link}")
