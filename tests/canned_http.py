"""The shared part of the tests' local provider servers (OpenAI-compatible, Anthropic, Azure,
Bedrock): an HTTP/1.1 server on 127.0.0.1 in a daemon thread that hands each POST's JSON body to
its subclass, and the two ways a reply goes out — one JSON body, or a stream of server-sent
events that a test can pause (a callable among the frames) or cut (:data:`CUT`).  Not shipped.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, TypeVar

CUT = object()  # among a stream's frames: close the connection there (a stream cut midway)
S = TypeVar("S", bound="CannedServer")


class Either:
    """A reply served as ``events`` to a streamed request and as ``body`` to any other."""

    def __init__(self, body: dict, events: list) -> None:
        self.body, self.events = body, events


class CannedServer:
    """Subclasses implement :meth:`reply_to`; ``base_url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server.reply_to(self, json.loads(self.rfile.read(int(self.headers["content-length"]))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reply_to(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        raise NotImplementedError

    def next_reply(self, queues: dict[str, list], hits: dict[str, int], name: str, body: Any) -> tuple[int, dict, Any]:
        """The next of ``name``'s replies ``(status, headers, body)``, served in turn (the last
        repeats), counted in ``hits``; an :class:`Either` resolved by whether ``body`` streams."""
        count = hits[name] = hits.get(name, 0) + 1
        queue = queues[name]
        status, headers, reply = queue[min(count, len(queue)) - 1]
        if isinstance(reply, Either):
            reply = reply.events if body.get("stream") else reply.body
        return status, headers, reply

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, headers: dict, reply: Any) -> None:
    """One JSON body with ``headers`` (a content type of their own wins)."""
    data = json.dumps(reply).encode()
    handler.send_response(status)
    for name, value in {"content-type": "application/json", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_events(handler: BaseHTTPRequestHandler, status: int, headers: dict, frames: Iterable[Any]) -> None:
    """A server-sent-event stream of ``frames``: encoded events (bytes) written as they come, a
    callable called between two of them (to pause), :data:`CUT` to close the connection there.
    A client that stops reading ends the stream quietly."""
    handler.send_response(status)
    for name, value in {"content-type": "text/event-stream", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("connection", "close")
    handler.end_headers()
    try:
        for frame in frames:
            if frame is CUT:
                break
            if callable(frame):
                frame()
                continue
            handler.wfile.write(frame)
            handler.wfile.flush()
    except OSError:  # the client stopped reading
        pass
    handler.close_connection = True


def openai_frames(events: Iterable[Any]) -> Iterable[Any]:
    """OpenAI's chunks as SSE frames (``data: {...}``), then ``data: [DONE]``; callables and
    :data:`CUT` pass through.  A cut stream never sends ``[DONE]``."""
    for event in events:
        if event is CUT:
            yield CUT
            return
        yield event if callable(event) else b"data: " + json.dumps(event).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def running(server_class: type[S]) -> Iterator[S]:
    """A module fixture's body: litellm imported first (its import is not a test's latency), the
    server started, and closed when the module's tests are done."""
    from llmlab.live import import_litellm

    import_litellm()
    server = server_class()
    try:
        yield server
    finally:
        server.close()
