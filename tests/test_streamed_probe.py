"""A streamed half-open probe is judged at its first token (``CircuitBreaker.first_token``).

Its verdict came only with the stream's end, and the breaker's one probe slot was held until
then: every other request skipped the recovered deployment for the whole stream (seconds to
tens of seconds), though its first token already showed it answers.  Scripted, live (a local
OpenAI-compatible server through litellm, sync and async) and simulated (SimPy).
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from llmlab import CircuitBreaker, Deployment, ErrorKind, FixedRouter, Gateway, RetryPolicy
from llmlab.effects import CallResult

ANSWER = "ok: the primary is back and this streamed answer is long enough to accept"


def _open_then_cool(gw: Gateway, driver, clock) -> None:
    """Open gpt-4o's breaker (one failure, threshold 1) and let its cooldown pass."""
    driver.script("gpt-4o", ErrorKind.SERVER)
    assert gw.complete("the primary fails").deployment == "claude"
    assert gw.pipeline.breakers["gpt-4o"].state == CircuitBreaker.OPEN
    clock.now += 31


def test_other_requests_use_the_deployment_once_the_probes_first_token_came(make_gateway, driver, clock):
    gw = make_gateway(retry=RetryPolicy(max_retries=0), breaker={"failure_threshold": 1, "cooldown_s": 30.0})
    _open_then_cool(gw, driver, clock)
    driver.script("gpt-4o", CallResult(ANSWER, 10, 20, 20.0, 0.1))  # first token at once, a 20 s stream
    probe = gw.stream("the probe")
    chunks = iter(probe)
    assert next(chunks)  # its first token
    breaker = gw.pipeline.breakers["gpt-4o"]
    during = []
    for i in range(5):  # requests during the probe's stream (4 s apart)
        clock.now += 4
        during.append(gw.complete(f"meanwhile {i}"))
    assert [o.deployment for o in during] == ["gpt-4o"] * 5, [[a.purpose for a in o.attempts] for o in during]
    assert not any(a.purpose == "skip" for o in during for a in o.attempts)
    assert breaker.state == CircuitBreaker.CLOSED
    rest = "".join(c for c in chunks if isinstance(c, str))
    assert probe.outcome.ok and probe.outcome.deployment == "gpt-4o" and rest
    assert breaker.state == CircuitBreaker.CLOSED and breaker.stale_verdicts == 0


def test_a_slow_first_token_opens_the_breaker_again_at_once(make_gateway, driver, clock):
    """``slow_call_s`` judges a stream's time to first token, as before: a slow probe keeps the
    breaker open, now from its first token on (the stream still reaches its caller)."""
    gw = make_gateway(retry=RetryPolicy(max_retries=0),
                      breaker={"failure_threshold": 1, "cooldown_s": 30.0, "slow_call_s": 2.0, "min_calls": 4,
                               "window": 4})
    _open_then_cool(gw, driver, clock)
    driver.latency_s = 3.0  # the scripted first token comes 3 s after sending: slow
    driver.script("gpt-4o", CallResult(ANSWER, 10, 20, 3.0, 3.0))
    probe = gw.stream("the probe")
    chunks = iter(probe)
    assert next(chunks)
    breaker = gw.pipeline.breakers["gpt-4o"]
    assert breaker.state == CircuitBreaker.OPEN and breaker.slow_opens == 1 and breaker.times_opened == 2
    driver.latency_s = 0.0
    assert gw.complete("meanwhile").deployment == "claude"  # skipped: open again
    list(chunks)
    assert probe.outcome.ok and probe.outcome.deployment == "gpt-4o"
    assert breaker.state == CircuitBreaker.OPEN and breaker.times_opened == 2 and breaker.stale_verdicts == 0


def test_the_breaker_rule_first_token_in_plain_terms():
    """Only the half-open probe of the present generation is judged at its first token; its end
    then counts as a call of the closed state (a cut stream: one failure)."""
    b = CircuitBreaker(failure_threshold=2, cooldown_s=10.0)
    closed = b.admit(0.0)
    assert b.first_token(0.1, closed, 0.1) == closed and b.generation == 0  # not a probe: no verdict
    b.record_failure(1.0, closed)
    b.record_failure(1.0, closed)
    assert b.state == b.OPEN
    probe = b.admit(11.0)
    assert b.state == b.HALF_OPEN and b.admit(11.0) is None
    after = b.first_token(11.2, probe, 0.2)
    assert b.state == b.CLOSED and after == b.generation and b.admit(11.3) is not None
    assert b.first_token(11.4, probe, 0.2) == probe  # stale: nothing changes
    b.record_failure(12.0, after)  # the probe's stream was cut after its first token
    assert b.state == b.CLOSED and b.consecutive_failures == 1 and b.stale_verdicts == 0


# ----------------------------------------------------------------------------- live (litellm, local server)
def chunk(content: str | None = None, finish: str | None = None) -> dict:
    choice = {"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


@pytest.fixture(scope="module")
def server():
    from canned_http import CUT, CannedServer, openai_frames, running, send_events, send_json

    class Paused(CannedServer):
        """Streams ``hello there`` to every request; the first request of a model listed in
        ``hold`` pauses after its first token until ``release`` is set; a model in ``down``
        answers 500, one in ``cut`` breaks its next stream after the first token; a request not
        streamed gets the whole answer."""

        def __init__(self) -> None:
            self.hold: set[str] = set()
            self.down: set[str] = set()
            self.cut: set[str] = set()  # the next stream of these models breaks after its first token
            self.release = threading.Event()
            self.hits: dict[str, int] = {}
            super().__init__()
            self.base_url += "/v1"

        def reply_to(self, handler, body) -> None:
            model = body["model"]
            self.hits[model] = self.hits.get(model, 0) + 1
            if model in self.down:
                send_json(handler, 500, {}, {"error": {"message": "down", "type": "server_error"}})
                return
            if not body.get("stream"):
                send_json(handler, 200, {}, {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                             "choices": [{"index": 0, "finish_reason": "stop", "message":
                                                          {"role": "assistant", "content": "hello there"}}]})
                return
            if model in self.cut:
                self.cut.discard(model)
                send_events(handler, 200, {}, openai_frames([chunk("hel"), CUT]))
                return
            pause = self.hold and model in self.hold
            self.hold.discard(model)
            frames = [chunk("hello"), *([lambda: self.release.wait(20.0)] if pause else []),
                      chunk(" there"), chunk(finish="stop")]
            send_events(handler, 200, {}, openai_frames(frames))

    yield from running(Paused)


def _live_gateway(server, name: str, threshold: int = 1) -> Gateway:
    deps = [Deployment(f"{name}-{role}", f"openai/{name}-{role}", {"api_base": server.base_url, "api_key": "sk-test"},
                       price_model="gpt-4o", timeout_s=5.0) for role in ("a", "b")]
    return Gateway(deps, router=FixedRouter(deps[0].name), fallbacks={deps[0].name: [deps[1].name]}, cache=False,
                   input_guards=(), retry=RetryPolicy(max_retries=0),
                   breaker={"failure_threshold": threshold, "cooldown_s": 0.2})


def _opened(server, gw: Gateway, name: str, failures: int = 1) -> None:
    server.down.add(f"{name}-a")
    for i in range(failures):
        assert gw.complete(f"the primary fails {i}").deployment == f"{name}-b"
    server.down.discard(f"{name}-a")
    assert gw.pipeline.breakers[f"{name}-a"].state == CircuitBreaker.OPEN
    import time
    time.sleep(0.25)
    server.hold.add(f"{name}-a")
    server.release.clear()


def test_live_sync_stream_the_probe_frees_the_deployment_at_its_first_token(server):
    gw = _live_gateway(server, "sync")
    _opened(server, gw, "sync")
    probe = gw.stream("the probe")
    chunks = iter(probe)
    try:
        assert next(chunks) == "hello"  # the probe's stream now waits on the server
        during = [gw.stream("meanwhile") for _ in range(3)]
        for response in during:
            assert "".join(c for c in response if isinstance(c, str)) == "hello there"
    finally:
        server.release.set()
    assert "".join(c for c in chunks if isinstance(c, str)) == " there"
    assert [r.outcome.deployment for r in during] == ["sync-a"] * 3, [r.outcome.attempts for r in during]
    assert probe.outcome.deployment == "sync-a"
    assert gw.pipeline.breakers["sync-a"].state == CircuitBreaker.CLOSED


def test_live_async_stream_the_probe_frees_the_deployment_at_its_first_token(server):
    gw = _live_gateway(server, "async")
    _opened(server, gw, "async")

    async def run():
        probe = gw.astream("the probe")
        chunks = probe.__aiter__()
        try:
            assert await chunks.__anext__() == "hello"
            during = [await gw.acomplete("meanwhile") for _ in range(3)]
        finally:
            server.release.set()
        rest = [c async for c in chunks]
        return probe, during, rest

    probe, during, rest = asyncio.run(run())
    assert [o.deployment for o in during] == ["async-a"] * 3, [o.attempts for o in during]
    assert "".join(c for c in rest if isinstance(c, str)) == " there"
    assert probe.outcome.deployment == "async-a"
    assert gw.pipeline.breakers["async-a"].state == CircuitBreaker.CLOSED


# ----------------------------------------------------------------------------- simulated (SimPy)
PROBED = """
name = "streamed-probe"
[traffic]
requests = 60
rate_per_s = 1.0
fixed_prompt_tokens = 300
fixed_answer_tokens = 400
max_tokens = 500
stream = true
[[traffic.tenants]]
plan = "p"
[providers.main]
model = "gpt-4o"
ttft_dist = "fixed"
ttft_s = 0.2
tokens_per_s = 20.0
tokens_per_s_sigma = 0.0
error_rate = 0.0
[providers.backup]
model = "gpt-4o-mini"
ttft_dist = "fixed"
ttft_s = 0.2
tokens_per_s = 20.0
tokens_per_s_sigma = 0.0
error_rate = 0.0
[gateway.router]
type = "fixed"
deployment = "main"
[gateway.fallbacks]
main = ["backup"]
[gateway.cache]
exact = false
[gateway.breaker]
failure_threshold = 1
cooldown_s = 5.0
[[outages.windows]]
target = "main"
start_s = 0.0
end_s = 20.0
[baseline]
enabled = false
"""


def test_simulated_requests_go_back_to_the_recovered_deployment_at_the_probes_first_token(tmp_path):
    """``main`` is down for 20 s; its breaker's probe after the outage streams a 20 s answer whose
    first token comes 0.2 s in.  Every turn that arrived during that stream went to ``backup``
    (on the base, those from 29 s to 42 s); now none does."""
    from llmlab.sim import load_scenario, simulate

    path = tmp_path / "probe.toml"
    path.write_text(PROBED)
    turns = simulate(load_scenario(path)).turns
    served = turns[turns["outcome"] != "error"].sort_values("arrival_s")
    first_main = served.index[served["deployment"] == "main"][0]
    probe_at = served.loc[first_main, "arrival_s"]
    assert probe_at >= 20.0  # the probe went out after the outage (the breaker was open)
    later = served[served["arrival_s"] > probe_at]
    assert len(later) > 20 and (later["deployment"] == "main").all(), \
        later.loc[later["deployment"] != "main", "arrival_s"].tolist()


def test_live_a_probe_cut_after_its_first_token_counts_as_one_failure_of_the_closed_breaker(server):
    """The decision for a stream that breaks after its first token: the first token closed the
    breaker, and the cut is then what a cut stream is to a closed breaker — one failure (towards
    ``failure_threshold`` and the failure share), retried or fallen back from as before.  It used
    to open the breaker again (a failed probe), for another cooldown."""
    gw = _live_gateway(server, "cut", threshold=2)
    _opened(server, gw, "cut", failures=2)
    server.hold.clear()
    server.cut.add("cut-a")
    out = gw.stream("the probe")
    text = [c for c in out]
    assert out.outcome.deployment == "cut-b" and text[-1] == " there", text  # fell back after the cut
    breaker = gw.pipeline.breakers["cut-a"]
    assert (breaker.state, breaker.consecutive_failures, breaker.times_opened) == (CircuitBreaker.CLOSED, 1, 1)
    assert gw.complete("next").deployment == "cut-a"
