"""The request a caller hands to the gateway."""
from __future__ import annotations

import itertools
import math
import os
import re
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ._fastinit import fast_frozen_init
from .errors import InvalidRequest, _Shape, type_shape
from .request_deadline import check_request_timeout

_counter = itertools.count(1)
_PREFIX = os.urandom(3).hex()


def new_request_id() -> str:
    return f"req-{_PREFIX}-{next(_counter):08d}"


#: what a request may set: parameters that shape the answer.  Where the call goes and as whom
#: (``model``, ``api_base``, ``api_key``, headers, timeouts, retries, streaming) belongs to the
#: deployment and the gateway: a caller's params that could name another endpoint would send the
#: gateway's provider key there, or a pricier model billed at the routed one's price.
REQUEST_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "response_format", "tools",
    "tool_choice", "parallel_tool_calls", "frequency_penalty", "presence_penalty", "n", "logit_bias", "logprobs",
    "top_logprobs", "user", "reasoning_effort",
})
#: chat roles providers accept
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
#: the content part types litellm lets through in a user message (``ValidUserMessageContentTypes``,
#: litellm 1.110); another one fails inside litellm before anything is sent, which would count
#: against the deployment's breaker as if the provider had failed
USER_PART_TYPES = frozenset({"text", "image_url", "input_audio", "audio_url", "document", "guarded_text",
                             "grounding_source", "query", "video_url", "file"})
#: the deepest nesting a request's JSON may have: litellm and the JSON encoder recurse, and a
#: request nested thousands deep raised RecursionError from inside the pipeline
MAX_JSON_DEPTH = 64


def _number(field: str, value: Any, lo: float, hi: float, allowed: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
        raise InvalidRequest(field, value, allowed)


def _whole(field: str, value: Any, lo: int, allowed: str, hi: float = math.inf) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
        raise InvalidRequest(field, value, allowed)


def check_json(field: str, value: Any) -> None:
    """``value`` as JSON carries it, else an :class:`InvalidRequest` naming the first offending
    part: mappings with string keys, lists, text that encodes as UTF-8 (a lone surrogate does
    not), whole numbers, finite numbers, true/false/null, at most :data:`MAX_JSON_DEPTH` deep.
    A set, bytes, a NaN or an object passed every shape check and failed while litellm encoded
    the request — before sending, yet counted against the deployment's breaker, so one caller's
    malformed request opened the breakers for every tenant.  Iterative: a check must not be the
    recursion it guards against."""
    stack: list[tuple[str, Any, int]] = [(field, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if item is None or isinstance(item, (bool, int)):
            continue
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidRequest(where, _Shape(f"<text with a lone surrogate of length {len(item)}>"),
                                         "text that encodes as UTF-8 (no lone surrogates)") from None
            continue
        if isinstance(item, float):
            if item != item or item in (math.inf, -math.inf):
                raise InvalidRequest(where, item, "a finite number")
            continue
        if depth >= MAX_JSON_DEPTH:
            where = where if len(where) <= 120 else where[:100] + "…"
            raise InvalidRequest(where, _Shape(f"<{type(item).__name__} nested {depth} deep>"),
                                 f"JSON nested at most {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, (dict, abc.Mapping)):
            for key in item:
                if not isinstance(key, str):
                    raise InvalidRequest(f"{where}[{key!r}]", _Shape(f"<{type(key).__name__} key>"),
                                         "text keys (JSON objects have no other)")
                stack.append((f"{where}.{key}", item[key], depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", x, depth + 1) for i, x in enumerate(item))
        else:
            raise InvalidRequest(where, type_shape(item),
                                 "what JSON carries: text, numbers, true/false/null, lists and mappings")


def _check_params(params: Any) -> None:
    """Reject parameters a caller may not set and values no provider accepts, before anything is
    reserved or sent (a provider-side 400 would otherwise count against the deployment's breaker)."""
    if not isinstance(params, (dict, abc.Mapping)):
        raise InvalidRequest("params", params, "a mapping of sampling parameters")
    for key in params:
        if key not in REQUEST_PARAMS:
            raise InvalidRequest(f"params.{key}", params[key], "one of " + ", ".join(sorted(REQUEST_PARAMS)) +
                                 " (the endpoint, key, model and timeouts are the deployment's)")
    _whole("params.max_tokens", params.get("max_tokens"), 1, "a positive integer")
    _whole("params.max_completion_tokens", params.get("max_completion_tokens"), 1, "a positive integer")
    _whole("params.n", params.get("n"), 1, "a positive integer")
    _whole("params.seed", params.get("seed"), -(2 ** 63), "a 64-bit integer", 2 ** 63 - 1)
    _whole("params.top_logprobs", params.get("top_logprobs"), 0, "an integer from 0 to 20", 20)
    _number("params.temperature", params.get("temperature"), 0.0, 2.0, "a number in [0, 2]")
    top_p = params.get("top_p")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise InvalidRequest("params.top_p", top_p, "a number in (0, 1]")  # 0 excluded: no token could be drawn
    for key in ("frequency_penalty", "presence_penalty"):
        _number(f"params.{key}", params.get(key), -2.0, 2.0, "a number in [-2, 2]")
    stop = params.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, (list, tuple)) and all(isinstance(x, str) for x in stop)):
        raise InvalidRequest("params.stop", stop, "a string or a list of strings")
    for key in ("response_format", "logit_bias"):
        if params.get(key) is not None and not isinstance(params[key], (dict, abc.Mapping)):
            raise InvalidRequest(f"params.{key}", params[key], "a mapping (e.g. {'type': 'json_object'})")
    user = params.get("user")
    if user is not None and not isinstance(user, str):  # the PII masker reads a string; providers take only one
        raise InvalidRequest("params.user", user, "a string naming the end user (an opaque id or a hash)")
    tools = params.get("tools")
    if tools is not None:
        _check_tools(tools)
    for key in ("parallel_tool_calls", "logprobs"):
        if params.get(key) is not None and not isinstance(params[key], bool):
            raise InvalidRequest(f"params.{key}", params[key], "true or false")


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUEST_ID = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces


def _check_tools(tools: Any) -> None:
    """OpenAI's tool definitions.  A malformed one fails inside litellm's translation for some
    providers (Anthropic's) before anything is sent, and would count against that breaker."""
    if not isinstance(tools, (list, tuple)):
        raise InvalidRequest("params.tools", tools, "a list of tool definitions")
    for i, tool in enumerate(tools):
        field = f"params.tools[{i}]"
        if not isinstance(tool, (dict, abc.Mapping)) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(field, tool, "a mapping with a 'type' ({'type': 'function', 'function': {…}})")
        if tool["type"] != "function":
            continue  # other tool types are the provider's to judge
        fn = tool.get("function")
        if not isinstance(fn, (dict, abc.Mapping)):
            raise InvalidRequest(f"{field}.function", fn, "a mapping with a 'name'")
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequest(f"{field}.function.name", name, "1 to 64 letters, digits, '_' or '-'")
        for key, kind in (("parameters", (dict, abc.Mapping)), ("description", str)):
            if fn.get(key) is not None and not isinstance(fn[key], kind):
                raise InvalidRequest(f"{field}.function.{key}", fn[key],
                                     "a JSON schema mapping" if key == "parameters" else "text")


def answer_token_limit(params: Mapping[str, Any]) -> int | None:
    """The caller's bound on answer tokens: ``max_tokens`` or ``max_completion_tokens`` (OpenAI's
    newer name, which reasoning models require), whichever is smaller; None when neither is set.
    Reservations price it and every call is sent with it, so neither name can outrun a budget."""
    limit = params.get("max_tokens")
    other = params.get("max_completion_tokens")
    if other is None:
        return limit
    return other if limit is None else min(limit, other)


def is_text_part(part: Any) -> bool:
    """Whether a content part is text (``{"type": "text", …}``); any other part is an image,
    audio, a file — what routers and the semantic cache cannot read."""
    return isinstance(part, (dict, abc.Mapping)) and part.get("type") == "text"


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` parts of a list of content
    parts (OpenAI's multimodal format; an image part has no text and adds none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "\n".join(str(p.get("text") or "") for p in content if is_text_part(p))
    return ""


def _has_media(content: Any) -> bool:
    """Whether ``content`` has a part other than text (an image, audio, a file): a turn with only
    an image asks something ("what is in this receipt?" said by the system prompt)."""
    return isinstance(content, (list, tuple)) and not all(map(is_text_part, content))


def _check_message(i: int, m: Any) -> None:
    if not isinstance(m, (dict, abc.Mapping)) or "role" not in m:
        raise InvalidRequest(f"messages[{i}]", m, "a mapping with 'role' and 'content'")
    if not isinstance(m["role"], str) or m["role"] not in ROLES:
        raise InvalidRequest(f"messages[{i}].role", m["role"], "one of " + ", ".join(sorted(ROLES)))
    calls = m.get("tool_calls")
    for j, call in enumerate(calls if isinstance(calls, (list, tuple)) else ()):
        fn = call.get("function") if isinstance(call, (dict, abc.Mapping)) else None
        if isinstance(fn, (dict, abc.Mapping)) and not isinstance(fn.get("arguments", ""), str):
            raise InvalidRequest(f"messages[{i}].tool_calls[{j}].function.arguments", type_shape(fn["arguments"]),
                                 "a JSON string, as the model wrote it")
    legacy = m.get("function_call")
    if isinstance(legacy, (dict, abc.Mapping)) and not isinstance(legacy.get("arguments", ""), str):
        raise InvalidRequest(f"messages[{i}].function_call.arguments", type_shape(legacy["arguments"]),
                             "a JSON string, as the model wrote it")
    content = m.get("content")
    if content is not None and not isinstance(content, str) and not (
            isinstance(content, (list, tuple)) and all(isinstance(p, (dict, abc.Mapping)) and "type" in p
                                                       for p in content)):
        raise InvalidRequest(f"messages[{i}].content", content,
                             "text, a list of content parts ({'type': 'text', 'text': …}), or None")
    for j, part in enumerate(content if isinstance(content, (list, tuple)) else ()):
        kind = part["type"]
        if not isinstance(kind, str):  # looked up among part kinds (text, images …): a list raised TypeError
            raise InvalidRequest(f"messages[{i}].content[{j}].type", type_shape(kind), "text naming the part's kind")
        if m["role"] == "user" and kind not in USER_PART_TYPES:
            raise InvalidRequest(f"messages[{i}].content[{j}].type", kind,
                                 "a user content part type: " + ", ".join(sorted(USER_PART_TYPES)))
        if kind == "text" and not isinstance(part.get("text"), str):
            # the PII masker reads text parts' text: anything else went to the provider unmasked
            raise InvalidRequest(f"messages[{i}].content[{j}].text", type_shape(part.get("text")), "text")
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, (dict, abc.Mapping)) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"messages[{i}].content[{j}].image_url", type_shape(image),
                                     "a URL, or a mapping with a 'url' (and an optional 'detail')")


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Request:
    """A chat request plus who sent it.

    ``model`` is ``None`` (let the router decide) or a deployment name to pin.  ``params`` are
    the sampling parameters (``temperature``, ``max_tokens`` …).  ``metadata`` travels with the
    request into the ledger and the simulator (for example the intent of a synthetic query);
    it is never sent to a provider.  ``request_timeout_s`` bounds the whole request (its calls,
    retries, waits and fallbacks), overriding the gateway's default for this one.
    """

    messages: tuple[Mapping[str, Any], ...]
    tenant: str = "default"
    plan: str = "free"
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)
    cache: bool = True  # False bypasses the caches for this request
    #: seconds this request may take over all its calls, retries, waits and fallbacks (None: the
    #: gateway's ``request_timeout_s``; see :mod:`llmlab.request_deadline`)
    request_timeout_s: float | None = None

    @classmethod
    def build(cls, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> "Request":
        """Accept a plain prompt or a list of chat messages; reject empty input."""
        if isinstance(prompt, str):
            messages: tuple[Mapping[str, Any], ...] = ({"role": "user", "content": prompt},)
        elif isinstance(prompt, (list, tuple)):
            messages = tuple(prompt)
        else:
            raise InvalidRequest("prompt", prompt, "a non-empty string or a list of chat messages")
        if not messages:
            raise InvalidRequest("messages", [], "at least one message")
        for i, m in enumerate(messages):
            _check_message(i, m)
        check_json("messages", messages)
        last = messages[-1].get("content")
        if not content_text(last).strip() and not _has_media(last):
            raise InvalidRequest("prompt", last, "non-empty text, or an image (a non-text part), in the last message")
        params = kwargs.get("params") or {}
        _check_params(params)
        check_json("params", params)
        model = kwargs.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidRequest("model", model, "None (let the router decide) or a deployment's name")
        for name in ("tenant", "plan"):
            value = kwargs.get(name, cls.__dataclass_fields__[name].default)
            if not isinstance(value, str) or not value:
                raise InvalidRequest(name, value, "a non-empty string")
        if "metadata" in kwargs and kwargs["metadata"] is None:
            kwargs = {**kwargs, "metadata": {}}
        metadata = kwargs.get("metadata")
        if not isinstance(metadata, (dict, abc.Mapping, type(None))):
            raise InvalidRequest("metadata", metadata, "a mapping (it travels into the ledger)")
        if not isinstance(kwargs.get("cache", True), bool):
            raise InvalidRequest("cache", kwargs["cache"], "true or false")
        check_request_timeout("request_timeout_s", kwargs.get("request_timeout_s"), InvalidRequest)
        request_id = kwargs.get("request_id")
        if request_id is not None and not (isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id)):
            # it is written into log lines: a newline in it could forge one
            raise InvalidRequest("request_id", request_id, "1 to 128 printable characters without spaces")
        return cls(messages=messages, **kwargs)

    @property
    def text(self) -> str:
        """The last message's text: what routers and the semantic cache look at."""
        return content_text(self.messages[-1].get("content"))


#: the fields a caller may pass to ``Request.build`` (and to ``Gateway.complete`` and friends)
REQUEST_FIELDS = frozenset(f for f in Request.__dataclass_fields__ if f != "messages")
