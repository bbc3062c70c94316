"""Spider callbacks in worker processes, so that a parse-heavy crawl uses every core
(``parse_processes: N``).

Why a pool of parse processes rather than several crawl processes sharing the frontier: the
event loop's own work (fetching, scheduling, storing) is cheap next to heavy parsing, and
keeping it in one process keeps every guarantee exact: per-host concurrency and delays are
counted in one place, every page still commits atomically through the one writer, and
``max_items``/``max_pages`` stay exact. Only what is CPU-bound and stateless per page moves.

Each child (``python -m scraper.parse_pool``) gets a pickled copy of the spider (as it is
after ``opened()``) and then answers one page at a time over its stdin/stdout: the response
goes in, the callback's requests (callbacks by name), items and invalid items come back. The
parent talks to its children through asyncio pipes, so nothing blocks the event loop. A
child that dies or overruns ``callback_timeout`` is replaced; only its page fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from multidict import CIMultiDict

from scraper.errors import ConfigError, ScraperError
from scraper.http import Request, Response
from scraper.spider import CallbackResult, Spider, run_callback

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")  # each message: its length, then a pickle
_STARTUP_TIMEOUT = 60.0


class ParseProcessFailed(ScraperError):
    """A parse process died or stopped answering while it handled a page."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a parse process, kept as its ``__cause__``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class _Page:
    """A response as it travels to a child: the request without its (bound) callback."""

    callback: str
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request: Request


# -- the parent's side ------------------------------------------------------------------------


class _Child:
    """One parse process and the pipes to it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def call(self, message: bytes) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(_HEADER.pack(len(message)) + message)
        await self.process.stdin.drain()
        (size,) = _HEADER.unpack(await self.process.stdout.readexactly(_HEADER.size))
        return pickle.loads(await self.process.stdout.readexactly(size))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class ParsePool:
    """``processes`` children running ``spider``'s callbacks; ``run`` hands one page to an
    idle child (waiting for one when all are busy)."""

    def __init__(self, spider: Spider, processes: int) -> None:
        self._spider = spider
        self._processes = processes
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._respawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self._spider_bytes = b""
        # the child imports the spider's module the way this process did
        self._environment = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path)}

    async def __aenter__(self) -> ParsePool:
        try:
            self._spider_bytes = pickle.dumps(self._spider)
        except Exception as exc:
            raise ConfigError(
                f"parse_processes: spider {self._spider.name!r} cannot be copied to parse processes "
                f"(its attributes must pickle): {exc}"
            ) from None
        try:
            children = await asyncio.gather(*(self._spawn() for _ in range(self._processes)))
        except BaseException:
            await self.close()
            raise
        for child in children:
            self._idle.put_nowait(child)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for task in self._respawning:
            task.cancel()
        await asyncio.gather(*self._respawning, return_exceptions=True)
        children, self._children = self._children, set()
        await asyncio.gather(*(child.stop() for child in children), return_exceptions=True)

    async def run(self, callback: str, response: Response, *, time_limit: float) -> CallbackResult:
        """What the spider's ``callback`` yields for ``response``, computed in a child.

        Raises what the callback raised (with the child's traceback as its cause),
        ``TimeoutError`` when the child took longer than ``time_limit`` (waiting for an idle
        child does not count), or ``ParseProcessFailed`` when the child died. A child that
        timed out or was cancelled is replaced: it may still be busy with the page. With no
        child left at all (none could be restarted), callbacks run on the event loop."""
        try:
            message = _pack(callback, response)
        except (pickle.PicklingError, TypeError, AttributeError):  # meta that cannot travel
            message = None
        if message is None or not (self._children or self._respawning):
            async with asyncio.timeout(time_limit):
                return await run_callback(getattr(self._spider, callback), response)
        child = await self._idle.get()
        try:
            async with asyncio.timeout(time_limit):
                status, payload = await child.call(message)
        except (asyncio.CancelledError, TimeoutError):
            self._replace(child)
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
            self._replace(child)
            raise ParseProcessFailed(f"parse process for {response.url} failed: {exc or type(exc).__name__}") from None
        self._idle.put_nowait(child)
        if status == "error":
            error, remote_trace = payload
            error.__cause__ = RemoteTraceback(remote_trace)
            raise error
        return _unpack_result(payload, self._spider)

    async def _spawn(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scraper.parse_pool",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._environment,
        )
        child = _Child(process)
        self._children.add(child)
        hello = pickle.dumps((self._spider_bytes, logging.getLogger().getEffectiveLevel()))
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT):
                status, payload = await child.call(hello)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise ConfigError(f"parse_processes: a parse process did not start: {exc or type(exc).__name__}") from None
        if status == "error":
            raise ConfigError(f"parse_processes: a parse process could not load the spider: {payload[0]}")
        return child

    def _replace(self, child: _Child) -> None:
        """Stop ``child`` and start another in the background (the caller's page is lost
        either way; the others need not wait for a process to start)."""
        self._children.discard(child)
        if child.process.returncode is None:
            child.process.kill()
        if not self._closed:
            task = asyncio.create_task(self._respawn(child), name="parse-process-restart")
            self._respawning.add(task)
            task.add_done_callback(self._respawning.discard)

    async def _respawn(self, dead: _Child) -> None:
        await dead.stop()
        try:
            child = await self._spawn()
        except ConfigError as exc:  # the pool runs one process short; the rest go on
            logger.error("%s", exc)
            return
        if self._closed:
            await child.stop()
        else:
            self._idle.put_nowait(child)


def _pack(callback: str, response: Response) -> bytes:
    request = response.request.replace(callback=None)
    page = _Page(callback, response.url, response.status, list(response.headers.items()), response.body, request)
    return pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack_result(payload: tuple[list[tuple[Request, str]], list[Any], list[Any]], spider: Spider) -> CallbackResult:
    named, items, invalid = payload
    requests = [request.replace(callback=_method(spider, name)) if name else request for request, name in named]
    return CallbackResult(requests, items, invalid)


def _method(spider: Spider, name: str) -> Any:
    callback = getattr(spider, name, None)
    if callback is None:
        raise ScraperError(f"{type(spider).__name__} has no callback {name!r}")
    return callback


# -- the child's side -------------------------------------------------------------------------


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


def _write(stream: BinaryIO, reply: tuple[str, Any]) -> None:
    try:
        message = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable item or exception: say so instead
        error = TypeError(f"callback output cannot be sent back from the parse process: {exc}")
        message = pickle.dumps(("error", (error, "")))
    stream.write(_HEADER.pack(len(message)) + message)
    stream.flush()


def _callback_name(request: Request) -> str:
    callback = request.callback
    if callback is None:
        return ""
    name = getattr(callback, "__name__", None)
    if getattr(callback, "__self__", None) is None or not name:
        raise TypeError(f"callback of {request.url} must be a method of the spider to run in a parse process")
    return str(name)


async def _handle(spider: Spider, page: _Page) -> tuple[list[tuple[Request, str]], list[Any], list[Any]]:
    callback = getattr(spider, page.callback)
    request = page.request.replace(callback=callback)
    headers = _headers(page.headers)
    response = Response(url=page.url, status=page.status, headers=headers, body=page.body, request=request)
    result = await run_callback(callback, response)
    named = [(r.replace(callback=None), _callback_name(r)) for r in result.requests]
    return named, result.items, result.invalid


def _headers(pairs: list[tuple[str, str]]) -> Mapping[str, str]:
    return CIMultiDict(pairs)


def child_main() -> None:
    """The child's loop: the spider first, then one page per message until stdin closes.
    The protocol owns the real stdout; a callback's print() goes to stderr."""
    source = sys.stdin.buffer
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    hello = _read(source)
    if hello is None:
        return
    spider_bytes, level = hello
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    try:
        spider = pickle.loads(spider_bytes)
    except Exception as exc:
        _write(sink, ("error", (f"{type(exc).__name__}: {exc}", "")))
        return
    _write(sink, ("ok", None))
    loop = asyncio.new_event_loop()
    while (page := _read(source)) is not None:
        try:
            reply: tuple[str, Any] = ("ok", loop.run_until_complete(_handle(spider, page)))
        except Exception as exc:
            reply = ("error", (exc, "".join(traceback.format_exception(exc))))
        _write(sink, reply)
    loop.close()


if __name__ == "__main__":
    child_main()
