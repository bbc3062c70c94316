"""Fetch middleware: functions around the handler that sends one request.

``Middleware(request, handler)`` may change the request, call ``handler`` zero or more times,
and change or replace the response. The chain is built from ``settings.middlewares``: each
``"module:name"`` names a factory called as ``factory(settings=..., stats=...)`` that returns a
middleware (a class whose instances are callable fits).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from scraper.errors import ConfigError, ConnectionFailed, FetchTimeout
from scraper.http import Request, Response
from scraper.loading import load_object
from scraper.settings import Settings
from scraper.stats import Stats

Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]
MiddlewareFactory = Callable[..., Middleware]

logger = logging.getLogger(__name__)


def build_chain(handler: Handler, middlewares: Sequence[Middleware]) -> Handler:
    """Wrap ``handler`` so the first middleware listed runs outermost."""
    for middleware in reversed(middlewares):
        handler = _bind(middleware, handler)
    return handler


def _bind(middleware: Middleware, handler: Handler) -> Handler:
    async def handle(request: Request) -> Response:
        return await middleware(request, handler)

    return handle


def load_middlewares(*, settings: Settings, stats: Stats) -> list[Middleware]:
    """Resolve ``settings.middlewares``; a wrong path or type is a ``ConfigError``."""
    middlewares = []
    for path in settings.middlewares:
        factory = load_object(path, setting="middlewares")
        middleware = factory(settings=settings, stats=stats)
        if not callable(middleware):
            raise ConfigError(f"middlewares: {path} did not produce a callable middleware")
        middlewares.append(middleware)
    return middlewares


class Retry:
    """Retry connection errors, timeouts and retryable statuses with exponential back-off.

    The delay is ``backoff * 2**attempt`` with jitter (half to all of it), capped at ``max_backoff``.
    """

    def __init__(self, *, settings: Settings, stats: Stats) -> None:
        self._policy = settings.retry
        self._stats = stats

    async def __call__(self, request: Request, handler: Handler) -> Response:
        attempt = 0
        while True:
            try:
                response = await handler(request)
            except (ConnectionFailed, FetchTimeout) as exc:
                if attempt >= self._policy.times:
                    raise
                reason = type(exc).__name__
            else:
                if response.status not in self._policy.statuses or attempt >= self._policy.times:
                    return response
                reason = str(response.status)
            attempt += 1
            self._stats.increment(f"retries/{reason}")
            logger.debug("retrying %s (%s), attempt %d", request.url, reason, attempt)
            await asyncio.sleep(self._delay(attempt))

    def _delay(self, attempt: int) -> float:
        ceiling = min(self._policy.max_backoff, self._policy.backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)
