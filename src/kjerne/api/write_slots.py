"""Bundles and producer messages are written a few at a time per worker process.

Writing one is mostly CPU work in Python, so threads of one process writing at once take turns at the
interpreter lock, and every hand-over costs CPU without adding throughput. Two at a time still lets one
compute while the other waits for the database. Without a limit, a burst of uploads would put up to the
thread pool's 40 writers into one process at once, each holding a database connection. Requests beyond
the limit wait for a slot, asleep and without a connection. Reads do not take a slot.
`KJERNE_WRITE_CONCURRENCY` sets the limit (default 2 per worker).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request

T = TypeVar("T")


def _limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "write_limiter", None)
    if limiter is None:  # made on first use, inside the worker's event loop
        settings = getattr(state, "settings", None)
        limiter = state.write_limiter = anyio.CapacityLimiter(max(1, getattr(settings, "write_concurrency", 2)))
    return limiter


async def run_write(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread once one of this process's write slots is free."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=_limiter(request))
