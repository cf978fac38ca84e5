"""A small rerunnable step graph: run steps on a process pool, skip those already done.

A step reads ``inputs`` and writes ``outputs`` (each atomically). When it finishes, a stamp records
its function, parameters, and the size and mtime of its inputs and outputs. A step whose stamp
still matches is skipped; anything else (a changed parameter, a rewritten input, a missing or
modified output, no stamp because the run was killed) runs again, which invalidates the steps
downstream in turn. So a killed run, rerun, ends with the same files as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm.data import textio
from xlm.errors import XLMError
from xlm.io import atomic_write_text


@dataclass
class Step:
    """One unit of work: ``fn(**kwargs)`` reads ``inputs`` and writes ``outputs``, after ``deps`` ran."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    inputs: list[str]
    outputs: list[str]
    deps: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Collects steps; :meth:`add` returns the step's name, to be used as a dependency."""

    steps: list[Step] = field(default_factory=list)

    def add(
        self,
        name: str,
        fn: Callable[..., Any],
        inputs: list[str],
        outputs: list[str],
        deps: list[str | None] = (),
        /,
        **kwargs: Any,
    ) -> str:
        """``kwargs`` are the step function's arguments (they may be called ``inputs``, ``output``...)."""
        self.steps.append(Step(name, fn, kwargs, list(inputs), list(outputs), [d for d in deps if d]))
        return name


@dataclass
class RunReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def _file_state(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


_NOT_AFFECTING_OUTPUT = ("workers", "progress")  # a rerun on another machine must not redo the work


def _stamp(step: Step) -> dict[str, Any]:
    params = {k: v for k, v in step.kwargs.items() if k not in _NOT_AFFECTING_OUTPUT}
    return {
        "fn": f"{step.fn.__module__}.{step.fn.__qualname__}",
        "params": json.loads(json.dumps(params, default=repr)),
        "inputs": {p: _file_state(p) for p in step.inputs},
        "outputs": {p: _file_state(p) for p in step.outputs},
    }


def _stamp_path(stamps: Path, step: Step) -> Path:
    return stamps / (re.sub(r"[^A-Za-z0-9._-]+", "_", step.name) + ".json")


def _up_to_date(stamps: Path, step: Step) -> bool:
    try:
        recorded = json.loads(_stamp_path(stamps, step).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    current = _stamp(step)
    return recorded == current and None not in current["outputs"].values()


@contextmanager
def exclusive_folder(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` and clear temporary files a killed run left behind (never renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        try:  # a POSIX record lock belongs to this process only: forked workers do not keep it alive
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise XLMError(f"{folder}: another preprocessing run is writing this folder") from None
        for tmp in folder.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
        yield


def run_steps(
    steps: list[Step],
    stamps: Path,
    *,
    workers: int,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> RunReport:
    """Run every step whose stamp in ``stamps`` does not match, as soon as its dependencies are done."""
    names = {s.name for s in steps}
    for step in steps:
        if missing := [d for d in step.deps if d not in names]:
            raise XLMError(f"step {step.name!r} depends on unknown steps {missing}")
    stamps.mkdir(parents=True, exist_ok=True)
    report = RunReport()
    done: set[str] = set()
    pending = list(steps)
    running: dict[Future, Step] = {}
    pool = textio.make_pool(workers)
    bar = textio.progress_bar(progress, len(steps), "preprocess", unit="step")
    try:
        while pending or running:
            ready = [s for s in pending if all(d in done for d in s.deps)]
            while ready:  # skipping a step can make its dependents ready at once
                for step in ready:
                    pending.remove(step)
                    if _up_to_date(stamps, step):
                        report.skipped.append(step.name)
                        done.add(step.name)
                        bar.update(1)
                    else:
                        log(f"{step.name} ...")
                        running[pool.submit(step.fn, **step.kwargs)] = step
                ready = [s for s in pending if all(d in done for d in s.deps)]
            if not running:
                if pending:
                    raise XLMError(f"steps {[s.name for s in pending]} wait on each other (a dependency cycle)")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                step = running.pop(fut)
                result = fut.result()  # re-raises the step's error
                atomic_write_text(_stamp_path(stamps, step), json.dumps(_stamp(step), indent=1, sort_keys=True))
                report.ran.append(step.name)
                report.results[step.name] = result
                done.add(step.name)
                bar.update(1)
                if hasattr(result, "summary"):
                    log(result.summary(step.name))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return report
