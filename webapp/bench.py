"""How fast the app answers, on this machine: ``python -m webapp.bench``.

- submit to recommendation (server side): Advisor.advise plus building and serialising the three charts, over
  varied questionnaires; target p95 <= 200 ms. Also the whole AppTest script rerun after a submit, for context.
- cold start to first render: ``streamlit run`` spawned until chromium shows the form; target <= 5 s. Cold start to
  a recommendation from a shared link: target <= 4 s once an earlier server persisted the fitted advisor (a fresh
  checkout's very first server also fits it, reported beside).
- PDF generation: the personal report (charts rendered to PNG) and the guidelines, once the chart renderer has
  started (the app starts it in the background); target <= 2 s.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from webapp import charts, renderer, report
from recommender.advise import BUDGET_COLUMNS, Advisor
from webapp.server import browser_page, chromium_path, serve
from recommender.costs import ASSUMPTION_SOURCES, Assumptions
from recommender.evidence import DEFAULT_DB, load_tables
from recommender.guidelines import derive
from recommender.hardware import HARDWARE
from webapp.presentation import budget_checks, options_table
from webapp.provenance import evidence_summary
from recommender.questionnaire import DOMAINS, Questionnaire
from webapp.persisted import TABLES

TARGETS_S = {"submit p95": 0.200, "cold start": 5.0, "cold link": 4.0, "pdf": 2.0}
LINK = "?n_classes=6&images_per_class=10&domain=textures&hardware=l4&budget_money_usd=400"


def questionnaires(count: int, seed: int = 0) -> list[Questionnaire]:
    """Varied answers: sizes, domains, hardware and budgets as a practitioner might give them."""
    rng = random.Random(seed)
    answers = []
    for _ in range(count):
        budget = {rng.choice(list(BUDGET_COLUMNS)): rng.choice([0.01, 1.0, 50.0, 500.0])} if rng.random() < 0.7 else {}
        answers.append(Questionnaire(n_classes=rng.choice([2, 5, 10, 50, 200]),
                                     images_per_class=rng.choice([1, 3, 10, 30, 100, 500]),
                                     domain=rng.choice(DOMAINS), image_size_px=rng.choice([64, 224, 512]),
                                     colour=rng.random() < 0.8, hardware=rng.choice(list(HARDWARE)),
                                     accuracy_weight=rng.choice([0.2, 0.5, 0.7, 1.0]), **budget))
    return answers


def recommend_and_chart(advisor: Advisor, answers: Questionnaire, assumptions: Assumptions):
    """What the advisor page computes after a submit, without Streamlit itself."""
    advice = advisor.advise(answers, assumptions)
    shown = charts.fe_vs_ft_options(advice.options, advice.recommended)
    charts.learning_curves(advice.curves, answers.images_per_class, shown)  # the specs the page sends
    charts.accuracy_vs_cost(advice.options, "total_usd", answers.budgets.get("budget_money_usd"), advice.recommended)
    charts.cost_breakdown(advice.options, answers.budgets)
    options_table(advice.options)
    budget_checks(advice)
    return advice


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_submit(advisor: Advisor, rounds: int) -> dict:
    timings = []
    for answers in questionnaires(rounds):
        started = time.perf_counter()
        recommend_and_chart(advisor, answers, Assumptions())
        timings.append(time.perf_counter() - started)
    return {"p50": statistics.median(timings), "p95": percentile(timings, 95), "max": max(timings),
            "n": len(timings)}


def bench_apptest_submit(db: Path, rounds: int) -> dict:
    """The whole script rerun after pressing Recommend (Streamlit's own work included), warm caches."""
    from streamlit.testing.v1 import AppTest

    os.environ["EOT_DB"] = str(db)
    app = AppTest.from_file(str(Path(__file__).resolve().with_name("main.py")), default_timeout=120).run()
    app.button(key="FormSubmitter:questionnaire-Recommend").click().run()  # fits the advisor once
    timings = []
    for answers in questionnaires(rounds, seed=1):
        app.number_input(key="q_n_classes").set_value(answers.n_classes)
        app.number_input(key="q_images_per_class").set_value(answers.images_per_class)
        app.selectbox(key="q_hardware").set_value(answers.hardware)
        started = time.perf_counter()
        app.button(key="FormSubmitter:questionnaire-Recommend").click().run()
        timings.append(time.perf_counter() - started)
        assert not app.exception, app.exception
    return {"p50": statistics.median(timings), "p95": percentile(timings, 95), "n": len(timings)}


def bench_cold_start(db: Path, rounds: int) -> dict:
    """Seconds from spawning ``streamlit run`` until the browser shows the form, and until a shared link shows
    its recommendation (a fresh server each time): the first server fits the advisor, the later ones read the model
    it persisted (an empty cache folder of their own, so the first is truly the first)."""
    first_render, first_advice = [], []
    with browser_page() as page, tempfile.TemporaryDirectory(prefix="eot-bench-cache-") as cache:
        env = {"EOT_CACHE_DIR": cache}
        for _ in range(rounds):
            started = time.perf_counter()
            with serve(db, env=env) as (url, _):
                page.goto(url + LINK)
                page.get_by_role("heading", name="Recommended:").wait_for(timeout=120_000)
                first_advice.append(time.perf_counter() - started)
            started = time.perf_counter()
            with serve(db, env=env) as (url, _):
                page.goto(url)
                page.get_by_role("button", name="Recommend").wait_for(timeout=120_000)
                page.get_by_label("Classes", exact=True).wait_for(timeout=120_000)
                first_render.append(time.perf_counter() - started)
    return {"first render median": statistics.median(first_render), "first render max": max(first_render),
            "link, fitting": first_advice[0],
            "link, persisted median": statistics.median(first_advice[1:]) if rounds > 1 else float("nan"),
            "link, persisted max": max(first_advice[1:]) if rounds > 1 else float("nan")}


def bench_pdf(tables: dict, advisor: Advisor, rounds: int) -> dict:
    summary = evidence_summary(tables)
    answers = Questionnaire(n_classes=6, images_per_class=10, domain="textures", hardware="l4",
                            budget_money_usd=400.0)
    advice = advisor.advise(answers, Assumptions())
    started = time.perf_counter()
    renderer.warm_up()  # what the app does in the background when it shows advice
    warm_up = time.perf_counter() - started
    personal = []
    for _ in range(rounds):
        started = time.perf_counter()
        report.personal_report(advice, report.chart_specs(advice), summary, Assumptions(), ASSUMPTION_SOURCES)
        personal.append(time.perf_counter() - started)
    guidelines = derive(tables)
    started = time.perf_counter()
    report.guidelines_document(guidelines, summary)
    return {"renderer warm-up": warm_up, "personal p50": statistics.median(personal), "personal max": max(personal),
            "guidelines": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--rounds", type=int, default=60, help="questionnaires for the submit timing")
    parser.add_argument("--cold-rounds", type=int, default=4,
                        help="fresh servers for the cold-start timing (2 or more: the first fits the advisor)")
    args = parser.parse_args(argv)
    tables = load_tables(args.db, tables=TABLES)
    started = time.perf_counter()
    advisor = Advisor().fit(tables)
    print(f"evidence: {len(tables['runs'])} runs; advisor fitted in {time.perf_counter() - started:.2f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    recommend_and_chart(advisor, Questionnaire(), Assumptions())  # warm-up: first Altair use
    submit = bench_submit(advisor, args.rounds)
    print(f"submit -> recommendation (advise + charts), n={submit['n']}: p50 {1000 * submit['p50']:.0f} ms, "
          f"p95 {1000 * submit['p95']:.0f} ms, max {1000 * submit['max']:.0f} ms "
          f"(target p95 <= {1000 * TARGETS_S['submit p95']:.0f} ms: "
          f"{'met' if submit['p95'] <= TARGETS_S['submit p95'] else 'MISSED'})")
    whole = bench_apptest_submit(Path(args.db), max(5, args.rounds // 4))
    print(f"  whole script rerun after a submit (AppTest), n={whole['n']}: p50 {1000 * whole['p50']:.0f} ms, "
          f"p95 {1000 * whole['p95']:.0f} ms")
    pdf = bench_pdf(tables, advisor, 4)
    print(f"PDF: personal report p50 {pdf['personal p50']:.2f} s, max {pdf['personal max']:.2f} s (n=4); guidelines "
          f"{pdf['guidelines']:.2f} s (target <= {TARGETS_S['pdf']:.0f} s: "
          f"{'met' if max(pdf['personal max'], pdf['guidelines']) <= TARGETS_S['pdf'] else 'MISSED'}); chart renderer "
          f"start-up {pdf['renderer warm-up']:.2f} s, done in the background when the app shows advice")
    if chromium_path() is None:
        print("cold start: skipped, chromium is not installed (scripts/bootstrap.sh installs it)")
        return 0
    cold = bench_cold_start(Path(args.db), args.cold_rounds)
    print(f"cold start -> first render (streamlit run spawned until chromium shows the form), n={args.cold_rounds}: "
          f"median {cold['first render median']:.2f} s, max {cold['first render max']:.2f} s "
          f"(target <= {TARGETS_S['cold start']:.0f} s: "
          f"{'met' if cold['first render max'] <= TARGETS_S['cold start'] else 'MISSED'})")
    print(f"cold start -> recommendation from a shared link, the fitted advisor persisted by an earlier server, "
          f"n={args.cold_rounds - 1}: median {cold['link, persisted median']:.2f} s, "
          f"max {cold['link, persisted max']:.2f} s (target <= {TARGETS_S['cold link']:.0f} s: "
          f"{'met' if cold['link, persisted max'] <= TARGETS_S['cold link'] else 'MISSED'}); "
          f"the very first server, which fits it: {cold['link, fitting']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
