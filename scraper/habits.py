"""Hints for errors that a Scrapy habit causes here, added to the error as a note.

A spider ported from Scrapy reaches for parsel's API (``response.xpath()``, ``.get()`` on
what ``css()`` returned, ``node.attrib``) or Scrapy's (``self.log()``, ``self.crawler``),
or treats an item as a dict, and Python's own
message ("'list' object has no attribute 'get'") does not say what to write instead. The
note does, in the error row's message and in the traceback. Only failures pay for this: it
runs where an error is recorded, never on a page that works.

Notes survive pickling, so a parse process annotates its callback's error before sending it
back: the attribute error's ``obj`` does not travel. (A pydantic error's notes do not travel
either; the node it quotes is recognised by its ``repr()``.)"""

from __future__ import annotations

import builtins
import dataclasses
import re

import pydantic
from multidict import CIMultiDictProxy
from selectolax.lexbor import LexborNode

from scraper.http import Request, Response
from scraper.item import NODE_HINT, Item
from scraper.spider import Spider

_PARSEL_METHODS = frozenset({"get", "getall", "extract", "extract_first", "re", "re_first", "attrib", "xpath"})
_TAKE = "take response.css_first(selector).text(), or node.attributes['href'] of each node in response.css(selector)"
_NOT_SUBSCRIPTABLE = re.compile(r"'(\w+)' object (?:is not subscriptable|does not support item assignment)")
_DICT_METHODS = frozenset({"get", "keys", "items", "values", "setdefault", "update", "pop"})
_BUILTIN_TYPES = frozenset({"NoneType", *(name for name, value in vars(builtins).items() if isinstance(value, type))})
_NO_CRAWLER = (
    "there is no crawler object here: self.settings holds only the spider's own overrides (config.yaml and -s "
    "are not in it), a value the spider reads is best an argument (-a key=value becomes self.key), and the "
    "crawl's counts are kept by the framework (scraper_crawls.stats)"
)
_SETTINGS_GETTERS = frozenset({"getint", "getfloat", "getbool", "getlist", "getdict", "getdictorlist", "getwithbase"})
_REQUEST_KEYWORD = re.compile(r"^Request\.__init__\(\) got an unexpected keyword argument '(\w+)'$")
_SCRAPY_REQUEST_KEYWORDS = {
    "body": "the body is data= (bytes, text, or a dict sent form-encoded) or json=",
    "formdata": 'a form is Request(url, method="POST", data={...})',
    "errback": "there is no errback: a request that fails is an error row (stage fetch); "
    'a status the callback should see goes in meta={"allow_statuses": [...]}',
    "cookies": "cookies come from the crawl's jar (the cookies setting), or send a Cookie header",
    "encoding": "a request's URL and body are sent as given",
    "flags": "requests carry no flags here; meta travels with the request",
}
_PREFIX = "hint: "


def hint_for(error: BaseException) -> str | None:
    """What to write instead, when ``error`` looks like a Scrapy habit; else None."""
    if isinstance(error, dataclasses.FrozenInstanceError) and isinstance(_raised_by(error), Request):
        return "a Request is immutable: request.replace(url=...) makes the changed copy"
    if isinstance(error, AttributeError):
        return _attribute_hint(error.obj, error.name)
    if isinstance(error, pydantic.ValidationError) and any(map(_is_node, (d.get("input") for d in error.errors()))):
        return f"a field was given a selectolax node, not its text: {NODE_HINT}"
    if isinstance(error, SyntaxError) and error.msg == "'yield from' inside async function":
        return (
            "in an async def, yield what you would yield from: yield response.follow_all(...) or "
            "yield self.parse_detail(response) (a yielded list, generator or async generator is read as what it holds)"
        )
    if isinstance(error, SystemExit):
        return (
            "sys.exit() fails this page only; to end the crawl early (Scrapy's CloseSpider), "
            "set close.max_items, close.max_pages or close.max_duration"
        )
    if isinstance(error, KeyError) and error.args == ("depth",):
        return "if this was meta['depth'], Scrapy's: a request's depth is response.request.depth here"
    keyword = _REQUEST_KEYWORD.match(str(error)) if isinstance(error, TypeError) else None
    if keyword and keyword.group(1) in _SCRAPY_REQUEST_KEYWORDS:
        return f"{keyword.group(1)}= is Scrapy's: {_SCRAPY_REQUEST_KEYWORDS[keyword.group(1)]}"
    match = _NOT_SUBSCRIPTABLE.search(str(error)) if isinstance(error, TypeError) else None
    if match and match.group(1) not in _BUILTIN_TYPES:  # a class of the project's: most likely an Item
        return "an Item is a pydantic model, not a dict: read and set its fields as attributes (item.price)"
    return None


def _raised_by(error: BaseException) -> object:
    """The ``self`` of the innermost frame of ``error``'s traceback: for a frozen dataclass's
    refusal, the instance whose field was set."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace.tb_frame.f_locals.get("self") if trace is not None else None


def _is_node(value: object) -> bool:
    """A selectolax node, or its ``repr()`` (as a parse process sends an invalid item's value)."""
    return isinstance(value, LexborNode) or (isinstance(value, str) and value.startswith("<LexborNode "))


def _attribute_hint(owner: object, name: str | None) -> str | None:
    if isinstance(owner, Response):
        if name in ("xpath", "selector"):
            return f"XPath is not available here (selectolax's Lexbor reads CSS selectors): {_TAKE}"
        return None
    if isinstance(owner, Request) and name == "copy":
        return "a Request is immutable: request.replace(...) makes a changed copy"
    if isinstance(owner, Spider):
        if name == "log":
            return "a spider logs with self.logger.info(...) (the standard library's logging)"
        if name == "crawler":
            return _NO_CRAWLER
        return None
    if isinstance(owner, (list, LexborNode)) and name in _PARSEL_METHODS:
        what = "css() returns a list of selectolax nodes" if isinstance(owner, list) else "a selectolax node"
        if name == "attrib":
            return f"{what}, not parsel's selectors: a node's attributes are node.attributes"
        return f"{what}, not parsel's selectors: {_TAKE}"
    if isinstance(owner, Item) and name in _DICT_METHODS:
        return (
            "an Item is a pydantic model, not a dict: read its fields as attributes (item.price, or "
            "getattr(item, 'price', None)); item.model_dump() gives a dict"
        )
    if isinstance(owner, dict) and name in _SETTINGS_GETTERS:  # self.settings.getint(...) as in Scrapy
        return f"a dict has no {name}(): {_NO_CRAWLER}"
    if isinstance(owner, str) and name == "decode":
        return "headers, text and selected text are str here, not bytes as in Scrapy: no .decode() needed"
    if isinstance(owner, CIMultiDictProxy) and name == "getlist":
        return "headers are a multidict here: headers.getall(name) gives every value (as str)"
    if owner is None and name in ("text", "attributes", "css", "css_first", "html"):
        return "css_first() returns None when nothing matches: check for None first"
    return None


def annotate(error: BaseException) -> None:
    """Add the hint for ``error`` as a note (once), if there is one."""
    found = hint_for(error)
    if found is None:
        return
    note = _PREFIX + found
    if note not in getattr(error, "__notes__", ()):
        error.add_note(note)
