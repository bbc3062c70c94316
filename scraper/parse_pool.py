"""Spider callbacks in worker processes, so that a parse-heavy crawl uses every core
(``parse_processes: N``).

Why a pool of parse processes rather than several crawl processes sharing the frontier: the
event loop's own work (fetching, scheduling, storing) is cheap next to heavy parsing, and
keeping it in one process keeps every guarantee exact: per-host concurrency and delays are
counted in one place, every page still commits atomically through the one writer, and
``max_items``/``max_pages`` stay exact. Only what is CPU-bound and stateless per page moves.

The children start when the crawl starts. On Linux, while the process has no other thread
(as at the start of every CLI crawl), they are forks of it: ready in milliseconds, with
every module already loaded, where a fresh interpreter spends ~0.4 s of CPU importing
pydantic and the spider. Otherwise (another platform, another thread running, or a child
restarted mid-crawl, when sockets and the SQLite thread are open) a child is a fresh
``python -m scraper.parse_pool``. Either way it gets a pickled copy of the spider as it is
after ``opened()``, then works through pages one at a time over two pipes (the parent keeps
the next one waiting in its pipe): the response goes in, the callback's requests
(callbacks by name), items and invalid items come back. The parent talks to its children
through asyncio pipes, so nothing blocks the event loop. A child that dies or overruns
``callback_timeout`` is replaced; only its page fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import operator
import os
import pickle
import signal
import struct
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any, BinaryIO, Protocol, cast

import pydantic
from multidict import CIMultiDict, CIMultiDictProxy

from scraper import habits
from scraper.codec import RequestNotStorable, callback_name, callback_named
from scraper.deadline import Deadlines
from scraper.errors import ConfigError, ScraperError, describe
from scraper.http import Request, Response
from scraper.item import cannot_store, to_row
from scraper.runtime import fewer_collections, keep_freed_heap
from scraper.spider import SPIDER_LOGGERS, CallbackResult, Spider, run_callback

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


class ForeignError(Exception):
    """Stands in for an exception raised in a parse process that pickle cannot rebuild here (a
    class whose ``__init__`` takes arguments of its own: unpickling it raised a TypeError of
    its own, which became the page's error). It is of a class with the same name and says the
    same, so its error row reads as the error would have in one process."""

    def __reduce__(self) -> tuple[Callable[[str, str], ForeignError], tuple[str, str]]:
        return foreign_error, (type(self).__name__, str(self))


@functools.cache
def _foreign_class(name: str) -> type[ForeignError]:
    return type(name, (ForeignError,), {"__module__": __name__, "__qualname__": name})


def foreign_error(type_name: str, message: str) -> ForeignError:
    """An exception of a class named ``type_name`` (a ``ForeignError``) saying ``message``."""
    return _foreign_class(type_name)(message)


def _travelling(error: BaseException) -> BaseException:
    """``error`` if it comes back whole from pickle, else its stand-in (only ever on errors)."""
    try:
        pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return foreign_error(type(error).__name__, str(error))
    return error


_Page = tuple[str, str, int, list[tuple[str, str]], bytes, tuple[Any, ...]]
"""A response as it travels to a child: callback name, url, status, headers, body and the
request's fields but its (bound) callback. Plain tuples pickle several times faster than
dataclasses."""

_Result = tuple[list[tuple[tuple[Any, ...], str]], list[Any], list[Any], list[str], list[Exception]]
"""A callback's outputs as they travel back: the requests (fields, callback name), the valid
items, the invalid ones with their errors, the type names of any other outputs, and the
errors of requests that could not travel (their callback is no method of the spider)."""

_REQUEST_FIELDS = ("url", "method", "headers", "data", "json", "meta", "cb_kwargs", "priority", "dont_filter", "depth")
_request_fields = operator.attrgetter(*_REQUEST_FIELDS)  # a request's fields as a tuple, in one C call


# -- the parent's side ------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Job:
    """One page on its way through the pool: queued, then started on a child, then answered."""

    message: bytes
    started: asyncio.Future[_Child]
    reply: asyncio.Future[bytes]


class _Process(Protocol):
    """What a child needs of its process: the part of ``asyncio.SubprocessTransport`` that a
    forked process offers too."""

    def get_pid(self) -> int: ...
    def get_pipe_transport(self, fd: int) -> asyncio.BaseTransport | None: ...
    def get_returncode(self) -> int | None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


class _Child(asyncio.SubprocessProtocol):
    """One parse process: its pipes, and the pages sent to it (at most ``_DEPTH``: the one it
    works on and the next, already in its pipe, so that it never waits for this process's
    event loop between two pages). Frames are read in the pipe's callback and more work is
    sent right there."""

    def __init__(self, pool: ParsePool) -> None:
        self._pool = pool
        self._buffer = bytearray()
        self.transport: _Process | None = None
        self.jobs: deque[_Job] = deque()  # sent, in order; the first is the one being worked on
        self.ready = False  # it has loaded the spider; until then it gets no pages
        self.ended = False  # its output closed or it exited: it takes no more pages
        self.dead = False  # stopped on purpose (replaced, or the pool closed)
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int | None:
        return self.transport.get_pid() if self.transport is not None else None

    @property
    def has_room(self) -> bool:
        return self.ready and not self.ended and not self.dead and len(self.jobs) < _DEPTH

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(_Process, transport)

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
    """``processes`` children running ``spider``'s callbacks: started on entering, given the
    spider by ``start``; ``run`` queues one page and the first idle child takes it."""

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
        """Start the processes. Enter before the crawl opens its database, connections or
        threads, so that they can be forks of a process that holds none of them."""
        try:
            if _can_fork():
                pipe_ends: set[int] = set()  # this process's ends of the pipes to its forks
                for _ in range(self._processes):
                    await self._fork(pipe_ends)
            else:
                await asyncio.gather(*(self._exec() for _ in range(self._processes)))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Give every child the spider as it is now (after ``opened()``); wait until all have
        loaded it."""
        try:
            self._spider_bytes = pickle.dumps(self._spider)
        except Exception as exc:
            raise ConfigError(
                f"parse_processes: spider {self._spider.name!r} cannot be copied to parse processes "
                f"(its attributes must pickle): {exc}"
            ) from None
        await asyncio.gather(*(self._load_spider(child) for child in list(self._children)))
        self._dispatch()

    async def close(self) -> None:
        self._closed = True
        for task in self._respawning:
            task.cancel()
        await asyncio.gather(*self._respawning, return_exceptions=True)
        children, self._children = self._children, set()
        await asyncio.gather(*(child.stop() for child in children), return_exceptions=True)

    async def run(self, callback: str, response: Response, *, deadlines: Deadlines) -> CallbackResult:
        """What the spider's ``callback`` yields for ``response``, computed in a child.

        Raises what the callback raised (with the child's traceback as its cause),
        ``TimeoutError`` when the child took longer than ``deadlines`` allow (waiting in the
        queue does not count), or ``ParseProcessFailed`` when the child died. A child that timed
        out, or whose caller was cancelled, is replaced: it may still be busy with the page.
        With no child left at all (none could be restarted), callbacks run on the event loop."""
        try:
            message = _pack(callback, response)
        except (pickle.PicklingError, TypeError, AttributeError):  # meta that cannot travel
            message = None
        if message is None or not (self._children or self._respawning):
            return await deadlines.within(run_callback(getattr(self._spider, callback), response))
        loop = asyncio.get_running_loop()
        job = _Job(message, loop.create_future(), loop.create_future())
        self._queue.append(job)
        self._dispatch()
        try:
            child = await job.started  # cancelled while queued: the job is skipped
        except asyncio.CancelledError:
            job.reply.cancel()  # cancelled just as a child took it: nobody will read the reply
            raise
        try:
            status, payload = pickle.loads(await deadlines.within(job.reply))
        except (asyncio.CancelledError, TimeoutError):
            job.reply.cancel()  # nobody waits for it any more
            self.replace(child)
            raise
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self.replace(child)
            raise ParseProcessFailed(f"parse process for {response.url} failed: {exc or type(exc).__name__}") from None
        if status == "error":
            error, remote_trace, notes = payload
            error.__cause__ = RemoteTraceback(remote_trace)
            for note in notes:  # an exception with its own __reduce__ (JSONDecodeError's) leaves them behind
                if note not in getattr(error, "__notes__", ()):
                    error.add_note(note)
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

    async def _exec(self) -> _Child:
        """A child in a fresh interpreter: ``python -m scraper.parse_pool``."""
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
        return child

    async def _fork(self, pipe_ends: set[int]) -> _Child:
        """A child forked from this process. It closes this process's ends of every pipe
        to a child, its own included: else a child would keep its siblings' input open, and
        they would never see it end."""
        assert _FORK is not None
        loop = asyncio.get_running_loop()
        page_reader, page_writer = os.pipe()
        reply_reader, reply_writer = os.pipe()
        pipe_ends |= {page_writer, reply_reader}
        process = _FORK.Process(
            target=_forked_child,
            args=(page_reader, reply_writer, tuple(pipe_ends)),
            name="scraper-parse",
            daemon=True,
        )
        try:
            process.start()
        finally:
            os.close(page_reader)
            os.close(reply_writer)
        child = _Child(self)
        pages, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(page_writer, "wb", buffering=0))
        replies, _ = await loop.connect_read_pipe(lambda: _Replies(child), os.fdopen(reply_reader, "rb", buffering=0))
        child.transport = _Forked(process, pages, replies, child)
        self._children.add(child)
        return child

    async def _load_spider(self, child: _Child) -> None:
        levels = (logging.getLogger().getEffectiveLevel(), logging.getLogger(SPIDER_LOGGERS).level)
        hello = pickle.dumps((self._spider_bytes, levels))
        loop = asyncio.get_running_loop()
        job = _Job(hello, loop.create_future(), loop.create_future())
        child.start(job)
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT):
                status, payload = pickle.loads(await job.reply)
        except (OSError, EOFError, TimeoutError) as exc:
            await child.stop()
            raise ConfigError(f"parse_processes: a parse process did not start: {exc or type(exc).__name__}") from None
        if status == "error":
            await child.stop()
            hint = _where_to_define(type(self._spider)) if "Can't get attribute" in str(payload[0]) else ""
            raise ConfigError(f"parse_processes: a parse process could not load the spider: {payload[0]}{hint}")
        child.ready = True

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
        try:  # mid-crawl, with sockets and the SQLite thread open: never a fork
            child = await self._exec()
            await self._load_spider(child)
        except (ConfigError, OSError) as exc:  # the pool runs one process short; the rest go on
            logger.error("%s", exc)
            return
        if self._closed:
            await child.stop()
        else:
            self._dispatch()


class _Replies(asyncio.Protocol):
    """A forked child's replies, handed to it as a subprocess's stdout would be."""

    def __init__(self, child: _Child) -> None:
        self._child = child

    def data_received(self, data: bytes) -> None:
        self._child.pipe_data_received(1, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._child.pipe_connection_lost(1, exc)


class _Forked:
    """A forked child's process and pipes, behind the methods of a subprocess transport that
    ``_Child`` uses. Its exit is seen on the process's sentinel, without a child watcher."""

    def __init__(
        self, process: BaseProcess, pages: asyncio.WriteTransport, replies: asyncio.ReadTransport, child: _Child
    ) -> None:
        self._process = process
        self._pages = pages
        self._replies = replies
        self._child = child
        self._returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(process.sentinel, self._exited)

    def get_pid(self) -> int:
        assert self._process.pid is not None  # started
        return self._process.pid

    def get_pipe_transport(self, fd: int) -> asyncio.BaseTransport | None:
        return self._pages if fd == 0 else self._replies if fd == 1 else None

    def get_returncode(self) -> int | None:
        return self._returncode

    def kill(self) -> None:
        if self._returncode is None:
            self._process.kill()

    def close(self) -> None:
        self._pages.close()
        self._replies.close()
        if self._returncode is not None:
            self._process.close()

    def _exited(self) -> None:
        self._loop.remove_reader(self._process.sentinel)
        self._process.join()  # it has exited: this only collects its status
        self._returncode = self._process.exitcode
        self._child.process_exited()


_FORK = multiprocessing.get_context("fork") if sys.platform == "linux" else None


def _where_to_define(spider_class: type) -> str:
    """A fresh interpreter imports the spider's class by its module: one defined in the script
    that runs the crawl (``__main__``, which there is this module) is not found ("Can't get
    attribute 'S' on <module 'scraper.parse_pool'>", naming neither the class's place nor the remedy)."""
    if spider_class.__module__ != "__main__":
        return ""
    return (
        f" (a fresh interpreter finds {spider_class.__name__} by its module, '__main__': define the spider in "
        "a module it can import, not in the script that runs the crawl)"
    )


def _can_fork() -> bool:
    """Whether children can be forks of this process: on Linux (elsewhere fork is missing or
    unsafe), and only while it runs no other thread, a library's native ones included (a
    fork copies the locks other threads hold, and no thread to release them)."""
    return _FORK is not None and len(os.listdir("/proc/self/task")) == 1


def _pack(callback: str, response: Response) -> bytes:
    request = _request_fields(response.request)
    page: _Page = (callback, response.url, response.status, list(response.headers.items()), response.body, request)
    return pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL)


def _request(fields: tuple[Any, ...], callback: Callable[..., Any] | None) -> Request:
    """The request ``_request_fields`` read, with its callback found again on this side."""
    return Request(**dict(zip(_REQUEST_FIELDS, fields, strict=True)), callback=callback)


def _unpack_result(payload: _Result, spider: Spider) -> CallbackResult:
    named, items, invalid, strays, unsendable = payload
    requests = [_request(fields, callback_named(spider, name, fields[0])) for fields, name in named]
    return CallbackResult(requests, items, invalid, strays, unsendable)


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
    except Exception as exc:  # an unpicklable item or exception: send the rest, or say so
        message = _sendable(reply, exc)
    stream.write(_HEADER.pack(len(message)) + message)
    stream.flush()


def _sendable(reply: tuple[str, Any], error: Exception) -> bytes:
    """A reply that does not pickle whole, as the page would fare on the event loop: an item
    that does not pickle (a selectolax node in a dict) is left out with a ``validate`` error,
    and an invalid item's error without the values it quotes. Failing that, one error for
    the page."""
    status, payload = reply
    if status == "ok" and payload is not None:
        named, items, invalid, strays, unsendable = payload
        kept: list[Any] = []
        refused: list[tuple[None, Exception]] = []
        for item in items:
            try:
                pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                kept.append(item)
            except Exception as exc:
                refused.append((None, _unsendable(item, exc)))
        invalid = [(None, _quoted(validation)) for _, validation in invalid]
        try:
            result = (named, kept, [*invalid, *refused], strays, unsendable)
            return pickle.dumps(("ok", result), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            error = exc
    problem = TypeError(f"callback output cannot be sent back from the parse process: {error}")
    return pickle.dumps(("error", (problem, "", [])))


def _unsendable(item: Any, error: Exception) -> Exception:
    """Why ``item`` stays in this process: what storage would have said of it, if anything."""
    try:
        to_row(item)
    except Exception as refusal:  # as the worker words it when a row cannot be made
        return ValueError(f"{cannot_store(item)}{refusal}")
    return TypeError(f"{type(item).__name__} cannot be sent back from the parse process: {error}")


def _quoted(error: pydantic.ValidationError) -> pydantic.ValidationError:
    """``error`` with each value it quotes as its ``repr()`` (a value may not pickle)."""
    details = [{**detail, "input": repr(detail.get("input"))} for detail in error.errors()]
    return pydantic.ValidationError.from_exception_data(error.title, details)  # type: ignore[arg-type]


async def _handle(spider: Spider, page: _Page) -> _Result:
    name, url, status, headers, body, fields = page
    callback = getattr(spider, name)
    request = _request(fields, callback)
    headers_proxy = CIMultiDictProxy(CIMultiDict(headers))  # what Response keeps as it is, without a copy
    response = Response(url=url, status=status, headers=headers_proxy, body=body, request=request)
    result = await run_callback(callback, response)
    named: list[tuple[tuple[Any, ...], str]] = []
    unsendable: list[Exception] = []
    for request in result.requests:  # by its callback's name: one that has none fails alone, as on the loop
        try:
            named.append((_request_fields(request), callback_name(request)))
        except RequestNotStorable as exc:
            unsendable.append(exc)
    return named, result.items, result.invalid, result.strays, unsendable


def child_main() -> None:
    """A child in a fresh interpreter (``python -m scraper.parse_pool``): pages on stdin,
    replies on stdout."""
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the pipe is the protocol's: print() goes to stderr
    _serve(sys.stdin.buffer, sink, configure_logging=True)


def _forked_child(page_reader: int, reply_writer: int, pipe_ends: Iterable[int]) -> None:
    """A child forked from the crawl's process (the target of ``_FORK.Process``). Logging is
    set up as in the parent already."""
    for fd in pipe_ends:
        os.close(fd)
    signal.set_wakeup_fd(-1)  # it was the parent's event loop's; a signal here must not reach it
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # print() goes to stderr, as in a fresh child
    _serve(os.fdopen(page_reader, "rb"), os.fdopen(reply_writer, "wb"), configure_logging=False)


def _serve(source: BinaryIO, sink: BinaryIO, *, configure_logging: bool) -> None:
    """The spider first, then one page per message until the input ends. Ctrl-C, and a
    SIGTERM or SIGHUP sent to the process group, are the crawl's to handle: it drains, then ends this
    input (and if the crawl's process is killed, the input ends with it)."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, signal.SIG_IGN)
    try:
        _serve_spider(source, sink, configure_logging=configure_logging)
    except (BrokenPipeError, ConnectionResetError, EOFError, pickle.UnpicklingError):
        # the crawl's process died (kill -9, a closed terminal) mid-message: no one is left to
        # answer, and each child had printed a traceback of it. No flush on the way out either.
        os._exit(0)


def _serve_spider(source: BinaryIO, sink: BinaryIO, *, configure_logging: bool) -> None:
    keep_freed_heap()  # a fork has it from the crawl already; a fresh interpreter does not
    hello = _read(source)
    if hello is None:
        return
    spider_bytes, (level, spider_level) = hello
    if configure_logging:
        logging.basicConfig(level=level, format="%(name)s: %(message)s")
        logging.getLogger(SPIDER_LOGGERS).setLevel(spider_level)
    try:
        spider = pickle.loads(spider_bytes)
    except Exception as exc:
        _write(sink, ("error", (describe(exc), "", [])))
        return
    _write(sink, ("ok", None))
    with fewer_collections(), asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(_serve_pages(spider, source, sink))


async def _serve_pages(spider: Spider, source: BinaryIO, sink: BinaryIO) -> None:
    """Page after page, in one coroutine for the child's whole life (a loop run per page
    costs more than a light callback). Waiting for the next page blocks this loop on
    purpose: it has nothing else to do meanwhile."""
    while (page := _read(source)) is not None:
        try:
            reply: tuple[str, Any] = ("ok", await _handle(spider, page))
        except BaseException as exc:
            # whatever a callback raises fails its page, as on the event loop: its own
            # sys.exit() or CancelledError had ended this process (ParseProcessFailed: "the
            # parse process exited"). Nothing cancels this loop's one task.
            habits.annotate(exc)  # here, where the error still knows its object: that does not travel
            trace, notes = "".join(traceback.format_exception(exc)), getattr(exc, "__notes__", [])
            reply = ("error", (_travelling(exc), trace, notes))
        _write(sink, reply)


if __name__ == "__main__":
    child_main()
