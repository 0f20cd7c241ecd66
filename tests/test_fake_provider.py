"""The fault-injecting OpenAI-compatible server: shapes, every fault, and litellm's real HTTP path."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from llmlab.testing import FakeProvider, Fault, FaultPlan
from llmlab.testing.fake_provider import NonLoopbackHostError, cli_main

MSGS = [{"role": "user", "content": "Where is my parcel?"}]
ROOT = Path(__file__).resolve().parents[1]


def chat(client: httpx.Client, model: str = "gpt-4o", **extra) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": MSGS, **extra})


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.fixture
def provider_factory():
    """Start providers in background threads; always stopped at the end of the test."""
    started: list[FakeProvider] = []

    def start(plan: FaultPlan | None = None, **kwargs) -> FakeProvider:
        fp = FakeProvider(plan, **kwargs).__enter__()
        started.append(fp)
        return fp

    yield start
    for fp in started:
        fp.__exit__(None, None, None)


@pytest.fixture
def client_for():
    clients: list[httpx.Client] = []

    def make(fp: FakeProvider, timeout: float = 5.0) -> httpx.Client:
        c = httpx.Client(base_url=fp.base_url, timeout=timeout)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# -- happy path shapes -------------------------------------------------------------------------

def test_chat_completion_shape_and_usage(provider_factory, client_for):
    fp = provider_factory()
    assert fp.base_url == f"http://127.0.0.1:{fp.port}/v1" and fp.port > 0
    r = chat(client_for(fp))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    text = choice["message"]["content"]
    assert text == "Fake answer from gpt-4o to: Where is my parcel?"
    prompt = MSGS[0]["content"]
    assert body["usage"] == {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(text) // 4 + 1,
                             "total_tokens": len(prompt) // 4 + 1 + len(text) // 4 + 1}


def test_reply_can_be_fixed_or_computed_and_max_tokens_truncates(provider_factory, client_for):
    fixed = client_for(provider_factory(reply="Fixed answer."))
    assert chat(fixed).json()["choices"][0]["message"]["content"] == "Fixed answer."
    computed = client_for(provider_factory(reply=lambda body: body["messages"][-1]["content"].upper()))
    assert chat(computed).json()["choices"][0]["message"]["content"] == "WHERE IS MY PARCEL?"
    short = chat(computed, max_tokens=2).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["choices"][0]["message"]["content"] == "WHERE I"
    assert short["usage"]["completion_tokens"] == 2  # a real provider never bills past max_tokens


def test_streaming_sse_with_and_without_usage(provider_factory, client_for):
    fp = provider_factory(reply="one two three")
    client = client_for(fp)
    for include_usage in (False, True):
        extra = {"stream": True}
        if include_usage:
            extra["stream_options"] = {"include_usage": True}
        with client.stream("POST", "/chat/completions", json={"model": "m", "messages": MSGS, **extra}) as r:
            assert r.headers["content-type"] == "text/event-stream"
            events = sse_events(r)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == "one two three"
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
        if include_usage:
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(text) // 4 + 1
            assert all(c["usage"] is None for c in chunks[:-1])
        else:
            assert all("usage" not in c for c in chunks)


def test_embeddings_are_deterministic_unit_vectors(provider_factory, client_for):
    client = client_for(provider_factory())
    r = client.post("/embeddings", json={"model": "text-embedding-3-small", "input": ["hello", "world", "hello"]})
    body = r.json()
    assert body["object"] == "list" and body["model"] == "text-embedding-3-small"
    vecs = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(len(v) == 64 for v in vecs)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-9) for v in vecs)
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    assert body["usage"]["prompt_tokens"] == 3 * (len("hello") // 4 + 1)
    # the openai client asks for base64 float32; `dimensions` is honoured
    b64 = client.post("/embeddings", json={"model": "e", "input": "hello", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<64f", base64.b64decode(b64["data"][0]["embedding"]))
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(decoded, vecs[0]))
    small = client.post("/embeddings", json={"model": "e", "input": "hello", "dimensions": 8}).json()
    assert len(small["data"][0]["embedding"]) == 8


def test_a_failing_reply_callable_becomes_a_500(provider_factory, client_for):
    client = client_for(provider_factory(reply=lambda body: 1 / 0))
    r = chat(client)
    assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]["message"]
    assert chat(client).status_code == 500  # and the server keeps serving


def test_unknown_path_bad_body_and_models_listing(provider_factory, client_for):
    client = client_for(provider_factory())
    assert client.post("/completions", json={}).status_code == 404
    bad = client.post("/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/chat/completions", json={"messages": []}).status_code == 400  # no model
    assert client.get("/chat/completions").status_code == 405
    chat(client, "gpt-4o-mini")
    assert "gpt-4o-mini" in [m["id"] for m in client.get("/models").json()["data"]]


# -- faults ------------------------------------------------------------------------------------

def test_scripted_429_with_retry_after_then_success(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("gpt-4o").first(2, Fault.rate_limited(retry_after_s=1.5))
    client = client_for(provider_factory(plan))
    for _ in range(2):
        r = chat(client)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2" and r.headers["retry-after-ms"] == "1500"
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert chat(client).status_code == 200
    assert chat(client, "gpt-4o-mini").status_code == 200  # faults are per model


@pytest.mark.parametrize("fault, status, kind", [
    (Fault.server_error(), 500, "server_error"),
    (Fault.unavailable(retry_after_s=3), 503, "service_unavailable"),
    (Fault.overloaded(), 529, "overloaded_error"),
    (Fault.error(502), 502, "server_error"),
])
def test_error_statuses(provider_factory, client_for, fault, status, kind):
    plan = FaultPlan()
    plan.model("*").then(fault)
    r = chat(client_for(provider_factory(plan)))
    assert r.status_code == status and r.json()["error"]["type"] == kind
    assert ("retry-after" in r.headers) is (fault.retry_after_s is not None)


def test_sequence_with_healthy_gaps(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("m").then(Fault.rate_limited(), None, Fault.server_error())
    client = client_for(provider_factory(plan))
    assert [chat(client, "m").status_code for _ in range(4)] == [429, 200, 500, 200]


def test_hang_until_client_timeout_then_server_still_serves(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("slow").first(1, Fault.hang())
    fp = provider_factory(plan)
    client = client_for(fp, timeout=0.2)
    t0 = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        chat(client, "slow")
    assert time.perf_counter() - t0 < 2
    assert chat(client, "slow").status_code == 200


def test_cut_stream_after_k_chunks(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("m").first(1, Fault.cut_stream(after_chunks=2))
    client = client_for(provider_factory(plan, reply="a b c d e f g h"))
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", "/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    received.append(line)
    assert len(received) == 2


def test_cut_non_streaming_body(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("m").first(1, Fault.cut_stream())
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client_for(provider_factory(plan)), "m")


def test_malformed_json_body_and_stream_event(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("m").first(2, Fault.malformed())
    client = client_for(provider_factory(plan))
    r = chat(client, "m")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    with client.stream("POST", "/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}) as r:
        events = sse_events(r)
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1])


def test_fixed_latency_ttft_and_chunk_delay(provider_factory, client_for):
    plan = FaultPlan()
    plan.model("lat").latency(0.15)
    plan.model("ttft").stream_timing(ttft_s=0.15, chunk_delay_s=0.03)
    client = client_for(provider_factory(plan, reply="one two three four"))
    t0 = time.perf_counter()
    chat(client, "lat")
    assert time.perf_counter() - t0 >= 0.15
    t0 = time.perf_counter()
    chat(client, "other")
    assert time.perf_counter() - t0 < 0.15
    stamps = []
    t0 = time.perf_counter()
    with client.stream("POST", "/chat/completions", json={"model": "ttft", "messages": MSGS, "stream": True}) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                stamps.append(time.perf_counter() - t0)
    assert len(stamps) == 4
    assert stamps[0] >= 0.15  # time to first token
    assert stamps[-1] - stamps[0] >= 3 * 0.03 * 0.9  # per-chunk pacing


def test_random_faults_and_latency_are_reproducible_with_a_seed():
    def decisions(seed):
        plan = FaultPlan(seed=seed)
        plan.model("m").latency(low=0.01, high=0.05).randomly(0.2, Fault.rate_limited()).randomly(0.1, Fault.error(503))
        return [plan.decide("m") for _ in range(2000)]

    a, b, c = decisions(7), decisions(7), decisions(8)
    assert a == b and a != c
    labels = [d.fault.label if d.fault else "ok" for d in a]
    assert 0.15 < labels.count("429") / 2000 < 0.25
    assert 0.05 < labels.count("503") / 2000 < 0.11  # 0.1 of the remaining 80 %
    assert all(0.01 <= d.latency_s <= 0.05 for d in a)


def test_error_rate_default_rule_through_the_server(provider_factory, client_for):
    statuses = []
    for _ in range(2):
        client = client_for(provider_factory(FaultPlan(seed=3, error_rate=0.5, error_status=503)))
        statuses.append([chat(client, f"m{i % 3}").status_code for i in range(30)])
    assert statuses[0] == statuses[1]
    assert set(statuses[0]) == {200, 503}


def test_outage_toggles_at_run_time_and_stats_count_per_model_and_path(provider_factory, client_for):
    fp = provider_factory()
    client = client_for(fp)
    assert chat(client, "gpt-4o").status_code == 200
    fp.set_outage("gpt-4o", True)
    r = chat(client, "gpt-4o")
    assert r.status_code == 503 and "outage" in r.json()["error"]["message"]
    assert chat(client, "gpt-4o-mini").status_code == 200
    fp.set_outage("gpt-4o", False)
    assert chat(client, "gpt-4o").status_code == 200
    fp.set_outage("*")
    assert chat(client, "gpt-4o-mini").status_code == 503
    fp.set_outage("*", False)
    client.post("/embeddings", json={"model": "emb", "input": "x"})

    s = fp.stats
    assert s.by_model_path == {("gpt-4o", "/v1/chat/completions"): 3, ("gpt-4o-mini", "/v1/chat/completions"): 2,
                               ("emb", "/v1/embeddings"): 1}
    assert s.by_model == {"gpt-4o": 3, "gpt-4o-mini": 2, "emb": 1}
    assert s.by_path == {"/v1/chat/completions": 5, "/v1/embeddings": 1}
    assert s.total == 6 and s.count(model="gpt-4o") == 3 and s.outcomes == {"ok": 4, "outage": 2}
    assert fp.requests[1].outcome == "outage" and fp.requests[1].body["messages"] == MSGS
    fp.reset_stats()
    assert fp.stats.total == 0 and fp.requests == []


def test_a_trickled_body_comes_in_ten_pieces_after_headers_sent_at_once(provider_factory, client_for):
    """`trickle_s`: what defeats a client's per-read timeout on a non-streamed answer (no gap is
    longer than trickle_s, the whole body takes ten of them)."""
    plan = FaultPlan()
    plan.model("trickle").body_timing(trickle_s=0.05)
    client = client_for(provider_factory(plan), timeout=0.2)  # each read waits 0.05 s: never times out
    t0 = time.perf_counter()
    with client.stream("POST", "/chat/completions", json={"model": "trickle", "messages": MSGS}) as r:
        headers_s = time.perf_counter() - t0
        pieces = list(r.iter_raw())
    took = time.perf_counter() - t0
    assert r.status_code == 200 and headers_s < 0.04 and took >= 10 * 0.05 * 0.9
    assert 2 <= len(pieces) and json.loads(b"".join(pieces))["choices"][0]["message"]["content"]
    t0 = time.perf_counter()
    assert chat(client, "other").status_code == 200 and time.perf_counter() - t0 < 0.2  # others whole at once


def test_faults_validate_their_arguments():
    with pytest.raises(ValueError, match="status"):
        Fault.error(200)
    with pytest.raises(ValueError, match="probability"):
        FaultPlan().model("m").randomly(1.5, Fault.hang())
    with pytest.raises(ValueError, match="latency"):
        FaultPlan().model("m").latency(-1)
    with pytest.raises(ValueError, match="trickle_s"):
        FaultPlan().model("m").body_timing(trickle_s=math.nan)
    with pytest.raises(ValueError, match="trickle_s"):
        FaultPlan(trickle_s=-0.1)


# -- binding, lifecycle --------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_hosts_are_refused(host):
    with pytest.raises(NonLoopbackHostError, match="allow_non_loopback=True"):
        FakeProvider(host=host)
    FakeProvider(host=host, allow_non_loopback=True)  # explicit opt-in constructs (not started here)


def test_loopback_names_are_fine():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        FakeProvider(host=host)


def test_async_context_manager():
    async def main():
        plan = FaultPlan()
        plan.model("m").first(1, Fault.rate_limited())
        async with FakeProvider(plan) as fp:
            async with httpx.AsyncClient(base_url=fp.base_url) as client:
                first = await client.post("/chat/completions", json={"model": "m", "messages": MSGS})
                second = await client.post("/chat/completions", json={"model": "m", "messages": MSGS})
            return first.status_code, second.status_code, fp.stats.total

    assert asyncio.run(main()) == (429, 200, 2)


def test_clean_shutdown_releases_port_and_drops_hanging_clients():
    plan = FaultPlan()
    plan.model("m").then(Fault.hang())
    errors: list[BaseException] = []
    with FakeProvider(plan) as fp:
        url, port = fp.base_url, fp.port

        def hang():
            try:
                httpx.post(url + "/chat/completions", json={"model": "m", "messages": MSGS}, timeout=10)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=hang)
        t.start()
        deadline = time.monotonic() + 5
        while fp.stats.total == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
    assert time.perf_counter() - t0 < 2  # exit did not wait for the hanging client
    t.join(timeout=5)
    assert not t.is_alive() and isinstance(errors[0], httpx.HTTPError)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
    assert not any(th.name == "llmlab-fake-provider" for th in threading.enumerate())


def test_cli_refuses_non_loopback(capsys):
    assert cli_main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "allow-non-loopback" in capsys.readouterr().err


@pytest.mark.parametrize("argv, named", [(["--error-rate", "2"], "--error-rate"),
                                         (["--error-rate", "nan"], "--error-rate"),
                                         (["--retry-after-s", "nan"], "--retry-after-s"),
                                         (["--retry-after-s", "inf"], "--retry-after-s"),
                                         (["--trickle-ms", "-5"], "--trickle-ms"),
                                         (["--trickle-ms", "nan"], "--trickle-ms")])
def test_cli_names_the_option_a_bad_value_came_from(capsys, argv, named):
    """`--error-rate 2` said 'probability must be a number in [0, 1]' and `--retry-after-s nan`
    named 'retry_after_s': neither is what the user typed (--help calls them by their options)."""
    assert cli_main(["--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llmlab fake-provider: error: {named} ") and err.count("\n") == 1, err


def test_cli_serves_until_ctrl_c():
    code = "import sys; from llmlab.testing.fake_provider import cli_main; sys.exit(cli_main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "--port", "0", "--latency-ms", "1", "--seed", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
        base_url = line.split("listening on ")[1].split()[0]
        r = httpx.post(base_url + "/chat/completions", json={"model": "m", "messages": MSGS}, timeout=5)
        assert r.status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


# -- litellm's real HTTP path ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def litellm():
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # must precede the import: no network
    import litellm as lt

    lt.suppress_debug_info = True
    yield lt
    lt.logging_callback_manager._reset_all_callbacks()


@pytest.fixture
def lt(litellm):
    litellm.logging_callback_manager._reset_all_callbacks()
    yield litellm
    litellm.logging_callback_manager._reset_all_callbacks()


def lt_kwargs(fp: FakeProvider) -> dict:
    return {"api_base": fp.base_url, "api_key": "sk-test", "messages": MSGS, "num_retries": 0, "max_retries": 0}


def test_litellm_completion_returns_text_and_usage(lt, provider_factory):
    fp = provider_factory(reply="Your parcel arrives Tuesday.")
    resp = lt.completion(model="openai/gpt-4o", **lt_kwargs(fp))
    assert resp.choices[0].message.content == "Your parcel arrives Tuesday."
    assert resp.usage.completion_tokens == len("Your parcel arrives Tuesday.") // 4 + 1
    assert fp.stats.by_model == {"gpt-4o": 1}  # provider prefix stripped, one attempt only


def test_litellm_429_is_rate_limit_error_with_retry_after(lt, provider_factory):
    plan = FaultPlan()
    plan.model("gpt-4o").first(1, Fault.rate_limited(retry_after_s=2))
    fp = provider_factory(plan)
    with pytest.raises(lt.RateLimitError) as err:
        lt.completion(model="openai/gpt-4o", **lt_kwargs(fp))
    assert err.value.response.headers["retry-after"] == "2"
    assert fp.stats.total == 1  # no hidden retries


@pytest.mark.parametrize("fault, exc_name", [
    (Fault.server_error(), "InternalServerError"),
    (Fault.unavailable(), "ServiceUnavailableError"),
    (Fault.overloaded(), "APIError"),  # litellm has no class of its own for 529
])
def test_litellm_maps_server_errors(lt, provider_factory, fault, exc_name):
    plan = FaultPlan()
    plan.model("*").then(fault)
    with pytest.raises(getattr(lt, exc_name)):
        lt.completion(model="openai/gpt-4o", **lt_kwargs(provider_factory(plan)))


def test_litellm_hang_raises_timeout(lt, provider_factory):
    plan = FaultPlan()
    plan.model("*").then(Fault.hang())
    with pytest.raises(lt.Timeout):
        lt.completion(model="openai/gpt-4o", timeout=0.3, **lt_kwargs(provider_factory(plan)))


def test_litellm_streaming_with_usage(lt, provider_factory):
    fp = provider_factory(reply="Tuesday, before noon.")
    stream = lt.completion(model="openai/gpt-4o", stream=True, stream_options={"include_usage": True},
                           **lt_kwargs(fp))
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Tuesday, before noon."
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage and usage[-1].completion_tokens == len(text) // 4 + 1


def test_litellm_cut_stream_raises(lt, provider_factory):
    import openai

    plan = FaultPlan()
    plan.model("*").then(Fault.cut_stream(after_chunks=3))
    fp = provider_factory(plan, reply="a b c d e f g h i j")
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in lt.completion(model="openai/gpt-4o", stream=True, **lt_kwargs(fp)):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "a b "  # role chunk + two content chunks arrived before the cut


def test_litellm_async_and_embeddings(lt, provider_factory):
    fp = provider_factory(reply="async ok")
    resp = asyncio.run(lt.acompletion(model="openai/gpt-4o-mini", **lt_kwargs(fp)))
    assert resp.choices[0].message.content == "async ok"
    emb = lt.embedding(model="openai/text-embedding-3-small", input=["hello", "world"],
                       api_base=fp.base_url, api_key="sk-test")
    vec = emb.data[0]["embedding"]
    assert len(emb.data) == 2 and len(vec) == 64
    assert math.isclose(sum(x * x for x in vec), 1.0, rel_tol=1e-5)


def test_random_rate_limits_carry_retry_after_and_a_reason_phrase(provider_factory, client_for):
    fp = provider_factory(FaultPlan(error_rate=1.0, error_status=429, retry_after_s=2.5))
    r = client_for(fp).post("/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429 and r.reason_phrase == "Too Many Requests"
    assert r.headers["retry-after"] == "3" and r.headers["retry-after-ms"] == "2500"
    fp2 = provider_factory(FaultPlan(error_rate=1.0, error_status=500))
    r2 = client_for(fp2).post("/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r2.status_code == 500 and "retry-after" not in r2.headers and r2.reason_phrase == "Internal Server Error"


def test_a_long_running_provider_keeps_only_the_latest_requests(provider_factory, client_for):
    """Every request's body was kept for good: a fake provider behind a load test grew without end."""
    fp = provider_factory(max_recorded=10)
    client = client_for(fp)
    for i in range(55):
        assert chat(client, f"m{i}").status_code == 200
    assert 10 <= len(fp.requests) < 20 and fp.requests[-1].model == "m54"
    assert [r.model for r in fp.requests] == [f"m{i}" for i in range(55 - len(fp.requests), 55)]
    assert fp.stats.total == 55  # counts stay whole
    quiet = provider_factory(max_recorded=0)
    chat(client_for(quiet), "x")
    assert quiet.requests == [] and quiet.stats.total == 1
    with pytest.raises(ValueError, match="max_recorded"):
        FakeProvider(max_recorded=-1)
