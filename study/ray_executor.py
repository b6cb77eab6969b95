"""The ``ray`` executor: a grid's pending runs fanned out over a Ray cluster, one task per dataset x backbone.

  python -m study.run --grid gpu --executor ray --address HEAD:6379   # an existing cluster
  python -m study.run --grid cpu --executor ray                       # a local Ray instance on 127.0.0.1

- A task is one (dataset, backbone, resolution) group, so the worker decodes the images and extracts the features
  once and every run of the group reuses them (``study.runner.Context``, ``execute_run``, as the local loop).
  It asks for one GPU where the cluster has GPUs (``--device auto``/``cuda``), else ``--ray-cpus-per-task`` CPUs.
- The driver is the only writer: records come back as task results and are stored as each task finishes
  (``ray.wait``), so a killed driver loses at most the groups in flight; a rerun skips every stored run_id.
- A run that raises inside a task is recorded in ``failures`` (as the local loop does) and the group goes on.
  A task that dies (worker or node lost) is retried by Ray up to ``--ray-max-retries`` times; a task that raises
  (a dataset or backbone that cannot be loaded there) or is out of retries has every run of its group recorded in
  ``failures`` with the error. Nothing is dropped silently; failed runs are retried on the next resume.
- Nothing is downloaded: the ``study`` package travels to the workers through Ray's own object store (the job's
  ``runtime_env`` ``py_modules`` of the local folder; no pip/conda environment); torch, timm and the weight
  packages come from each node's installed packages; datasets and the decode/feature cache from shared paths named
  by ``EOT_SHARED_DATASETS`` and ``EOT_CACHE_DIR`` (their values here, passed through ``runtime_env`` env_vars,
  with the other ``EOT_*`` settings and this checkout's commit as ``EOT_GIT_COMMIT``). Where the caller has
  already connected to Ray, only the env_vars travel (per task): ``study`` must then be importable on the workers
  (the caller's own job ``runtime_env``, or the same checkout on every node).
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path

from study import measure
from study.spec import RunSpec

log = logging.getLogger(__name__)

STUDY_PACKAGE = Path(__file__).resolve().parent
# Set (unless already set) before Ray is imported: no usage reporting, no `uv run` environment shipped to workers.
RAY_ENV_DEFAULTS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
# Ray resolves "127.0.0.1" to the machine's routable address on Linux unless this is 0 (then every Ray socket of a
# local instance binds to loopback): set for a local instance only, never when joining a cluster.
RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PASSED_ENV = ("EOT_SHARED_DATASETS", "EOT_CACHE_DIR", "EOT_WEIGHTS_DIR", "EOT_FASHION_MNIST_DIR",
              "EOT_PACKED_DATASETS", "EOT_GIT_COMMIT")
DEFAULT_MAX_RETRIES = 2


def worker_env() -> dict[str, str]:
    """Environment every task gets: where datasets, weights and the cache are, and the driver's commit."""
    from study.datasets import cache_root, shared_datasets_root

    env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    env.setdefault("EOT_SHARED_DATASETS", str(shared_datasets_root().resolve()))
    env.setdefault("EOT_CACHE_DIR", str(cache_root().resolve()))
    env.setdefault("EOT_GIT_COMMIT", measure.git_commit())
    return env


def runtime_env() -> dict:
    """The job's env_vars and the local ``study`` package (uploaded to the cluster's object store by ``ray.init``;
    nothing downloaded)."""
    return {"env_vars": worker_env(), "py_modules": [str(STUDY_PACKAGE)], "excludes": ["__pycache__", "*.pyc"]}


def group_specs(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Specs grouped by (dataset, backbone, resolution), groups in the order of their first spec."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.dataset, spec.backbone, spec.resolution), []).append(spec)
    return list(groups.values())


def run_group(specs: list[RunSpec], grid: str, use_gpu: bool, threads: int, deadline: float | None) -> list[dict]:
    """Inside a Ray task: run a group's specs with one shared Context; one outcome per spec.

    An outcome is ``{"record": ...}``, ``{"failure": {...}}`` (the run raised; the group goes on) or
    ``{"not_started": run_id}`` (``deadline``, a wall-clock time, had passed). Errors that make the whole group
    impossible (dataset, backbone) raise, failing the task.
    """
    import torch

    from study.runner import FATAL_ERRORS, Context, execute_run

    torch.set_num_threads(max(1, threads))
    device = torch.device("cuda" if use_gpu else "cpu")
    context = Context(device)
    outcomes = []
    for spec in specs:
        if deadline is not None and time.time() >= deadline:
            outcomes.append({"not_started": spec.run_id})
            continue
        try:
            outcomes.append({"record": execute_run(spec, context, grid)})
        except FATAL_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - returned with its traceback, stored in failures by the driver
            outcomes.append({"failure": {"run_id": spec.run_id, "spec": spec.canonical(),
                                         "error": f"{type(error).__name__}: {error}", "failed_at": measure.utc_now(),
                                         "traceback": traceback.format_exc()}})
    return outcomes


def connect(address: str | None = None):
    """The ray module, connected: to the Ray already initialised in this process, to ``address`` (or
    $RAY_ADDRESS), or to a new local instance on 127.0.0.1 without dashboard; the jobs we start carry
    ``runtime_env()``. Returns (ray, whether this call connected)."""
    for name, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        for name, value in RAY_LOOPBACK_ENV.items():
            os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install -r requirements.txt") from None
    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, runtime_env=runtime_env(), logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", runtime_env=runtime_env(),
                 logging_level=logging.WARNING)
    return ray, True


def _use_gpu(device: str, resources: dict) -> bool:
    gpus = resources.get("GPU", 0)
    if device == "cuda" and gpus < 1:
        raise RuntimeError("--device cuda was asked for but the Ray cluster has no GPU")
    return device != "cpu" and gpus >= 1


def _task_error(error: Exception) -> str:
    cause = getattr(error, "cause", None)  # RayTaskError: the exception the task raised
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"


def run_specs_ray(specs: list[RunSpec], store, grid: str, *, device: str = "auto", threads: int | None = None,
                  progress: bool = True, max_runs: int | None = None, exclude=frozenset(),
                  time_budget_s: float | None = None, address: str | None = None, cpus_per_task: int | None = None,
                  max_retries: int | None = None) -> dict:
    """Run every spec not yet stored on a Ray cluster, storing each record on this driver as its group returns.

    ``cpus_per_task``: CPUs a task asks for (default ``threads`` or 1); on GPU nodes a task also asks for 1 GPU.
    ``threads``: torch threads in a task (default ``cpus_per_task``). ``max_retries``: Ray's retries of a task
    whose worker died. ``time_budget_s``: no group is submitted, and no run started, after this many seconds.
    """
    from tqdm import tqdm

    started = time.monotonic()
    from study.runner import pending_runs

    pending, summary = pending_runs(specs, store, exclude, max_runs)
    groups = group_specs(pending)
    summary.update(executor="ray", groups=len(groups), groups_failed=0)
    if not groups:
        return summary
    ray, connected = connect(address)
    try:
        resources = ray.cluster_resources()
        use_gpu = _use_gpu(device, resources)
        cpus = max(1, cpus_per_task or threads or 1)
        slots = int(resources.get("GPU", 0)) if use_gpu else int(resources.get("CPU", 1) // cpus)
        slots = max(1, slots)
        task = ray.remote(run_group).options(
            num_cpus=cpus, num_gpus=1 if use_gpu else 0,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries, retry_exceptions=False,
            name="study-group", **({} if connected else {"runtime_env": {"env_vars": worker_env()}}))
        log.info("grid %s on Ray (%s): %d runs in %d dataset x backbone groups, %d already stored, %d excluded; "
                 "tasks of %d CPU%s, %d at a time", grid, resources, len(pending), len(groups),
                 summary["already_stored"], summary["excluded"], cpus, " + 1 GPU" if use_gpu else "", slots)
        bar = tqdm(total=len(pending), disable=not progress, unit="run", dynamic_ncols=True)
        queue = list(groups)
        in_flight: dict = {}

        def submit() -> None:
            while queue and len(in_flight) < slots:
                elapsed = time.monotonic() - started
                if time_budget_s is not None and elapsed >= time_budget_s:
                    return
                deadline = None if time_budget_s is None else time.time() + time_budget_s - elapsed
                group = queue.pop(0)
                in_flight[task.remote(group, grid, use_gpu, threads or cpus, deadline)] = group

        submit()
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            group = in_flight.pop(ref)
            submit()  # keep the cluster busy while this group's records are stored
            _store_group(ray, ref, group, store, summary, bar)
        summary["not_started"] += sum(len(group) for group in queue)
        if queue:
            log.info("time budget of %.0f s spent: %d groups not submitted (they resume on the next call)",
                     time_budget_s, len(queue))
        bar.close()
    finally:
        if connected:
            ray.shutdown()
    return summary


def _store_group(ray, ref, group: list[RunSpec], store, summary: dict, bar) -> None:
    first = group[0]
    try:
        outcomes = ray.get(ref)
    except ray.exceptions.RayError as error:  # the task raised, or died more often than its retries
        message = _task_error(error)
        log.error("group %s %s failed (%d runs recorded in failures): %s", first.dataset, first.backbone,
                  len(group), error)
        summary["groups_failed"] += 1
        for spec in group:
            store.record_failure(spec.run_id, spec.canonical(), message, measure.utc_now())
            summary["failed"] += 1
            bar.update(1)
        return
    for outcome in outcomes:
        if "record" in outcome:
            record = outcome["record"]
            store.write(record)
            summary["stored"] += 1
            run = record["run"]
            log.info("stored run %s %s %s %s k=%s seed=%d acc=%.3f %.1fs", run["run_id"], run["dataset"],
                     run["backbone"], run["method"], run["k_label"], run["seed"], run["accuracy"], run["total_s"])
        elif "failure" in outcome:
            failure = outcome["failure"]
            log.error("run %s failed: %s", failure["run_id"], failure["traceback"])
            store.record_failure(failure["run_id"], failure["spec"], failure["error"], failure["failed_at"])
            summary["failed"] += 1
        else:
            summary["not_started"] += 1
        bar.update(1)
    bar.set_description(f"{first.dataset[:14]} {first.backbone[:16]}")
