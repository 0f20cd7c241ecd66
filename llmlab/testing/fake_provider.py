"""A fault-injecting, OpenAI-compatible HTTP server for tests and demos.

Why a real server and not a mock object: the failure modes that hurt in production — a 429
with ``Retry-After``, a 529, a socket that never answers, a stream that dies after three
chunks, a body that is not JSON — live in the HTTP layer. Only a real socket exercises the
client stack we ship (litellm → openai → httpx) the way a provider will. The server speaks
HTTP/1.1 through **h11**, which keeps protocol state in a plain object; the asyncio code here
only moves bytes and sleeps. Which request gets which fault is decided by a `FaultPlan`
(`faults.py`), and the response bodies come from `bodies.py`.

Endpoints: ``POST /v1/chat/completions`` (JSON, or SSE when ``"stream": true``),
``POST /v1/embeddings``, ``GET /v1/models``.

Use it from sync tests (the event loop runs in a background thread)::

    with FakeProvider(plan) as fp:
        litellm.completion(model="openai/gpt-4o", api_base=fp.base_url, api_key="sk-test", ...)

or from async code with ``async with FakeProvider(plan) as fp: ...``.
It binds 127.0.0.1 and refuses other interfaces unless ``allow_non_loopback=True``.

장애 주입 OpenAI 호환 서버: h11 + asyncio로 구현했으며, 지연·TTFT·429(Retry-After)·5xx·529·
무응답·스트림 중간 끊김·깨진 JSON을 모델별로 결정적 순서 또는 시드 고정 확률로 주입합니다.
기본적으로 루프백(127.0.0.1)에만 바인딩합니다.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import json
import math
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11

from . import bodies
from .faults import ERROR_STATUSES, TRICKLE_PIECES, Decision, Fault, FaultPlan

__all__ = ["FakeProvider", "NonLoopbackHostError", "ProviderStats", "RecordedRequest", "cli_main"]

MAX_BODY_BYTES = 8 * 1024 * 1024
Reply = str | Callable[[dict], str] | None


class NonLoopbackHostError(ValueError):
    """Raised when asked to listen on a non-loopback address without explicit permission."""


def _reason(status: int) -> bytes:
    """The status line's phrase ("Too Many Requests"; Anthropic's 529 is "Overloaded")."""
    if status == 529:
        return b"Overloaded"
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _check_host(host: str, allow_non_loopback: bool) -> None:
    if allow_non_loopback or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NonLoopbackHostError(
            f"refusing to bind the fake provider to {host!r}: it is not a loopback address and the "
            "fake provider has no authentication. Use 127.0.0.1 (default), or pass "
            "allow_non_loopback=True (--allow-non-loopback) if you really mean it.")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the provider received it (handy to assert what left the gateway)."""

    path: str
    model: str
    body: dict
    stream: bool
    outcome: str  # "ok", "outage", or a fault label ("429", "hang", "cut_stream", ...)


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A snapshot of request counts."""

    by_model_path: dict[tuple[str, str], int]
    outcomes: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_model_path.values())

    @property
    def by_model(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (model, _), n in self.by_model_path.items():
            out[model] += n
        return dict(out)

    @property
    def by_path(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_, path), n in self.by_model_path.items():
            out[path] += n
        return dict(out)

    def count(self, model: str | None = None, path: str | None = None) -> int:
        return sum(n for (m, p), n in self.by_model_path.items()
                   if (model is None or m == model) and (path is None or p == path))


class _HTTP:
    """One client connection: an h11 state machine plus the asyncio stream it reads and writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.SERVER)

    async def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(65536))  # b"" means EOF

    async def read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request and its body, or None when the client closed the connection."""
        event = await self.next_event()
        if not isinstance(event, h11.Request):
            return None
        body = bytearray()
        while True:
            part = await self.next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY_BYTES:
                    raise _TooLarge()
            elif isinstance(part, h11.EndOfMessage):
                return event, bytes(body)
            else:  # ConnectionClosed mid-body
                return None

    async def respond(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: Mapping[str, str] | None = None) -> None:
        h = [("content-type", content_type), ("content-length", str(len(body))), ("server", "llmlab-fake-provider")]
        h += list((headers or {}).items())
        await self.send(h11.Response(status_code=status, headers=h, reason=_reason(status)), h11.Data(data=body),
                        h11.EndOfMessage())

    async def respond_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        await self.respond(status, json.dumps(obj).encode(), headers=headers)

    def abort(self) -> None:
        """Drop the connection without finishing the message (what a crashed upstream does)."""
        self.writer.transport.abort()


class _TooLarge(Exception):
    pass


async def _keep_alive(http: _HTTP, wait_s: float, every_s: float) -> float:
    """Spend ``wait_s`` sending an SSE comment every ``every_s``; the time left over (< every_s)."""
    while wait_s >= every_s:
        await asyncio.sleep(every_s)
        wait_s -= every_s
        await http.send(h11.Data(data=b": keep-alive\n\n"))
    return wait_s


async def _trickle(http: _HTTP, body: bytes, every_s: float) -> None:
    """A 200 with ``body``'s length announced at once, then the body in :data:`TRICKLE_PIECES`
    pieces ``every_s`` apart (a slow upstream relayed as it comes, or a throttled proxy)."""
    await http.send(h11.Response(status_code=200, headers=[
        ("content-type", "application/json"), ("content-length", str(len(body))), ("server", "llmlab-fake-provider")]))
    size = -(-len(body) // TRICKLE_PIECES)
    for start in range(0, len(body), size):
        await asyncio.sleep(every_s)
        await http.send(h11.Data(data=body[start:start + size]))
    await http.send(h11.EndOfMessage())


class FakeProvider:
    """The server. Configure with a `FaultPlan`, a `reply`, and an embedding dimension.

    `reply` is a string, or a callable given the parsed request body; by default the answer
    echoes the model name and the start of the last user message. `set_outage(model, True)`
    makes every request for that model (``"*"`` = all) answer 503 until switched off; it may be
    called from any thread while the server runs.
    """

    def __init__(self, plan: FaultPlan | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 reply: Reply = None, embedding_dim: int = 64, allow_non_loopback: bool = False,
                 max_recorded: int = 100_000) -> None:
        _check_host(host, allow_non_loopback)
        if isinstance(max_recorded, bool) or not isinstance(max_recorded, int) or max_recorded < 0:
            raise ValueError(f"FakeProvider max_recorded must be an integer >= 0 (got {max_recorded!r})")
        #: ``requests`` keeps at least the last ``max_recorded`` requests (bodies included) and at
        #: most twice as many (0: none): a server left running (``llmlab fake-provider`` behind a
        #: load test, which keeps 1,000) kept every one it was sent
        self.max_recorded = max_recorded
        self.plan = plan or FaultPlan()
        self.host, self.port = host, port
        self.reply = reply
        self.embedding_dim = embedding_dim
        self._outages: set[str] = set()
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._outcomes: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- public state ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake provider is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def set_outage(self, model: str, on: bool = True) -> None:
        with self._lock:
            (self._outages.add if on else self._outages.discard)(model)

    @property
    def stats(self) -> ProviderStats:
        with self._lock:
            return ProviderStats(dict(self._counts), dict(self._outcomes))

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()
            self._outcomes.clear()
            self.requests.clear()

    # -- lifecycle: asyncio ----------------------------------------------------------------

    async def start(self) -> FakeProvider:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeProvider:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lifecycle: a background thread for sync code --------------------------------------

    def __enter__(self) -> FakeProvider:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:  # e.g. port in use: re-raised in the caller's thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), name="llmlab-fake-provider", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        if self._thread_loop is not None and self._thread_stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        self._thread.join(timeout=10)
        self._thread = None

    # -- serving ---------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        http = _HTTP(reader, writer)
        try:
            while True:
                try:
                    request = await http.read_request()
                except (h11.RemoteProtocolError, _TooLarge) as exc:
                    if http.conn.our_state is h11.SEND_RESPONSE:
                        status = 413 if isinstance(exc, _TooLarge) else 400
                        await http.respond_json(status, bodies.error_body(status, "bad request"),
                                                {"connection": "close"})
                    break
                if request is None:
                    break
                try:
                    keep_open = await self._handle(http, *request)
                except Exception as exc:  # e.g. a user `reply` callable raised: answer 500, keep serving
                    if http.conn.our_state is not h11.SEND_RESPONSE:
                        raise
                    await http.respond_json(500, bodies.error_body(
                        500, f"fake provider failed: {type(exc).__name__}: {exc}"), {"connection": "close"})
                    break
                if not keep_open or http.conn.our_state is not h11.DONE or http.conn.their_state is not h11.DONE:
                    break
                http.conn.start_next_cycle()
        except (ConnectionError, h11.LocalProtocolError):
            pass  # the client went away mid-response: nothing left to tell it
        except asyncio.CancelledError:
            # stop() cancels open connections; end quietly (asyncio's stream callback would
            # otherwise log the cancellation as an error on Python 3.11)
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, http: _HTTP, request: h11.Request, raw: bytes) -> bool:
        """Route one request. Returns False when the connection must not be reused."""
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0].rstrip("/")
        if path.startswith("/v1/"):
            path = path[3:]
        if method == "GET" and path == "/models":
            await http.respond_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "llmlab"} for m in self._known_models()]})
            return True
        if path not in ("/chat/completions", "/embeddings"):
            await http.respond_json(404, bodies.error_body(404, f"unknown path {path!r}"))
            return True
        if method != "POST":
            await http.respond_json(405, bodies.error_body(400, f"{method} not allowed"), {"allow": "POST"})
            return True
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise ValueError("body must be a JSON object with a string 'model'")
        except ValueError as exc:
            await http.respond_json(400, bodies.error_body(400, f"invalid request body: {exc}"))
            return True

        model = body["model"]
        stream = path == "/chat/completions" and bool(body.get("stream"))
        with self._lock:
            outage = model in self._outages or "*" in self._outages
        decision = Decision() if outage else self.plan.decide(model)
        outcome = "outage" if outage else decision.fault.label if decision.fault else "ok"
        with self._lock:
            self._counts[(model, "/v1" + path)] += 1
            self._outcomes[outcome] += 1
            if self.max_recorded:
                self.requests.append(RecordedRequest("/v1" + path, model, body, stream, outcome))
                if len(self.requests) >= 2 * self.max_recorded:  # trimmed in halves: amortised O(1)
                    del self.requests[:-self.max_recorded]

        if outage:
            await http.respond_json(503, bodies.error_body(503, f"simulated outage: {model} is unavailable"))
            return True
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        fault = decision.fault
        if fault is not None and fault.kind == "hang":
            while await http.reader.read(65536):  # wait for the client to give up (EOF)
                pass
            return False
        if fault is not None and fault.kind == "status":
            return await self._respond_error(http, fault, model)

        rid, created = self._next_id(path), int(time.time())
        if path == "/embeddings":
            payload = bodies.embeddings(body, default_dim=self.embedding_dim)
            return await self._respond_body(http, payload, fault, decision.trickle_s)
        reply = self._reply_for(body)
        if stream:
            return await self._stream(http, body, reply, rid, created, decision)
        return await self._respond_body(http, bodies.chat_completion(body, reply, id=rid, created=created), fault,
                                        decision.trickle_s)

    async def _respond_error(self, http: _HTTP, fault: Fault, model: str) -> bool:
        headers = {}
        if fault.retry_after_s is not None:
            headers["retry-after"] = str(max(0, math.ceil(fault.retry_after_s)))
            headers["retry-after-ms"] = str(max(0, round(fault.retry_after_s * 1000)))
        message = {429: f"Rate limit reached for {model} (simulated)",
                   529: "Overloaded (simulated)"}.get(fault.status, f"simulated error {fault.status} for {model}")
        await http.respond_json(fault.status, bodies.error_body(fault.status, message), headers)
        return True

    async def _respond_body(self, http: _HTTP, payload: dict, fault: Fault | None, trickle_s: float = 0.0) -> bool:
        data = json.dumps(payload).encode()
        if trickle_s and fault is None:
            await _trickle(http, data, trickle_s)
            return True
        if fault is not None and fault.kind == "malformed":
            await http.respond(200, data[: max(1, len(data) // 2)])  # complete HTTP message, broken JSON
            return True
        if fault is not None and fault.kind == "cut_stream":
            # announce the full length, send half, drop the connection
            await http.send(h11.Response(status_code=200, headers=[
                ("content-type", "application/json"), ("content-length", str(len(data)))]),
                h11.Data(data=data[: len(data) // 2]))
            http.abort()
            return False
        await http.respond(200, data)
        return True

    async def _stream(self, http: _HTTP, body: dict, reply: str, rid: str, created: int, d: Decision) -> bool:
        await http.send(h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("server", "llmlab-fake-provider")]))
        fault = d.fault
        chunks = list(bodies.chat_chunks(body, reply, id=rid, created=created))
        for i, chunk in enumerate(chunks):
            if fault is not None and fault.kind == "cut_stream" and i >= fault.after_chunks:
                http.abort()
                return False
            # delays: TTFT before the first content chunk (index 1), chunk_delay between later ones
            delay = d.ttft_s if i == 1 else d.chunk_delay_s if i > 1 else 0.0
            if i == 1 and d.keepalive_s:  # bytes keep coming, no token does: a read timeout never fires
                delay = await _keep_alive(http, delay, d.keepalive_s)
            if delay:
                await asyncio.sleep(delay)
            event = json.dumps(chunk)
            if fault is not None and fault.kind == "malformed" and i == 1:
                event = event[: len(event) // 2]
            await http.send(h11.Data(data=f"data: {event}\n\n".encode()))
        await http.send(h11.Data(data=b"data: [DONE]\n\n"), h11.EndOfMessage())
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _reply_for(self, body: dict) -> str:
        if self.reply is None:
            return bodies.default_reply(body)
        return self.reply(body) if callable(self.reply) else self.reply

    def _next_id(self, path: str) -> str:
        prefix = "chatcmpl" if path == "/chat/completions" else "emb"
        return f"{prefix}-fake{next(self._ids):06d}"

    def _known_models(self) -> list[str]:
        with self._lock:
            return sorted({m for m, _ in self._counts} | set(self.plan.models))


# -- command line --------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    from ..cli_args import OneLineParser

    p = OneLineParser(prog="llmlab fake-provider",
                                description="Run a fault-injecting OpenAI-compatible server (Ctrl-C to stop).")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8089, help="port (0 = any free port; default 8089)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every response")
    p.add_argument("--ttft-ms", type=float, default=0.0, help="extra delay before the first streamed chunk")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between streamed chunks")
    p.add_argument("--keepalive-ms", type=float, default=0.0,
                   help="an SSE comment this often while a stream waits for its first token (0: none)")
    p.add_argument("--trickle-ms", type=float, default=0.0,
                   help=f"send a non-streamed answer's body in {TRICKLE_PIECES} pieces this far apart, its headers at "
                        "once (0: the whole body at once)")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability in [0, 1] of an error response")
    p.add_argument("--error-status", type=int, default=500,
                   help="status used for --error-rate: " + ", ".join(map(str, ERROR_STATUSES)) + " (default 500)")
    p.add_argument("--retry-after-s", type=float, default=1.0,
                   help="Retry-After of the random 429/503 errors (default 1; negative: no header)")
    p.add_argument("--seed", type=int, default=0, help="seed for random faults and latencies")
    p.add_argument("--reply", default=None, help="fixed answer text (default: 'Fake answer from <model> to: ' and the question's first 60 "
                        "characters)")
    p.add_argument("--allow-non-loopback", action="store_true", help="permit binding a non-loopback address")
    return p


def cli_main(argv: list[str] | None = None) -> int:
    """``llmlab fake-provider``: serve until Ctrl-C (or SIGTERM); 0 on a clean stop."""
    from ..cli_args import parse_or_refuse

    args = parse_or_refuse(_build_parser(), "llmlab fake-provider", argv)
    if args is None:
        return 2
    problems = [] if 0 <= args.port <= 65_535 else [f"--port must be in 0..65535 (got {args.port})"]
    for flag, value in (("--latency-ms", args.latency_ms), ("--ttft-ms", args.ttft_ms),
                        ("--chunk-delay-ms", args.chunk_delay_ms), ("--keepalive-ms", args.keepalive_ms),
                        ("--trickle-ms", args.trickle_ms)):
        if not 0 <= value < math.inf:  # nan fails too
            problems.append(f"{flag} must be a finite number >= 0 (got {value:g})")
    # named by their options here: FaultPlan's own messages say 'probability' and 'retry_after_s'
    if not 0 <= args.error_rate <= 1:
        problems.append(f"--error-rate must be a probability in [0, 1] (got {args.error_rate:g})")
    if math.isnan(args.retry_after_s) or args.retry_after_s == math.inf:
        problems.append(f"--retry-after-s must be a finite number of seconds (negative: no header) "
                        f"(got {args.retry_after_s:g})")
    if args.error_status not in ERROR_STATUSES:
        allowed = ", ".join(map(str, ERROR_STATUSES))
        problems.append(f"--error-status must be one of {allowed} (got {args.error_status})")
    if problems:
        print(f"llmlab fake-provider: error: {problems[0]}", file=sys.stderr)
        return 2
    try:
        plan = FaultPlan(seed=args.seed, latency_s=args.latency_ms / 1000, ttft_s=args.ttft_ms / 1000,
                         chunk_delay_s=args.chunk_delay_ms / 1000, keepalive_s=args.keepalive_ms / 1000,
                         trickle_s=args.trickle_ms / 1000,
                         error_rate=args.error_rate,
                         error_status=args.error_status,
                         retry_after_s=None if args.retry_after_s < 0 else args.retry_after_s)
        provider = FakeProvider(plan, host=args.host, port=args.port, reply=args.reply,
                                allow_non_loopback=args.allow_non_loopback, max_recorded=1_000)
    except ValueError as exc:
        print(f"llmlab fake-provider: error: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # both end through the event: one shutdown path
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        async with provider:
            print(f"fake provider listening on {provider.base_url} (Ctrl-C to stop)", flush=True)
            await stop.wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. address already in use: the caller's input, exit code 2 as for any
        print(f"llmlab fake-provider: error: --host/--port: cannot listen ({exc})", file=sys.stderr)
        return 2
    print("fake provider stopped", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main())
