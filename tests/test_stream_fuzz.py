"""A property-based fuzz of the live streaming path: ``Gateway.stream`` and ``astream`` through
litellm to the fault-injecting fake provider, one request at a time, each with a fault plan of its own.

The seeded fuzzes (tests/test_thread_fuzz.py, tests/test_async_fuzz.py) throw random faults at
hundreds of concurrent requests and check what must hold once they have all settled.  Here each
request's calls are scripted one by one — cut after k chunks, a malformed chunk, keep-alive
comments while a first token is late past or within ``timeout_s``, a 429 with ``Retry-After``, a
500, an empty answer, a tool call streamed, usage sent or not — so every request can be checked
on its own against what the provider sent: the chunks read (after the last ``StreamReset``) are
``outcome.text``; a reset comes exactly after shown text that another answer follows; one ledger
row; each attempt is what the provider served, charged its reported usage or the local count;
the breaker's state is what the attempts say; a cache hit is the answer cached; nothing but the
outcome comes back (no exception), and no connection or thread is left behind.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_async_fuzz import held_connections as async_held
from test_thread_fuzz import PROCESS_THREADS
from test_thread_fuzz import held_connections as sync_held

from llmlab import (
    BudgetPolicy,
    Deployment,
    FixedRouter,
    Gateway,
    OutcomeKind,
    RetryPolicy,
    StreamReset,
)
from llmlab.cache.embedders import HashedNgramEmbedder
from llmlab.cache.semantic import SemanticCache
from llmlab.fallback import CircuitBreaker
from llmlab.live import import_litellm
from llmlab.testing import FakeProvider, Fault, FaultPlan, bodies
from llmlab.testing.faults import Decision
from llmlab.tokens import count_message_tokens, count_tokens

TIMEOUT_S = 0.6  # the deployments' timeout_s, so their first-token deadline
BREAKER = {"failure_threshold": 3, "cooldown_s": 3_600.0}  # opened, it stays open for the rest of an example
RETRY = RetryPolicy(max_retries=1, base_s=0.0, cap_s=0.0, max_retry_after_s=0.2)
DEPLOYMENTS = {"primary": "gpt-4o", "backup": "gpt-4o-mini"}  # name → the model the fake provider is asked for
PROMPTS = ["Where is my order 7?", "How do I reset my password?", "Can I get a refund?"]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "look an order up",
                                             "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}]
#: what each scripted call of the provider does (the verdict the breaker gets follows from it)
KINDS = ("cut", "500", "late", "malformed", "429", "ok", "slow", "empty", "tool")  # failures first: drawn more
FAILS = {"cut": "connection", "malformed": "malformed_response", "late": "timeout", "500": "server_error",
         "429": "rate_limit"}


@dataclass
class CallPlan:
    """One scripted call: its kind, ``k`` (cut after k SSE events; the Retry-After of a 429 in
    hundredths of a second), keep-alive comments while it waits, and whether usage is sent."""

    kind: str = "ok"
    k: int = 0
    keepalive: bool = False
    usage: bool = True

    def decision(self) -> Decision:
        fault = {"cut": Fault.cut_stream(self.k), "malformed": Fault.malformed(),
                 "429": Fault.rate_limited(self.k / 100), "500": Fault.server_error()}.get(self.kind)
        ttft = {"late": TIMEOUT_S + 0.3, "slow": TIMEOUT_S / 4}.get(self.kind, 0.0)
        return Decision(ttft_s=ttft, fault=fault, keepalive_s=0.05 if self.keepalive and ttft else 0.0)


@dataclass
class Served:
    """What the provider sent for one call: its plan, whole answer, tool arguments and usage."""

    model: str
    plan: CallPlan
    text: str = ""
    arguments: str = ""
    usage: dict | None = None
    body: dict = field(default_factory=dict)


class Script(FaultPlan):
    """A fault plan read from per-model queues of :class:`CallPlan` (healthy once a queue is
    empty), noting what each call was sent.  Requests go one at a time, so the call being served
    is the last one decided."""

    def __init__(self) -> None:
        super().__init__()
        self.queues: dict[str, deque[CallPlan]] = {m: deque() for m in DEPLOYMENTS.values()}
        self.served: list[Served] = []
        self.numbers = itertools.count(1)

    def decide(self, model: str) -> Decision:
        plan = self.queues[model].popleft() if self.queues.get(model) else CallPlan()
        self.served.append(Served(model, plan))
        return plan.decision()

    def reply(self, body: dict) -> str:
        """A numbered answer (the number tells a cache hit's source), "" for an empty one."""
        served = self.served[-1]
        served.body = body
        if served.plan.kind == "empty":
            return ""
        return f"Answer {next(self.numbers)} from {body['model']} to {body['messages'][-1]['content']} in words"

    def chunks(self, original):
        """``bodies.chat_chunks`` as the call's plan shapes it: a tool call instead of text, no usage."""
        def shaped(body, reply, *, id, created):
            served = self.served[-1]
            events = list(original(body, reply, id=id, created=created))
            if served.plan.kind == "tool":
                served.arguments = json.dumps({"id": reply.split()[1]})
                head, *_, finish = [e for e in events if e["choices"]]
                call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
                pieces = [{"tool_calls": [call]}] + [
                    {"tool_calls": [{"index": 0, "function": {"arguments": served.arguments[i:i + 5]}}]}
                    for i in range(0, len(served.arguments), 5)]
                finish["choices"][0]["finish_reason"] = "tool_calls"
                tail = [e for e in events if not e["choices"]]
                events = [head] + [dict(head, choices=[dict(head["choices"][0], delta=p)]) for p in pieces] + [finish] + tail
                for e in tail:  # billed for the arguments sent, not for the reply's text
                    e["usage"] = bodies._usage(body, served.arguments)
            else:
                served.text = reply
            usage = [e for e in events if not e["choices"]]
            if usage and not served.plan.usage:
                events.remove(usage[0])
            served.usage = usage[0]["usage"] if usage and served.plan.usage else None
            return iter(events)

        return shaped


@dataclass
class Ask:
    """One request of a sequence: its prompt, tools or not, and its calls' plans per deployment."""

    prompt: str
    tools: bool
    plans: dict[str, list[CallPlan]]


call_plans = st.builds(CallPlan, st.sampled_from(KINDS), st.integers(0, 6), st.booleans(), st.booleans())
asks = st.builds(Ask, st.sampled_from(PROMPTS), st.booleans(),
                 st.fixed_dictionaries({"primary": st.lists(call_plans, min_size=1, max_size=3),
                                        "backup": st.lists(call_plans, max_size=3)}))


@pytest.fixture(scope="module")
def provider(request):
    import_litellm()
    script = Script()
    mp = pytest.MonkeyPatch()
    mp.setattr(bodies, "chat_chunks", script.chunks(bodies.chat_chunks))
    with FakeProvider(script, reply=script.reply) as fp:
        gateway(fp.base_url).warm_up()  # a first stream's imports would otherwise be late for its first token
        yield fp, script
    mp.undo()


def gateway(base_url: str, cooldown_s: float = BREAKER["cooldown_s"]) -> Gateway:
    """Two deployments, one the other's fallback, with retries, breakers, a budget, the exact
    cache and a semantic cache for its last-resort answer only (its threshold: the same text,
    which the exact cache serves first)."""
    params = {"api_base": base_url, "api_key": "sk-test"}
    deps = [Deployment(name, f"openai/{model}", params, timeout_s=TIMEOUT_S, price_model=model)
            for name, model in DEPLOYMENTS.items()]
    last_resort = SemanticCache(HashedNgramEmbedder(dim=64), threshold=1.0, last_resort_threshold=0.0, guard=None)
    return Gateway(deps, router=FixedRouter("primary"), fallbacks={"primary": ["backup"]}, retry=RETRY,
                   breaker={**BREAKER, "cooldown_s": cooldown_s}, budget=BudgetPolicy(caps={"default": 100.0}),
                   semantic_cache=last_resort, input_guards=(), default_max_tokens=200)


class Oracle:
    """What one example's gateway must have done, request after request."""

    def __init__(self, gw: Gateway, cooldown_s: float) -> None:
        self.gw = gw
        self.cached: dict[tuple[str, bool], str] = {}
        self.breakers = {name: CircuitBreaker(**{**BREAKER, "cooldown_s": cooldown_s}) for name in DEPLOYMENTS}

    def check(self, ask: Ask, rid: str, pieces: list, served: list[Served]) -> list[str]:
        gw, problems = self.gw, []
        rows = [o for o in gw.ledger if o.request_id == rid]
        if len(rows) != 1:
            return [f"{len(rows)} ledger rows"]
        o = rows[0]
        resets = [i for i, p in enumerate(pieces) if isinstance(p, StreamReset)]
        shown = "".join(p for p in pieces[resets[-1] + 1 if resets else 0:] if isinstance(p, str))
        if o.ok and shown != o.text:
            problems.append(f"read {shown!r}, outcome.text {o.text!r}")
        key = (ask.prompt, ask.tools)
        if key in self.cached:
            if o.kind is not OutcomeKind.CACHE or o.text != self.cached[key] or served:
                problems.append(f"cached {self.cached[key]!r}, got {o.kind.value} {o.text!r} after {len(served)} calls")
            return problems
        calls = [a for a in o.attempts if a.purpose != "skip"]
        if [(a.model.split("/")[-1]) for a in calls] != [s.model for s in served]:
            problems.append(f"attempts {[(a.model, a.error) for a in o.attempts]}, provider served "
                            f"{[(s.model, s.plan.kind) for s in served]}")
            return problems
        for a, s in zip(calls, served):
            problems += self.attempt(a, s)
        problems += self.breakers_follow(o.attempts)
        for before, a in zip(o.attempts, o.attempts[1:]):  # a 429's Retry-After is waited out before its retry
            if before.retry_after_s and a.deployment == before.deployment and a.waited_s < before.retry_after_s - 1e-3:
                problems.append(f"waited {a.waited_s} s after a Retry-After of {before.retry_after_s} s")
        now = gw.clock()
        if gw.budgets.reserved("default", now) or gw.budgets.spent("default", now) != pytest.approx(
                sum(r.cost_usd for r in gw.ledger), abs=1e-12):
            problems.append(f"budget: {gw.budgets.reserved('default', now)} still held, spent "
                            f"{gw.budgets.spent('default', now)} for the ledger's {sum(r.cost_usd for r in gw.ledger)}")
        for name, b in self.breakers.items():
            real = gw.pipeline.breakers.get(name) or CircuitBreaker(**BREAKER)
            if (real.state, real.consecutive_failures) != (b.state, b.consecutive_failures):
                problems.append(f"breaker {name}: {real.state}/{real.consecutive_failures}, the attempts say "
                                f"{b.state}/{b.consecutive_failures}")
        # a reset before each call that starts after text was shown (a cut after content events),
        # none before one that follows calls that showed nothing
        expected, saw = 0, False
        for s in served:
            expected, saw = expected + saw, s.plan.kind == "cut" and s.plan.k >= 2
        expected += saw and o.kind is OutcomeKind.LAST_RESORT  # the cached answer, whole, after the cut text
        # the last resort: the nearest answer cached for a request with the same params (tools are
        # among them) at a similarity of 0 or more
        embed = gw.pipeline.semantic_cache.embedder.embed
        similar = [text for (prompt, tools), text in self.cached.items() if tools == ask.tools
                   and float(embed([prompt])[0] @ embed([ask.prompt])[0]) >= 0.0]
        if (o.kind is OutcomeKind.LAST_RESORT) != (not any(a.ok for a in o.attempts) and bool(similar)) or (
                o.kind is OutcomeKind.LAST_RESORT and o.text not in similar):
            problems.append(f"{o.kind.value} {o.text!r} after {[a.error for a in o.attempts]} with {len(similar)} cached")
        if len(resets) != expected:
            problems.append(f"{len(resets)} resets, {expected} expected for {[(a.error, s.plan.kind) for a, s in zip(calls, served)]}")
        if o.kind is OutcomeKind.MODEL and (o.text, o.tool_calls and o.tool_calls[0]["function"]["arguments"]) != (
                served[-1].text, served[-1].arguments or ()):
            problems.append(f"served {served[-1].text!r} {served[-1].arguments!r}, outcome {o.text!r} {o.tool_calls}")
        if o.cost_usd != pytest.approx(sum(a.cost_usd for a in o.attempts), abs=1e-12):
            problems.append(f"cost {o.cost_usd}, attempts' {sum(a.cost_usd for a in o.attempts)}")
        if o.ok and o.kind is OutcomeKind.MODEL and o.text and not o.tool_calls:
            self.cached[key] = o.text
        return problems

    def breakers_follow(self, attempts) -> list[str]:
        """Replay the attempts on breakers of our own, as the chain admits and judges each call
        (llmlab.fallback.run_chain, judge): a skip must meet an open one, and the gateway's
        breakers must end where ours do."""
        problems, ticket, last = [], None, None
        for a in attempts:
            b = self.breakers[a.deployment]
            if a.deployment != last:  # a deployment's calls share the ticket it was admitted with
                ticket, last = b.admit(0.0), a.deployment
            if a.purpose == "skip":
                if ticket is not None:
                    problems.append(f"{a.deployment} skipped with its breaker {b.state}")
            elif ticket is None:
                problems.append(f"{a.deployment} called with its breaker {b.state}")
            elif a.error is None:
                b.record_success(0.0, ticket)
            elif a.error.startswith("rate_limit"):  # throttling: no verdict, a probe's slot freed
                b.release_probe(ticket)
            else:
                b.record_failure(0.0, ticket)
        for name, b in self.breakers.items():
            real = self.gw.pipeline.breakers.get(name) or CircuitBreaker()
            if (real.state, real.consecutive_failures, real.times_opened) != (b.state, b.consecutive_failures,
                                                                             b.times_opened):
                problems.append(f"breaker {name}: {real!r}, the attempts say {b!r}")
        return problems

    def attempt(self, a, s: Served) -> list[str]:
        """One call's attempt against what the provider served it."""
        kind, problems = s.plan.kind, []
        cut_early = kind == "cut" and s.plan.k == 0  # nothing sent: a connection error before any event
        failed = kind in FAILS
        price = self.gw.prices.price(s.model)
        if a.cost_usd != pytest.approx(price.cost(a.prompt_tokens, a.completion_tokens), rel=1e-9, abs=1e-15):
            problems.append(f"{kind} charged {a.cost_usd} for {a.prompt_tokens}+{a.completion_tokens} tokens")
        if kind != "late" and (a.error or "").startswith("timeout"):
            return problems  # a busy machine read a healthy stream's first token too late: not the gateway's doing
        if failed != bool(a.error) and not (kind == "cut" and not a.error):
            problems.append(f"{kind} call ended {a.error!r}")
        if a.error and failed and not cut_early and not a.error.startswith(FAILS[kind]):
            problems.append(f"{kind} call ended {a.error!r}")
        counted = count_message_tokens(s.body.get("messages", ()), s.model)  # no usage: the prompt counted
        if not a.error:
            sent = "lookup" + s.arguments if s.arguments else s.text  # a tool call: its name and arguments
            billed = ((s.usage["prompt_tokens"], s.usage["completion_tokens"]) if s.usage is not None
                      else (counted, count_tokens(sent, s.model)))
        elif kind == "cut" and s.plan.k >= 2:  # cut after content: the prompt and the text sent, counted
            billed = (counted, count_tokens("".join(re.findall(r"\S+\s*|\s+", s.text)[:s.plan.k - 1]), s.model))
        else:  # failed before any token: OpenAI reports no prompt at a stream's start, nothing is billed
            billed = (0, 0)
        if (a.prompt_tokens, a.completion_tokens) != billed:
            problems.append(f"{kind} (usage {s.usage}) billed {a.prompt_tokens}+{a.completion_tokens}, not {billed}")
        if kind == "429" and a.retry_after_s != pytest.approx(s.plan.k / 100):
            problems.append(f"429 Retry-After {s.plan.k / 100}, attempt says {a.retry_after_s}")
        return problems


def script_ask(script: Script, ask: Ask) -> None:
    for name, model in DEPLOYMENTS.items():
        script.queues[model] = deque(ask.plans[name])


def run_sequence(fp: FakeProvider, script: Script, example: tuple[float, list[Ask]], read) -> list[str]:
    cooldown_s, sequence = example
    gw = gateway(fp.base_url, cooldown_s)
    oracle, problems = Oracle(gw, cooldown_s), []
    for i, ask in enumerate(sequence):
        script_ask(script, ask)
        start = len(script.served)
        rid = f"r{i}"
        kwargs = {"tools": TOOLS} if ask.tools else {}
        try:
            pieces = read(gw, ask.prompt, rid, kwargs)
        except Exception as exc:  # noqa: BLE001 - nothing but the outcome may come back
            return problems + [f"{rid} raised {exc!r}"]
        problems += [f"{rid}: {p}" for p in oracle.check(ask, rid, pieces, script.served[start:])]
        if problems:
            return problems
    return problems


def read_sync(gw: Gateway, prompt: str, rid: str, kwargs: dict) -> list:
    return list(gw.stream(prompt, request_id=rid, max_tokens=200, **kwargs))


#: examples per run: a quick one in the fast suite (≈ 5–10 s each way), a longer one marked slow
EXAMPLES = [20, pytest.param(100, marks=pytest.mark.slow)]


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


#: a breaker's cooldown (none: an opened breaker lets the next call probe) and the requests
SEQUENCES = st.tuples(st.sampled_from([0.0, BREAKER["cooldown_s"]]), st.lists(asks, min_size=1, max_size=5))


def left_threads(before: set) -> list[str]:
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive() and not t.name.startswith(PROCESS_THREADS)]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_sync_streams_under_scripted_faults_keep_every_invariant(provider, examples):
    fp, script = provider
    before = set(threading.enumerate())

    @fuzz_settings(examples)
    @given(sequence=SEQUENCES)
    def streams(sequence):
        problems = run_sequence(fp, script, sequence, read_sync)
        assert not problems, problems

    streams()
    assert not [held for held in sync_held() if held]
    assert not left_threads(before)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_async_streams_under_scripted_faults_keep_every_invariant(provider, examples):
    fp, script = provider
    before = set(threading.enumerate())
    loop = asyncio.new_event_loop()  # one loop for the run: litellm's async clients are bound to theirs

    def read_async(gw: Gateway, prompt: str, rid: str, kwargs: dict) -> list:
        async def consume():
            return [p async for p in gw.astream(prompt, request_id=rid, max_tokens=200, **kwargs)]

        return loop.run_until_complete(consume())

    @fuzz_settings(examples)
    @given(sequence=SEQUENCES)
    def streams(sequence):
        problems = run_sequence(fp, script, sequence, read_async)
        assert not problems, problems

    try:
        streams()
        assert not [held for held in async_held() if held]
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()
                   and "_worker_loop" not in [f.f_code.co_name for f in t.get_stack()]]
        assert not pending
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    # anyio's worker threads (litellm's asyncify) stop on their own after 10 s idle
    assert not [name for name in left_threads(before) if name != "AnyIO worker thread"]
