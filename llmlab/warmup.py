"""Warm-up: pay up front what litellm builds lazily on the first live call.

Importing litellm is not all of a first call's cost.  Measured on litellm 1.110 against the fake
provider on loopback (``benchmarks/first_call_lag.py``, 2-core VM), the first ``acomplete`` after
a bare import still held the event loop ≈ 0.2 s and the first ``astream`` ≈ 0.5–0.8 s: every other
request on that loop (a health check, other users' streams) stalled meanwhile.  What ran on it:

* imports litellm defers to first use (its proxy types, provider configs, service logger);
* pydantic models built on first use: litellm's response, usage and streaming types and the
  request-parameter models it validates against, and the openai SDK's response types, which it
  declares ``defer_build``;
* tiktoken encodings: litellm counts tokens to price a stream, with the model's encoding
  (``o200k_base`` for gpt-4o) and its default one (``cl100k_base``), ≈ 0.15 s each to load.

All of it is process-wide, so :func:`warm_up` runs each deployment's route once through the live
driver — completion, stream and their async twins — with litellm's ``mock_response``, which
answers offline before any HTTP client is built, and ``no-log``, so litellm's callbacks do not see
it; then it builds and imports what only a real HTTP answer reaches (:data:`HTTP_PATH`, and per
provider :data:`PROVIDER_PATHS`).  After it the first call's loop lag is the second call's
(3–12 ms here).  What cannot be built beforehand is per event loop — litellm's HTTP client for
that loop, the loop's executor threads, the first connection: measured as a first call on a new
loop, it is lost in that same noise.

Why warming "in a background thread" had not removed the stall (measured, ``astream``): one
non-streamed mock call never reaches the stream's token counting (0.48 s left); a mock of
another model loads another encoding (0.39 s left); a warm-up still running when the first call
comes makes the loop wait for the same imports (0.2 s).  Run all of it before serving:
:meth:`~llmlab.gateway.Gateway.warm_up`, or ``await gw.awarm_up()``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import threading
from typing import Any, Iterable, NamedTuple

from .effects import Call, CallError, Deployment
from .tokens import count_tokens

log = logging.getLogger("llmlab.warmup")

#: litellm's offline answer: returned by its mock path before any HTTP client exists
MOCK_REPLY = "warm"


class RealPath(NamedTuple):
    """What only a real call reaches (litellm's mock path stops before it): modules to import,
    pydantic models to build — ``(module, name)``, with the models their fields hold — and
    loaders to call once, ``(module, name)``, whose result litellm caches."""

    modules: tuple[str, ...] = ()
    models: tuple[tuple[str, str], ...] = ()
    loaders: tuple[tuple[str, str], ...] = ()


#: every provider's: the openai SDK's chat responses (declared ``defer_build``; the mock path
#: never parses one), litellm's usage (a provider's prompt-cache details) and its timing of each
#: provider call
HTTP_PATH = RealPath(("litellm._service_logger",),
                     (("openai.types.chat", "ChatCompletion"), ("openai.types.chat", "ChatCompletionChunk"),
                      ("litellm.types.utils", "Usage"), ("litellm.types.services", "ServiceLoggerPayload")))
_AWS = ("boto3", "botocore.auth", "botocore.awsrequest", "botocore.credentials")
#: litellm's second copy of its bundled price map, read (≈ 0.05 s) when a model's capabilities
#: are looked up under a name its loaded map lacks
_BUNDLED_PRICES = ("litellm.utils", "get_bundled_model_cost_map")
#: by the route's prefix: Azure calls through the openai SDK's chat resource (imported on first
#: use, with the parsed-response models); Bedrock signs each request with botocore (boto3 and
#: botocore import in ≈ 0.2 s) and its Converse transformation reads litellm's bundled price map
#: twice more (≈ 0.1 s)
PROVIDER_PATHS = {
    "azure": RealPath(("openai.resources.chat.chat", "openai.resources.chat.completions.completions", "jiter"),
                      (("openai.types.chat.parsed_chat_completion", "ParsedChatCompletion"),)),
    "bedrock": RealPath((*_AWS, ("litellm.llms.bedrock.chat.invoke_transformations."
                                 "anthropic_legacy_text_completions_transformation")),
                        (("litellm.types.llms.bedrock", "AwsAuthParams"),),
                        (("litellm.llms.bedrock.common_utils", "_get_local_model_cost_map"), _BUNDLED_PRICES)),
    "anthropic": RealPath(loaders=(_BUNDLED_PRICES,)),
    "sagemaker": RealPath(_AWS),
}

_lock = threading.Lock()
_warmed: set[str] = set()  # deployment models already run through litellm once (process-wide)


def warm_up(deployments: Iterable[Deployment], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Import litellm and run each deployment's route through it once, offline (see the module
    docstring).  Idempotent: a model already warmed costs nothing; thread-safe.

    ``loop``: the running event loop that serves, when called from another thread for it
    (``Gateway.awarm_up``): the async offline calls run on that loop, not on a fresh one.
    litellm binds its logging worker to the loop of its latest async call, so a fresh loop's
    call took the worker from the serving loop, whose pending worker task was then destroyed
    ("Task was destroyed but it is pending!" in the service's log) and left behind.

    Best effort: a route litellm refuses even offline (an unknown provider, say) is logged at
    DEBUG and left to fail on its first real call the usual way.  Nothing reaches a provider,
    llmlab's ledger, budgets or caches, or litellm's callbacks.
    """
    from .live import import_litellm

    import_litellm()
    deps = list(deployments)
    with _lock:
        warmed_now = False
        for dep in deps:
            count_tokens(MOCK_REPLY, dep.model)  # llmlab's own tokenizer for it (budgets count prompts)
            if dep.model in _warmed:
                continue
            _run_offline(dep, loop)
            _warmed.add(dep.model)
            _take(PROVIDER_PATHS.get(dep.model.split("/", 1)[0], RealPath()))
            warmed_now = True
        if warmed_now:  # built once with the first route; a repeat walks none of its models again
            _take(HTTP_PATH)


#: litellm's refusal of a model whose provider it cannot tell (``self-hosted/…`` without an ``openai/`` prefix)
_UNROUTABLE = "LLM Provider NOT provided"


def _offline(dep: Deployment) -> Deployment:
    """``dep`` answered by litellm's mock path, unseen by litellm's logging callbacks."""
    return dataclasses.replace(dep, params={**dep.params, "mock_response": MOCK_REPLY, "no-log": True})


def _run_offline(dep: Deployment, loop: asyncio.AbstractEventLoop | None = None) -> None:
    from .live import LiteLLMDriver

    driver = LiteLLMDriver()
    messages = ({"role": "user", "content": "warm up"},)
    calls = [Call(_offline(dep), messages, {}, stream=stream) for stream in (False, True)]
    results = [driver.call(call) for call in calls]  # never raises: a failure is a CallError

    async def both() -> list[Any]:
        return [await driver.aperform(call) for call in calls]

    results += _on_loop(both, loop) if loop is not None and loop.is_running() else _run_in_fresh_loop(both)
    refused = [r for r in results if isinstance(r, CallError)]
    if refused and any(_UNROUTABLE in r.message for r in refused):
        # not a quirk of the offline path: no call to this deployment can be sent, and a fallback's
        # unroutable model would otherwise show only in the outage it is there for
        log.warning("warm-up: litellm cannot route deployment %s's model %r (%s): every call to it will fail",
                    dep.name, dep.model, refused[0].message[:200])
    elif refused:
        log.debug("warm-up of %s: litellm refused %d of its 4 offline calls (%s)", dep.name, len(refused),
                  refused[0].message)


def _on_loop(factory: Any, loop: asyncio.AbstractEventLoop) -> list[Any]:
    """``factory()`` run on ``loop`` (running, on another thread) and waited for from this one."""
    try:
        return asyncio.run_coroutine_threadsafe(factory(), loop).result()
    except Exception:  # the loop closed meanwhile, say: the warm-up is best effort
        log.debug("warm-up on the serving event loop failed", exc_info=True)
        return []


def _run_in_fresh_loop(factory: Any) -> Any:
    """``asyncio.run(factory())`` on a thread of its own: warm_up may be called from inside a
    running loop, where ``asyncio.run`` refuses to start.  The loop (and anything litellm bound
    to it) is gone afterwards; the mock path binds no HTTP client to it."""
    out: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            out.extend(asyncio.run(factory()))
        except BaseException as exc:  # reported below, on the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="llmlab-warm-up", daemon=True)
    worker.start()
    worker.join()
    if failure:
        log.debug("warm-up on a fresh event loop failed", exc_info=failure[0])
    return out


def _take(path: RealPath) -> None:
    """Import, build and load what ``path`` lists; a name this litellm does not have is skipped."""
    for name in path.modules:
        _import(name)
    for module, name in path.models:
        model = getattr(_import(module), name, None)
        if model is not None:
            complete_models(model)
    for module, name in path.loaders:
        loader = getattr(_import(module), name, None)
        if callable(loader):
            try:
                loader()
            except Exception:  # litellm's business: its first real call fails or retries it the same way
                log.debug("warm-up: %s.%s failed", module, name, exc_info=True)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # another litellm/openai version, or the provider's SDK is not installed
        log.debug("warm-up: no module %s", name)
        return None


def complete_models(root: type) -> int:
    """Build ``root`` and every pydantic model its fields contain, where still deferred; the
    number built.  A model pydantic cannot build yet stays deferred (built on use, as before)."""
    from pydantic import BaseModel

    built, seen, todo = 0, set(), [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            if not cls.__pydantic_complete__:
                built += bool(cls.model_rebuild(raise_errors=False))
            for field in cls.model_fields.values():
                todo.extend(_types_in(field.annotation))
    return built


def _types_in(annotation: Any) -> list[Any]:
    """The classes an annotation names (``list[Choice]``, ``Optional[CompletionUsage]`` …)."""
    from typing import get_args

    found: list[Any] = [annotation] if isinstance(annotation, type) else []
    for arg in get_args(annotation):
        found.extend(_types_in(arg))
    return found
