"""A streamed call's ``timeout_s`` is a deadline on its first token, live as in the simulator.

The HTTP client times each wait for bytes, so a provider that kept a slow stream's connection
busy before its first token (SSE keep-alive comments, as OpenRouter sends; Anthropic's pings)
was never cut off: a tight first-token timeout — realtime-chat's 1.5 s, chosen in the lab to
fall back from a slow OpenAI — did nothing live.  Through litellm's real HTTP path against the
fake provider on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from llmlab import Deployment, FixedRouter, Gateway, RetryPolicy
from llmlab.testing import FakeProvider, FaultPlan

LONG = " ".join(f"word{i}" for i in range(12))


def gateway(base_url: str, timeout_s: float) -> Gateway:
    def deployment(name: str) -> Deployment:
        return Deployment(name, f"openai/{name}", {"api_base": base_url, "api_key": "sk-test"}, timeout_s=timeout_s,
                          price_model="gpt-4o-mini")
    gw = Gateway([deployment("slow"), deployment("fast")], router=FixedRouter("slow"), fallbacks={"slow": ["fast"]},
                 cache=False, retry=RetryPolicy(max_retries=0))
    return gw.warm_up()


async def read(gw: Gateway, prompt: str):
    started = time.perf_counter()
    response = gw.astream(prompt)
    text = "".join([c async for c in response if isinstance(c, str)])
    return response.outcome, text, time.perf_counter() - started


def test_the_fake_provider_keeps_a_slow_stream_busy_with_comments():
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=0.5, keepalive_s=0.1)

    async def run():
        async with FakeProvider(plan) as fp:
            async with httpx.AsyncClient(base_url=fp.base_url) as client:
                body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
                async with client.stream("POST", "/chat/completions", json=body) as r:
                    return [line async for line in r.aiter_lines() if line]

    lines = asyncio.run(run())
    first_content = next(i for i, line in enumerate(lines) if line.startswith("data: ") and '"content": "' in line
                         and '"content": ""' not in line)
    assert lines[1:first_content].count(": keep-alive") == 5  # 0.5 s of waiting, a comment every 0.1 s
    assert lines[-1] == "data: [DONE]"


def test_a_first_token_later_than_timeout_s_falls_back_however_busy_the_connection():
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=3.0, keepalive_s=0.1)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = gateway(fp.base_url, timeout_s=0.5)
            return await read(gw, "Where is my parcel?")

    outcome, text, took = asyncio.run(run())
    assert outcome.ok and outcome.deployment == "fast" and text == outcome.text
    first = outcome.attempts[0]
    assert first.deployment == "slow" and "timeout" in first.error and "no first token within 0.5 s" in first.error
    assert took < 2.5  # cut at 0.5 s; waited out, the slow stream's first token alone takes 3 s


def test_a_stream_that_starts_in_time_is_not_cut_however_long_it_runs():
    """The deadline is on the first token, as the simulator's: a long answer streamed at a
    normal pace goes on past timeout_s (each later wait is held to it by the HTTP client)."""
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=0.05, chunk_delay_s=0.1, keepalive_s=0.02)

    async def run():
        async with FakeProvider(plan, reply=LONG) as fp:
            gw = gateway(fp.base_url, timeout_s=0.5)
            return await read(gw, "Tell me a long story")

    outcome, text, took = asyncio.run(run())
    assert outcome.ok and outcome.deployment == "slow" and len(outcome.attempts) == 1
    assert text == LONG and took > 1.0  # twelve words a tenth of a second apart: well past the 0.5 s


@pytest.mark.parametrize("flag", ["--keepalive-ms"])
def test_the_command_line_takes_the_keep_alive_interval_and_refuses_a_bad_one(flag, capsys):
    from llmlab.testing.fake_provider import cli_main

    assert cli_main([flag, "nan"]) == 2
    assert f"{flag} must be a finite number >= 0" in capsys.readouterr().err


def test_a_stream_that_ends_before_any_token_is_not_polled_again(monkeypatch):
    """The first-token loop saw the end: the rest of the read must not ask the ended stream again
    (litellm's wrapper re-runs its end-of-stream step on each extra poll)."""
    from types import SimpleNamespace

    import llmlab.live as live

    class Ended:
        polls = 0

        def __aiter__(self):
            return self

        async def __anext__(self):
            Ended.polls += 1
            raise StopAsyncIteration

        async def aclose(self):
            pass

    async def acompletion(**kwargs):
        return Ended()

    monkeypatch.setattr(live, "_LITELLM", SimpleNamespace(acompletion=acompletion))
    gw = Gateway([Deployment("m", "gpt-4o-mini", {"api_key": "sk-test"}, timeout_s=5.0)], router=FixedRouter("m"),
                 fallbacks={}, cache=False, retry=RetryPolicy(max_retries=0))

    async def run():
        response = gw.astream("hello")
        return [c async for c in response], response.outcome

    chunks, outcome = asyncio.run(run())
    assert Ended.polls == 1 and outcome.text == ""


# -- synchronous streams: the watchdog cuts a blocked read (llmlab.deadlines, llmlab.stream_cut) -----------

def read_sync(gw: Gateway, prompt: str):
    started = time.perf_counter()
    response = gw.stream(prompt)
    text = "".join(c for c in response if isinstance(c, str))
    return response.outcome, text, time.perf_counter() - started


def test_a_sync_stream_s_late_first_token_falls_back_however_busy_the_connection():
    """A blocked synchronous read was waited out: 3 s of keep-alives behind timeout_s=0.5, and
    the fallback never moved on."""
    plan = FaultPlan()
    plan.model("slow").stream_timing(ttft_s=3.0, keepalive_s=0.1)
    with FakeProvider(plan) as fp:
        outcome, text, took = read_sync(gateway(fp.base_url, timeout_s=0.5), "Where is my parcel?")
    assert outcome.ok and outcome.deployment == "fast" and text == outcome.text
    first = outcome.attempts[0]
    assert first.deployment == "slow" and "timeout" in first.error and "no first token within 0.5 s" in first.error
    assert took < 2.5  # cut at 0.5 s; waited out, the slow stream's first token alone takes 3 s


@pytest.mark.parametrize("prefix", ["openai", "hosted_vllm"])
def test_litellm_s_sync_streams_keep_the_socket_where_the_watchdog_looks(prefix):
    """Fails loudly if litellm (or the openai SDK, or httpcore) moves the response or its socket:
    the openai SDK's Stream (``openai/``) and litellm's own handlers' iterators (``hosted_vllm/``,
    OpenRouter, Groq, …) — without them a sync stream's first token is not held to timeout_s."""
    from llmlab import stream_cut
    from llmlab.live import import_litellm

    litellm = import_litellm()
    with FakeProvider(FaultPlan()) as fp:
        stream = litellm.completion(model=f"{prefix}/m", api_base=fp.base_url, api_key="sk-test", stream=True,
                                    messages=[{"role": "user", "content": "hi"}], timeout=5, max_retries=0)
        try:
            next(iter(stream))  # litellm's own handlers send the request at the first read
            response = stream_cut.http_response(stream)
            assert response is not None and stream_cut.connection_socket(response) is not None
        finally:
            stream.close()


def test_anthropic_s_sync_stream_iterator_keeps_its_response_where_the_watchdog_looks():
    """Anthropic's iterator is not reachable through the fake provider (not its wire format):
    the attribute is checked on the iterator itself."""
    import httpx
    from litellm.llms.anthropic.chat.handler import ModelResponseIterator

    from llmlab import stream_cut

    response = httpx.Response(200)
    wrapper = type("Wrapper", (), {})()
    wrapper.completion_stream = ModelResponseIterator(streaming_response=iter(()), sync_stream=True, json_mode=False,
                                                      response=response)
    assert stream_cut.http_response(wrapper) is response
