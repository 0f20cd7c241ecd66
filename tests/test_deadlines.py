"""The watchdog behind a synchronous stream's first-token deadline (``llmlab/deadlines.py``).

One daemon thread for every deadline; each deadline settled exactly once — met by its reader or
cut by the watchdog — and gone from the heap when its call ends."""
from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pytest
from test_first_token_deadline import gateway, read_sync

from llmlab import Deployment, FixedRouter, Gateway, RetryPolicy
from llmlab.deadlines import CUT, NEVER, NOT_YET, Watchdog
from llmlab.testing import FakeProvider, Fault, FaultPlan


def chunk(text: str) -> SimpleNamespace:
    """A streamed chunk of ``text``, shaped as litellm's."""
    return SimpleNamespace(usage=None, choices=[SimpleNamespace(index=0, finish_reason=None,
                                                                delta=SimpleNamespace(content=text))])


def one_deployment(timeout_s: float) -> Gateway:
    """A gateway over one deployment whose litellm a test replaces."""
    return Gateway([Deployment("m", "gpt-4o-mini", {"api_key": "sk-test"}, timeout_s=timeout_s)],
                   router=FixedRouter("m"), fallbacks={}, cache=False, retry=RetryPolicy(max_retries=0))


@pytest.fixture
def watchdog(monkeypatch):
    """The live driver's watchdog, fresh: what a test counts is its own streams' deadlines (a
    stream another test left to the garbage collector keeps its deadline until it falls due)."""
    import llmlab.live as live

    fresh = Watchdog()
    monkeypatch.setattr(live, "WATCHDOG", fresh)
    return fresh


def test_deadlines_cut_in_the_order_they_fall_due_on_one_thread():
    watchdog, cuts, done = Watchdog(), [], threading.Event()

    def cutter(name):
        def cut():
            cuts.append((name, threading.current_thread().name))
            if len(cuts) == 3:
                done.set()
            return CUT
        return cut

    deadlines = [watchdog.arm(seconds, cutter(name)) for name, seconds in (("c", 0.15), ("a", 0.05), ("b", 0.1))]
    assert done.wait(2)
    assert [name for name, _ in cuts] == ["a", "b", "c"] and {thread for _, thread in cuts} == {"llmlab-deadlines"}
    assert all(d.cut and not d.met() for d in deadlines)  # a token after the cut is too late
    for d in deadlines:
        d.end()
    assert len(watchdog) == 0


def test_a_deadline_met_or_ended_in_time_never_cuts_and_leaves_nothing_behind():
    watchdog, cuts = Watchdog(), []
    met, ended = watchdog.arm(0.1, lambda: cuts.append("met") or CUT), watchdog.arm(0.1, lambda: cuts.append("x") or CUT)
    assert len(watchdog) == 2
    assert met.met()
    ended.end()
    met.end()
    assert len(watchdog) == 0
    time.sleep(0.25)
    assert cuts == [] and not met.cut and not ended.cut


def test_a_cut_with_nothing_to_cut_yet_is_asked_again_and_a_token_meanwhile_is_late():
    """The request is still waiting for its headers when the deadline passes: nothing to cut yet.
    The watchdog asks again until there is; a token read in between is past the deadline."""
    watchdog, asked, done = Watchdog(retry_s=0.01), [], threading.Event()

    def cut():
        asked.append(time.monotonic())
        if len(asked) < 4:
            return NOT_YET
        done.set()
        return CUT

    deadline = watchdog.arm(0.02, cut)
    time.sleep(0.035)  # past the deadline, (probably) not yet cut
    assert not deadline.met()
    assert done.wait(2) and deadline.cut and len(asked) == 4
    deadline.end()
    assert len(watchdog) == 0


def test_a_read_the_cut_ended_sees_its_deadline_cut_however_soon_it_asks():
    """The watchdog marked a deadline cut only after its cut returned, and the read the cut
    ended raised at once: asked in between, the deadline said "not cut", and a first token past
    ``timeout_s`` was recorded as a dropped connection instead of a timeout (the stream fuzz,
    tests/test_stream_fuzz.py, met it now and then).  Here the cut ends the read, then lingers."""
    watchdog, read_ended = Watchdog(), threading.Event()

    def cut():
        read_ended.set()  # the socket is shut down: the reader's read raises now
        time.sleep(0.2)  # while the watchdog is still inside the cut
        return CUT

    deadline = watchdog.arm(0.01, cut)
    assert read_ended.wait(2)
    assert deadline.cut and not deadline.met()
    deadline.end()
    assert len(watchdog) == 0


def test_a_deadline_that_cannot_cut_lets_a_late_token_through():
    """Waited out already (no way to cut it): the late answer is taken rather than thrown away."""
    watchdog, done = Watchdog(), threading.Event()
    deadline = watchdog.arm(0.01, lambda: done.set() or NEVER)
    assert done.wait(2)
    time.sleep(0.01)
    assert deadline.met() and not deadline.cut
    deadline.end()
    assert len(watchdog) == 0


def test_a_failing_cut_does_not_stop_the_watchdog():
    watchdog, done = Watchdog(), threading.Event()

    def broken():
        raise RuntimeError("boom")

    first = watchdog.arm(0.01, broken)
    second = watchdog.arm(0.03, lambda: done.set() or CUT)
    assert done.wait(2) and second.cut and not first.cut
    first.end(), second.end()
    assert len(watchdog) == 0


def test_ended_deadlines_do_not_pile_up_in_the_heap():
    """A server's answered calls each leave a deadline far ahead: ended, they are compacted away,
    not kept (with the streams they would cut) until their time."""
    watchdog = Watchdog()
    for _ in range(5_000):
        deadline = watchdog.arm(600, lambda: CUT)
        deadline.met()
        deadline.end()
    assert len(watchdog) == 0 and len(watchdog._heap) <= 130


def test_every_deadline_is_settled_once_when_its_token_and_its_time_come_together():
    """Readers meet their deadlines at the very moment they fall due, on many threads: each one is
    either met (and never cut) or cut (and then not met) — never both, never neither."""
    watchdog = Watchdog()
    results, lock = [], threading.Lock()

    def reader(i):
        cut = threading.Event()
        deadline = watchdog.arm(0.02 + (i % 5) * 0.001, lambda: cut.set() or CUT)
        time.sleep(0.02 + (i % 7) * 0.0005)
        met = deadline.met()
        time.sleep(0.01)  # a cut decided before the met call has run by now
        deadline.end()
        with lock:
            results.append((met, cut.is_set(), deadline.cut))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert all(met != was_cut and was_cut == flagged for met, was_cut, flagged in results)
    assert len(watchdog) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_with_a_watchdog_of_its_own():
    """A fork copies the heap but not the thread (and maybe a held lock): the child's deadlines
    would never fire.  It starts afresh, and its own deadlines are cut."""
    watchdog = Watchdog()
    parent = watchdog.arm(600, lambda: CUT)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = len(watchdog) == 0
        done = threading.Event()
        watchdog.arm(0.01, lambda: done.set() or CUT)
        os._exit(0 if ok and done.wait(2) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(watchdog) == 1
    parent.end()


def test_a_token_that_comes_as_the_deadline_cuts_is_a_timeout(monkeypatch):
    """The watchdog cut the connection as the first token was being read: the stream is lost either
    way, so the call is a first-token timeout (retried, fallen back from) and the token is never
    shown to the caller."""
    import llmlab.live as live
    import llmlab.stream_cut as stream_cut

    cutting = threading.Event()
    monkeypatch.setattr(stream_cut, "cut", lambda stream: cutting.set() or CUT)
    token = chunk("hello")

    class Late:
        def __iter__(self):
            return self

        def __next__(self):
            assert cutting.wait(5)  # read as the watchdog cuts
            return token

        def close(self):
            pass

    monkeypatch.setattr(live, "_LITELLM", SimpleNamespace(completion=lambda **kwargs: Late()))
    gw = one_deployment(timeout_s=0.2)
    response = gw.stream("hello")
    chunks = list(response)
    outcome = response.outcome
    assert "hello" not in chunks and not outcome.ok
    assert "timeout" in outcome.attempts[0].error and "no first token within 0.2 s" in outcome.attempts[0].error


def test_a_stream_the_watchdog_cannot_cut_is_waited_out_as_before_and_said_once(monkeypatch, caplog):
    """A layout with no httpx response to reach (Bedrock's event-stream decoder): its late first
    token is taken, not thrown away after it was waited for, and the log says once why."""
    import llmlab.live as live
    import llmlab.stream_cut as stream_cut

    monkeypatch.setattr(stream_cut, "_warned", set())  # said once a process: not yet in this one
    token = chunk("late")

    class Opaque:
        completion_stream = iter(())  # no response kept where llmlab.stream_cut looks

        def __init__(self):
            self.chunks = iter([token])

        def __iter__(self):
            return self

        def __next__(self):
            time.sleep(0.15)
            return next(self.chunks)

        def close(self):
            pass

    monkeypatch.setattr(live, "_LITELLM", SimpleNamespace(completion=lambda **kwargs: Opaque()))
    gw = one_deployment(timeout_s=0.05)
    with caplog.at_level("WARNING", logger="llmlab.live"):
        outcomes = []
        for _ in range(2):
            response = gw.stream("hello")
            assert list(response) == ["late"]
            outcomes.append(response.outcome)
    assert all(o.ok and o.text == "late" for o in outcomes)
    said = [r.getMessage() for r in caplog.records if "cannot be cut" in r.getMessage()]
    assert said == ["a synchronous tuple_iterator stream cannot be cut: its first token is not held to the deadline"]


@pytest.mark.parametrize("leave_after", [1, 2])
def test_a_caller_who_leaves_a_sync_stream_ends_its_deadline(watchdog, leave_after):
    """The caller breaks out of the loop: the stream's deadline is gone at once, not left to cut a
    connection back in the pool."""
    with FakeProvider(FaultPlan(), reply="one two three four five six") as fp:
        gw = Gateway([Deployment("m", "openai/m", {"api_base": fp.base_url, "api_key": "sk-test"}, timeout_s=30,
                                 price_model="gpt-4o-mini")], router=FixedRouter("m"), fallbacks={}, cache=False)
        response = gw.stream("hello")
        for i, _ in enumerate(response, 1):
            if i == leave_after:
                break
        response.close()
        assert len(watchdog) == 0
        assert response.outcome is not None


@pytest.mark.parametrize("fault", [Fault.server_error(), Fault.cut_stream(after_chunks=1), Fault.malformed(), None],
                         ids=["500", "cut-before-content", "malformed", "empty-answer"])
def test_a_sync_stream_that_ends_before_its_first_token_ends_its_deadline(watchdog, fault):
    """Never met (no token came): the deadline is ended with the call, not left in the heap for
    timeout_s holding the stream, to cut whatever then uses its connection."""
    plan = FaultPlan()
    plan.model("m").then(fault)
    with FakeProvider(plan, reply="") as fp:
        gw = Gateway([Deployment("m", "openai/m", {"api_base": fp.base_url, "api_key": "sk-test"}, timeout_s=30,
                                 price_model="gpt-4o-mini")], router=FixedRouter("m"), fallbacks={}, cache=False,
                     retry=RetryPolicy(max_retries=0))
        response = gw.stream("hello")
        assert "".join(c for c in response if isinstance(c, str)) == ""
        assert response.outcome.ok == (fault is None)
        assert len(watchdog) == 0


def test_sync_streams_on_many_threads_each_get_their_own_deadline(watchdog):
    """Slow and quick streams at once on eight threads: only the slow ones are cut, each quick one
    answers from its own deployment, and no deadline is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=2.0, keepalive_s=0.05)
    with FakeProvider(plan) as fp:
        gw = gateway(fp.base_url, timeout_s=0.6)
        quick = Gateway([Deployment("fast", "openai/fast", {"api_base": fp.base_url, "api_key": "sk-test"},
                                    timeout_s=0.6, price_model="gpt-4o-mini")], router=FixedRouter("fast"),
                        fallbacks={}, cache=False, retry=RetryPolicy(max_retries=0))
        with ThreadPoolExecutor(8) as pool:
            jobs = [pool.submit(read_sync, gw if i % 2 else quick, f"question {i}") for i in range(16)]
            results = [job.result() for job in jobs]
    for i, (outcome, text, took) in enumerate(results):
        assert outcome.ok and outcome.deployment == "fast" and text == outcome.text
        assert [a.deployment for a in outcome.attempts] == (["slow", "fast"] if i % 2 else ["fast"])
        assert took < 1.8  # the slow ones cut at 0.6 s, not waited out for 2 s
    assert len(watchdog) == 0
