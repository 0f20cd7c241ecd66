"""Money and bookkeeping at the edges: router calls under a cap, refusals caused by requests in
flight, callers that leave mid-stream or cancel, and PII written in full-width or accented forms."""
from __future__ import annotations

import asyncio
import pickle

import pytest

from llmlab import BudgetExceeded, BudgetPolicy, ClassifierRouter, Deployment, FixedRouter, Gateway
from llmlab.errors import ClientDisconnected
from llmlab.guardrails.pii import PIIMasker, fold
from llmlab.tokens import count_tokens, max_message_tokens

WORDS = " ".join(f"word{i}" for i in range(60))


# ----------------------------------------------------------------------------- budgets
def test_a_tenant_at_its_cap_pays_for_no_more_classifications(make_gateway, driver):
    driver.default = lambda call: "COMPLEX" if call.purpose == "classify" else "ok: " + WORDS
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini"), budget=BudgetPolicy(caps={"acme": 0.01}))
    outcomes = [gw.complete(f"question number {i} about invoices?", tenant="acme", max_tokens=200) for i in range(300)]
    refused = [o for o in outcomes if o.error is not None and o.error.code == "budget_exceeded"]
    assert refused and outcomes[0].ok and outcomes[0].model == "gpt-4o"
    # while the dearest route fits, a classification is held with it; nearer the cap with the cheapest, so a
    # request labelled beyond the budget has paid its classification: at most the spread between the routes
    pipe = gw.pipeline
    bound = max_message_tokens(({"role": "user", "content": "question number 299 about invoices?"},))
    spread = pipe.worst_case_cost(pipe.chain_for("gpt-4o"), bound, 200) - \
        pipe.worst_case_cost(pipe.chain_for("gpt-4o-mini"), bound, 200)
    assert 0 < sum(o.cost_usd for o in refused) <= spread
    assert refused[-1].cost_usd == 0.0 and not refused[-1].attempts  # not even the cheapest fits: no classification
    spent = gw.budgets.spent("acme", gw.clock())
    assert spent <= 0.01 + 1e-12 and gw.budgets.overshoot_usd == 0.0
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0
    # a tenant who could not afford even the cheapest answer is not charged for classifying it
    before = len(driver.calls)
    poor = make_gateway(router=ClassifierRouter("gpt-4o-mini"), budget=BudgetPolicy(caps={"poor": 0.0001}))
    outcome = poor.complete("question about invoices?", tenant="poor", max_tokens=200)
    assert outcome.error.code == "budget_exceeded" and len(driver.calls) == before
    assert poor.budgets.spent("poor", poor.clock()) == 0.0


def test_a_refusal_caused_by_requests_in_flight_says_retry():
    temporary = BudgetExceeded("acme", 0.0, 1.0, 0.0, 0.04, reserved_usd=0.98)
    assert temporary.temporary and temporary.retry_after_s == BudgetExceeded.IN_FLIGHT_RETRY_S
    assert "reserved by requests in flight" in str(temporary) and "retry" in temporary.user_message
    spent = BudgetExceeded("acme", 0.99, 1.0, 0.0, 0.04, reserved_usd=0.0)
    assert not spent.temporary and spent.retry_after_s is None and "resets" in spent.user_message
    back = pickle.loads(pickle.dumps(temporary))
    assert back.temporary and back.reserved_usd == 0.98


def test_concurrent_requests_refused_by_reservations_get_a_retry_hint(make_gateway, driver):
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 0.02}))

    async def burst():
        return await asyncio.gather(*(gw.acomplete(f"q{i}", tenant="acme", max_tokens=100) for i in range(40)))

    driver.default = "ok: fine answer, long enough to accept"
    # hold every call open so reservations pile up: the scripted driver answers after a yield
    original = driver.aperform

    async def slow(effect):
        await asyncio.sleep(0.01)
        return await original(effect)

    driver.aperform = slow
    outcomes = asyncio.run(burst())
    refused = [o.error for o in outcomes if o.error is not None]
    assert refused and all(e.code == "budget_exceeded" for e in refused)
    temporary = [e for e in refused if e.temporary]
    assert temporary  # the first wave: nothing spent yet, only reservations stood in the way
    assert all(e.reserved_usd > 0 and e.spend_usd + e.needed_usd <= e.cap_usd and e.retry_after_s for e in temporary)


# ----------------------------------------------------------------------------- callers that leave
def test_a_stream_abandoned_midway_is_recorded_charged_and_settled(make_gateway, driver):
    driver.default = "ok: " + WORDS
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 10.0}))
    response = gw.stream("tell me a long story", tenant="acme")
    for i, chunk in enumerate(response):
        if i == 1:
            break  # the caller keeps `response`: leaving the loop still closes the stream at once
    assert len(gw.ledger) == 1
    outcome = list(gw.ledger)[0]
    assert outcome.error is not None and outcome.error.code == "client_disconnected"
    assert isinstance(outcome.error, ClientDisconnected) and response.outcome is outcome
    partial = outcome.attempts[-1]
    assert 0 < partial.completion_tokens < count_tokens("ok: " + WORDS) and partial.cost_usd > 0
    assert outcome.cost_usd == pytest.approx(partial.cost_usd)
    assert gw.budgets.spent("acme", gw.clock()) == pytest.approx(outcome.cost_usd)
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0
    assert all(b.state == b.CLOSED for b in gw.pipeline.breakers.values())


def cancel_during_first_effect(gw, driver) -> None:
    """Start ``acomplete``, let its first effect hang, cancel the task there."""
    started = asyncio.Event()
    original = driver.aperform

    async def hang(effect):
        started.set()
        await asyncio.sleep(30)
        return await original(effect)

    driver.aperform = hang

    async def run():
        task = asyncio.create_task(gw.acomplete("hello there", tenant="acme"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_a_cancelled_request_is_still_one_outcome(make_gateway, driver):
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 10.0}))
    cancel_during_first_effect(gw, driver)
    assert [o.error.code for o in gw.ledger] == ["client_disconnected"]
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0


def test_async_stream_closed_early_is_recorded():
    from llmlab.live import LiteLLMDriver

    dep = Deployment("gpt-4o", "gpt-4o", {"mock_response": WORDS})
    gw = Gateway([dep], router=FixedRouter("gpt-4o"), fallbacks={}, driver=LiteLLMDriver())

    async def run():
        response = gw.astream("tell me")
        chunks = []
        async for chunk in response:
            chunks.append(chunk)
            if len(chunks) == 2:
                break
        for _ in range(100):  # asyncio's finaliser closes the dropped iterator in a task of its own
            if len(gw.ledger):
                break
            await asyncio.sleep(0.01)
        assert len(gw.ledger) == 1
        async with gw.astream("tell me more") as second:  # the explicit form
            async for chunk in second:
                break
        return response

    response = asyncio.run(run())
    records = list(gw.ledger)
    assert len(records) == 2 and {r.error.code for r in records} == {"client_disconnected"}
    assert response.outcome is records[0] and records[0].attempts[-1].completion_tokens > 0


def test_closing_a_stream_left_with_break_does_not_race_its_own_close():
    """``async for … break`` drops the loop's iterator, whose close the event loop runs as a task;
    an ``await response.aclose()`` right after (or an ``async with`` block's end) met that close
    half-way, and one of them failed: "aclose(): asynchronous generator is already running",
    logged as a task exception never retrieved."""
    import gc

    from llmlab.live import LiteLLMDriver

    dep = Deployment("gpt-4o", "gpt-4o", {"mock_response": WORDS})
    gw = Gateway([dep], router=FixedRouter("gpt-4o"), fallbacks={}, driver=LiteLLMDriver())
    reported: list[dict] = []

    async def run():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        response = gw.astream("tell me")
        async for _chunk in response:
            break
        await response.aclose()
        await response.aclose()  # and again: nothing more to do
        async with gw.astream("tell me more") as second:
            async for _chunk in second:
                break
        for _ in range(3):
            await asyncio.sleep(0.05)
            gc.collect()
        return response, second

    first, second = asyncio.run(run())
    assert reported == []
    records = list(gw.ledger)
    assert len(records) == 2 and {r.error.code for r in records} == {"client_disconnected"}
    assert first.outcome is records[0] and second.outcome is records[1]


# ----------------------------------------------------------------------------- PII in other forms
@pytest.mark.parametrize("text, kind", [
    ("call 010－1234－5678 now", "PHONE"), ("full ０１０－１２３４－５６７８", "PHONE"),
    ("mail jöhn@exämple.com please", "EMAIL"), ("ｋｉｍ＠ｃｏｒｐ．ｃｏｍ", "EMAIL"),
    ("card 4111 1111 1111 1111", "CARD"), ("write to user@例え.jp", "EMAIL"), ("김철수@회사.한국으로 보내 주세요", "EMAIL"),
    ("δοκιμή@παράδειγμα.δοκιμή", "EMAIL"), ("उपयोगकर्ता@उदाहरण.भारत", "EMAIL"), ("用户@例子.广告", "EMAIL"),
])
def test_full_width_and_accented_pii_is_masked(text, kind):
    result = PIIMasker().mask(text)
    assert f"[{kind}_1]" in result.text
    original = next(iter(result.mapping.values()))
    assert original in text  # the caller's own form comes back when unmasked


def test_an_at_sign_in_ordinary_text_is_not_an_address():
    for text in ("price@100원.", "@홍길동 님 확인 부탁드려요", "meet @ 3pm at the office"):
        assert PIIMasker().mask(text).text == text


def test_folding_keeps_length_and_korean_text_around_an_address():
    text = "메일은 hong@example.com으로 보내 주세요 ０１０"
    assert len(fold(text)) == len(text)
    assert PIIMasker().mask(text).text == "메일은 [EMAIL_1]으로 보내 주세요 ０１０"


def test_a_cancel_during_the_classifier_call_releases_its_hold(make_gateway, driver):
    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini"), budget=BudgetPolicy(caps={"acme": 1.0}))
    cancel_during_first_effect(gw, driver)  # the first effect is the classifier's call
    assert [o.error.code for o in gw.ledger] == ["client_disconnected"]
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0 and gw.budgets.spent("acme", gw.clock()) == 0.0


def test_a_cascade_route_is_held_as_the_sum_of_its_stages():
    from llmlab import CascadeRouter, PlanRouter
    from llmlab.routing import answer_routes

    cascade = CascadeRouter(("gpt-4o-mini", "gpt-4o"))
    classifier = ClassifierRouter("gpt-4o-mini", routes={"faq": "gpt-4o-mini", "general": "gpt-4o-mini",
                                                         "complex": cascade})
    assert answer_routes(classifier) == [("gpt-4o-mini",), ("gpt-4o-mini",), ("gpt-4o-mini", "gpt-4o")]
    assert answer_routes(PlanRouter({"paid": classifier, "free": "gpt-4o-mini"})) == [
        ("gpt-4o-mini",), ("gpt-4o-mini",), ("gpt-4o-mini", "gpt-4o"), ("gpt-4o-mini",)]
    assert answer_routes(FixedRouter("gpt-4o")) == [("gpt-4o",)]


def test_reading_a_stream_with_the_other_kind_of_loop_says_which_to_use(make_gateway):
    """Before: "'async for' requires an object with __aiter__ method, got generator" for a
    StreamResponse, which has __aiter__; and "'async_generator' object is not iterable"."""
    gw = make_gateway()
    with pytest.raises(TypeError, match=r"Gateway\.astream\(\) is read with `async for`"):
        for _ in gw.astream("hello"):
            pass

    async def read_sync_stream_asynchronously():
        async for _ in gw.stream("hello"):
            pass

    with pytest.raises(TypeError, match=r"Gateway\.stream\(\) is read with a plain `for` loop"):
        asyncio.run(read_sync_stream_asynchronously())
    assert len(gw.ledger) == 0  # neither was sent
    assert "".join(gw.stream("hello")) and len(gw.ledger) == 1  # the right loop still works
