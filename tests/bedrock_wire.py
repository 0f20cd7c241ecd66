"""A small local server speaking Amazon Bedrock's runtime API, for tests of the live path through
litellm's ``bedrock/converse/`` and ``bedrock/invoke/`` providers with fake AWS credentials (litellm
signs each request; nobody checks the signature).  Not shipped.

* ``POST /model/<id>/converse`` and ``/invoke`` answer one JSON body: ``converse(...)``;
* ``POST /model/<id>/converse-stream`` and ``/invoke-with-response-stream`` answer AWS's binary
  event stream (``application/vnd.amazon.eventstream``), built here by :func:`frame`: each message
  is a prelude (total length, headers length, both big-endian uint32, and the CRC32 of those 8
  bytes), the headers (name length, name, value type 7 = string, value length, value), the JSON
  payload, and the CRC32 of everything before it.  ``converse_events(...)`` lists a Converse
  stream's events (messageStart, contentBlockStart/Delta/Stop, messageStop with the stopReason,
  metadata with the usage), :func:`exception` an error event mid-stream.  A callable among the
  frames is called between two of them (to pause), :data:`CUT` closes the connection there, and a
  ``bytes`` slice of a frame cuts it mid-frame.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

from canned_http import CUT, CannedServer, Either, send_events, send_json

from llmlab import Deployment

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
EVENT_STREAM = "application/vnd.amazon.eventstream"
STREAMED_ROUTES = ("/converse-stream", "/invoke-with-response-stream")

__all__ = ["CUT", "EVENT_STREAM", "MODEL", "Bedrock", "Either", "converse", "converse_events", "event",
           "exception", "frame", "invoke_chunk"]


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, string-valued headers, payload, message CRC32."""
    encoded = b"".join(struct.pack(">B", len(name.encode())) + name.encode() + struct.pack(">BH", 7, len(value.encode()))
                       + value.encode() for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", zlib.crc32(head))


def event(kind: str, payload: dict) -> bytes:
    """A stream event (``:message-type`` event) of type ``kind`` with a JSON payload."""
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(payload).encode())


def exception(kind: str, message: str) -> bytes:
    """An error event mid-stream (``:message-type`` exception): throttlingException,
    modelStreamErrorException, internalServerException, serviceUnavailableException..."""
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


def converse(text: str, stop: str = "end_turn", *, tool: dict | None = None, **usage: int) -> dict:
    """A whole Converse response: a text block (none when ``text`` is None), a toolUse block when
    ``tool`` is given (``{"toolUseId", "name", "input"}``), the stopReason and usage."""
    counts = {"inputTokens": 11, "outputTokens": 7, **usage}
    counts["totalTokens"] = sum(counts.values())
    content = ([] if text is None else [{"text": text}]) + ([] if tool is None else [{"toolUse": tool}])
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": counts, "metrics": {"latencyMs": 10}}


def converse_events(*pieces: Any, stop: str | None = "end_turn", tool: tuple[str, str] | None = None,
                    tool_pieces: tuple[str, ...] = (), usage: dict | None = None) -> list:
    """A Converse stream's frames: messageStart, a text block whose deltas are the ``pieces`` (a
    callable, :data:`CUT` or ready frame bytes among them pass through), a toolUse block (``tool`` =
    (id, name)) with its input in ``tool_pieces``, then, when ``stop``, messageStop and the metadata
    event carrying ``usage`` (``inputTokens``/``outputTokens``; default 11 and 7)."""
    frames: list = [event("messageStart", {"role": "assistant"})]
    index = 0
    if pieces:
        for piece in pieces:
            if callable(piece) or piece is CUT or isinstance(piece, bytes):
                frames.append(piece)
            else:
                frames.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    if tool is not None:
        frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": {
            "toolUse": {"toolUseId": tool[0], "name": tool[1]}}}))
        frames += [event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}})
                   for p in tool_pieces]
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
    if stop is not None:
        counts = {"inputTokens": 11, "outputTokens": 7, **(usage or {})}
        counts["totalTokens"] = counts["inputTokens"] + counts["outputTokens"]
        frames.append(event("messageStop", {"stopReason": stop}))
        frames.append(event("metadata", {"usage": counts, "metrics": {"latencyMs": 10}}))
    return frames


def invoke_chunk(payload: dict) -> bytes:
    """An ``invoke-with-response-stream`` event: a ``chunk`` whose ``bytes`` are the model's own
    (here Anthropic's) stream event, base64-encoded."""
    return event("chunk", {"bytes": base64.b64encode(json.dumps(payload).encode()).decode()})


class Bedrock(CannedServer):
    """Serves each request the next of ``replies`` (``(status, headers, body)``; the last repeats):
    a dict as JSON, a list as an event stream, an :class:`Either` by whether the route streams."""

    def __init__(self) -> None:
        self.replies: dict[str, list] = {}
        self.hits: dict[str, int] = {}
        self.paths: list[str] = []
        super().__init__()

    def reply_to(self, handler: Any, body: Any) -> None:
        self.paths.append(handler.path)
        streamed = handler.path.endswith(STREAMED_ROUTES)
        status, headers, reply = self.next_reply(self.replies, self.hits, "bedrock", {"stream": streamed})
        if isinstance(reply, list):
            send_events(handler, status, {"content-type": EVENT_STREAM, **headers}, reply)
        else:
            send_json(handler, status, headers, reply)

    @property
    def count(self) -> int:
        """The requests served since the last :meth:`deployment`."""
        return self.hits.get("bedrock", 0)

    def deployment(self, *replies: tuple[int, dict, Any], route: str = "converse", **kw: Any) -> Deployment:
        """A Deployment calling ``bedrock/<route>/<MODEL>`` here, served ``replies`` in turn."""
        self.replies["bedrock"] = list(replies)
        self.hits.pop("bedrock", None)
        kw.setdefault("timeout_s", 5.0)
        kw.setdefault("price_model", "claude-sonnet-4-5")
        return Deployment("bedrock-claude", f"bedrock/{route}/{MODEL}", {
            "api_base": self.base_url, "aws_access_key_id": "AKIAFAKEFAKEFAKE1234",
            "aws_secret_access_key": "fake-secret-fake-secret", "aws_region_name": "us-east-1"}, **kw)
