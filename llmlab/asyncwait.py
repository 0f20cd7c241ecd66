"""A wait on the event loop that a cancel cannot cut short.

Cleanup that awaits — closing a provider's HTTP stream, a pipeline step finishing on a thread —
must not be cut off by a second cancel (a server cancelling a task it already cancelled, a
timeout meeting a disconnect): what follows it (the request's record, its budget settlement,
the connection going back to the pool) would never run.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable


async def wait_out(fut: "asyncio.Future[Any]") -> bool:
    """Wait until ``fut`` is done, whatever cancels arrive meanwhile; True when one did (the caller
    lets it through once its own cleanup is over).  ``fut``'s own exception is retrieved (the
    caller has moved on from its outcome): asyncio would otherwise log it as never retrieved."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait((fut,))
        except asyncio.CancelledError:
            cancelled = True
    if not fut.cancelled():
        fut.exception()
    return cancelled


async def finish(aw: Awaitable[Any]) -> None:
    """Await ``aw`` to its end as a task of its own, which a cancel of the caller does not cut
    short; a cancel that arrived meanwhile is raised afterwards."""
    if await wait_out(asyncio.ensure_future(aw)):
        raise asyncio.CancelledError()
