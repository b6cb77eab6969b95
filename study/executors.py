"""Executors: how a grid's pending runs are computed. A registry name -> function, chosen with ``--executor``.

Every executor has the same contract: ``executor(specs, store, grid, **options) -> summary``. It skips the
run_ids already in ``store`` (and those in ``exclude``), is the only one writing to ``store`` (each run
committed atomically as it arrives), records a failed run in ``failures`` with its error, and returns counts
(``planned``, ``already_stored``, ``excluded``, ``stored``, ``failed``, ``not_started``, ...).

Options every executor takes (the command line's): ``device`` ('auto', 'cpu', 'cuda'), ``threads``,
``progress``, ``max_runs``, ``exclude``, ``time_budget_s``; executor-specific ones are named in its function.

  local  the existing loop in this process (study.runner.run_specs)
  ray    one Ray task per dataset x backbone group on a Ray cluster (study.ray_executor)
"""
from __future__ import annotations

from typing import Callable

Executor = Callable[..., dict]
EXECUTORS: dict[str, Executor] = {}


class ExecutorError(ValueError):
    """An unknown executor, or an option it does not take."""


def register_executor(name: str) -> Callable[[Executor], Executor]:
    def decorate(function: Executor) -> Executor:
        EXECUTORS[name] = function
        return function
    return decorate


def executor_names() -> list[str]:
    return list(EXECUTORS)


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ExecutorError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}") from None


@register_executor("local")
def local_executor(specs, store, grid: str, *, device: str = "auto", threads: int | None = None,
                   address: str | None = None, **options) -> dict:
    """The runs one after another in this process (``threads``: torch threads, already set by the caller)."""
    if address:
        raise ExecutorError("--address names a Ray cluster: use it with --executor ray")
    for ray_only in ("cpus_per_task", "max_retries"):
        if options.pop(ray_only, None) is not None:
            raise ExecutorError(f"{ray_only} is an option of --executor ray")
    from study.runner import resolve_device, run_specs

    return run_specs(specs, store, grid, resolve_device(device), **options)


@register_executor("ray")
def ray_executor(specs, store, grid: str, **options) -> dict:
    """Each dataset x backbone group as a Ray task (one GPU, or CPUs); see study.ray_executor."""
    from study.ray_executor import run_specs_ray

    return run_specs_ray(specs, store, grid, **options)
