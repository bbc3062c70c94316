"""Fetch middleware: functions around the handler that sends one request.

``Middleware(request, handler)`` may change the request, call ``handler`` zero or more times,
and change or replace the response. The engine builds the chain from ``settings.middlewares``:
each ``"module:name"`` names a factory called as ``factory(settings=..., stats=..., limiter=...)``
that returns a middleware (a class whose instances are callable fits). Retries and redirects
are not middleware: they go back through the scheduler, so that no worker waits for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from scraper.http import Request, Response

Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]
MiddlewareFactory = Callable[..., Middleware]


def build_chain(handler: Handler, middlewares: Sequence[Middleware]) -> Handler:
    """Wrap ``handler`` so the first middleware listed runs outermost."""
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, handler: Handler) -> Handler:
    # a closure made by a factory is named by the factory too ('returns_none.<locals>.mw'): by
    # its own name, every such middleware was 'mw'
    name = getattr(middleware, "__qualname__", type(middleware).__name__)

    async def handle(request: Request) -> Response:
        response = await middleware(request, handler)
        if response.__class__ is not Response and not isinstance(response, Response):  # else it fails far away
            raise TypeError(f"middleware {name} returned {type(response).__name__}, not a Response")
        return response

    return handle
