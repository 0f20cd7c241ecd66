"""Progress of simulation runs: a tqdm bar, or ``(done, total)`` to a callable (widgets, tests).

A run reports how many turns it has finished (:func:`~llmlab.sim.run.run_once` after each slice
of virtual time); a simulation is one or two runs (policy, baseline) or several replications,
and its progress counts all of them, so a bar or a callable sees one total that never resets.
"""
from __future__ import annotations

from typing import Any, Callable


class Bar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update_to(self, n: int) -> None:
        self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class CallbackBar:
    """Reports ``(done, total)`` over every phase (policy, then baseline) to a callable."""

    def __init__(self, fn: Callable[[int, int], None], total: int, phases: int, phase: int) -> None:
        self.fn, self.total, self.offset = fn, total * phases, total * phase

    def update_to(self, n: int) -> None:
        self.fn(self.offset + n, self.total)

    def close(self) -> None:
        pass


class RunsProgress:
    """One progress over every replication: ``(done, total)`` summed over all runs for a
    callable, one bar saying how many runs are done for ``progress=True`` (each run's own bars
    restarted at 0, with nothing telling how many runs were left).  Runs that go on at once
    (in child processes) add up the same way as runs one after the other."""

    def __init__(self, progress: Any, n: int) -> None:
        self.progress, self.n, self.bar = progress, n, None
        self.done: dict[int, tuple[int, int]] = {}

    def for_run(self, k: int) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            # never back: a run redone here after its child failed counts up from 0 again
            self.done[k] = (max(done, self.done.get(k, (0, total))[0]), total)
            progressed = sum(d for d, _ in self.done.values())
            if callable(self.progress):
                self.progress(progressed, self.n * total)
                return
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.n * total, unit="req", leave=False, mininterval=0.5)
            finished = sum(d >= t for d, t in self.done.values())
            self.bar.set_description(f"runs {finished}/{self.n} done", refresh=False)
            self.bar.update(progressed - self.bar.n)

        return report

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(total: int, enabled: Any, label: str, *, phases: int = 1, phase: int = 0, unit: str = "req") -> Any:
    """A :class:`CallbackBar` for a callable, a tqdm :class:`Bar` for True, None for False."""
    if callable(enabled):
        return CallbackBar(enabled, total, phases, phase)
    if not enabled:
        return None
    from tqdm import tqdm

    return Bar(tqdm(total=total, desc=label, unit=unit, leave=False, mininterval=0.5))
