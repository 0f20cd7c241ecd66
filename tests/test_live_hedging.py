"""Hedged calls live: races through litellm's real HTTP path against the fake provider on 127.0.0.1.

A race must end when its winner starts answering — not when the loser would have — with the
loser's request cancelled and billed its prompt; a caller who cancels mid-race cancels both."""
from __future__ import annotations

import asyncio
import time

import pytest

from llmlab import ClientDisconnected, Deployment, FixedRouter, Gateway, Hedge, RetryPolicy
from llmlab.effects import Call
from llmlab.live import LiteLLMDriver
from llmlab.testing import FakeProvider, FaultPlan, Fault


def gateway(base_url: str, after_s: float = 0.3, timeout_s: float = 10.0, driver: LiteLLMDriver | None = None,
            slow_timeout_s: float | None = None) -> Gateway:
    def deployment(name: str, timeout: float) -> Deployment:
        return Deployment(name, f"openai/{name}", {"api_base": base_url, "api_key": "sk-test"}, timeout_s=timeout,
                          price_model="gpt-4o-mini")
    gw = Gateway([deployment("slow", slow_timeout_s or timeout_s), deployment("fast", timeout_s)],
                 router=FixedRouter("slow"), fallbacks={"slow": ["fast"]}, cache=False,
                 retry=RetryPolicy(max_retries=0), hedge=Hedge(after_s=after_s), driver=driver)
    return gw.warm_up()


def race_tasks() -> list[asyncio.Task]:
    """The race's own tasks still running: its calls' (``aperform``) and its streams' readers."""
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
            and any(name in repr(t.get_coro()) for name in ("aperform", "_until_answering"))]


async def slow_to_let_go(letting_go: asyncio.Event) -> None:
    """A call that never answers and, once cancelled, sets ``letting_go`` and takes 0.3 s more
    (its connection torn down): the window in which a second cancel may arrive."""
    try:
        await asyncio.sleep(30)
    finally:
        letting_go.set()
        await asyncio.sleep(0.3)


async def cancelled_once(task: asyncio.Task, when: asyncio.Event) -> None:
    """Cancel ``task`` once ``when`` is set (the moment under test), and see the cancel through."""
    await when.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_hedge_answers_for_a_slow_call_and_the_slow_one_is_cancelled():
    plan = FaultPlan()
    plan.model("slow").latency(3.0)
    plan.model("fast").latency(0.05)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url)
            started = time.perf_counter()
            outcome = await gw.acomplete("Where is my parcel?")
            took = time.perf_counter() - started
            leftover = race_tasks()
            return outcome, took, fp.stats, leftover

    outcome, took, stats, leftover = asyncio.run(run())
    assert outcome.ok and outcome.deployment == "fast" and outcome.text.startswith("Fake answer from fast")
    first, hedge = outcome.attempts
    assert (first.deployment, first.ok) == ("slow", False) and first.error.startswith("cancelled: fast started")
    assert first.prompt_tokens > 0 and first.cost_usd > 0  # the loser is billed its prompt
    assert (hedge.deployment, hedge.purpose, hedge.ok) == ("fast", "hedge", True)
    assert took < 1.5  # the hedge at 0.3 s answers in 0.05 s; waited out, the slow call takes 3 s
    assert stats.by_model == {"slow": 1, "fast": 1}
    assert leftover == []


def test_a_call_that_answers_before_the_hedge_is_due_sends_no_hedge():
    plan = FaultPlan()
    plan.model("slow").latency(0.05)

    async def run():
        async with FakeProvider(plan) as fp:
            outcome = await gateway(fp.base_url, after_s=1.0).acomplete("Where is my parcel?")
            return outcome, fp.stats

    outcome, stats = asyncio.run(run())
    assert outcome.deployment == "slow" and len(outcome.attempts) == 1 and stats.by_model == {"slow": 1}


def test_a_streamed_race_is_won_by_the_first_token_and_streams_only_the_winner():
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=3.0, keepalive_s=0.1)
    plan.model("fast").stream_timing(ttft_s=0.05, chunk_delay_s=0.01)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url)
            started = time.perf_counter()
            response = gw.astream("Where is my parcel?")
            chunks = [c async for c in response]
            return response.outcome, chunks, time.perf_counter() - started

    outcome, chunks, took = asyncio.run(run())
    assert outcome.ok and outcome.deployment == "fast"
    assert "".join(c for c in chunks if isinstance(c, str)) == outcome.text and outcome.text.startswith("Fake answer from fast")
    assert [a.purpose for a in outcome.attempts] == ["answer", "hedge"] and not outcome.attempts[0].ok
    assert 0.3 <= outcome.ttft_s < 1.5 and took < 1.5


def test_the_first_call_failing_after_the_hedge_was_sent_leaves_the_hedge_to_answer():
    plan = FaultPlan()
    plan.model("slow").latency(0.5).then(Fault.server_error())
    plan.model("fast").latency(0.6)

    async def run():
        async with FakeProvider(plan) as fp:
            return await gateway(fp.base_url, after_s=0.2).acomplete("Where is my parcel?")

    outcome = asyncio.run(run())
    assert outcome.deployment == "fast"
    first, hedge = outcome.attempts
    assert not first.ok and "server_error" in first.error and hedge.ok


def test_a_caller_who_cancels_mid_race_cancels_both_calls_and_the_request_is_recorded():
    plan = FaultPlan()
    plan.model("slow").latency(5.0)
    plan.model("fast").latency(5.0)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url, after_s=0.1)
            task = asyncio.ensure_future(gw.acomplete("Where is my parcel?"))
            await asyncio.sleep(0.5)
            assert len(race_tasks()) == 2  # both calls out
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            took = time.perf_counter() - started
            leftover = race_tasks()
            return gw, took, fp.stats, leftover

    gw, took, stats, leftover = asyncio.run(run())
    assert stats.by_model == {"slow": 1, "fast": 1}
    assert took < 1.0 and leftover == []
    (outcome,) = gw.ledger.records
    assert isinstance(outcome.error, ClientDisconnected)


def test_the_synchronous_api_sends_no_hedge():
    plan = FaultPlan()
    plan.model("slow").latency(0.6)

    with FakeProvider(plan) as fp:
        gw = gateway(fp.base_url, after_s=0.1)
        outcome = gw.complete("Where is my parcel?")
        streamed = gw.stream("Where is my parcel, again?")
        text = "".join(c for c in streamed if isinstance(c, str))
        stats = fp.stats
    assert outcome.deployment == "slow" and len(outcome.attempts) == 1
    assert streamed.outcome.deployment == "slow" and text == streamed.outcome.text
    assert stats.by_model == {"slow": 2}


def test_the_synchronous_api_holds_no_budget_for_a_hedge_it_never_sends():
    """complete() and stream() send no hedge: they held the loser's worst case all the same, so a
    capped tenant's concurrent sync requests were refused for a hedge that never existed."""
    from llmlab import BudgetPolicy
    from llmlab.budgets import MemoryBudgets

    class Recording(MemoryBudgets):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[float] = []

        def try_reserve(self, tenant, amount, cap, now):
            self.asked.append(amount)
            return super().try_reserve(tenant, amount, cap, now)

    def held(fp: FakeProvider, hedge: Hedge | None) -> list[float]:
        backend = Recording()
        gw = Gateway([Deployment(n, f"openai/{n}", {"api_base": fp.base_url, "api_key": "sk-test"},
                                 price_model="gpt-4o-mini") for n in ("slow", "fast")],
                     router=FixedRouter("slow"), fallbacks={"slow": ["fast"]}, cache=False,
                     retry=RetryPolicy(max_retries=0), hedge=hedge, budget=BudgetPolicy(plan_caps={"free": 1.0}),
                     budget_backend=backend)
        assert gw.complete("Where is my parcel?", tenant="t", plan="free").deployment == "slow"
        streamed = gw.stream("Where is my parcel, again?", tenant="t", plan="free")
        assert "".join(c for c in streamed if isinstance(c, str)) and streamed.outcome.deployment == "slow"
        return backend.asked

    plan = FaultPlan()
    plan.model("slow").latency(0.3)
    with FakeProvider(plan) as fp:
        unhedged, hedged = held(fp, None), held(fp, Hedge(after_s=0.05))
    assert len(unhedged) == 2 and hedged == unhedged  # one hold per request, the same as without a hedge


def test_a_caller_who_leaves_a_streamed_race_closes_both_streams_and_the_request_is_recorded():
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=5.0, keepalive_s=0.1)
    plan.model("fast").stream_timing(ttft_s=5.0, keepalive_s=0.1)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url, after_s=0.1)
            response = gw.astream("Where is my parcel?")

            async def read():
                return [c async for c in response]

            task = asyncio.ensure_future(read())
            await asyncio.sleep(0.5)
            assert len(race_tasks()) == 2  # both streams open, neither has a token
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            took = time.perf_counter() - started
            leftover = race_tasks()
            return gw, response, took, fp.stats, leftover

    gw, response, took, stats, leftover = asyncio.run(run())
    assert stats.by_model == {"slow": 1, "fast": 1}
    assert took < 1.0 and leftover == []
    (outcome,) = gw.ledger.records
    assert isinstance(outcome.error, ClientDisconnected) and response.outcome is outcome


@pytest.mark.parametrize("hedge_wins", [True, False])
def test_a_caller_who_leaves_the_winners_stream_is_billed_the_loser_too(hedge_wins):
    # the race was decided (the loser cancelled, billed its prompt) before the caller left the
    # winner's stream: the loser's bill was kept only in the race's own result, never delivered
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=3.0 if hedge_wins else 0.4, keepalive_s=0.1, chunk_delay_s=0.3)
    plan.model("fast").stream_timing(ttft_s=0.05 if hedge_wins else 3.0, keepalive_s=0.1, chunk_delay_s=0.3)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url, after_s=0.2)
            response = gw.astream("Where is my parcel?")
            chunks = response.__aiter__()
            while not isinstance(await chunks.__anext__(), str):  # the winner's first text
                pass
            await chunks.aclose()
            return gw, response, fp.stats

    gw, response, stats = asyncio.run(run())
    assert stats.by_model == {"slow": 1, "fast": 1}
    (outcome,) = gw.ledger.records
    assert isinstance(outcome.error, ClientDisconnected) and response.outcome is outcome
    winner, loser = ("fast", "slow") if hedge_wins else ("slow", "fast")
    by_name = {a.deployment: a for a in outcome.attempts}
    assert sorted(by_name) == ["fast", "slow"] and len(outcome.attempts) == 2
    assert by_name[loser].error.startswith(f"cancelled: {winner} started answering first")
    assert by_name[loser].prompt_tokens > 0 and by_name[loser].cost_usd > 0
    assert by_name[winner].completion_tokens > 0  # the text it streamed
    assert by_name["fast"].purpose == "hedge" and by_name["slow"].purpose == "answer"
    assert outcome.retries == 0
    assert outcome.cost_usd == pytest.approx(sum(a.cost_usd for a in outcome.attempts))
    assert gw.pipeline.breaker("slow").consecutive_failures == 0


class RecordingDriver(LiteLLMDriver):
    """Keeps every provider stream it opens, to see each one closed when the request is over."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list = []

    def astream_call(self, call):
        stream = super().astream_call(call)
        if isinstance(call, Call):
            self.streams.append(stream)
        return stream


def test_a_raced_stream_that_fails_before_its_first_token_is_closed_at_once():
    # the first call's first-token deadline fires inside the race: its stream stopped at its error,
    # never read to its end, kept its HTTP response (and connection) open while the hedge streamed
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=5.0, keepalive_s=0.05)
    plan.model("fast").stream_timing(ttft_s=0.6, chunk_delay_s=0.05)

    async def run():
        async with FakeProvider(plan) as fp:
            driver = RecordingDriver()
            gw = gateway(fp.base_url, after_s=0.1, driver=driver, slow_timeout_s=0.4)
            response = gw.astream("Where is my parcel?")
            open_while_streaming = []
            async for chunk in response:
                if isinstance(chunk, str):  # the hedge's text: the first call timed out 0.3 s before
                    open_while_streaming.append([s.ag_frame is not None for s in driver.streams])
            return response.outcome, driver.streams, open_while_streaming

    outcome, streams, open_while_streaming = asyncio.run(run())
    assert outcome.ok and outcome.deployment == "fast"
    first, hedge = outcome.attempts
    assert first.error.startswith("timeout") and hedge.ok
    assert open_while_streaming and open_while_streaming[0][0] is False  # closed once it failed
    assert all(s.ag_frame is None for s in streams)


def test_a_cancel_while_the_loser_is_closed_still_bills_the_loser():
    # the second cancel during the race's cleanup: the loser's close took a while (a connection
    # torn down), the caller cancelled meanwhile, and the race raised before telling anyone of
    # the loser's bill
    from llmlab.live import _StreamState

    plan = FaultPlan()
    plan.model("fast").stream_timing(ttft_s=0.2, chunk_delay_s=0.05)

    class SlowToClose(LiteLLMDriver):
        closing = None

        async def _astream_one(self, call):
            if call.deployment.name != "slow":
                async for item in super()._astream_one(call):
                    yield item
                return
            yield _StreamState(call, self.clock())
            await slow_to_let_go(self.closing)  # no first token

    async def run():
        async with FakeProvider(plan) as fp:
            driver = SlowToClose()
            driver.closing = asyncio.Event()
            gw = gateway(fp.base_url, after_s=0.1, driver=driver, timeout_s=60.0)
            response = gw.astream("Where is my parcel?")

            async def read():
                return [c async for c in response]

            # the race is decided: the loser is being closed
            await cancelled_once(asyncio.ensure_future(read()), driver.closing)
            return gw, response

    gw, response = asyncio.run(run())
    (outcome,) = gw.ledger.records
    assert isinstance(outcome.error, ClientDisconnected) and response.outcome is outcome
    (slow,) = [a for a in outcome.attempts if a.deployment == "slow"]
    assert slow.error.startswith("cancelled: fast started answering first")
    assert slow.prompt_tokens > 0 and slow.cost_usd > 0
    assert outcome.cost_usd == pytest.approx(sum(a.cost_usd for a in outcome.attempts))


def test_a_cancel_while_the_loser_is_cancelled_still_records_the_winners_answer():
    # as above, not streamed: the winner had answered in full (billed so) when the caller's cancel
    # arrived during the loser's cancel, and the race raised with both results in hand
    plan = FaultPlan()
    plan.model("fast").latency(0.2)

    class SlowToCancel(LiteLLMDriver):
        cancelling = None

        async def aperform(self, effect):
            if not (isinstance(effect, Call) and effect.deployment.name == "slow"):
                return await super().aperform(effect)
            await slow_to_let_go(self.cancelling)  # no answer

    async def run():
        async with FakeProvider(plan) as fp:
            driver = SlowToCancel()
            driver.cancelling = asyncio.Event()
            gw = gateway(fp.base_url, after_s=0.1, driver=driver, timeout_s=60.0)
            # the hedge answered: the first call is being cancelled
            await cancelled_once(asyncio.ensure_future(gw.acomplete("Where is my parcel?")), driver.cancelling)
            return gw

    gw = asyncio.run(run())
    (outcome,) = gw.ledger.records
    assert isinstance(outcome.error, ClientDisconnected) and outcome.retries == 0
    by_name = {a.deployment: a for a in outcome.attempts}
    assert by_name["slow"].error.startswith("cancelled: fast started answering first") and by_name["slow"].cost_usd > 0
    assert by_name["fast"].purpose == "hedge" and by_name["fast"].completion_tokens > 0  # its whole answer, billed
    assert outcome.cost_usd == pytest.approx(by_name["slow"].cost_usd + by_name["fast"].cost_usd)


@pytest.mark.parametrize("stream", [False, True])
def test_no_hedge_once_its_deployments_breaker_opened_during_the_wait(stream):
    plan = FaultPlan()
    plan.model("slow").latency(0.8).stream_timing(ttft_s=0.8, keepalive_s=0.1)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url, after_s=0.4)

            async def trip_fast_meanwhile():
                await asyncio.sleep(0.1)
                breaker = gw.pipeline.breaker("fast")
                for _ in range(breaker.failure_threshold):
                    breaker.record_failure(time.time())

            tripping = asyncio.ensure_future(trip_fast_meanwhile())
            if stream:
                response = gw.astream("Where is my parcel?")
                _ = [c async for c in response]
                outcome = response.outcome
            else:
                outcome = await gw.acomplete("Where is my parcel?")
            await tripping
            return outcome, fp.stats

    outcome, stats = asyncio.run(run())
    assert stats.by_model == {"slow": 1}  # the hedge was due at 0.4 s, the breaker open since 0.1 s
    assert outcome.deployment == "slow" and [a.purpose for a in outcome.attempts] == ["answer"]


def test_a_hedge_whose_stream_breaks_after_it_won_is_the_error_reported():
    """The hedge won on its first token, then its stream broke, and its breaker opened: the chain
    had nothing left to call, and the request's error read "cancelled: fast started answering
    first" — the first call's loss, not what went wrong."""
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=3.0, keepalive_s=0.1)
    plan.model("fast").stream_timing(ttft_s=0.05, chunk_delay_s=0.01).then(Fault.cut_stream(after_chunks=2))

    async def run():
        async with FakeProvider(plan, reply=" ".join(f"word{i}" for i in range(12))) as fp:
            def deployment(name: str) -> Deployment:
                return Deployment(name, f"openai/{name}", {"api_base": fp.base_url, "api_key": "sk-test"},
                                  timeout_s=10.0, price_model="gpt-4o-mini")
            gw = Gateway([deployment("slow"), deployment("fast")], router=FixedRouter("slow"),
                         fallbacks={"slow": ["fast"]}, cache=False, retry=RetryPolicy(max_retries=0),
                         breaker={"failure_threshold": 1}, hedge=Hedge(after_s=0.3)).warm_up()
            response = gw.astream("Where is my parcel?")
            [c async for c in response]
            return response.outcome

    outcome = asyncio.run(run())
    assert not outcome.ok and [(a.deployment, a.purpose) for a in outcome.attempts][:2] == [("slow", "answer"),
                                                                                           ("fast", "hedge")]
    assert "cancelled" not in str(outcome.error) and "connection" in str(outcome.error), outcome.error
