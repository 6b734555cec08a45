"""Bundles and producer messages are written a few at a time per worker process.

Writing one is CPU work in Python. Two threads of one process doing it at once take turns at the
interpreter lock, and each hand-over costs CPU without adding throughput: with 4 producers on 2
workers the server spent a fifth more CPU per measurement than with 2. Requests beyond the limit
wait for a slot (asleep, holding nothing) and the other workers and the database keep working.
Reads do not take a slot. `KJERNE_WRITE_CONCURRENCY` sets the limit (default 1 per worker).
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
        limiter = state.write_limiter = anyio.CapacityLimiter(max(1, getattr(settings, "write_concurrency", 1)))
    return limiter


async def run_write(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread once one of this process's write slots is free."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=_limiter(request))
