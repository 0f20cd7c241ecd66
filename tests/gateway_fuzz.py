"""What the seeded fuzzes of the live gateway share (tests/test_async_fuzz.py drives it from
asyncio tasks, tests/test_thread_fuzz.py from threads): the fault plan, the gateway with every
stage on, the instrumentation that notes what ran and what the rate limiter took, and the check
of the invariants that must hold once every request has settled.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import random
import re
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

import pytest

from llmlab import (BudgetPolicy, CascadeRouter, ClassifierRouter, Deployment, Gateway, OutcomeKind, RateLimit,
                    RateLimiter, Request, RetryPolicy, StreamReset)
from llmlab.cache.embedders import HashedNgramEmbedder, LiteLLMEmbedder
from llmlab.cache.semantic import SemanticCache
from llmlab.testing import Fault, FaultPlan
from llmlab.tokens import count_tokens

MODELS = {"gpt-4o": ("openai/gpt-4o", None), "claude": ("openai/claude-sonnet-4-5", "claude-sonnet-4-5"),
          "mini": ("openai/gpt-4o-mini", None)}
QUESTIONS = ["Where is my order {n}?", "How do I reset my password?", "Can I get a refund for order {n}?",
             "My email is alice{n}@example.com, please update my account", "What are your opening hours?",
             "How do I cancel my subscription?", "Call me at 010-1234-56{n:02d} about the invoice",
             "Is express shipping available to Busan?", "Why was I charged twice this month?"]
PII = re.compile(r"alice\d@example|010-1234-56")
#: the images a quarter of the questions are about (a cached answer must be about the request's own)
IMAGES = ["https://img.example.com/receipt-a.png", "https://img.example.com/receipt-b.png"]
#: what every whole answer of the fake provider ends with (a cut or left stream's text does not)
TAIL = "and here is some more text so that a stream has enough chunks to be cut or left midway"
TENANTS = [f"tenant-{i}" for i in range(10)]



@contextlib.contextmanager
def earlier_objects_frozen() -> Iterator[None]:
    """Keep the garbage collector off what existed before a fuzz while it counts warnings.

    litellm caches its HTTP clients for ten minutes and evicts the expired ones when it caches
    another.  An async client an earlier test built (its event loop closed since) was evicted in
    the middle of a fuzz once the suite had run past ten minutes — a loaded CI run — and the
    collector freed it there: its pooled connections were reported as unclosed transports in that
    fuzz's capture (both thread fuzzes failed so, twenty and more apiece).  Such clients are
    reference cycles, so only the collector frees them: with every earlier object frozen
    (``gc.freeze``) it cannot during the run, while the run's own objects are collected as before."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

def fuzz_request(rng: random.Random, tenant: str, request_id: str) -> Request:
    """One of :data:`QUESTIONS`, a quarter of the time about one of :data:`IMAGES` (at a drawn
    ``detail``); the image, or "", rides in the metadata for the cache check."""
    text = rng.choice(QUESTIONS).format(n=rng.randint(0, 5))
    prompt: Any = text
    image = ""
    if rng.random() < 0.25:
        image = rng.choice(IMAGES)
        part = {"url": image, **({"detail": d} if (d := rng.choice([None, "low", "high"])) else {})}
        prompt = [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": part}]}]
    return Request.build(prompt, tenant=tenant, request_id=request_id, params={"max_tokens": 40},
                         metadata={"image": image})


def image_tag(url: str) -> str:
    """How an answer names the image it is about (short: answers are cut at ``max_tokens``)."""
    return f"on [{url.rsplit('/', 1)[-1].removesuffix('.png')}]"


def about_image(body: dict) -> str:
    """:func:`image_tag` of a request body's last message's image ("on []" for text only)."""
    content = ((body.get("messages") or [{}])[-1]).get("content")
    for part in content if isinstance(content, list) else ():
        if part.get("type") == "image_url":
            return image_tag(part["image_url"]["url"])
    return image_tag("")


def fault_plan(rng: random.Random) -> FaultPlan:
    """Every fault at a few per cent per call, with seeded latencies and stream timings."""
    plan = FaultPlan(seed=rng.randrange(1 << 30))
    for served in ("gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"):
        rule = plan.model(served)
        (rule.randomly(0.07, Fault.rate_limited(rng.choice([0.0, 0.02, 0.05]))).randomly(0.02, Fault.rate_limited(2.0))
         .randomly(0.05, Fault.error(500)).randomly(0.04, Fault.unavailable()).randomly(0.03, Fault.overloaded())
         .randomly(0.03, Fault.hang()).randomly(0.06, Fault.cut_stream(rng.randint(0, 6)))
         .randomly(0.02, Fault.malformed()))
        rule.latency(low=0.0, high=rng.choice([0.02, 0.05, 0.3]))
        rule.stream_timing(ttft_s=rng.choice([0.0, 0.01, 0.1, 1.2]), chunk_delay_s=rng.choice([0.0, 0.002, 0.01]))
    return plan


def draw_caps(rng: random.Random) -> dict[str, float]:
    """Monthly caps per tenant, most of them small enough to bind within one run."""
    return {t: rng.choice([0.002, 0.01, 0.05, 1.0]) for t in TENANTS}


def replier(rng: random.Random) -> Callable[[dict], str]:
    """The fake provider's answers: a label for the classifier's call, else a numbered whole
    answer ending in :data:`TAIL` (the number tells whose answer a cache serves)."""
    answers = itertools.count(1)

    def reply(body: dict) -> str:
        system = (body.get("messages") or [{}])[0]
        if system.get("role") == "system" and "label" in str(system.get("content", "")).lower():
            return rng.choice(["faq", "general", "complex", "???"])  # the classifier's label
        return f"Answer #{next(answers)}# from {body.get('model')} {about_image(body)} {TAIL}"

    return reply


def priced_embedder() -> LiteLLMEmbedder:
    """A priced embedder (held against caps) computing locally: litellm's sync client is not under test."""
    hashed = HashedNgramEmbedder(dim=64)

    def embedding(model, input, **kw):
        return {"data": [{"index": i, "embedding": [float(x) for x in v]} for i, v in enumerate(hashed.embed(input))],
                "usage": {"prompt_tokens": 5}}

    return LiteLLMEmbedder("text-embedding-3-small", dim=64, embedding_fn=embedding)


def fuzz_gateway(rng: random.Random, base_url: str, caps: dict[str, float], seed: int,
                 accept: Callable[[str, Request], bool], input_guards: Sequence[Any] | None = None,
                 step_threads: bool | None = None, redis: tuple[str, str] | None = None) -> Gateway:
    """Every stage on: a classifier router with a cascade (``accept`` grades its first stage),
    fallbacks, small caps, rate limits, retries, breakers with a short cooldown, the exact and a
    priced semantic cache, content in the logs (PII masked); ``input_guards`` and ``step_threads``
    as Gateway takes them.  ``redis`` (a URL and a key prefix): the exact cache, budgets, rate
    limits and semantic entries shared through that Redis (``llmlab.backends``), which
    ``gw.fuzz_backends`` holds for the caller to close."""
    params = {"api_base": base_url, "api_key": "sk-test"}
    limit = RateLimit(rpm=rng.choice([30, 120]), tpm=rng.choice([2_000, 8_000]))
    semantic = SemanticCache(priced_embedder(), threshold=0.5)
    backends = None
    if redis is None:
        shared: dict[str, Any] = {"rate_limiter": RateLimiter(default=limit), "semantic_cache": semantic}
    else:
        from llmlab.backends import from_url

        backends = from_url(redis[0], redis[1], default_limit=limit, semantic_cache=semantic)
        shared = backends.gateway_kwargs()
    gw = Gateway([Deployment(name, model, params, timeout_s=1.0, price_model=price)
                  for name, (model, price) in MODELS.items()],
                 router=ClassifierRouter("mini", routes={"faq": "mini", "complex": "gpt-4o",
                                                         "general": CascadeRouter(["mini", "gpt-4o"], accept)}),
                 fallbacks={"gpt-4o": ["claude", "mini"]}, budget=BudgetPolicy(caps=caps),
                 retry=RetryPolicy(max_retries=2, base_s=0.01, cap_s=0.05, max_retry_after_s=1.0),
                 breaker={"failure_threshold": 4, "cooldown_s": 0.2, "window": 10, "min_calls": 5},
                 seed=seed, log_content=True, default_max_tokens=200, input_guards=input_guards,
                 step_threads=step_threads, **shared)
    gw.fuzz_backends = backends
    return gw


class Records(logging.Handler):
    """Every log line of the run, with its structured record (for the PII check)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + repr(getattr(record, "llmlab", "")))


class Watch:
    """Notes which requests' pipelines ran and every rate-limit take and settlement.

    A request whose pipeline never started (a task cancelled first, a stream never read) sent
    nothing and has no ledger record; every one that started must have exactly one.  The
    pipeline's rate-limiter calls happen under the gateway's step lock, so the counters are
    changed by one thread at a time."""

    def __init__(self, gw: Gateway) -> None:
        self.started: set[str] = set()
        self.taken: Counter = Counter()
        self.given_back: Counter = Counter()
        handle = gw.pipeline.handle

        def noted(request, **how):
            self.started.add(request.request_id)
            return (yield from handle(request, **how))

        gw.pipeline.handle = noted
        limiter = gw.pipeline.rate_limiter
        acquire, settle = limiter.acquire, limiter.settle

        def counted_acquire(tenant, plan, tokens, now):
            refusal = acquire(tenant, plan, tokens, now)
            if refusal is None:
                self.taken[(tenant, tokens)] += 1
            return refusal

        def counted_settle(tenant, plan, reserved, used, now):
            self.given_back[(tenant, reserved)] += 1
            return settle(tenant, plan, reserved, used, now)

        limiter.acquire, limiter.settle = counted_acquire, counted_settle


def answer_number(text: str | None) -> int | None:
    found = re.search(r"#(\d+)#", text or "")
    return int(found.group(1)) if found else None


def shown_text(pieces: list) -> str:
    """What a consumer that clears its screen at each StreamReset shows at the end."""
    resets = [i for i, p in enumerate(pieces) if isinstance(p, StreamReset)]
    return "".join(p for p in pieces[resets[-1] + 1 if resets else 0:] if isinstance(p, str))


def check(gw: Gateway, caps: dict, watch: Watch, received: dict, finished: set, log_lines: list[str]) -> list[str]:
    """Every broken invariant of a settled run (none in flight): ledger, budgets, breakers,
    rate limits, caches, PII, and what stream readers got against their outcomes."""
    return (_check_ledger_and_budgets(gw, caps, watch) + _check_breakers_and_limits(gw, watch)
            + _check_caches_and_logs(gw, log_lines) + _check_streams(gw, received, finished))


def _check_ledger_and_budgets(gw: Gateway, caps: dict, watch: Watch) -> list[str]:
    problems = []
    ledger = list(gw.ledger)
    ids = Counter(o.request_id for o in ledger)
    problems += [f"{rid} recorded {count} times" for rid, count in ids.items() if count > 1]
    problems += [f"{rid} ran but is not in the ledger" for rid in sorted(watch.started - set(ids))]
    now, spent = gw.clock(), Counter()
    for o in ledger:
        spent[o.tenant] += o.cost_usd
    for tenant, cap in caps.items():
        if gw.budgets.reserved(tenant, now) > 1e-12:
            problems.append(f"{tenant}: {gw.budgets.reserved(tenant, now)} still reserved")
        if gw.budgets.spent(tenant, now) != pytest.approx(spent[tenant], abs=1e-9):
            problems.append(f"{tenant}: spent {gw.budgets.spent(tenant, now)}, the ledger says {spent[tenant]}")
        if gw.budgets.spent(tenant, now) > cap + 1e-12:
            problems.append(f"{tenant}: spent {gw.budgets.spent(tenant, now)} above its cap {cap}")
    if gw.budgets.overshoot_usd:
        problems.append(f"a call cost {gw.budgets.overshoot_usd} more than its reservation")
    return problems


def _check_breakers_and_limits(gw: Gateway, watch: Watch) -> list[str]:
    # breakers: nothing is in flight now, so a taken probe slot is stranded
    problems = [f"breaker {name} half-open with its probe slot taken" for name, b in gw.pipeline.breakers.items()
                if b.state == b.HALF_OPEN and b._probe_in_flight]
    # rate limits: every take given back once, with what was taken
    if dict(watch.taken) != dict(watch.given_back):
        problems.append(f"rate-limit tokens taken {sum(watch.taken.values())} times, "
                        f"settled {sum(watch.given_back.values())}")
    buckets = getattr(gw.pipeline.rate_limiter, "_buckets", {})  # in Redis, its script keeps them in bounds
    problems += [f"rate bucket {key} above capacity" for key, b in buckets.items() if b.level > b.capacity + 1e-9]
    return problems


def exact_entries(gw: Gateway) -> list[tuple[str, str, Any]]:
    """(tenant, key, value) of every exact-cache entry, in memory or in Redis."""
    store = gw.exact_cache
    if hasattr(store, "_entries"):
        return [(tenant, key, entry.value) for (tenant, key), entry in store._entries.items()]
    from urllib.parse import unquote

    from llmlab.backends import decode_entry

    out = []
    for rkey in store.link.client.scan_iter(match=f"{store.prefix}:cache:*"):
        tenant, key = rkey.decode()[len(store.prefix) + len(":cache:"):].split(":", 1)
        out.append((unquote(tenant), unquote(key), decode_entry(store.link.client.get(rkey))[0]))
    return out


def semantic_spaces(gw: Gateway) -> dict[str, Any]:
    """The semantic cache's namespaces held in this process (a shared cache's local copy)."""
    cache = gw.pipeline.semantic_cache
    return getattr(cache, "local", cache)._spaces


def _check_caches_and_logs(gw: Gateway, log_lines: list[str]) -> list[str]:
    """Caches hold whole answers only, each served to the tenant it was answered for; no PII in
    cache keys, entries or logs."""
    problems, answered = [], {}
    ledger = list(gw.ledger)
    for o in ledger:
        if o.ok and o.kind is OutcomeKind.MODEL:
            if not o.text.endswith(TAIL):
                problems.append(f"{o.request_id}: a model answer that is not whole: {o.text!r}")
            answered[answer_number(o.text)] = o.tenant
    for o in ledger:
        if o.ok and o.kind in (OutcomeKind.CACHE, OutcomeKind.LAST_RESORT):
            if answered.get(answer_number(o.text)) != o.tenant:
                problems.append(f"{o.request_id}: {o.tenant} served another request's answer {o.text[:20]!r}")
        if o.ok and o.kind is not OutcomeKind.RULE and image_tag(o.metadata.get("image", "")) not in o.text:
            problems.append(f"{o.request_id}: answered about another image (or none): {o.text[:60]!r}")
    for tenant, key, value in exact_entries(gw):
        if answered.get(answer_number(value.text)) != tenant or not value.text.endswith(TAIL):
            problems.append(f"exact cache of {tenant} holds {value.text[:30]!r}")
        if PII.search(key) or PII.search(value.text):
            problems.append("PII in an exact cache entry")
    for namespace, space in semantic_spaces(gw).items():
        for entry in space.entries.values():
            if answered.get(answer_number(entry.value.text)) != namespace.split("|")[0]:
                problems.append(f"semantic cache holds {entry.value.text[:30]!r}")
            if PII.search(entry.text) or PII.search(entry.value.text):
                problems.append("PII in a semantic cache entry")
    problems += [f"PII in a log line: {line[:80]}" for line in log_lines if PII.search(line)][:1]
    return problems


def _check_streams(gw: Gateway, received: dict, finished: set) -> list[str]:
    """A caller who read to the end got the answer; one who left was charged what it got."""
    problems = []
    by_id = {o.request_id: o for o in gw.ledger}
    for rid, pieces in received.items():
        o = by_id.get(rid)
        if o is None:
            if pieces:
                problems.append(f"{rid}: received text but has no outcome")
            continue
        text = shown_text(pieces)
        # a request that failed after a stream broke ends on the cut text (nothing follows it to take
        # it back; outcome.ok says so): that text must have been charged, checked below
        if rid in finished and o.ok and text != o.text:
            problems.append(f"{rid}: read {text[:30]!r} to the end, the outcome says {o.kind.value} {o.text!r}")
        calls = [a for a in o.attempts if a.purpose == "answer"]  # not a skipped deployment nor a check
        if not o.ok and text and calls:
            tokens = count_tokens(text, calls[-1].model)  # the streamed call's tokenizer
            if sum(a.completion_tokens for a in o.attempts) < tokens:
                problems.append(f"{rid}: left after {tokens} tokens, charged fewer")
    return problems
