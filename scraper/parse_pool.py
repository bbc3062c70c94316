"""Spider callbacks in worker processes, so that a parse-heavy crawl uses every core
(``parse_processes: N``).

Why a pool of parse processes rather than several crawl processes sharing the frontier: the
event loop's own work (fetching, scheduling, storing) is cheap next to heavy parsing, and
keeping it in one process keeps every guarantee exact: per-host concurrency and delays are
counted in one place, every page still commits atomically through the one writer, and
``max_items``/``max_pages`` stay exact. Only what is CPU-bound and stateless per page moves.

Each child (``python -m scraper.parse_pool``) gets a pickled copy of the spider (as it is
after ``opened()``) and then works through pages one at a time over its stdin/stdout (the
parent keeps the next one waiting in its pipe): the response goes in, the callback's
requests (callbacks by name), items and invalid items come back. The
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
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from multidict import CIMultiDict

from scraper.codec import callback_name, callback_named
from scraper.errors import ConfigError, ScraperError
from scraper.http import Request, Response
from scraper.runtime import crawl_gc
from scraper.spider import CallbackResult, Spider, run_callback

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")  # each message: its length, then a pickle
_STARTUP_TIMEOUT = 60.0
_DEPTH = 2  # pages sent to a child at once


class ParseProcessFailed(ScraperError):
    """A parse process died or stopped answering while it handled a page."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a parse process, kept as its ``__cause__``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_Page = tuple[str, str, int, list[tuple[str, str]], bytes, tuple[Any, ...]]
"""A response as it travels to a child: callback name, url, status, headers, body and the
request's fields but its (bound) callback. Plain tuples pickle several times faster than
dataclasses."""

_REQUEST_FIELDS = ("url", "method", "headers", "data", "json", "meta", "cb_kwargs", "priority", "dont_filter", "depth")


# -- the parent's side ------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Job:
    """One page on its way through the pool: queued, then started on a child, then answered."""

    message: bytes
    started: asyncio.Future[_Child]
    reply: asyncio.Future[bytes]


class _Child(asyncio.SubprocessProtocol):
    """One parse process: its pipes, and the pages sent to it (at most ``_DEPTH``: the one it
    works on and the next, already in its pipe, so that it never waits for this process's
    event loop between two pages). Frames are read in the pipe's callback and more work is
    sent right there."""

    def __init__(self, pool: ParsePool) -> None:
        self._pool = pool
        self._buffer = bytearray()
        self.transport: asyncio.SubprocessTransport | None = None
        self.jobs: deque[_Job] = deque()  # sent, in order; the first is the one being worked on
        self.ready = False  # it has loaded the spider; until then it gets no pages
        self.ended = False  # its output closed or it exited: it takes no more pages
        self.dead = False  # stopped on purpose (replaced, or the pool closed)
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def has_room(self) -> bool:
        return self.ready and not self.ended and not self.dead and len(self.jobs) < _DEPTH

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def start(self, job: _Job) -> None:
        assert self.transport is not None
        stdin = cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))
        self.jobs.append(job)
        if len(self.jobs) == 1:
            job.started.set_result(self)  # its time limit starts now
        stdin.write(_HEADER.pack(len(job.message)) + job.message)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd != 1:
            return
        self._buffer += data if isinstance(data, bytes) else data.encode()
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _HEADER.size + size:
                return
            frame = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
            del self._buffer[: _HEADER.size + size]
            if self.jobs:
                done = self.jobs.popleft()
                if not done.reply.done():
                    done.reply.set_result(frame)
            if self.jobs and not self.jobs[0].started.done():
                self.jobs[0].started.set_result(self)  # the next page is being worked on now
            self._pool.feed(self)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._end(exc or EOFError("the parse process closed its output"))

    def process_exited(self) -> None:
        self._end(EOFError("the parse process exited"))
        if not self.exited.done():
            self.exited.set_result(None)

    def _end(self, error: BaseException) -> None:
        """The page being worked on fails; the ones queued behind it go to another child."""
        self.ended = True
        jobs, self.jobs = list(self.jobs), deque()
        if jobs and not jobs[0].reply.done():
            if not jobs[0].started.done():
                jobs[0].started.set_result(self)
            jobs[0].reply.set_exception(error)
        self._pool.requeue([job for job in jobs[1:] if not job.started.done()])
        if self.ready and not self.dead:
            self._pool.replace(self)  # it ended on its own: a crash

    async def stop(self) -> None:
        self.dead = True
        if self.transport is not None:
            if self.transport.get_returncode() is None:
                self.transport.kill()
            await self.exited
            self.transport.close()


class ParsePool:
    """``processes`` children running ``spider``'s callbacks. ``run`` queues one page; the
    first idle child takes it."""

    def __init__(self, spider: Spider, processes: int) -> None:
        self._spider = spider
        self._processes = processes
        self._queue: deque[_Job] = deque()
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
            await asyncio.gather(*(self._spawn() for _ in range(self._processes)))
        except BaseException:
            await self.close()
            raise
        self._dispatch()
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
        ``TimeoutError`` when the child took longer than ``time_limit`` (waiting in the queue
        does not count), or ``ParseProcessFailed`` when the child died. A child that timed
        out, or whose caller was cancelled, is replaced: it may still be busy with the page.
        With no child left at all (none could be restarted), callbacks run on the event loop."""
        try:
            message = _pack(callback, response)
        except (pickle.PicklingError, TypeError, AttributeError):  # meta that cannot travel
            message = None
        if message is None or not (self._children or self._respawning):
            async with asyncio.timeout(time_limit):
                return await run_callback(getattr(self._spider, callback), response)
        loop = asyncio.get_running_loop()
        job = _Job(message, loop.create_future(), loop.create_future())
        self._queue.append(job)
        self._dispatch()
        child = await job.started  # cancelled while queued: the job is skipped
        try:
            async with asyncio.timeout(time_limit):
                status, payload = pickle.loads(await job.reply)
        except (asyncio.CancelledError, TimeoutError):
            job.reply.cancel()  # nobody waits for it any more
            self.replace(child)
            raise
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self.replace(child)
            raise ParseProcessFailed(f"parse process for {response.url} failed: {exc or type(exc).__name__}") from None
        if status == "error":
            error, remote_trace = payload
            error.__cause__ = RemoteTraceback(remote_trace)
            raise error
        return _unpack_result(payload, self._spider)

    def feed(self, child: _Child) -> None:
        """``child`` can take more: send it the next queued pages at once."""
        while self._queue and child.has_room:
            job = self._queue.popleft()
            if not job.started.cancelled():
                child.start(job)

    def requeue(self, jobs: list[_Job]) -> None:
        """Pages sent to a child that died before starting them: first in line again."""
        self._queue.extendleft(reversed(jobs))
        self._dispatch()

    def _dispatch(self) -> None:
        """Queued pages to the children with room, the least loaded first."""
        while self._queue:
            candidates = [child for child in self._children if child.has_room]
            if not candidates:
                return
            job = self._queue.popleft()
            if not job.started.cancelled():
                min(candidates, key=lambda child: len(child.jobs)).start(job)

    async def _spawn(self) -> _Child:
        _, child = await asyncio.get_running_loop().subprocess_exec(
            lambda: _Child(self),
            sys.executable,
            "-m",
            "scraper.parse_pool",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            env=self._environment,
        )
        self._children.add(child)
        hello = pickle.dumps((self._spider_bytes, logging.getLogger().getEffectiveLevel()))
        job = _Job(hello, asyncio.get_running_loop().create_future(), asyncio.get_running_loop().create_future())
        child.start(job)
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT):
                status, payload = pickle.loads(await job.reply)
        except (OSError, EOFError, TimeoutError) as exc:
            await child.stop()
            raise ConfigError(f"parse_processes: a parse process did not start: {exc or type(exc).__name__}") from None
        if status == "error":
            await child.stop()
            raise ConfigError(f"parse_processes: a parse process could not load the spider: {payload[0]}")
        child.ready = True
        return child

    def replace(self, child: _Child) -> None:
        """Stop ``child`` and start another in the background (the caller's page is lost
        either way; the others need not wait for a process to start)."""
        if child.dead:
            return
        child.dead = True
        self._children.discard(child)
        if child.transport is not None and child.transport.get_returncode() is None:
            child.transport.kill()
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
            self._dispatch()


def _pack(callback: str, response: Response) -> bytes:
    request = tuple(getattr(response.request, name) for name in _REQUEST_FIELDS)
    page: _Page = (callback, response.url, response.status, list(response.headers.items()), response.body, request)
    return pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack_result(
    payload: tuple[list[tuple[tuple[Any, ...], str]], list[Any], list[Any]], spider: Spider
) -> CallbackResult:
    named, items, invalid = payload
    requests = [
        Request(**dict(zip(_REQUEST_FIELDS, fields, strict=True)), callback=callback_named(spider, name, fields[0]))
        for fields, name in named
    ]
    return CallbackResult(requests, items, invalid)


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


async def _handle(spider: Spider, page: _Page) -> tuple[list[tuple[tuple[Any, ...], str]], list[Any], list[Any]]:
    name, url, status, headers, body, fields = page
    callback = getattr(spider, name)
    request = Request(**dict(zip(_REQUEST_FIELDS, fields, strict=True)), callback=callback)
    response = Response(url=url, status=status, headers=_headers(headers), body=body, request=request)
    result = await run_callback(callback, response)
    named = [(tuple(getattr(r, field) for field in _REQUEST_FIELDS), callback_name(r)) for r in result.requests]
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
    with crawl_gc():  # as in the crawl's own process: parsing allocates a lot, briefly
        while (page := _read(source)) is not None:
            try:
                reply: tuple[str, Any] = ("ok", loop.run_until_complete(_handle(spider, page)))
            except Exception as exc:
                reply = ("error", (exc, "".join(traceback.format_exception(exc))))
            _write(sink, reply)
    loop.close()


if __name__ == "__main__":
    child_main()
