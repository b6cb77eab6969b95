"""The study's methods, by name: ``fe_linear`` and ``fe_fne`` (frozen features, ``linear.py``), ``ft_full`` and
``ft_partial`` (fine-tuning, ``finetune.py``). Nothing here ever fits on test data."""
from study.methods import finetune, linear  # noqa: F401  (importing them registers their methods)
from study.methods.base import METHODS, MethodResult, register_method
from study.methods.linear import fit_linear_probe, fne_ternarise

__all__ = ["METHODS", "MethodResult", "register_method", "fit_linear_probe", "fne_ternarise"]
