"""Link hygiene and crawler-trap detection: the checks the scheduler runs when it admits a
discovered URL, before any fingerprint is made. Pure functions over ``LinkPolicy``.

Both run for every discovered link (thousands per second), so each URL is parsed once by
yarl, regexes are compiled here once, and the common case takes only the cheap checks.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Collection
from urllib.parse import unquote

from yarl import URL

from scraper.encoding import is_unicode
from scraper.settings import LinkPolicy

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_WEB_SCHEMES = frozenset({"http:", "https:"})
# A year in a date shape (year, separator, month 01-12: "/2031/05/", "2031-05-01", "2031.05")
# or as the value of a year parameter ("?year=2031", "&y=2031"). A bare number like
# "/item/1234" or "?page=1500" is not a year: ids would be filtered as traps.
_DATED_YEAR = re.compile(
    r"(?<![0-9A-Za-z_])([12][0-9]{3})[-/.](?:0[1-9]|1[0-2])(?![0-9])"
    r"|(?:^|[?&;])(?:year|yr|y)=([12][0-9]{3})(?![0-9])",
    re.IGNORECASE,
)
# ";name" or ";name=value" path parameters (matrix parameters) such as ";jsessionid=ABC".
_PATH_PARAMETER = re.compile(r";([^;/=]*)(?:=[^;/]*)?")


def filter_reason(url: str, policy: LinkPolicy, *, today: datetime.date | None = None) -> str | None:
    """The reason to filter ``url``, or None (see ``inspect_link``)."""
    return inspect_link(url, policy, today=today)[0]


_UNFOLLOWABLE = {
    "scheme": "its scheme is not http or https",
    "url_too_long": "it is longer than links.max_url_length",
    "malformed": "it has no host, or its host or port cannot be parsed (a port of 0 or past 65535)",
    "too_many_segments": "its path has more segments than links.max_path_segments",
    "repeated_segments": "a segment of its path repeats more than links.max_repeated_segments times",
    "date_out_of_window": "it names a year further than links.date_window_years from now",
}


def unfollowable_reason(reason: str) -> str:
    """``inspect_link``'s reason, said for a person (a start request's error row)."""
    return f"{_UNFOLLOWABLE.get(reason, reason)} (filtered as {reason!r})"


def inspect_link(
    url: str,
    policy: LinkPolicy,
    *,
    today: datetime.date | None = None,
    parse: Callable[[], URL] | None = None,
) -> tuple[str | None, URL | None]:
    """None when ``url`` may be admitted, else a short, stable reason (a stats key):

    - ``"scheme"``: not http/https (javascript:, mailto:, tel:, data:, ftp:, file: ...);
    - ``"url_too_long"``: more than ``policy.max_url_length`` characters;
    - ``"malformed"``: not absolute, yarl cannot parse it, no host, or a bad port (0, > 65535);
    - ``"too_many_segments"``: more than ``policy.max_path_segments`` non-empty path segments;
    - ``"repeated_segments"``: a non-empty path segment occurs more than
      ``policy.max_repeated_segments`` times (``/a/b/a/b/a/b/a/b``: the relative-link loop);
    - ``"date_out_of_window"``: the path or query names a year (in a date shape such as
      ``/2031/05/`` or ``2031-05-01``, or as ``year=2031``) further than
      ``policy.date_window_years`` from ``today``'s year (0 disables). Calendars link to
      next month forever; this is what ends them.

    Checks run cheapest first, and the first failing check names the reason. ``today``
    defaults to the local date; tests inject it. The parsed URL comes back too (None when
    parsing never happened or failed), so that the caller does not parse it again; ``parse``
    gives it when the caller may have it already (``Request.parsed_url``).
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "malformed", None  # relative or scheme-less: the scheduler expects absolute URLs
    if scheme.group().lower() not in _WEB_SCHEMES:
        return "scheme", None
    if len(url) > policy.max_url_length:
        return "url_too_long", None  # before parsing, so a huge URL costs nothing more
    if not is_unicode(url):
        return "malformed", None  # a lone surrogate: no row could hold it (it stopped the crawl)
    try:
        parsed = URL(url) if parse is None else parse()
        port = parsed.port  # yarl rejects ports that are not numbers or above 65535
    except (ValueError, TypeError):
        return "malformed", None
    if not parsed.raw_host or port == 0:
        return "malformed", parsed
    path = parsed.raw_path
    return _path_reason(path, policy) or _date_reason(path, parsed.raw_query_string, policy, today), parsed


def _path_reason(path: str, policy: LinkPolicy) -> str | None:
    # The slash count bounds the number of non-empty segments: most paths are short and
    # skip the split entirely.
    slashes = path.count("/")
    if slashes <= policy.max_repeated_segments and slashes <= policy.max_path_segments:
        return None
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) > policy.max_path_segments:
        return "too_many_segments"
    # Counting each segment anywhere in the path also catches every repeated run of 2-3
    # segments: a run occurring k times makes its first segment occur at least k times.
    # Only a segment whose first occurrence leaves room for more than the limit can exceed
    # it; segments are at most max_path_segments here, so this quadratic scan stays small.
    limit = policy.max_repeated_segments
    for index in range(len(segments) - limit):
        if segments.count(segments[index]) > limit:
            return "repeated_segments"
    return None


def _date_reason(path: str, query: str, policy: LinkPolicy, today: datetime.date | None) -> str | None:
    window = policy.date_window_years
    if not window:
        return None
    # The raw (percent-encoded) text is scanned: trap links spell their dates plainly.
    current: int | None = None
    for text in (path, query):
        for match in _DATED_YEAR.finditer(text):
            if current is None:
                current = (today or datetime.date.today()).year
            if abs(int(match.group(1) or match.group(2)) - current) > window:
                return "date_out_of_window"
    return None


def strip_session_ids(url: str, parameters: Collection[str]) -> str:
    """``url`` without session ids, so that a session id does not make every URL new to the
    fingerprint: query parameters whose lower-cased name is in ``parameters`` (which are
    lower-case, as ``LinkPolicy.session_parameters``), and path parameters of those names
    (``/cart;jsessionid=ABC``). Everything else keeps its spelling and order; a URL with
    nothing to strip is returned as it came. String work only: no parse, no re-encoding.
    """
    if ";" not in url and "?" not in url:
        return url
    fragment_at = url.find("#")
    fragment = url[fragment_at:] if fragment_at >= 0 else ""
    rest = url[:fragment_at] if fragment_at >= 0 else url
    base, question, query = rest.partition("?")
    stripped_base = _strip_path_parameters(base, parameters)
    stripped_query = _strip_query_parameters(query, parameters) if question else ""
    if stripped_base is base and stripped_query is query:
        return url
    return stripped_base + ("?" + stripped_query if stripped_query else "") + fragment


def _strip_path_parameters(base: str, parameters: Collection[str]) -> str:
    if ";" not in base:
        return base
    authority_at = base.find("//")
    path_at = base.find("/", authority_at + 2) if authority_at >= 0 else 0
    if path_at < 0:
        return base  # "http://host;x=1": no path, nothing of ours to strip
    path = base[path_at:]
    stripped = _PATH_PARAMETER.sub(lambda match: "" if _is_session(match[1], parameters) else match[0], path)
    return base if stripped == path else base[:path_at] + stripped


def _strip_query_parameters(query: str, parameters: Collection[str]) -> str:
    pairs = query.split("&")
    kept = [pair for pair in pairs if not _is_session(pair.partition("=")[0], parameters)]
    return query if len(kept) == len(pairs) else "&".join(kept)


def _is_session(name: str, parameters: Collection[str]) -> bool:
    if "%" in name or "+" in name:
        name = unquote(name.replace("+", " "))
    return name.lower() in parameters
