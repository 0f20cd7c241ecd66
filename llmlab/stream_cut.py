"""Cutting a synchronous provider stream's connection from another thread.

A thread blocked reading a stream cannot be interrupted, but its socket can be shut down under
it: ``shutdown(SHUT_RDWR)`` wakes the blocked read at once with the end of the stream, and
httpcore raises ("peer closed connection"), which litellm passes on.  Shutdown, not close:
closing the descriptor from another thread races the reader (the number can be reused by a new
connection before the reader's next read), and ``httpx.Response.close()`` from another thread
takes the connection pool's lock and changes the connection's state under the reader.  The
reader still closes the response itself, on its own thread, as it always does.

Where the socket is: litellm's sync stream (``CustomStreamWrapper``) keeps the provider's
stream in ``completion_stream``; the openai SDK's ``Stream`` holds the ``httpx.Response`` as
``response``, litellm's own handlers' iterators as ``http_response``, Anthropic's as
``_response``; httpcore puts the connection's stream in the response's ``network_stream``
extension, whose ``get_extra_info("socket")`` is the socket.  A layout this does not know is
logged once (the stream then runs without its first-token deadline, as before), and
``tests/test_first_token_deadline.py`` fails if litellm moves these.
"""
from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from .deadlines import CUT, NEVER, NOT_YET

log = logging.getLogger("llmlab.live")

#: where litellm's sync stream iterators keep the httpx response (see the module's docstring)
RESPONSE_ATTRS = ("response", "http_response", "_response")

_warned: set[str] = set()


def http_response(stream: Any) -> Any | None:
    """The ``httpx.Response`` under litellm's sync ``stream``, or None when none is found."""
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return None
    for holder in (getattr(stream, "completion_stream", None), stream):
        for name in RESPONSE_ATTRS:
            found = getattr(holder, name, None)
            if isinstance(found, httpx.Response):
                return found
    return None


def connection_socket(response: Any) -> socket.socket | None:
    """The socket of ``response``'s HTTP/1 connection (httpcore's ``network_stream`` extension),
    or None.  An HTTP/2 connection carries other requests' streams: it is never cut."""
    if getattr(response, "http_version", "") not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    network = (getattr(response, "extensions", None) or {}).get("network_stream")
    get_extra_info = getattr(network, "get_extra_info", None)
    sock = get_extra_info("socket") if callable(get_extra_info) else None
    return sock if isinstance(sock, socket.socket) else None


def cut(stream: Any) -> str:
    """Shut down the connection litellm's sync ``stream`` reads from (a watchdog's ``cut``):
    :data:`~llmlab.deadlines.NOT_YET` while the request has no response yet (``litellm.completion``
    still waiting for headers, or a stream litellm sends at its first read), :data:`~llmlab.deadlines.NEVER`
    for a layout this module does not know."""
    if stream is None or getattr(stream, "completion_stream", True) is None:
        return NOT_YET
    if getattr(stream, "is_mock", False) is True:  # litellm's mock_response: nothing to wait for
        return NEVER
    response = http_response(stream)
    sock = connection_socket(response) if response is not None else None
    if sock is None:
        kind = type(getattr(stream, "completion_stream", stream)).__name__
        if kind not in _warned:
            _warned.add(kind)
            log.warning("a synchronous %s stream cannot be cut: its first token is not held to the deadline", kind)
        return NEVER
    try:
        # the plain socket's shutdown: ssl.SSLSocket's own would also drop its TLS object under the reader
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed by the peer: the read ends anyway
        pass
    return CUT
