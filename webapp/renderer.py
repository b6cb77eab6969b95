"""Charts to PNG for the PDF reports, in worker processes.

vl-convert holds the GIL while it renders: a pure-Python thread ran about 200 times slower during one chart's
rendering (measured), so the report's three charts (0.4-0.7 s each on an AVX2 EPYC) froze every session of the server
while they rendered, and threads could not render them side by side. ``RENDER_PROCESSES`` spawned processes (not
forked: the server runs threads) each keep their own vl-convert engine; the charts render in parallel and the server
keeps answering. ``start`` launches them (the app does, in the background, once advice is shown), and a process that
cannot be started or dies leaves the rendering to this process, as before, with a warning.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
VEGALITE_VERSION = "6.4"  # the Vega-Lite that altair 6.3 writes; vl-convert must render the same
RENDER_PROCESSES = 3  # the three charts of a report, side by side
RENDER_TIMEOUT_S = 60.0
WARM_UP_SPEC = {"data": {"values": [{"x": 1}]}, "mark": "point",
                "encoding": {"x": {"field": "x", "type": "quantitative"}}}
# Processes that cannot start or died, a report's wait that ran out, or renders cancelled when another report gave up
FAILURES = (BrokenProcessPool, OSError, RuntimeError, TimeoutError, CancelledError)
log = logging.getLogger(__name__)
_pool: list[ProcessPoolExecutor] = []
_lock = threading.Lock()
_fonts_registered = False


def render_png(spec: dict, scale: float = 1.5) -> bytes:
    """PNG of a chart's Vega-Lite spec, rendered offline with DejaVu so CO₂ shows (in the calling process)."""
    global _fonts_registered
    import vl_convert

    if not _fonts_registered and FONT_DIR.is_dir():
        vl_convert.register_font_directory(str(FONT_DIR))
        _fonts_registered = True
    spec = {**spec, "config": {**spec.get("config", {}), "font": "DejaVu Sans"}}
    return vl_convert.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=scale)


def _exit_with_parent() -> None:
    """In a worker process: exit as soon as the server process has (its pipes do not tell the worker: a stopped
    server left its renderer processes running)."""
    multiprocessing.parent_process().join()
    os._exit(0)


def _start_engine() -> None:
    """In each worker process, as it starts: a watch on the server process, and vl-convert's JavaScript engine
    (about a second on first use)."""
    threading.Thread(target=_exit_with_parent, name="exit-with-server", daemon=True).start()
    render_png(WARM_UP_SPEC, scale=1.0)


def start() -> ProcessPoolExecutor:
    """The renderer processes (once per server); each starts its engine as it is spawned."""
    with _lock:
        if not _pool:
            _pool.append(ProcessPoolExecutor(RENDER_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_engine))
        return _pool[0]


def warm_up() -> None:
    """Start the renderer processes and wait until each has its engine running (one task each: a process is
    spawned for a task while the others are busy)."""
    pool = None
    try:
        pool = start()
        for future in [pool.submit(render_png, WARM_UP_SPEC, 1.0) for _ in range(RENDER_PROCESSES)]:
            future.result(RENDER_TIMEOUT_S)
    except FAILURES as error:
        _give_up(pool, error)


class Rendering:
    """PNGs on their way: rendering starts in the renderer processes when this is made, so the caller can lay out
    the rest of a report meanwhile; ``pngs`` waits for them (rendering them in this process if the processes
    cannot be started or fail)."""

    def __init__(self, specs: list[dict], scale: float = 1.5):
        self.specs, self.scale, self._pool, self._futures = list(specs), scale, None, None
        try:
            self._pool = start()
            self._futures = [self._pool.submit(render_png, spec, scale) for spec in self.specs]
        except FAILURES as error:
            self._futures = None
            _give_up(self._pool, error)

    def pngs(self) -> list[bytes]:
        if self._futures is not None:
            try:
                return [future.result(RENDER_TIMEOUT_S) for future in self._futures]
            except FAILURES as error:
                _give_up(self._pool, error)
        return [render_png(spec, self.scale) for spec in self.specs]


def _give_up(pool: ProcessPoolExecutor | None, error: Exception) -> None:
    """Drop the renderer processes that failed (the next report starts new ones, unless another report already
    has); this report renders in this process."""
    log.warning("chart renderer processes unavailable (%s); rendering in the server process",
                error or type(error).__name__)
    with _lock:
        if pool is not None and _pool and _pool[0] is pool:
            _pool.pop().shutdown(wait=False, cancel_futures=True)
