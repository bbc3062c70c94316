"""The crawl's settings: one frozen, typed model, loaded in layers.

Precedence, lowest first: built-in defaults → config.yaml → the spider's ``settings`` →
``-s KEY=VALUE`` (dotted keys for nested values). Any mistake fails here, before a request.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import Field, model_validator
from yarl import URL

from scraper import __version__
from scraper.errors import SettingsError
from scraper.loading import colon_form

_BREAKS_A_HEADER = re.compile(r"[\r\n\0]")


def _not_a_bool(value: Any) -> Any:
    """pydantic takes true for 1 (``close.max_items=true`` stored one item)."""
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


_Number = pydantic.BeforeValidator(_not_a_bool)
NonNegativeInt = Annotated[int, _Number, Field(ge=0)]
PositiveInt = Annotated[int, _Number, Field(gt=0)]
NonNegativeFloat = Annotated[float, _Number, Field(ge=0)]
PositiveFloat = Annotated[float, _Number, Field(gt=0)]


class _Strict(pydantic.BaseModel):
    # no inf or nan: "timeout: .inf" was taken (the policy line said "timeout infs")
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HostPolicy(_Strict):
    """How hard one host may be hit. The adaptive controller moves the live rate between
    these bounds: slower on 429/503/timeouts, back towards them on success."""

    concurrency: PositiveInt = 8
    delay: NonNegativeFloat = 0.0
    max_delay: NonNegativeFloat = 30.0  # the adaptive controller never waits longer
    adaptive: bool = True
    max_pages: NonNegativeInt = 0  # page budget per host; 0 = none


class HostOverride(_Strict):
    """A partial ``HostPolicy`` for hosts matching a glob; unset fields keep ``per_host``."""

    concurrency: PositiveInt | None = None
    delay: NonNegativeFloat | None = None
    max_delay: NonNegativeFloat | None = None
    adaptive: bool | None = None
    max_pages: NonNegativeInt | None = None


class RetryPolicy(_Strict):
    """Retries park the request with a not-before time; no worker waits for them."""

    times: NonNegativeInt = 3
    backoff: NonNegativeFloat = 0.5
    max_backoff: NonNegativeFloat = 60.0
    statuses: frozenset[Annotated[int, Field(ge=100, le=599)]] = frozenset({408, 429, 500, 502, 503, 504, 522, 524})
    max_retry_after: NonNegativeFloat = 600.0  # longer Retry-After values are capped to this

    @model_validator(mode="after")
    def _backoff_within_its_cap(self) -> RetryPolicy:
        # accepted, 5 s capped at 1 s read as "back-off 5s..1s" and waited 1 s
        if self.backoff > self.max_backoff:
            raise ValueError(f"backoff {self.backoff:g} is above max_backoff {self.max_backoff:g}: raise max_backoff")
        return self


class BreakerPolicy(_Strict):
    """The circuit breaker: pause a host after ``failures`` consecutive failures."""

    failures: PositiveInt = 5
    pause: NonNegativeFloat = 30.0  # doubles on each re-trip, up to 16 times this
    max_trips: NonNegativeInt = 5  # trips in a row, no success between, that give the host up; 0: never


class RobotsPolicy(_Strict):
    max_bytes: PositiveInt = 512 * 1024  # larger robots.txt bodies are cut here (RFC 9309: >= 500 KiB)
    unavailable_retry: NonNegativeFloat = 60.0  # 5xx/unreachable: disallow all this long, then retry
    max_crawl_delay: NonNegativeFloat = 60.0  # a larger Crawl-delay is capped


class RedirectPolicy(_Strict):
    max_hops: NonNegativeInt = 10
    # dropped when scheme, host or port change (with Authorization, Cookie, Proxy-Authorization)
    secret_headers: frozenset[str] = frozenset({"X-Api-Key", "X-Auth-Token"})


class LinkPolicy(_Strict):
    """Which discovered URLs are worth admitting: traps end as filtered, not as endless crawls."""

    max_url_length: PositiveInt = 2083
    max_per_page: NonNegativeInt = 1000  # more requests from one page are dropped; 0 = no cap
    max_repeated_segments: PositiveInt = 3  # /a/b/a/b/a/b/a: a segment seen more often is a trap
    max_path_segments: PositiveInt = 32
    date_window_years: NonNegativeInt = 10  # URLs naming a year further from today are traps; 0 = off
    session_parameters: frozenset[str] = frozenset(
        {"jsessionid", "phpsessid", "sid", "sessionid", "session_id", "aspsessionid", "cfid", "cftoken"}
    )


class CloseLimits(_Strict):
    """Stop the crawl when a count is reached; 0 means no limit."""

    max_items: NonNegativeInt = 0  # exact: items past it are not stored
    max_pages: NonNegativeInt = 0  # exact: no more fetches are handed out
    max_duration: NonNegativeFloat = 0.0
    max_errors: NonNegativeInt = 0
    stall_timeout: NonNegativeFloat = 300.0  # no request finished this long while some run: stop
    drain_timeout: NonNegativeFloat = 30.0  # after a stop, requests in flight get this long to finish


class FrontierPolicy(_Strict):
    """Where pending requests live. ``sqlite`` keeps them (and the seen-set) in the crawl's
    database, so memory stays bounded and an interrupted crawl can resume; ``memory`` is a
    little faster and forgets everything when the process ends."""

    backend: Literal["sqlite", "memory"] = "sqlite"
    buffer: PositiveInt = 5000  # requests held in memory; the rest wait in the database
    seen_cache: PositiveInt = 100_000  # fingerprints remembered in memory before asking the database


class Settings(_Strict):
    spiders: list[str] = ["spiders"]
    database: str = "data/{spider}.db"
    # workers, each a coroutine: past the cap a typo, not a crawl (20,000,000 of them took 8 GB
    # in 24 s); the latency benchmark runs 5,000
    concurrency: Annotated[int, Field(gt=0, le=50_000)] = 32
    per_host: HostPolicy = HostPolicy()
    hosts: dict[str, HostOverride] = {}
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    timeout: PositiveFloat = 30.0
    callback_timeout: PositiveFloat = 60.0
    max_response_bytes: PositiveInt = 16 * 1024 * 1024
    content_types: list[str] = [
        "text/*",
        "application/xhtml+xml",
        "application/xml",
        "application/json",
        "application/*+xml",
        "application/*+json",
    ]
    robots_txt: bool = True
    robots: RobotsPolicy = RobotsPolicy()
    redirect: RedirectPolicy = RedirectPolicy()
    links: LinkPolicy = LinkPolicy()
    frontier: FrontierPolicy = FrontierPolicy()
    max_depth: NonNegativeInt = 0
    close: CloseLimits = CloseLimits()
    user_agent: str = f"scraper/{__version__}"
    default_headers: dict[str, str] = {
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "en",
    }
    cookies: bool = True
    proxy: str | None = None
    pipelines: list[str] = []
    middlewares: list[str] = []
    write_batch: PositiveInt = Field(default=500, description="rows per SQLite transaction")
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"  # auto: uvloop when installed
    # run callbacks in this many worker processes; 0: on the event loop. Capped, as a typo
    # (100000) forked thousands of processes before anything said so
    parse_processes: Annotated[int, Field(ge=0, le=256)] = 0

    def policy_for(self, host: str) -> HostPolicy:
        """``per_host`` with every matching ``hosts`` pattern applied, the more specific winning a
        field two set (an exact host over any glob, then the glob with more literal characters:
        ``shop.example.com`` over ``*.example.com`` over ``*``), whichever layer each came from."""
        matching = [pattern for pattern in self.hosts if fnmatch.fnmatchcase(host, pattern.lower())]
        if not matching:
            return self.per_host
        update: dict[str, Any] = {}
        for pattern in sorted(matching, key=_specificity):
            update.update(self.hosts[pattern].model_dump(exclude_none=True))
        return self.per_host.model_copy(update=update)

    @pydantic.field_validator("pipelines", "middlewares", mode="before")
    @classmethod
    def _not_scrapy_s_mapping(cls, value: Any) -> Any:
        """Scrapy's ``{"path.Class": 300}`` is refused with the list it means, in its order."""
        if isinstance(value, Mapping):
            ordered = sorted(value, key=lambda path: value[path] if isinstance(value[path], int | float) else 0)
            listed = ", ".join(colon_form(str(path)) for path in ordered)
            raise ValueError(f"an ordered list of 'module:Class', not Scrapy's {{path: order}} mapping: [{listed}]")
        return value

    @pydantic.field_validator("user_agent")
    @classmethod
    def _one_header_line(cls, value: str) -> str:
        """A value that cannot go in an HTTP header failed every request, without naming the setting."""
        if _BREAKS_A_HEADER.search(value):
            raise ValueError("a header value cannot hold a line break or a NUL character")
        return value

    @pydantic.field_validator("default_headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if _BREAKS_A_HEADER.search(name) or _BREAKS_A_HEADER.search(text):
                raise ValueError(f"header {name!r}: a header cannot hold a line break or a NUL character")
        return value

    @pydantic.field_validator("hosts")
    @classmethod
    def _host_patterns(cls, value: dict[str, HostOverride]) -> dict[str, HostOverride]:
        """A pattern is matched against a host alone: one with a port, a scheme, a path or spaces
        never matched, silently, while the policy printed at the start said it applied."""
        for pattern in value:
            if not pattern.strip():
                raise ValueError(
                    f"{pattern!r}: an empty pattern matches no host; write a host or a glob ('*.example.com')"
                )
            host = pattern.strip().rpartition("://")[2].partition("/")[0]
            if host != pattern:
                raise ValueError(
                    f"{pattern!r}: a pattern matches a host alone, without a scheme, path or spaces; write "
                    f"{_without_port(host) or host!r}"
                )
            if bare := _without_port(pattern):
                raise ValueError(f"{pattern!r}: a pattern matches a host without its port or brackets; write {bare!r}")
            if not _HOST_GLOB.fullmatch(pattern) or pattern.count("[") != pattern.count("]"):
                raise ValueError(f"{pattern!r}: not a host or a glob of hosts ('*.example.com', 'shop?.example.com')")
        return value

    @pydantic.field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host: a proxy that was not one stalled the crawl at its first
        request (robots.txt), with nothing said."""
        if value is None:
            return value
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("a proxy is an http:// or https:// URL with a host, like http://proxy:3128")
        return value

    @pydantic.field_validator("database")
    @classmethod
    def _database_template(cls, value: str) -> str:
        """A file path, ``{spider}`` standing for the spider's name: checked with the settings,
        as a bad template had failed only as a crawl started, with a traceback."""
        try:
            path = value.format(spider="name")
        except KeyError as exc:
            raise ValueError(f"unknown placeholder {{{exc.args[0]}}} (the one known is {{spider}})") from None
        except (IndexError, ValueError) as exc:
            raise ValueError(f"not a path template ({exc}); write {{spider}} where the name goes") from None
        if not path.strip() or path.endswith(("/", "\\")):
            raise ValueError("a database file path is needed, like data/{spider}.db")
        return value

    def database_path(self, spider: str) -> Path:
        return Path(self.database.format(spider=spider)).expanduser()  # ~/crawls/x.db made a folder named ~


def load_settings(
    *,
    config: Mapping[str, Any] | None = None,
    spider: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> Settings:
    """Merge the layers and validate once; a bad key or type raises ``SettingsError``. A
    spider's layer takes dotted keys (``{"per_host.delay": 1}``), as ``-s`` does."""
    merged: dict[str, Any] = {}
    for layer in (config or {}, expand_dotted_keys(spider or {}), parse_overrides(overrides)):
        merged = deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None


def _where(error: yaml.YAMLError) -> str:
    """Where in the file the parser gave up and why: the line a user has to look at."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or not problem:
        return f": {str(error).splitlines()[0]}"
    context = getattr(error, "context", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


class _NoRepeatsLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: the last one had won in
    silence (a second ``per_host:`` block undid the first). The document is checked as
    written, before merge keys (``<<: *defaults``) are applied: merging rewrites a mapping
    in place, and a key a merge brings may be given again, on purpose."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_repeated_keys(node, set())
        return super().construct_document(node)


def _refuse_repeated_keys(node: yaml.Node, looked_at: set[int]) -> None:
    if id(node) in looked_at:  # an alias: the anchored node, looked at once
        return
    looked_at.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"{key_node.value!r} is given twice (first at line {first_line[key]})",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line + 1
            _refuse_repeated_keys(value_node, looked_at)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(item, looked_at)


def read_config(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; an unreadable or non-mapping file is a ``SettingsError``."""
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoRepeatsLoader)  # safe: a SafeLoader
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        ) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML{_where(exc)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path} must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["per_host.delay=1", "robots_txt=false"]`` → nested dict; values are parsed as YAML."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SettingsError(f"-s {pair!r}: expected KEY=VALUE")
        _put(result, key.strip(), _command_line_value(raw))
    return result


def _command_line_value(raw: str) -> Any:
    """``raw`` read as YAML (numbers, booleans, lists, mappings), except that a ``#`` is text
    here, not a comment: ``-s "user_agent=bot #1"`` was cut to ``bot``. Not YAML: the text."""
    if not raw:
        return ""
    try:
        value = yaml.safe_load(raw)
        ends = [token.end_mark.index for token in yaml.scan(raw) if not isinstance(token, yaml.StreamEndToken)]
    except yaml.YAMLError:
        return raw
    return raw if raw[max(ends, default=0) :].strip() else value  # text after the value: a "comment"


def expand_dotted_keys(layer: Mapping[str, Any]) -> dict[str, Any]:
    """``{"per_host.delay": 1}`` → ``{"per_host": {"delay": 1}}``: a spider's own settings take
    the keys ``-s`` takes (only its top-level keys: a host pattern inside ``hosts`` keeps its dots)."""
    result: dict[str, Any] = {}
    for key, value in layer.items():
        _put(result, str(key), value)
    return result


def _put(result: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    if parents[:1] == ["hosts"]:  # the host pattern has dots: hosts.127.0.0.1.delay, hosts.example.com
        pattern, _, field = key.removeprefix("hosts.").rpartition(".")
        if pattern and field in HostOverride.model_fields:
            parents, leaf = ["hosts", pattern], field
        else:
            parents, leaf = ["hosts"], key.removeprefix("hosts.")
    node = result
    for part in parents:  # copied on the way down: a spider's settings dict is its class's own
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    if isinstance(node.get(leaf), Mapping) and isinstance(value, Mapping):
        node[leaf] = deep_merge(node[leaf], value)  # {"per_host.delay": 1, "per_host": {...}}: both kept
    else:
        node[leaf] = value


def deep_merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_error(exc: pydantic.ValidationError) -> str:
    """One line naming the first offending key and what was expected."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown setting {key!r}{_suggestion(error['loc'])}"
    if error["type"] == "value_error":  # our own validators' words, as written
        return f"setting {key!r}: {error['ctx']['error']}, got {error['input']!r}"
    if (unknown := _unknown_host_setting(error)) is not None:
        return f"setting {key!r}: {unknown}"
    return f"setting {key!r}: {_in_settings_words(error)}, got {error['input']!r}"


_HOST_GLOB = re.compile(r"[\w.*?\[\]!:-]+")  # a host's characters (an IPv6 address's colons too) and fnmatch's


def _specificity(pattern: str) -> tuple[bool, int]:
    """How specific a ``hosts`` pattern is: an exact host first, then by its literal characters."""
    wildcards = sum(pattern.count(mark) for mark in "*?[")
    return not wildcards, len(pattern) - wildcards


def _without_port(pattern: str) -> str:
    """The host of a pattern that names a port (``127.0.0.1:8080``, ``[::1]:80``) or brackets
    (``[::1]``); empty when it names neither."""
    if pattern.startswith("[") and "]" in pattern:  # [::1] or [::1]:8080
        return pattern[1:].partition("]")[0]
    host, colon, port = pattern.rpartition(":")
    with_port = colon and port.isdigit() and ":" not in host  # an IPv6 address has more colons
    return host if with_port else ""


def _unknown_host_setting(error: Any) -> str | None:
    """For ``hosts.example.com.dealy=1``: the last part of the key is a misspelt host setting,
    not part of the pattern (which keeps its dots): it read as the pattern
    'example.com.dealy' given 1, "input should be a mapping of settings"."""
    loc = error["loc"]
    if len(loc) != 2 or loc[0] != "hosts" or isinstance(error["input"], Mapping):
        return None
    pattern, _, field = str(loc[1]).rpartition(".")
    if not pattern or error["type"] not in ("model_type", "dict_type"):
        return None
    hint = _did_you_mean(field, HostOverride.model_fields)
    takes = f"a host takes {', '.join(HostOverride.model_fields)}"
    if not hint:  # the pattern's own last part ('com' of '*.x.com'): the value is what is wrong
        return f"{loc[1]!r} needs settings, not {error['input']!r} ({takes}: hosts.{loc[1]}.delay=1)"
    return f"{field!r} is not a host's setting ({hint} {takes}: hosts.{pattern}.delay=1)"


def _in_settings_words(error: Any) -> str:
    """pydantic's message, in the words of a settings file: a list (not a frozenset), a
    mapping (not a dictionary or an instance of a model class)."""
    if error["type"] in ("frozen_set_type", "set_type", "list_type"):
        return "input should be a list"
    if error["type"] in ("model_type", "dict_type"):
        return "input should be a mapping of settings"
    if error["type"] == "finite_number":
        return "input should be a finite number"
    return str(error["msg"]).lower()


# Scrapy's names for settings this framework has, so that a ported spider's unknown key says
# what to write instead (tests check that each names a real setting)
SCRAPY_SETTINGS = {
    "CONCURRENT_REQUESTS": "concurrency",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "per_host.concurrency",
    "CONCURRENT_REQUESTS_PER_IP": "per_host.concurrency",
    "DOWNLOAD_DELAY": "per_host.delay",
    "AUTOTHROTTLE_ENABLED": "per_host.adaptive",
    "AUTOTHROTTLE_MAX_DELAY": "per_host.max_delay",
    "RETRY_TIMES": "retry.times",
    "RETRY_HTTP_CODES": "retry.statuses",
    "DOWNLOAD_TIMEOUT": "timeout",
    "DOWNLOAD_MAXSIZE": "max_response_bytes",
    "DEPTH_LIMIT": "max_depth",
    "ROBOTSTXT_OBEY": "robots_txt",
    "USER_AGENT": "user_agent",
    "DEFAULT_REQUEST_HEADERS": "default_headers",
    "COOKIES_ENABLED": "cookies",
    "REDIRECT_MAX_TIMES": "redirect.max_hops",
    "ITEM_PIPELINES": "pipelines",
    "DOWNLOADER_MIDDLEWARES": "middlewares",
    "SPIDER_MODULES": "spiders",
    "CLOSESPIDER_ITEMCOUNT": "close.max_items",
    "CLOSESPIDER_PAGECOUNT": "close.max_pages",
    "CLOSESPIDER_TIMEOUT": "close.max_duration",
    "CLOSESPIDER_ERRORCOUNT": "close.max_errors",
}


_IN_THE_FILE = "items are stored in the crawl's SQLite file, read with 'query'; an export is not built yet"
SCRAPY_WITHOUT_SETTING = {
    "LOG_LEVEL": "give --log-level LEVEL",
    "JOBDIR": "nothing to set: with the sqlite frontier every run resumes an interrupted crawl",
    "FEEDS": _IN_THE_FILE,
    "FEED_URI": _IN_THE_FILE,
    "FEED_FORMAT": _IN_THE_FILE,
    "HTTPCACHE_ENABLED": "there is no response cache yet",
    "REDIRECT_ENABLED": "redirect.max_hops: 0 refuses every redirect (meta allow_statuses hands one to the callback)",
    # what 'scrapy startproject' writes into settings.py
    "BOT_NAME": "nothing to set: the User-Agent is user_agent",
    "NEWSPIDER_MODULE": "nothing to set: spiders are found in the modules that 'spiders' lists",
    "TWISTED_REACTOR": "nothing to set: the crawl runs on asyncio (event_loop: auto, asyncio or uvloop)",
    "REQUEST_FINGERPRINTER_IMPLEMENTATION": "nothing to set: there is one fingerprint",
    "FEED_EXPORT_ENCODING": _IN_THE_FILE,
    "HTTPERROR_ALLOWED_CODES": "a request's meta={'allow_statuses': [404]} hands those statuses to its callback",
}
"""Scrapy settings with no setting of the same job here, and what to do instead."""


_LIST_SHAPES = {
    "pipelines": " (an ordered list of 'module:Class')",
    "middlewares": " (an ordered list of 'module:factory')",
}


def _suggestion(loc: tuple[int | str, ...]) -> str:
    scrapy_name = str(loc[0]).upper()
    if len(loc) == 1 and (ours := SCRAPY_SETTINGS.get(scrapy_name)):
        shape = _LIST_SHAPES.get(ours, "")
        return f" (Scrapy's {scrapy_name} is {ours!r} here{shape})"
    if len(loc) == 1 and (advice := SCRAPY_WITHOUT_SETTING.get(scrapy_name)):
        return f" (Scrapy's {scrapy_name}: {advice})"
    model: type[pydantic.BaseModel] = Settings
    parts = iter(loc[:-1])
    for part in parts:
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if typing.get_origin(annotation) is dict:  # hosts: {pattern: HostOverride}
            annotation = typing.get_args(annotation)[1]
            if next(parts, None) is None:  # the pattern itself
                return ""
        if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
            return ""
        model = annotation
    hint = _did_you_mean(str(loc[-1]), model.model_fields)
    return f" ({hint})" if hint else ""


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    """ "did you mean 'delay'?" for the one of ``names`` closest to a misspelt ``name``, or ""."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
