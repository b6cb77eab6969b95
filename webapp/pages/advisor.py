"""Advisor page: the questionnaire (bound to the URL), the recommendation, what breaks each budget and the one
change that would fit it, the rationale, charts, every option, the report and a link to share."""
import streamlit as st

from webapp import ui
from recommender.carbon import REGIONS
from recommender.costs import ASSUMPTION_SOURCES, Assumptions
from recommender.hardware import HARDWARE
from study.spec import is_finetuning
from webapp.presentation import (COSTS, QUESTION_LABELS, RANK_BY_LABELS, budget_checks, budget_failures, duration,
                                 format_amount, format_money, options_csv, options_table, plain,
                                 probe_curves_table, probe_would_narrow_sentence, pue_reason, readable,
                                 resolution_sentence)
from webapp.provenance import evidence_summary

st.title("Extract or Tune: advisor")
st.caption("Feature extraction or fine-tuning? Describe your task and budgets; the advice rests on measured runs.")
evidence = ui.evidence()

params = st.query_params.to_dict()
linked, link_messages = ui.questionnaire_from_link(params)
linked_assumptions, assumption_messages = ui.assumptions_from_link(params)
for message in link_messages + assumption_messages:
    st.warning(message)

ui.probe_panel()
submitted = ui.questionnaire_form(linked, linked_assumptions)
answers = submitted if submitted is not None else linked
assumptions = ui.assumptions_editor(answers)
if submitted is None and not ui.link_has_answers(params):
    st.info("Answer the questions and press **Recommend**. A link to the answers reproduces the advice.")
    st.stop()
st.query_params.from_dict({**answers.to_query(), **ui.assumptions_to_query(assumptions)})

# Imported only now that advice is wanted (scikit-learn, the charts), so a cold start shows the form sooner.
from webapp import charts, fixes  # noqa: E402
from recommender.advise import BUDGET_COLUMNS  # noqa: E402

advisor = ui.advisor(evidence)
_, evaluation = ui.decision_quality()  # the stored evaluation, for what a fine-tuning pilot did to decisions
try:
    advice = advisor.advise(answers, assumptions)
except ValueError as error:
    st.error(f"No advice for these answers: {readable(error)}")
    st.stop()
row = advice.recommended_row
machine = HARDWARE[answers.hardware]
grid = assumptions.grid_gco2_per_kwh if assumptions.grid_gco2_per_kwh is not None else \
    REGIONS[answers.region].grid_gco2_per_kwh

with st.container(border=True):
    st.subheader(f"Recommended: {row['label']}")
    if not advice.feasible_exists:
        st.error("No option fits every budget; this one overshoots them the least. Below: what breaks each budget "
                 "and one change that would make it fit.")
    accuracy, money, time, human, carbon = st.columns(5)
    accuracy.metric("Predicted accuracy", f"{row['acc_median']:.1%}",
                    help="Median prediction; the caption gives the 80% interval.")
    accuracy.caption(f"80% interval {row['acc_low']:.1%} to {row['acc_high']:.1%}, {row['accuracy_basis']}"
                     + ("; **extrapolated** outside what the study measured (see Why)" if row["extrapolated"] else ""))
    money.metric("Money", format_money(row["total_usd"]))
    money.caption(f"compute {format_money(row['compute_usd'])} + labour {format_money(row['human_usd'])} "
                  f"({duration(row['human_hours'])} at ${assumptions.hourly_rate_usd:g}/h)")
    time.metric("Compute time", duration(row["time_h"]))
    time.caption(f"on {machine.name}" + (f", {row['trials']} training runs" if is_finetuning(row["method"])
                                         else ", one pass over your images"))
    human.metric("Human time", duration(row["human_hours"]))
    human.caption("set-up" + (f" and {row['trials']} fine-tuning trials" if is_finetuning(row["method"]) else ""))
    carbon.metric("CO₂ (kg)", plain(row["co2_kg"]))
    carbon.caption(f"energy {plain(row['energy_kwh'])} kWh on the device, {plain(row['energy_kwh_with_pue'])} kWh "
                   f"with {pue_reason(answers.hardware, row['pue'], assumptions)}; grid {grid:.0f} gCO₂/kWh")
    st.markdown(resolution_sentence(row))
    checks = budget_checks(advice)
    if checks.empty:
        st.caption("No budgets set: every option is within budget.")
    for check in checks.itertuples():
        column = BUDGET_COLUMNS[check.name]
        verdict = ":green[**pass**]" if check.passes else ":red[**fail**]"
        st.markdown(f"{verdict} {check.budget}: {format_amount(column, check.predicted)} against "
                    f"{format_amount(column, check.limit)}" + ("" if check.passes else f", broken by "
                                                                f"{check.component}"))
    if advice.probe_would_narrow:
        st.info(probe_would_narrow_sentence(advice.probe_would_narrow, "**Measure your own images** above",
                                            "tick **Also fine-tune once** there", evaluation))

failures = budget_failures(advice)
if not failures.empty:
    st.markdown("#### What breaks your budgets, and what would fit them")
    hints = fixes.hints(advisor, advice)
    for field, group in failures.groupby("field", sort=False):
        column = BUDGET_COLUMNS[field]
        with st.container(border=True):
            st.markdown(f":red[**{QUESTION_LABELS[field]} {format_amount(column, group['limit'].iloc[0])}**]: "
                        f"broken by {len(group)} of {len(advice.options)} options.")
            st.markdown("\n".join(f"- {r.label}: {format_amount(column, r.value)}, from {r.component}"
                                  for r in group.itertuples()))
            for index, hint in enumerate(h for h in hints if h.budget == field):
                if hint.value is None and hint.kind == "answer":
                    st.markdown(f"Change **{fixes.field_label(hint.kind, hint.field)}** in the form above. "
                                f"{hint.note}")
                    continue
                st.button(hint.label, key=f"fix_{field}_{index}", on_click=ui.apply_fix,
                          args=(hint.kind, hint.field, hint.value), type="primary" if hint.value is not None
                          else "secondary")
                st.caption(hint.note)

st.markdown("#### Why")
st.markdown("\n".join(f"- {readable(line)}" for line in advice.rationale))
if answers.probe is not None:
    st.markdown("#### Your probe: measured accuracy on your images, trained on k images per class")
    st.dataframe(probe_curves_table(answers.probe_curves), hide_index=True)
probe_effect = ui.probe_comparison(advisor, answers, assumptions)
if probe_effect is not None:
    st.markdown("#### What your probe changed (predicted accuracy, 80% interval)")
    st.dataframe(probe_effect, hide_index=True)

axes = ["total_usd", "time_h", "energy_kwh_with_pue", "co2_kg", "human_hours"]
broken = [BUDGET_COLUMNS[name] for name in failures["field"]] + [BUDGET_COLUMNS[name] for name in answers.budgets]
cost_column = st.selectbox("Cost to compare the options on", axes, format_func=lambda c: COSTS[c][0],
                           key="cost_axis", index=axes.index(broken[0]) if broken else 0)
budget_for_axis = next((limit for name, limit in answers.budgets.items() if BUDGET_COLUMNS[name] == cost_column),
                       None)
st.vega_lite_chart(spec=charts.accuracy_vs_cost(advice.options, cost_column, budget_for_axis, advice.recommended),
                  theme=None)
show_all = st.toggle("Every option's learning curve (else the recommended option and the best of the other family)",
                     key="all_curves")
shown = None if show_all else charts.fe_vs_ft_options(advice.options, advice.recommended)
st.vega_lite_chart(spec=charts.learning_curves(advice.curves, answers.images_per_class, shown), width="content",
                  theme=None)
st.vega_lite_chart(spec=charts.cost_breakdown(advice.options, answers.budgets), theme=None)

st.markdown("#### Every option")
table = options_table(advice.options)
if table["Cost basis"].nunique() == 1:  # said once, under the table
    basis = table.pop("Cost basis").iloc[0]
else:
    basis = None
st.table(table.set_index("Option"))
st.caption("Energy is given for the device alone and with the data centre's overhead (PUE); CO₂ counts the energy "
           "with PUE. Money is compute plus labour. Expected: the mean accuracy over how far predictions for "
           "tasks like yours have erred, and in which direction. Reached 3 times in 4: the cautious figure, so a "
           f"prediction a little higher but much less certain does not win. Options are ranked by the "
           f"{RANK_BY_LABELS[answers.rank_by]} (your choice), with the cost you would trade. "
           "Pareto front: no other option is both more accurate and cheaper "
           "(in total money)." + (f" Costs of every option are {basis}." if basis else ""))

summary = evidence_summary(evidence.tables)
provenance = ui.sources(evidence)
ui.warm_pdf_renderer()
link = ui.share_link(answers, assumptions)


def personal_report_pdf() -> bytes:
    from webapp import report  # fpdf2 loads when a report is asked for (or in the warm-up), not on a cold link

    return report.personal_report(advice, report.chart_specs(advice, cost_column), summary, Assumptions(),
                                  ASSUMPTION_SOURCES, link, provenance, evaluation)


pdf_column, csv_column = st.columns(2)
pdf_column.download_button("Download your report (PDF)", on_click="ignore", file_name="extract-or-tune-report.pdf",
                           mime="application/pdf", data=personal_report_pdf)
csv_column.download_button("Download every option (CSV)", on_click="ignore", file_name="extract-or-tune-options.csv",
                           mime="text/csv", data=options_csv(advice.options).to_csv(index=False))
st.markdown("**Link to these answers** (copy it to share the advice)")
st.code(link, language=None, wrap_lines=True)
if ui.link_is_local(link):
    st.caption(f"This address works on this machine only. To share, serve the app where colleagues can reach it and "
               f"set {ui.PUBLIC_URL_ENV} to that address.")
