"""Keep-alive connections are closed after a number of requests, so load spreads over the workers.

A worker accepts a connection once and keeps every request on it. A producer that sends through a
few keep-alive connections can land them all on one worker, which then runs at its one core's limit
while another worker idles. Closing a connection now and then (the response says `Connection: close`)
lets the client reconnect, and the new connection goes to whichever worker accepts first: usually an
idle one. Reverse proxies do the same (nginx's `keepalive_requests`).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_TRACKED = 10_000  # connections counted at once; the counts start afresh beyond that


class RecycleConnections:
    def __init__(self, app: ASGIApp, every: int) -> None:
        self.app = app
        self.every = every
        self._served: dict[Any, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or self.every <= 0 or client is None:
            await self.app(scope, receive, send)
            return
        key = (tuple(client), tuple(scope.get("server") or ()))
        served = self._served.get(key, 0) + 1
        if served < self.every:
            if len(self._served) >= MAX_TRACKED:
                self._served.clear()
            self._served[key] = served
            await self.app(scope, receive, send)
            return
        self._served.pop(key, None)

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
