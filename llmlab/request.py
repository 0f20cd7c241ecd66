"""The request a caller hands to the gateway."""
from __future__ import annotations

import itertools
from collections import abc
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ._fastinit import fast_frozen_init
from .errors import InvalidRequest

_counter = itertools.count(1)
_PREFIX = os.urandom(3).hex()


def new_request_id() -> str:
    return f"req-{_PREFIX}-{next(_counter):08d}"


def _check_params(params: Any) -> None:
    """Reject sampling parameters no provider accepts, before anything is reserved or sent."""
    if not isinstance(params, (dict, abc.Mapping)):
        raise InvalidRequest("params", params, "a mapping of sampling parameters")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("params.max_tokens", max_tokens, "a positive integer")
    temperature = params.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0.0 <= temperature <= 2.0):
        raise InvalidRequest("params.temperature", temperature, "a number in [0, 2]")
    top_p = params.get("top_p")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise InvalidRequest("params.top_p", top_p, "a number in (0, 1]")


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Request:
    """A chat request plus who sent it.

    ``model`` is ``None`` (let the router decide) or a deployment name to pin.  ``params`` are
    the sampling parameters (``temperature``, ``max_tokens`` …).  ``metadata`` travels with the
    request into the ledger and the simulator (for example the intent of a synthetic query);
    it is never sent to a provider.
    """

    messages: tuple[Mapping[str, Any], ...]
    tenant: str = "default"
    plan: str = "free"
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)
    cache: bool = True  # False bypasses the caches for this request

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
            if not isinstance(m, (dict, abc.Mapping)) or "role" not in m:
                raise InvalidRequest(f"messages[{i}]", m, "a mapping with 'role' and 'content'")
        if not str(messages[-1].get("content") or "").strip():
            raise InvalidRequest("prompt", messages[-1].get("content"), "non-empty text in the last message")
        params = kwargs.get("params") or {}
        _check_params(params)
        tenant = kwargs.get("tenant", "default")
        if not isinstance(tenant, str) or not tenant:
            raise InvalidRequest("tenant", tenant, "a non-empty string")
        return cls(messages=messages, **kwargs)

    @property
    def text(self) -> str:
        """The last message's text: what routers and the semantic cache look at."""
        return str(self.messages[-1].get("content") or "")
