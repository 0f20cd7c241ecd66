"""The live driver: performs the pipeline's effects with litellm and the real clock.

litellm is imported on first use, never by ``import llmlab``: the import costs seconds, and
without ``LITELLM_LOCAL_MODEL_COST_MAP=True`` it reaches for the network and starts a retry
thread.  litellm's own retries are switched off (``num_retries=0``): retries, backoff and
fallbacks belong to llmlab's pipeline, where they are visible, priced and testable.

Every provider failure becomes a :class:`~llmlab.effects.CallError`; nothing raised by a
provider crosses back into the pipeline.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence

from . import secret_logs, stream_cut
from .asyncwait import finish
from .deadlines import WATCHDOG
from .effects import Call, CallError, CallResult, Embed, EmbedResult, ErrorKind, Race, Sleep, embedding_cost
from .fallback import completion_bound, counted_prompt, prompt_bound, streamed_part
from .live_race import arace, astream_race
from .provider_errors import MAX_WAIT_S, _to_error
from .request import REQUEST_PARAMS
from .tokens import count_tokens

log = logging.getLogger("llmlab.live")

_LITELLM: Any = None


def import_litellm() -> Any:
    """Import litellm offline-safe (local price map, no network at import)."""
    global _LITELLM
    if _LITELLM is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        secret_logs.install()  # its debug logs print each call's headers: deployments' credentials out
        _LITELLM = litellm
    return _LITELLM


async def aimport_litellm() -> Any:
    """:func:`import_litellm` off the event loop: the first import takes seconds, and on the loop
    it would stall every request in flight (and be counted as the first call's latency)."""
    if _LITELLM is not None:
        return _LITELLM
    return await asyncio.to_thread(import_litellm)


def _kwargs(call: Call) -> dict[str, Any]:
    dep = call.deployment
    kw: dict[str, Any] = {"model": dep.model, "messages": [dict(m) for m in call.messages],
                          "timeout": min(call.timeout_s, MAX_WAIT_S), "num_retries": 0, "max_retries": 0}
    kw.update({k: val for k, val in dep.params.items() if k not in kw})  # the gateway's own are refused at build
    # a call's params never override the deployment's endpoint, key, model or timeouts (defence in
    # depth: Request.build already refuses them, but a Request can be built without it)
    kw.update({k: val for k, val in call.params.items() if val is not None and k in REQUEST_PARAMS})
    if call.stream:
        kw["stream"] = True
        if _takes_stream_options(kw):
            kw["stream_options"] = {"include_usage": True}
    return kw


#: the first Azure OpenAI API version that takes ``stream_options`` (2024-09-01-preview)
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"


def _takes_stream_options(kw: Mapping[str, Any]) -> bool:
    """Whether a stream may ask for its usage.  Azure OpenAI refuses ``stream_options`` with a 400
    ("Unrecognized request argument") before API version 2024-09-01-preview, and 2024-06-01 is
    a GA version in wide use: every stream to such a deployment was a rejected request.  Without
    it the stream's usage is counted locally (see :func:`billed_tokens`)."""
    if not str(kw.get("model", "")).startswith("azure/"):
        return True
    version = kw.get("api_version") or os.environ.get("AZURE_API_VERSION")
    return not isinstance(version, str) or version[:10] >= AZURE_STREAM_OPTIONS_SINCE


def _parse(response: Any, call: Call, latency: float) -> CallResult | CallError:
    try:
        choice = response.choices[0]
        message = choice.message
        calls = _tool_calls(getattr(message, "tool_calls", None))
        text = message.content
        # no text at all is the empty answer (passed on, never cached), as it is streamed, where
        # no content delta and a null one read the same: litellm makes a null content of Claude's
        # ``content: []`` and of an empty text block, a tool call often comes with no text, and an
        # answer the content filter stopped at once with none (Azure).  Retried as a malformed
        # response, it was billed again and fallen back from, for the same empty answer
        refusal = getattr(message, "refusal", None) if text is None and not calls else None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise ValueError(f"message content is {type(text).__name__}, not text")
    except Exception as exc:  # malformed provider response: an attempt outcome, never a crash
        # the provider still billed what its usage says (a call to no function, say): it is charged
        usage = getattr(response, "usage", None)
        billed = billed_tokens(usage, call, "") if _count(usage, "prompt_tokens") else None
        return CallError(ErrorKind.MALFORMED, f"malformed response: {exc}"[:200], latency,
                         billed=billed and (*billed, *_cache_tokens(usage, billed[0])))
    usage = getattr(response, "usage", None)
    refused = refusal if isinstance(refusal, str) and refusal.strip() else ""
    billed = billed_tokens(usage, call, text + _arguments_text(calls) + refused)
    cache = _cache_tokens(usage, billed[0])
    if refused:
        return _refused(refused, (*billed, *cache), latency)
    if getattr(choice, "finish_reason", None) == FILTERED:
        return _filtered(text, (*billed, *cache), latency)
    return CallResult(text, *billed, latency, latency, calls, *cache, _reason(getattr(choice, "finish_reason", None)))


#: the finish_reason of an answer a provider's content filter stopped: OpenAI's and Azure's, and
#: what litellm makes of Anthropic's ``stop_reason: "refusal"``
FILTERED = "content_filter"


def _filtered(text: str, billed: tuple[int, ...], latency: float) -> CallError:
    """An answer the provider's content filter stopped: a rejection (the same prompt is filtered
    again), not an answer — as a success its stub was cached and served to later askers.  The
    provider billed it: it is charged (``billed``: prompt, completion, cache reads and writes)."""
    return CallError(ErrorKind.BAD_REQUEST, "the provider's content filter stopped the answer "
                     f"(finish_reason {FILTERED})", latency, partial_text=text, billed=billed)


def _refused(refusal: str, billed: tuple[int, ...], latency: float) -> CallError:
    """An answer the model refused in OpenAI's ``message.refusal`` (structured outputs), its
    content null: a rejection, as Anthropic's ``stop_reason: "refusal"`` is, charged what the
    provider billed.  As an empty answer the caller saw a success with no text and no reason.
    (A streamed refusal is not seen: litellm drops the ``refusal`` deltas, and it arrives as the
    empty answer.)"""
    return CallError(ErrorKind.BAD_REQUEST, f"the model refused to answer: {refusal}"[:200], latency, billed=billed)


def _reason(value: Any) -> str | None:
    """A provider's finish_reason as text (bounded: it is copied into every outcome), or None."""
    return value[:40] if isinstance(value, str) and value else None


def _cache_tokens(usage: Any, prompt: int) -> tuple[int, int]:
    """Of the ``prompt`` tokens billed, those the provider read from its prompt cache and those it
    wrote to it (litellm's ``prompt_tokens_details``: OpenAI's and Azure's ``cached_tokens``,
    Anthropic's cache read and creation input tokens), together never more than ``prompt``.
    Counted as plain input tokens, an Anthropic prompt read from the cache was charged 10× its bill."""
    details = getattr(usage, "prompt_tokens_details", None)
    read = min(_count(details, "cached_tokens") or 0, prompt)
    return read, min(_count(details, "cache_write_tokens") or 0, prompt - read)


def reported_part(part: CallResult, reported: tuple[int, int, int] | None) -> CallResult:
    """A cut or left stream's ``part`` with the prompt tokens the provider reported, and those of
    them it read from and wrote to its prompt cache (priced at the cache rates), when it did."""
    if reported is None:
        return part
    prompt, read, written = reported
    return dataclasses.replace(part, prompt_tokens=prompt, cached_tokens=read, cache_write_tokens=written)


def _tool_calls(raw: Any) -> tuple[dict[str, Any], ...]:
    """A response's tool calls as plain OpenAI-shaped dicts, or ValueError (a malformed response)
    when one has no function name or no string of arguments."""
    out = []
    for item in raw or ():
        fn = getattr(item, "function", None)
        name, arguments = getattr(fn, "name", None), getattr(fn, "arguments", None)
        if not isinstance(name, str) or not name or not isinstance(arguments, str):
            raise ValueError("a tool call without a function name and a string of arguments")
        out.append({"id": getattr(item, "id", None) or "", "type": getattr(item, "type", None) or "function",
                    "function": {"name": name, "arguments": arguments}})
    return tuple(out)


def _arguments_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """What a tool call's completion tokens are counted from when the provider reports none."""
    return "".join(c["function"]["name"] + c["function"]["arguments"] for c in calls)


def _count(usage: Any, name: str) -> int | None:
    """A token count the provider reported, or None when it is absent or no count at all
    (negative, fractional, text, a bool)."""
    value = getattr(usage, name, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def billed_tokens(usage: Any, call: Call, text: str) -> tuple[int, int]:
    """The prompt and completion tokens to charge for a call that answered ``text``.

    What the provider reported, when it is a count it could have billed; otherwise the local
    count (exact for OpenAI's tokenizers, an estimate for others, see ``llmlab/tokens.py``).  A
    misbehaving provider's usage must not become money: a negative count credited the tenant's
    budget, and litellm stands in ``0`` for a usage the provider left out (an answer charged as
    free).  A count beyond what the call could be billed — completion tokens past the
    ``max_tokens`` it was sent with (times ``n``), a prompt larger than both the deployment's
    context window and its UTF-8 bytes — is cut to that bound: one garbage ``10**12`` must not
    lock a tenant out for the month.  Every correction is logged (counts and deployment only).
    """
    dep = call.deployment
    raw = [getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)]
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if not prompt:  # a prompt is never 0 tokens
        prompt = counted_prompt(call)
    else:
        prompt = min(prompt, reported_prompt_bound(call))
    if completion is None or (completion == 0 and text):
        completion = count_tokens(text, dep.model)
    completion = min(completion, completion_bound(call))
    if any(r not in (None, 0) for r in raw) and [prompt, completion] != raw:
        log.warning("provider usage corrected for billing", extra={"llmlab": {
            "deployment": dep.name, "reported": [repr(r)[:24] for r in raw], "billed": [prompt, completion]}})
    return prompt, completion


def reported_prompt_bound(call: Call) -> int:
    """The most prompt tokens a provider's report for ``call`` is believed: its deployment's
    context window, or the bound a budget hold takes (:func:`~llmlab.fallback.prompt_bound`: the
    prompt's UTF-8 bytes and its images' bound) when that is more (a window set too small must
    not undercharge)."""
    return max(call.deployment.context_window, prompt_bound(call))


#: content types of a whole body, not a stream of events (Bedrock's stream, say, is
#: application/vnd.amazon.eventstream, an SSE one text/event-stream)
NOT_A_STREAM = ("application/json", "text/html", "text/plain")


class StreamOverrun(ValueError):
    """A provider kept streaming far past the ``max_tokens`` the call was sent with."""


class _StreamState:
    """Accumulates a streamed answer: text, first-token time, usage.

    A provider that ignores ``max_tokens`` is cut off: once the text counted locally passes
    :attr:`OVERRUN` times the call's bound (plus :attr:`OVERRUN_SLACK` tokens: the local count of
    a non-OpenAI model's text is an estimate), :meth:`feed` raises :class:`StreamOverrun`, a
    malformed response.  Without it a runaway stream went on to the caller for as long as the
    provider sent it, 20,000 chunks for ``max_tokens=50``, and was charged all of it.
    """

    OVERRUN = 2
    OVERRUN_SLACK = 64

    def __init__(self, call: Call, started: float) -> None:
        self.call = call
        self.started = started
        self.parts: list[str] = []
        self.ttft: float | None = None
        self.usage: Any = None
        self.content_type = ""  # of the provider's HTTP response, when litellm tells
        self.response: Any = None  # litellm's stream, once opened
        self.calls: dict[int, dict[str, Any]] = {}  # streamed tool calls by index, arguments in pieces
        self.finish: str | None = None  # the first choice's finish_reason
        self.others: list[str] = []  # text and arguments of the other choices when n > 1 (billed, not returned)
        self.thinking: list[str] = []  # the model's streamed reasoning (Claude's thinking): billed, not returned
        self.counted = 0
        self.bound = completion_bound(call)
        self.limit = self.OVERRUN * self.bound + self.OVERRUN_SLACK

    def opened(self, response: Any) -> Any:
        """Note the provider's content type (litellm keeps it among its hidden params)."""
        self.response = response
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
        content_type = headers.get("llm_provider-content-type") if isinstance(headers, Mapping) else None
        self.content_type = content_type.lower() if isinstance(content_type, str) else ""
        return response

    def answering(self) -> bool:
        """Whether a token has come (text, a tool call's, thinking): the first-token deadline is met."""
        return self.ttft is not None or bool(self.thinking)

    def feed(self, chunk: Any, now: float) -> str:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        choices = getattr(chunk, "choices", None) or []
        delta = getattr(choices[0], "delta", None) if choices else None
        piece = getattr(delta, "content", None) if delta is not None else None
        calls = getattr(delta, "tool_calls", None) if delta is not None else None
        if choices and getattr(choices[0], "index", 0) not in (0, None):
            # another of ``n`` answers (one choice per chunk, by index): the answer is the first, as
            # for a whole response; the others were interleaved into its text and tool calls
            self._feed_other(piece, calls)
            return ""
        if choices and isinstance(getattr(choices[0], "finish_reason", None), str):
            self.finish = choices[0].finish_reason
        reasoning = getattr(delta, "reasoning_content", None) if delta is not None else None
        if isinstance(reasoning, str) and reasoning:  # not held to the overrun bound: some providers'
            self.thinking.append(reasoning)          # reasoning is not within max_tokens (DeepSeek's)
        if calls:
            self._feed_calls(calls, now)
        if piece:
            self._count(piece)
            if self.ttft is None:
                self.ttft = now - self.started
            self.parts.append(piece)
            return piece
        return ""

    def _feed_other(self, piece: Any, calls: Any) -> None:
        """Count another choice's text and tool-call arguments: billed (and bounded) like the first's."""
        for text in (piece, *(getattr(getattr(c, "function", None), "arguments", None) for c in calls or ())):
            if isinstance(text, str) and text:
                self._count(text)
                self.others.append(text)

    def _count(self, piece: str) -> None:
        self.counted += count_tokens(piece, self.call.deployment.model)
        if self.counted > self.limit:
            raise StreamOverrun(f"provider streamed past max_tokens={self.bound} (over {self.limit} tokens "
                                "counted); stream cut")

    def _feed_calls(self, deltas: Sequence[Any], now: float) -> None:
        """Assemble streamed tool calls: an id and a name first, then the arguments in pieces,
        each delta naming its call by ``index``."""
        if self.ttft is None:
            self.ttft = now - self.started
        for delta in deltas:
            index = getattr(delta, "index", None)
            entry = self.calls.setdefault(index if isinstance(index, int) else len(self.calls),
                                          {"id": "", "type": "function", "name": "", "arguments": []})
            entry["id"] = getattr(delta, "id", None) or entry["id"]
            fn = getattr(delta, "function", None)
            name, arguments = getattr(fn, "name", None), getattr(fn, "arguments", None)
            if isinstance(name, str) and name and not entry["name"]:
                entry["name"] = name
            if isinstance(arguments, str) and arguments:
                self._count(arguments)
                entry["arguments"].append(arguments)

    def tool_calls(self) -> tuple[dict[str, Any], ...]:
        """The streamed tool calls so far, in the OpenAI shape a whole response has.  A call to a
        tool without parameters may stream no arguments at all (Anthropic's tool_use block with
        no input_json_delta): ``"{}"``, as a whole response has it, not ``""``, which is no JSON."""
        return tuple({"id": e["id"], "type": e["type"],
                      "function": {"name": e["name"], "arguments": "".join(e["arguments"]) or "{}"}}
                     for _, e in sorted(self.calls.items()))

    def sent(self) -> str:
        """Everything the provider has streamed so far and bills as completion: the answer's text,
        its tool calls' arguments, the other choices' text (``n`` > 1) and the model's thinking."""
        return "".join(self.parts) + _arguments_text(self.tool_calls()) + "".join(self.others) + "".join(self.thinking)

    def reported_prompt(self) -> tuple[int, int, int] | None:
        """The prompt tokens the provider reported before the stream ended, if any (bounded as
        :func:`billed_tokens` bounds them), with those of them it read from and wrote to its prompt
        cache.  Anthropic sends them first, in message_start; litellm keeps that usage among its
        stream's ``chunks`` but hands usage on only at the end, so a stream cut or left midway had
        its prompt counted locally: an estimate for Claude, blind to the system text and tool
        definitions the provider counts (and its cache reads were charged at the input price)."""
        chunks = getattr(self.response, "chunks", None)
        usages = [self.usage, *(getattr(c, "usage", None) for c in (chunks if isinstance(chunks, list) else ()))]
        for usage in usages:
            prompt = _count(usage, "prompt_tokens")
            if prompt:
                prompt = min(prompt, reported_prompt_bound(self.call))
                return (prompt, *_cache_tokens(usage, prompt))
        return None

    def provider_usage(self) -> Any:
        """The usage the provider reported, None when it sent none.  Asked for it
        (``stream_options``), litellm ends a stream with a usage chunk whatever the provider sent:
        without a report of the provider's it is litellm's own count, which was charged as the
        provider's — a streamed tool call counted from its whole JSON (id, type and all), 28
        tokens for the 7 of ``lookup{"id": "2"}``.  A report is among the provider's chunks, which
        litellm keeps (``chunks``); a stream without that list is taken at its word."""
        chunks = getattr(self.response, "chunks", None)
        if isinstance(chunks, list) and not any(getattr(c, "usage", None) is not None for c in chunks):
            return None
        return self.usage

    def part(self, latency: float) -> CallResult:
        """What the stream so far is billed: :func:`~llmlab.fallback.streamed_part` (the sent
        text counted locally), with the prompt tokens the provider reported when it did."""
        return reported_part(streamed_part(self.call, self.sent(), latency), self.reported_prompt())

    def failed(self, exc: BaseException, now: float) -> CallError:
        """The error that cut the stream.  Tool-call arguments and thinking streamed before it were
        billed like text but never reached the caller (they are not ``partial_text``): they are
        charged with it, the prompt too (as the provider reported it, when it did) — a runaway
        call's arguments cut by :class:`StreamOverrun` were free, and so was a cut stream's thinking.
        A stream cut or timed out before its first token is charged the prompt the provider
        reported at its start (it had read it): it was free, on every retry, however long the prompt."""
        return self._charged(_to_error(exc, self.call, now - self.started, "".join(self.parts)))

    def _charged(self, error: CallError) -> CallError:
        """``error`` with what the provider billed of this stream before it ended (see :meth:`failed`)."""
        sent = self.sent()
        reported = self.reported_prompt()
        if not sent and (reported is None or error.kind not in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT)):
            return error  # nothing sent, and no prompt read that a cut leaves billed
        if sent and sent == error.partial_text and reported is None:
            return error  # only text: billed from partial_text (fallback.run_chain)
        part = self.part(error.latency_s)
        return dataclasses.replace(error, billed=(part.prompt_tokens, part.completion_tokens, part.cached_tokens,
                                                  part.cache_write_tokens))

    def result(self, now: float) -> CallResult | CallError:
        latency = now - self.started
        text = "".join(self.parts)
        calls = self.tool_calls()
        if any(not c["function"]["name"] for c in calls):
            return CallError(ErrorKind.MALFORMED, "malformed response: a streamed tool call without a function name",
                             latency)
        if not text and not calls and self.content_type.startswith(NOT_A_STREAM):
            # a server that ignored stream=true: litellm finds no events in its JSON body and makes up a
            # "stop" chunk, so the answer the provider sent (and billed) read as an empty success
            return CallError(ErrorKind.MALFORMED, f"malformed response: a stream answered as {self.content_type[:40]}, "
                             "not server-sent events", latency)
        if not self.sent() and self._unfinished():
            return self._cut_before_content(latency)
        usage = self.provider_usage()
        billed = billed_tokens(usage, self.call, self.sent())
        cache = _cache_tokens(usage, billed[0])
        if self.finish == FILTERED:
            return _filtered(text, (*billed, *cache), latency)
        return CallResult(text, *billed, latency, self.ttft if self.ttft is not None else latency, calls,
                          *cache, _reason(self.finish))

    def _unfinished(self) -> bool:
        """Whether the stream ended without the provider saying the answer was finished (no stop
        reason received).  litellm then makes one up ("stop") for the last chunk, and raises
        "Stream ended before a finish_reason" only for streams that sent something: a 200 whose
        event stream closed before (or within) its first event, and a Bedrock Converse stream cut
        after its messageStart event, ended quietly as an empty answer."""
        response = self.response
        # not litellm's stream wrapper: nothing to tell; litellm's mock streams (``mock_response``)
        # never record a stop reason, and its own end-of-stream check leaves them out too
        if not hasattr(response, "received_finish_reason") or getattr(response, "is_mock", False) is True:
            return False
        return response.received_finish_reason is None and getattr(response, "intermittent_finish_reason", None) is None

    def _cut_before_content(self, latency: float) -> CallError:
        """A stream that ended, unfinished, before any content: a cut connection (retried, then
        fallen back from), not an empty answer passed on.  Charged the prompt the provider
        reported before the cut, when it did, as :meth:`failed` charges a cut stream."""
        return self._charged(CallError(ErrorKind.CONNECTION, "stream ended before the provider finished its "
                                       "answer (no content, no stop reason)", latency))


class LiteLLMDriver:
    """Performs effects for real.  ``clock`` and ``sleep`` are injectable for tests.

    A hedged call (:class:`~llmlab.effects.Race`) is raced by the async API
    (:mod:`llmlab.live_race`) only: a call blocked on a thread cannot be cancelled when the other
    wins, so the gateway's sync API asks for no race (``races_sync``)."""

    races = True
    races_sync = False

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 asleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self.asleep = asleep

    # -------------------------------------------------------------- sync
    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Call):
            return self.call(effect)
        if isinstance(effect, Sleep):
            self.sleep(min(effect.seconds, MAX_WAIT_S))
            return None
        if isinstance(effect, Embed):
            return self.embed(effect)
        raise TypeError(f"unknown effect {effect!r}")

    def call(self, call: Call) -> CallResult | CallError:
        if call.stream:  # a streamed call performed without a consumer: drain it
            gen = self.stream_call(call)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    return stop.value
        litellm = import_litellm()  # before the clock starts: the first import is not the provider's latency
        started = self.clock()
        try:
            response = litellm.completion(**_kwargs(call))
        except Exception as exc:
            return _to_error(exc, call, self.clock() - started)
        return _parse(response, call, self.clock() - started)

    def stream_call(self, call: Call) -> Generator[str | _StreamState, None, CallResult | CallError]:
        """Yield the call's :class:`_StreamState` (what a caller who leaves is billed from), then
        text chunks as they arrive; return the call's result (or the error that cut it)."""
        litellm = import_litellm()
        started = self.clock()
        state = _StreamState(call, started)
        yield state
        response = None
        timeout_s = call.timeout_s  # the deployment's, or less when the request's deadline is nearer
        # the first token within timeout_s of sending, as astream_call holds it: a blocked read is
        # cut by the watchdog shutting its connection down (llmlab.deadlines, llmlab.stream_cut)
        deadline = WATCHDOG.arm(min(timeout_s, MAX_WAIT_S), lambda: stream_cut.cut(state.response))
        answering = False
        try:
            response = state.opened(litellm.completion(**_kwargs(call)))
            for chunk in response:
                piece = state.feed(chunk, self.clock())
                if not answering and state.answering():
                    if not deadline.met():  # it came as the deadline cut the connection: too late
                        raise FirstTokenTimeout.after(timeout_s)
                    answering = True
                if piece:
                    yield piece
            if not answering and deadline.cut:  # the cut ended the stream quietly
                raise FirstTokenTimeout.after(timeout_s)
        except Exception as exc:
            cut = not answering and deadline.cut and not isinstance(exc, FirstTokenTimeout)
            # what the cut made the read raise is the deadline's timeout
            error = state.failed(FirstTokenTimeout.after(timeout_s) if cut else exc, self.clock())
            _release_frames(exc)
            return error
        finally:
            deadline.end()  # before the close: the connection may go back to the pool
            # closed now, also when the caller left mid-stream: left to the garbage collector, the
            # HTTP response was closed inside a later request holding the connection pool's lock
            # (httpcore's, not re-entrant) and that thread hung for good
            _close(response)
        return state.result(self.clock())

    def embed(self, effect: Embed) -> EmbedResult:
        started = self.clock()
        texts = list(effect.texts)
        vectors = effect.embedder.embed(texts)
        return EmbedResult(vectors, embedding_cost(effect.embedder, texts), self.clock() - started)

    # -------------------------------------------------------------- async
    async def aperform(self, effect: Any) -> Any:
        if isinstance(effect, Race):
            if not effect.stream:
                return await arace(self, effect)
            result = None
            async for item in astream_race(self, effect):
                result = item
            return result
        if isinstance(effect, Call):
            if effect.stream:
                result = None
                async for item in self.astream_call(effect):
                    result = item
                return result
            litellm = await aimport_litellm()
            started = self.clock()
            try:
                response = await litellm.acompletion(**_kwargs(effect))
            except Exception as exc:
                return _to_error(exc, effect, self.clock() - started)
            return _parse(response, effect, self.clock() - started)
        if isinstance(effect, Sleep):
            await self.asleep(min(effect.seconds, MAX_WAIT_S))
            return None
        if isinstance(effect, Embed):
            return await asyncio.to_thread(self.embed, effect)
        raise TypeError(f"unknown effect {effect!r}")

    def astream_call(self, call: Call | Race) -> AsyncIterator[Any]:
        """Yield the call's :class:`_StreamState`, then text chunks, then finally the
        CallResult/CallError (the last item); a race's winner's, then its
        :class:`~llmlab.effects.RaceResult` (:mod:`llmlab.live_race`)."""
        if isinstance(call, Race):
            return astream_race(self, call)
        return self._astream_one(call)

    async def _astream_one(self, call: Call) -> AsyncIterator[Any]:
        """:meth:`astream_call` of one call.  The state is yielded again when the first token is not
        text (a tool call's, thinking): a race is decided on it (:mod:`llmlab.live_race`)."""
        litellm = await aimport_litellm()
        started = self.clock()
        state = _StreamState(call, started)
        yield state
        response = None
        said_answering = False
        try:
            response = state.opened(await litellm.acompletion(**_kwargs(call)))
            chunks = response.__aiter__()
            deadline = started + call.timeout_s
            while True:  # one loop to the end: an ended stream is never polled again (litellm's
                try:     # wrapper re-runs its end-of-stream step on each extra poll)
                    if state.answering():
                        chunk = await chunks.__anext__()
                    else:  # the first token within timeout_s of sending (see _first_chunk)
                        chunk = await _first_chunk(chunks, deadline - self.clock(), call.timeout_s)
                except StopAsyncIteration:
                    break
                piece = state.feed(chunk, self.clock())
                if piece:
                    yield piece
                elif not said_answering and state.answering():
                    said_answering = True
                    yield state
        except Exception as exc:
            error = state.failed(exc, self.clock())
            _release_frames(exc)
            yield error
            return
        finally:
            # as in stream_call: the connection goes back now, not at collection — and all the way,
            # a second cancel arriving meanwhile included (see llmlab.asyncwait)
            await finish(_aclose(response))
        yield state.result(self.clock())


class FirstTokenTimeout(TimeoutError):
    """A stream's first token did not come within its deployment's ``timeout_s`` of sending."""

    @classmethod
    def after(cls, timeout_s: float) -> FirstTokenTimeout:
        return cls(f"no first token within {timeout_s:g} s")


async def _first_chunk(chunks: AsyncIterator[Any], left_s: float, timeout_s: float) -> Any:
    """The stream's next chunk, or :class:`FirstTokenTimeout` once ``left_s`` has passed.

    The HTTP client's own timeout is on each wait for bytes: a provider that keeps a slow stream's
    connection busy (SSE keep-alive comments, Anthropic's pings) before its first token was never
    cut off, so a tight ``timeout_s`` did not fall back from a slow first token live as it does in
    the simulator (``timeout_s``: the whole call, or the first token when streaming).  (A
    synchronous stream's read is cut by the watchdog instead: see :meth:`LiteLLMDriver.stream_call`.)
    The time counts from sending, so a busy event loop's own delay counts too
    (``Gateway(admission=…)`` bounds it)."""
    timeout = getattr(asyncio, "timeout", None)
    if left_s <= 0:
        raise FirstTokenTimeout.after(timeout_s)
    if timeout is None:  # Python 3.10: no asyncio.timeout
        try:
            return await asyncio.wait_for(chunks.__anext__(), left_s)
        except asyncio.TimeoutError:
            raise FirstTokenTimeout.after(timeout_s) from None
    scope = timeout(left_s)
    try:
        async with scope:
            return await chunks.__anext__()
    except TimeoutError:
        if scope.expired():  # ours, not a timeout raised inside the read
            raise FirstTokenTimeout.after(timeout_s) from None
        raise


def _release_frames(exc: BaseException) -> None:
    """Let go of what the finished frames of ``exc``'s traceback (and of the exceptions it chains)
    hold.  A provider stream that failed mid-way raised from inside litellm's decoder, whose frame
    holds the HTTP response's byte iterator (closing litellm's stream does not close that
    iterator: Bedrock's event-stream decoder loops over it).  Kept alive by the traceback, in
    the reference cycles exceptions make, it was closed by a later garbage collection — on
    whichever thread allocated then, inside httpcore's connection pool holding its lock (not
    re-entrant): that thread hung for good (seen on Python 3.13).  Cleared here, it is closed at
    once, and its connection goes back to the pool."""
    import traceback

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        one = todo.pop()
        if one is None or id(one) in seen:
            continue
        seen.add(id(one))
        traceback.clear_frames(one.__traceback__)
        todo += [one.__cause__, one.__context__]


def _close(response: Any) -> None:
    close = getattr(response, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing a broken stream must not replace its outcome
            log.debug("closing a provider stream failed", exc_info=True)


async def _aclose(response: Any) -> None:
    aclose = getattr(response, "aclose", None)
    try:
        if callable(aclose):
            await aclose()
        else:
            _close(response)
    except Exception:
        log.debug("closing a provider stream failed", exc_info=True)
