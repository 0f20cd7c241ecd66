"""A small local server speaking Anthropic's Messages API (``POST /v1/messages``), for tests of
the live path against a non-OpenAI wire format.  Not shipped: ``llmlab/testing`` speaks OpenAI's.

litellm's ``anthropic/<model>`` with ``api_base="http://127.0.0.1:<port>"`` posts to
``<api_base>/v1/messages`` (``ensure_api_route`` in litellm's ``main.py``), so a Deployment
pointed here goes through litellm's real Anthropic transformation and httpx, as against the real
API.  Replies are canned per model name:

* a JSON body: ``message(...)`` (content blocks, ``usage.input_tokens``/``output_tokens``,
  ``stop_reason``) or ``error(kind, message)`` with any status and headers;
* a stream: a list of ``(event, data)`` pairs as ``stream_events(...)`` builds them
  (message_start with the input tokens, content_block_start/delta/stop, message_delta with the
  output tokens and stop_reason, message_stop); a callable in the list is called between two
  events (to pause), and :data:`CUT` closes the socket there (a stream cut midway).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from canned_http import CUT, CannedServer, Either, send_events, send_json

from llmlab import Deployment


def message(*blocks: dict, input_tokens: int = 11, output_tokens: int = 7, stop_reason: str = "end_turn",
            model: str = "claude-test") -> dict:
    """A whole Messages API response with ``blocks`` (text(...) / tool_use(...)) as its content."""
    return {"id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": list(blocks),
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def tool_use(name: str, arguments: dict, id: str = "toolu_01") -> dict:
    return {"type": "tool_use", "id": id, "name": name, "input": arguments}


def error(kind: str, text_: str) -> dict:
    """Anthropic's error body: ``{"type": "error", "error": {"type": kind, "message": ...}}``."""
    return {"type": "error", "error": {"type": kind, "message": text_}, "request_id": "req_test"}


def _block(index: int, block: dict, pieces: Iterable[Any], delta_type: str, field: str,
           after_start: tuple = (), before_stop: tuple = ()) -> list:
    """One content block's events: its start, a ``delta_type`` delta per piece (callables,
    :data:`CUT` and ready ``(event, data)`` pairs pass through as they are), its stop."""
    events: list = [("content_block_start", {"type": "content_block_start", "index": index,
                                             "content_block": block}), *after_start]
    for piece in pieces:
        if callable(piece) or piece is CUT or isinstance(piece, tuple):
            events.append(piece)
        else:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": delta_type, field: piece}}))
    return events + [*before_stop, ("content_block_stop", {"type": "content_block_stop", "index": index})]


def stream_events(*pieces: Any, input_tokens: int = 11, output_tokens: int | None = 7,
                  stop_reason: str = "end_turn", tool: tuple[str, str] | None = None,
                  tool_pieces: tuple[str, ...] = (), thinking: tuple[Any, ...] = (), end: bool = True) -> list:
    """The events of a streamed answer: message_start (input tokens, and the 1 output token
    Anthropic reports there), a thinking block when ``thinking`` pieces are given, one text block
    whose deltas are the ``pieces`` (a callable or
    :data:`CUT` among them is passed through), a tool_use block (``tool`` = (id, name)) with its
    ``input_json_delta`` ``tool_pieces``, then, when ``end``, message_delta (output tokens,
    omitted when None) and message_stop."""
    events: list = [("message_start", {"type": "message_start", "message": {
        "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})]
    index = 0
    if thinking:  # extended thinking: a thinking block first, its deltas the ``thinking`` pieces
        events += _block(0, {"type": "thinking", "thinking": ""}, thinking, "thinking_delta", "thinking",
                         before_stop=(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                               "delta": {"type": "signature_delta",
                                                                         "signature": "c2ln"}}),))
        index = 1
    if pieces:
        events += _block(index, {"type": "text", "text": ""}, pieces, "text_delta", "text",
                         after_start=(("ping", {"type": "ping"}),))
        index += 1
    if tool is not None:
        events += _block(index, {"type": "tool_use", "id": tool[0], "name": tool[1], "input": {}}, tool_pieces,
                         "input_json_delta", "partial_json")
    if end:
        usage = {} if output_tokens is None else {"output_tokens": output_tokens}
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                         "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
    return events


def _frames(events: list) -> Iterable[Any]:
    """``(event, data)`` pairs as Anthropic's SSE frames; callables, :data:`CUT` and raw bytes (a
    frame's first half, say) pass through."""
    for item in events:
        passed = item is CUT or callable(item) or isinstance(item, bytes)
        yield item if passed else f"event: {item[0]}\ndata: {json.dumps(item[1])}\n\n".encode()


def answer(*pieces: str, input_tokens: int = 11, output_tokens: int = 7, stop_reason: str = "end_turn") -> Either:
    """The same text answer, as JSON or as a stream of ``pieces``, whichever the request asks for."""
    return Either(message(text("".join(pieces)), input_tokens=input_tokens, output_tokens=output_tokens,
                          stop_reason=stop_reason),
                  stream_events(*pieces, input_tokens=input_tokens, output_tokens=output_tokens,
                                stop_reason=stop_reason))


class AnthropicServer(CannedServer):
    """Serves, per model name, ``(status, headers, body)``: body a dict (JSON) or a list of events
    (SSE).  A list of such replies is served in turn (the last one repeats).  ``requests`` keeps
    every request body received, ``hits`` counts them per model."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, dict, Any]]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[dict] = []
        self.paths: list[str] = []
        super().__init__()

    def reply_to(self, handler: Any, body: Any) -> None:
        self.paths.append(handler.path)
        self.requests.append(body)
        status, headers, reply = self.next_reply(self.replies, self.hits, body["model"], body)
        if isinstance(reply, list):
            send_events(handler, status, headers, _frames(reply))
        else:
            send_json(handler, status, headers, reply)

    def deployment(self, name: str, *replies: tuple[int, dict, Any], **kw: Any) -> Deployment:
        """A Deployment calling ``anthropic/<name>`` here, served ``replies`` in turn."""
        self.replies[name] = list(replies)
        self.hits.pop(name, None)
        kw.setdefault("timeout_s", 5.0)
        kw.setdefault("price_model", "claude-sonnet-4-5")
        return Deployment(name, f"anthropic/{name}", {"api_base": self.base_url, "api_key": "sk-ant-test"}, **kw)
