"""One function call run in a child Python interpreter, beside this process's own work.

Why: a simulation is two independent runs over the same traffic — the policy and the baseline
— and CPython runs one at a time per process.  The baseline, a third of the time, can run on a
second core while the policy runs here.

Why a fresh interpreter (``sys.executable -c …``) rather than :mod:`multiprocessing`: its
``spawn`` and ``forkserver`` start methods re-import the caller's ``__main__``, so a plain
script that calls ``simulate()`` at top level would run again, side effects and all, in the
child; ``fork`` copies a process whose other threads (a progress bar's monitor, an embedder's
pool) may hold locks.  The child here imports only llmlab, from the parent's ``sys.path`` (the
same llmlab, a checkout on ``PYTHONPATH`` included), and talks over its standard streams:

* parent → child: one JSON line (the ``sys.path``), then a pickle of ``(target, args, kwargs)``;
* child → parent: pickles of ``("progress", n)`` as the call reports it, then
  ``("result", value)``; a failure ends the child with its traceback on stderr.

The parent never trusts the child to finish: :meth:`SideCall.result` raises
:class:`SideCallFailed` (with the exit code and the end of the child's stderr) when it ends
without a result, and the caller does the work itself.  Nor does a child outlive the caller's
interest: on POSIX it leads a process group of its own, which its own side calls join (a
replication's child runs its baseline in a grandchild), and :meth:`SideCall.close` ends the
group.  A parent killed outright leaves its children to end at their next write to it.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import LLMLabError

#: set in a child's environment: its own side calls stay in its process group
_IN_SIDECAR = "LLMLAB_IN_SIDECAR"

#: what the child runs: the parent's sys.path first, then :func:`serve`
BOOT = ("import json, sys; sys.path[:] = json.loads(sys.stdin.buffer.readline()); "
        "from llmlab.sim.sidecar import serve; serve()")


class SideCallFailed(LLMLabError, RuntimeError):
    """The child interpreter ended without returning the call's result (it could not start,
    raised, or was killed); the message holds its exit code and the end of its stderr."""


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may keep busy: its affinity mask where the OS has one, held to the
    container's CPU quota (a container limited to one CPU sees every CPU of its host, and two
    processes there only take turns)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(Path(cgroup_root))
    return max(1, min(cpus, int(quota))) if quota is not None else cpus


def cgroup_cpu_quota(root: Path) -> float | None:
    """The CPUs a Linux cgroup's quota allows (``cpu.max`` of cgroup v2, the CFS quota of v1),
    or None when it sets none or there is no cgroup to read."""
    try:
        quota, period = (root / "cpu.max").read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


class SideCall:
    """``target(*args, progress=report, **kwargs)`` started in a child interpreter at once.

    ``target`` is ``"package.module:function"``; the function must take a ``progress`` keyword:
    a callable of one picklable value (the work done so far), the last of which the parent
    reads as :attr:`done` (0 until the first report).
    """

    def __init__(self, target: str, args: tuple = (), kwargs: dict[str, Any] | None = None) -> None:
        self.done: Any = 0
        self._value: Any = None
        self._finished = False
        self._proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self._reader: threading.Thread | None = None
        self._group = False
        try:
            payload = json.dumps(sys.path).encode("utf-8") + b"\n" + pickle.dumps(
                (target, args, kwargs or {}), protocol=pickle.HIGHEST_PROTOCOL)
            self._stderr = tempfile.TemporaryFile()
            # a child of its own process group (POSIX), which its own side calls join, so that
            # close() ends the whole tree: a replication's child runs its baseline in a grandchild
            own_group = os.name == "posix" and not os.environ.get(_IN_SIDECAR)
            self._proc = subprocess.Popen([sys.executable, "-c", BOOT], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=own_group,
                                          env={**os.environ, _IN_SIDECAR: "1"})
            self._group = own_group
        except Exception as exc:  # arguments that do not pickle, no interpreter to start: result() says so
            self._not_started = f"the child interpreter could not start: {type(exc).__name__}: {exc}"
            return
        # the payload is sent from the thread: the child reads it only once it has started (a
        # few hundred ms), and the caller goes on with its own run meanwhile
        self._reader = threading.Thread(target=self._talk, args=(payload,), name="llmlab-sidecar", daemon=True)
        self._reader.start()

    def _talk(self, payload: bytes) -> None:
        try:
            self._proc.stdin.write(payload)
        except (OSError, ValueError):  # the child is gone, or close() closed the pipe: result() says why
            return
        finally:
            _close_quietly(self._proc.stdin)
        out = self._proc.stdout
        try:
            while True:
                kind, value = pickle.load(out)
                if kind == "progress":
                    self.done = value
                else:
                    self._value, self._finished = value, True
                    return
        except Exception:  # EOF or a truncated message: the child ended without a result
            return

    @property
    def ready(self) -> bool:
        """Has the child sent its result or ended?  (:meth:`result` then returns at once.)"""
        return self._reader is None or not self._reader.is_alive()

    def result(self, waiting: Callable[[Any], None] | None = None, poll_s: float = 0.25) -> Any:
        """The call's return value, once the child has sent it; ``waiting(done)`` is called every
        ``poll_s`` meanwhile (a progress bar).  :class:`SideCallFailed` when it never comes."""
        if self._proc is None or self._reader is None:
            self.close()
            raise SideCallFailed(self._not_started)
        try:
            while self._reader.is_alive():
                self._reader.join(poll_s)
                if waiting is not None:
                    waiting(self.done)
            code = self._proc.wait()
            if not self._finished:
                raise SideCallFailed(f"the child interpreter ended with exit code {code} without a result: "
                                     f"{self._stderr_tail()}")
            return self._value
        finally:
            self.close()

    def _stderr_tail(self, limit: int = 2_000) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return "(its stderr is unreadable)"
        return (text[-limit:] if text else "(nothing on its stderr)")

    def close(self) -> None:
        """End the child, and any child of its own, if it still runs (the caller gave up on it),
        and free its pipes."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                if self._group:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                else:
                    self._proc.kill()
            except (ProcessLookupError, PermissionError):  # pragma: no cover - it ended meanwhile
                pass
            self._proc.wait()
        if self._proc is not None:
            _close_quietly(self._proc.stdin)
            _close_quietly(self._proc.stdout)
        _close_quietly(self._stderr)


def _close_quietly(stream: Any) -> None:
    """Close a pipe or file, whatever state its other end is in (a write buffered for a child that
    died raises BrokenPipeError on close; the buffer is dropped with it)."""
    if stream is None:
        return
    try:
        stream.close()
    except (OSError, ValueError):
        try:  # the flush failed: close the descriptor underneath, or it stays open
            stream.raw.close()
        except (AttributeError, OSError, ValueError):  # pragma: no cover - closed already
            pass


def serve() -> None:
    """The child's side: read the call, run it, send progress and the result on stdout."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the call prints must not corrupt the message stream
    target, args, kwargs = pickle.load(sys.stdin.buffer)
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)

    def report(done: Any) -> None:
        pickle.dump(("progress", done), out)
        out.flush()

    value = fn(*args, progress=report, **kwargs)
    pickle.dump(("result", value), out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()
