"""``Spider``, the class users subclass, and the runner that drives one of its callbacks.

A callback's output is collected in full before anything is applied (a page is atomic): a
callback that raises halfway enqueues and stores nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import reprlib
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import pydantic

from scraper.errors import ConfigError
from scraper.http import Request, Response
from scraper.item import Item, deferred_validation, invalid_part

_SPIDER_NAME = re.compile(r"\w[\w.-]*")

Output = Request | Item | dict[str, Any]
"""What a callback may yield."""

SPIDER_LOGGERS = "spider"
"""The parent of every spider's ``self.logger``: what the user's own spider says, which the
command line shows at INFO by default (the framework's own loggers: WARNING)."""

NESTED_OUTPUTS = frozenset({list, tuple, types.GeneratorType})
"""Yielded, these are read as the outputs they hold: ``yield response.follow_all(...)`` is how
an async generator, which cannot ``yield from``, hands on a list (it was a stray "list").
Exact types: a named tuple or another subclass is a value of its own, not a container. A
yielded async generator (``yield self.parse_more(response)``) is read too, after the rest."""

CallbackReturn = AsyncIterator[Output] | Awaitable[Iterable[Output] | Output | None] | Iterable[Output] | Output | None
"""What a callback may be written to return: an async generator, a list (returned, or from an
``async def``), a plain generator, one request or item, or nothing."""

Callback = Callable[..., CallbackReturn]
"""``async def parse(self, response, **cb_kwargs)``: an async generator, or a (async) function
returning an iterable of requests and items."""

StartRequests = AsyncIterator[Request] | Iterable[Request] | Awaitable[Iterable[Request]]
"""What ``start_requests()`` may be written to return: ours (an async generator), or Scrapy's
(a plain generator, a list), or a list from an ``async def``."""

HookReturn = Awaitable[None] | None
"""``opened()`` and ``closed(reason)`` are ``async def`` or, as Scrapy's, a plain ``def``."""


# what the framework reads from a spider: an argument of the same name would replace it with
# a string (a crawl recorded under another name, settings silently ignored, a URL list that
# is one string), so each is refused with what to do instead
_OWN_ATTRIBUTES = {
    "name": "the name picks the spider and names its crawls; it cannot be changed",
    "settings": "give settings with -s KEY=VALUE",
    "start_urls": "an argument is one string; read it in start_requests() or __init__()",
    "allowed_domains": "an argument is one string; set the list in __init__() from it",
    "logger": "the spider's logger is the framework's",
}


_SCRAPY_ATTRIBUTES = {
    "download_delay": "per_host.delay",
    "user_agent": "user_agent",
    "download_timeout": "timeout",
    "download_maxsize": "max_response_bytes",
    "handle_httpstatus_list": None,
    "handle_httpstatus_all": None,
}
"""Spider attributes Scrapy reads as settings (and the setting here, if one does the job):
refused when the class is defined, or given with ``-a``."""
_PER_REQUEST = 'a request takes meta={"allow_statuses": [...]}'


class Spider:
    """Subclass with a unique ``name``; yield ``Request``s and ``Item``s from callbacks.

    ``settings`` override config.yaml for this spider. Arguments given with ``-a key=value``
    become attributes before ``opened()`` runs.
    """

    name: ClassVar[str] = ""
    start_urls: Sequence[str] = ()  # on the class, or set in __init__() (not class variables: typed so)
    allowed_domains: Sequence[str] = ()  # empty: any host; else these and their subdomains
    settings: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name", "")
        if name and not (isinstance(name, str) and _SPIDER_NAME.fullmatch(name)):
            # the name is typed on the command line and names the database file (data/NAME.db):
            # 'shop/books' made a folder, '../x' a file outside data/
            raise TypeError(f"{cls.__name__}.name {name!r}: use letters, digits, '_', '-' and '.' (not first)")
        if "custom_settings" in cls.__dict__:  # Scrapy's name: never read here, so it was silently ignored
            raise TypeError(f"{cls.__name__}.custom_settings: a spider's own settings are `settings = {{...}}` here")
        for attribute in _SCRAPY_ATTRIBUTES.keys() & cls.__dict__.keys():  # Scrapy reads these; here nothing would
            key = _SCRAPY_ATTRIBUTES[attribute]
            advice = f"it is the setting {key} (settings = {{...}})" if key else _PER_REQUEST
            raise TypeError(f"{cls.__name__}.{attribute} is Scrapy's, not read here: {advice}")
        for hook in ("parse", "start_requests", "opened", "closed"):  # parse = 5 failed every page, one row each
            value = cls.__dict__.get(hook)
            if value is not None and not callable(value) and not hasattr(value, "__get__"):  # a classmethod is fine
                raise TypeError(
                    f"{cls.__name__}.{hook} = {reprlib.repr(value)} ({type(value).__name__}): it must be a method "
                    f"(async def {hook}(...))"
                )
        for hook, arguments in (("opened", ()), ("closed", ("reason",))):  # the framework calls them so
            _check_hook_takes(cls, hook, arguments)
        if inspect.isasyncgenfunction(cls.__dict__.get("start")) and cls.start_requests is Spider.start_requests:
            # Scrapy 2.13's way to yield the first requests: ignored here, the crawl ran start_urls
            raise TypeError(f"{cls.__name__}.start(): the first requests come from start_requests() here")

    def __init__(self, **arguments: str) -> None:
        for key, value in arguments.items():
            if key in _OWN_ATTRIBUTES:
                raise ConfigError(f"spider argument -a {key}=...: {_OWN_ATTRIBUTES[key]}")
            if key in _SCRAPY_ATTRIBUTES:
                setting = _SCRAPY_ATTRIBUTES[key]
                advice = f"give -s {setting}=..." if setting else _PER_REQUEST
                raise ConfigError(f"spider argument -a {key}=...: Scrapy's, not read here: {advice}")
            if callable(getattr(type(self), key, None)):
                raise ConfigError(f"spider argument -a {key}=...: the spider's method {key}() has that name")
            if not key.isidentifier():
                raise ConfigError(f"spider argument -a {key}=...: not a usable attribute name")
            setattr(self, key, value)
        self.logger = logging.getLogger(f"{SPIDER_LOGGERS}.{self.name}")

    # The hooks are typed as what each may be written to return (``StartRequests``,
    # ``CallbackReturn``, ``HookReturn``), so that every form the crawl takes type-checks in an
    # override: an async generator, a plain generator, a list, a plain def.

    def start_requests(self) -> StartRequests:
        """The first requests of a crawl; by default one per ``start_urls`` entry (an async
        generator, as an override's ``async for ... in super().start_requests()`` expects)."""
        return self._start_urls_requests()

    async def _start_urls_requests(self) -> AsyncIterator[Request]:
        for url in self.start_urls:
            yield Request(url)

    def parse(self, response: Response) -> CallbackReturn:
        """The default callback. Override it."""
        raise NotImplementedError(f"{type(self).__name__}.parse is not defined")

    def opened(self) -> HookReturn:
        """Called once before the first request (``async def`` or a plain ``def``)."""
        return None

    def closed(self, reason: str) -> HookReturn:
        """Called once after the last response, with the finish reason (``async def`` or a plain ``def``)."""
        return None


def _check_hook_takes(cls: type, hook: str, arguments: tuple[str, ...]) -> None:
    """Refuse a hook that cannot take what the crawl gives it: ``def closed(self)`` failed at
    the end of the crawl, a traceback in the log, the ``reason`` it is always called with."""
    function = cls.__dict__.get(hook)
    if not inspect.isfunction(function):
        return
    try:
        inspect.signature(function).bind(None, *arguments)
    except TypeError:
        wanted = ", ".join(("self", *arguments))
        raise TypeError(f"{cls.__name__}.{hook}() is called as {hook}({wanted}): def {hook}({wanted})") from None


async def run_hook(hook: Callable[..., Any], *arguments: Any) -> None:
    """Call ``opened()`` or ``closed(reason)``: an ``async def``, or a plain ``def`` as Scrapy's
    ``closed(reason)`` is (awaited only when it returns something awaitable)."""
    result = hook(*arguments)
    if inspect.isawaitable(result):
        await result


def callback_of(spider: Spider, request: Request) -> Callable[..., Any]:
    return request.callback if request.callback is not None else spider.parse


@dataclasses.dataclass(slots=True)
class CallbackResult:
    """What one callback produced: requests and valid items, and the items that failed
    validation (with their errors), kept apart so that one bad item spoils nothing else."""

    requests: list[Request]
    items: list[Item | dict[str, Any]]
    invalid: list[tuple[Item | dict[str, Any], pydantic.ValidationError]]
    strays: list[str] = dataclasses.field(default_factory=list)  # type names of other outputs
    # requests a parse process could not send back (a callback that is no method of the
    # spider), each as the error its admission would have been
    unsendable: list[Exception] = dataclasses.field(default_factory=list)


async def run_callback(callback: Callable[..., Any], response: Response) -> CallbackResult:
    """Everything ``callback`` produces for ``response``, whatever style it is written in.

    Raises what the callback raises. An output that is neither a request nor an item is
    named in ``strays`` and the others are kept; ``None`` is skipped (as Scrapy does).
    """
    kwargs = response.request.cb_kwargs
    with deferred_validation() as invalid:
        produced = callback(response, **kwargs) if kwargs else callback(response)
        if isinstance(produced, types.AsyncGeneratorType):  # most callbacks (inspect.isasyncgen, without the call)
            outputs = [output async for output in produced]
        else:
            outputs = list(await _returned(produced))
        result = CallbackResult([], [], [])
        delegated: list[AsyncIterator[Any]] = []
        _sort_outputs(outputs, result, invalid, delegated)  # inside: a yielded generator makes its items now
        while delegated:  # yielded async generators: 'yield from', as an async def can write it
            _sort_outputs([output async for output in delegated.pop(0)], result, invalid, delegated)
    return result


def _sort_outputs(
    outputs: Iterable[Any],
    result: CallbackResult,
    invalid: Mapping[int, pydantic.ValidationError],
    delegated: list[AsyncIterator[Any]],
) -> None:
    """Requests, items (valid or not) and strays into ``result``; nested outputs are read in
    place, and yielded async generators are left in ``delegated``, to be read (after the
    rest) by the caller, which can await."""
    for output in outputs:
        if isinstance(output, Request):
            result.requests.append(output)
        elif isinstance(output, (Item, dict)):
            # a page with an invalid item: any other item may hold it (pydantic took it as it was)
            error = (invalid.get(id(output)) or invalid_part(output, invalid)) if invalid else None
            if error is None:
                result.items.append(output)
            else:
                result.invalid.append((output, error))
        elif type(output) in NESTED_OUTPUTS:
            _sort_outputs(output, result, invalid, delegated)
        elif type(output) is types.AsyncGeneratorType:
            delegated.append(output)
        elif output is not None:
            result.strays.append(_stray_name(output))


def _stray_name(output: object) -> str:
    """What a stray output is, as its error names it: its type, or the slip that made it."""
    if isinstance(output, type):
        return f"the class {output.__name__} (not an instance of it)"
    if inspect.iscoroutine(output):
        output.close()  # never to run: closed now, Python does not warn that it was never awaited
        return "a coroutine (an async call that was not awaited)"
    if isinstance(output, str):
        return "str (a URL? yield response.follow(url))"
    return type(output).__name__


async def start_requests_of(spider: Spider) -> AsyncIterator[Any]:
    """What ``spider.start_requests()`` produces, written as ours (an async generator) or as
    Scrapy's (a plain generator, or a list): the plain ones gave "'async for' requires an
    object with __aiter__", and the crawl ended with no page. Outputs are the caller's to check."""
    produced: Any = spider.start_requests()
    # a plain generator is iterated, not listed: it may read a long file of URLs
    outputs = produced if hasattr(produced, "__aiter__") else _each(await _returned(produced))
    async for output in outputs:
        if type(output) in _CONTAINERS:
            async for each in _unnested(output):
                yield each
        else:  # a request, most often: no generator made for it (a seed list can be long)
            yield output


async def _each(outputs: Iterable[Any]) -> AsyncIterator[Any]:
    for output in outputs:
        yield output


_CONTAINERS = NESTED_OUTPUTS | {types.AsyncGeneratorType}


async def _unnested(output: Any) -> AsyncIterator[Any]:
    """``output``, or what it holds when it is a list, tuple, generator or async generator
    (as in callbacks), in order."""
    if type(output) not in _CONTAINERS:
        yield output
        return
    async for nested in output if type(output) is types.AsyncGeneratorType else _each(output):
        async for each in _unnested(nested):
            yield each


def stray_start(output: object) -> TypeError:
    """The error recorded for a start output that is not a ``Request``."""
    hint = ": yield Request(url) for a URL" if isinstance(output, str) else ""
    return TypeError(f"start_requests() yielded {type(output).__name__}, not a Request{hint}")


def stray_output(type_name: str) -> TypeError:
    """The error recorded for a callback's output of type ``type_name``."""
    return TypeError(f"callback yielded {type_name}; expected Request, Item or dict")


async def _returned(result: Any) -> Iterable[Any]:
    """What a callback or ``start_requests()`` that is not an async generator returned, as
    outputs to iterate: awaited if awaitable, nothing for None, a lone request or item (or a
    value that holds no outputs: a string, a number, a class) as one."""
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return ()
    if isinstance(result, (Request, Item, dict, str, bytes)) or not isinstance(result, Iterable):
        return (result,)  # one output (a URL, a number, a class: one stray, not one a character)
    return result
