"""Where a sweep's runs go — this process, local worker processes or a Dask cluster — and how they stop.

Every combination's outcome is kept, its summary or the exception its run raised (:class:`Failed`),
so a combination that fails during its run costs no other row: :func:`~llmlab.sim.sweep.sweep`
decides what to raise once all have come back.

An interruption — Ctrl-C, or any exception in the caller while it waits — stops the work at once.
The process pool's own exit waited for every queued combination to run first (a notebook's
interrupt, a SIGINT to the kernel alone, returned only when the sweep had all but finished), and a
Dask cluster went on computing the combinations of a caller that had gone, holding its workers
from the next sweep.  Here queued combinations are cancelled, local workers ended and a cluster's
tasks cancelled.  A local worker also ends when the process that started it does (killed outright,
out of memory): it would otherwise go on with a run nobody will read.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence


class Failed:
    """The exception one combination's run raised, in the place of its summary."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def on_this_process(fn: Callable[[Any], Any], tasks: Sequence[Any], bar: Any) -> list[Any]:
    """Each task's outcome, run one after the other here."""
    outcomes: list[Any] = []
    for task in tasks:
        outcomes.append(_outcome(fn, task))
        if bar is not None:
            bar.update_to(len(outcomes))
    return outcomes


def _outcome(fn: Callable[[Any], Any], task: Any) -> Any:
    try:
        return fn(task)
    except Exception as exc:  # a run that failed: the others go on (Ctrl-C is no Exception: it stops them)
        return Failed(exc)


def on_processes(fn: Callable[[Any], Any], tasks: Sequence[Any], processes: int, bar: Any) -> list[Any]:
    """Each task's outcome, run on up to ``processes`` local worker processes; interrupted, the
    queued tasks are cancelled and the workers ended before the interruption goes on."""
    pool = ProcessPoolExecutor(max_workers=min(processes, len(tasks)), initializer=_end_with_parent)
    try:
        return gathered([pool.submit(fn, task) for task in tasks], as_completed, bar)
    except BaseException:
        end_pool(pool)
        raise
    finally:
        pool.shutdown(wait=True)  # at once after end_pool; else every worker has finished


def end_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what ``pool`` has not started and end its workers now (``shutdown`` waits for the
    queued tasks to run; Python 3.14's ``terminate_workers`` does this)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:  # pragma: no cover - Python 3.14+
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(2.0)
        if worker.is_alive():  # pragma: no cover - a SIGTERM handler set in the worker by a run
            worker.kill()
            worker.join()


def _end_with_parent(poll_s: float = 1.0) -> None:
    """A worker's initializer: end the worker when the process that started the sweep has gone,
    and when it is told to (SIGTERM).

    The worker's parent is that process (``fork``, ``spawn``) or a fork server that ends with it,
    so the worker watches for its parent to change (it is then adopted by another).  A forked
    worker inherits its parent's SIGTERM handler (``llmlab``'s command line raises in the caller
    to end the sweep): in a worker it was taken for a run's error and the worker went on."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    first = os.getppid()

    def watch() -> None:
        while os.getppid() == first:
            time.sleep(poll_s)
        os._exit(1)  # the caller of the sweep has gone: nobody will read this run

    threading.Thread(target=watch, name="llmlab-sweep-parent", daemon=True).start()


def on_dask(fn: Callable[[Any], Any], tasks: Sequence[Any], client: Any, bar: Any) -> list[Any]:
    """Each task's outcome, computed on the Dask cluster ``client`` talks to; the tasks still
    pending when the caller stops waiting (an interruption) are cancelled on the cluster."""
    from distributed import as_completed as dask_completed

    futures: list[Any] = []
    try:
        futures = client.map(fn, tasks, pure=False)
        return gathered(futures, dask_completed, bar)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            try:
                client.cancel(pending)
            except Exception:  # pragma: no cover - the cluster is gone: nothing left to cancel
                pass


def gathered(futures: list[Any], completed: Callable[[list[Any]], Any], bar: Any) -> list[Any]:
    """The futures' outcomes in their order (a result, or :class:`Failed`), the bar moved as each
    finishes (``completed`` is ``concurrent.futures.as_completed`` or Dask's)."""
    place = {id(future): k for k, future in enumerate(futures)}
    outcomes: list[Any] = [None] * len(futures)
    for done, future in enumerate(completed(futures), 1):
        try:
            outcomes[place[id(future)]] = future.result()
        except Exception as exc:
            outcomes[place[id(future)]] = Failed(exc)
        if bar is not None:
            bar.update_to(done)
    return outcomes
