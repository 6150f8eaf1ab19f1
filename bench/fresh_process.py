"""`in_fresh_process(fn, *args)`: a benchmark run in its own spawned process, so that each run has its own peak
RSS, its own environment (vLLM reads it once an engine is up) and no fork+OpenMP hang."""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable


def _call(fn: Callable[..., Any], args: tuple, results) -> None:
    results.put(fn(*args))


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a new spawned process (fn and args picklable); returns what it returned."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_call, args=(fn, args, results))
    child.start()
    result = results.get()
    child.join()
    return result
