"""Extract or Tune recommender: turns the study's evidence into advice for a described task. No UI code here
(the Streamlit app is ``webapp/``); plain data in and out, scikit-learn style estimators.

Public surface (imported lazily, so ``import recommender`` stays light for the app's cold start):

    from recommender import Advisor, Questionnaire, Assumptions, load_tables, derive_guidelines

    tables = load_tables()                                   # the evidence DuckDB as DataFrames (read-only)
    advisor = Advisor().fit(tables)                          # accuracy + cost models, fitted once
    advice = advisor.advise(Questionnaire(n_classes=10, images_per_class=50, domain="natural objects",
                                          image_size_px=224, hardware="t4"), Assumptions())
    advice.recommended, advice.options, advice.rationale     # the choice, every option, the reasons
    derive_guidelines(tables)                                # the evidence-derived guidelines with their numbers

Modules: ``questionnaire`` (the task and budgets, validated), ``accuracy`` (accuracy(k) with intervals),
``curves`` (learning curves), ``costs`` (time, energy, CO2, money, human hours; ``Assumptions``),
``hardware`` and ``carbon`` (profiles and grid intensity), ``advise`` (``Advisor``), ``guidelines``,
``evaluate`` (leave-one-dataset-out decision quality), ``evidence`` (reading the DuckDB safely).
"""
from importlib import import_module

_PUBLIC = {"Advisor": ("recommender.advise", "Advisor"), "Advice": ("recommender.advise", "Advice"),
           "Questionnaire": ("recommender.questionnaire", "Questionnaire"),
           "QuestionnaireError": ("recommender.questionnaire", "QuestionnaireError"),
           "Assumptions": ("recommender.costs", "Assumptions"),
           "load_tables": ("recommender.evidence", "load_tables"),
           "EvidenceError": ("recommender.evidence", "EvidenceError"),
           "derive_guidelines": ("recommender.guidelines", "derive")}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'recommender' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    return getattr(import_module(module), attribute)
