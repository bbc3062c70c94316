"""robots.txt (RFC 9309) as a fetch middleware: a request passes on to the handler only once its
origin's robots.txt is known and allows it. The file itself is fetched through the same inner
chain (same session, same host limits), once per origin, and cached: for at most 24 hours (RFC
9309 2.4), and for the ``MAX_ORIGINS`` origins used last, so that a crawl over millions of hosts
keeps its memory flat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections import OrderedDict
from typing import Protocol

from protego import Protego
from yarl import URL

from scraper.errors import FetchError, Filtered, HttpStatusError, TryLater, describe
from scraper.http import Request, Response
from scraper.middleware import Handler
from scraper.records import ErrorRecord, error_record
from scraper.settings import Settings
from scraper.stats import Stats

logger = logging.getLogger(__name__)

ALL_STATUSES = range(100, 600)
"""``allow_statuses`` for robots.txt fetches: every status is an answer here, not an error."""

MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five; beyond that the file is "unavailable"
MAX_UNAVAILABLE = 3  # consecutive 5xx/unreachable outcomes before an origin is given up
MAX_AGE = 24 * 3600.0  # RFC 9309 2.4: a cached file is not used for more than 24 hours...
# ...unless it cannot be fetched again: then the rules kept are used, and asked again this much later
MAX_ORIGINS = 10_000  # origins whose policy is cached; past it the one unused longest is forgotten
# seconds a request waits in its worker for its origin's robots.txt being loaded by another;
# then it is parked (at least this long, and as long again as the load has taken so far)
_LATECOMER_WAIT = 0.5


class CrawlDelaySink(Protocol):
    """Where a Crawl-delay goes (the host limiter); kept narrow so robots knows nothing else of it."""

    def set_crawl_delay(self, host: str, seconds: float) -> None: ...


class _Verdict(enum.Enum):
    ALLOW_ALL = "allow all"  # 4xx, or too many redirects: RFC 9309 says crawl freely
    UNAVAILABLE = "unavailable"  # 5xx or unreachable: RFC 9309 says assume complete disallow


@dataclasses.dataclass(slots=True, frozen=True)
class _Policy:
    """What is known of one origin's robots.txt: parsed rules or a verdict; while unavailable,
    when to fetch again and how many times in a row it failed."""

    rules: Protego | _Verdict
    failures: int = 0
    retry_at: float = 0.0  # when to fetch the file again: after its window while unavailable, else at MAX_AGE
    error: FetchError | None = None  # the last failure, while unavailable
    crawl_delay: float = 0.0  # the rules' Crawl-delay for us, capped by robots.max_crawl_delay

    def stale(self, now: float) -> bool:
        """Due to be fetched again: an unavailable file after its window, until the origin is
        given up; a known one once it is ``MAX_AGE`` old."""
        return now >= self.retry_at and (self.rules is not _Verdict.UNAVAILABLE or self.failures < MAX_UNAVAILABLE)


class RobotsTxt:
    """Fetch middleware obeying robots.txt (RFC 9309), one cached policy per origin (scheme://host:port).

    Stats: ``robots/fetched`` (a file parsed), ``robots/allow_all`` (4xx or a redirect maze),
    ``robots/unavailable`` (each 5xx/unreachable outcome), ``robots/disallowed`` (requests filtered).
    """

    def __init__(self, *, settings: Settings, stats: Stats, limiter: CrawlDelaySink) -> None:
        self._settings = settings
        self._stats = stats
        self._limiter = limiter
        # RFC 9309 2.2.1: groups match the product token, the user agent up to its first "/"
        self._token = settings.user_agent.split("/", 1)[0].strip()
        self._policies: OrderedDict[str, _Policy] = OrderedDict()  # least recently used first
        self._locks: dict[str, asyncio.Lock] = {}
        self._loading_since: dict[str, float] = {}  # origin -> when the load of its robots.txt began
        self._reported: set[str] = set()  # origins given up whose error row is written
        # every status is an answer (judged below); the body cap keeps a huge file cheap
        self._robots_meta = {
            "robots_txt": True,
            "allow_statuses": ALL_STATUSES,
            "truncate_body": True,
            "max_response_bytes": settings.robots.max_bytes,
            "content_types": (),  # robots.txt is read whatever type the server calls it
        }

    async def __call__(self, request: Request, handler: Handler) -> Response:
        if (request.meta or {}).get("robots_txt"):
            return await handler(request)
        url = URL(request.url)
        policy = await self._policy_for(url, _through_same_proxy(request, handler))
        self._check(policy, request.url)
        if policy.crawl_delay:
            # told with each request, not once: the limiter forgets idle hosts (memory stays
            # flat over many hosts), and a host it forgot would start again without the delay
            self._limiter.set_crawl_delay(url.host or "", policy.crawl_delay)
        return await handler(request)

    async def _policy_for(self, url: URL, handler: Handler) -> _Policy:
        """The origin's policy, fetching robots.txt if unknown or due again. One fetch per origin
        at a time: latecomers wait on the lock, then find the cache filled. A latecomer for an
        origin with no policy yet waits ``_LATECOMER_WAIT`` at most, then is parked (``TryLater``):
        a host's first request loads its robots.txt alone, but not that of its other origins (a
        port, https), whose requests had each held a worker for as long as a hung file took."""
        origin = str(url.origin())
        policy = self._policies.get(origin)
        if policy is not None and not policy.stale(time.monotonic()):
            self._policies.move_to_end(origin)  # the origins forgotten first are those unused longest
            return policy
        lock = self._locks.setdefault(origin, asyncio.Lock())
        try:
            async with asyncio.timeout(_LATECOMER_WAIT if policy is None and lock.locked() else None):
                await lock.acquire()
        except TimeoutError:
            now = time.monotonic()
            loading = now - self._loading_since.get(origin, now)
            raise TryLater(
                f"robots.txt of {origin} is still loading", until=now + max(_LATECOMER_WAIT, loading)
            ) from None
        try:
            policy = self._policies.get(origin)
            if policy is None or policy.stale(time.monotonic()):
                self._loading_since[origin] = time.monotonic()
                try:
                    policy = await self._load(origin, handler, policy)
                finally:
                    del self._loading_since[origin]
                self._keep(origin, policy)
            return policy
        finally:
            lock.release()
            if not lock.locked() and self._locks.get(origin) is lock:  # a waiter keeps its own reference
                del self._locks[origin]

    def _keep(self, origin: str, policy: _Policy) -> None:
        """Cache ``policy`` as the most recently used; past ``MAX_ORIGINS``, forget the origin
        unused longest. (Forgetting the one loaded first, a crawl going breadth-first over
        20,000 hosts fetched 32,008 robots.txt files: a host's was gone before its next pages.)"""
        policies = self._policies
        policies[origin] = policy
        policies.move_to_end(origin)
        if len(policies) > MAX_ORIGINS:
            policies.popitem(last=False)
            self._stats.increment("robots/forgotten")

    def _check(self, policy: _Policy, url: str) -> None:
        """Return if ``url`` may be fetched; else raise ``Filtered`` or, while the file is down, ``TryLater``."""
        rules = policy.rules
        if rules is _Verdict.ALLOW_ALL:
            return
        if isinstance(rules, Protego):
            if rules.can_fetch(url, self._token):
                return
            self._stats.increment("robots/disallowed")
            raise Filtered("robots.txt")
        if policy.failures >= MAX_UNAVAILABLE:
            self._stats.increment("robots/disallowed")
            raise Filtered("robots.txt unavailable", error=self._given_up(policy, url))
        cause = describe(policy.error) if policy.error is not None else "no answer"
        raise TryLater(f"robots.txt unavailable ({cause})", until=policy.retry_at)

    def _given_up(self, policy: _Policy, url: str) -> ErrorRecord | None:
        """The error row that says why an origin's requests are filtered, for the first of them:
        without it a host that does not resolve was only 'filtered', its cause in the log."""
        origin = str(URL(url).origin())
        if origin in self._reported or policy.error is None:
            return None
        self._reported.add(origin)
        context = f"robots.txt unavailable {policy.failures} times in a row, {origin}'s requests filtered: "
        return error_record("fetch", policy.error, policy.error.url, self._stats, context=context)

    async def _load(self, origin: str, handler: Handler, previous: _Policy | None) -> _Policy:
        """Fetch and judge the file by RFC 9309's status rules."""
        try:
            response = await self._fetch(origin + "/robots.txt", handler)
        except FetchError as exc:
            return self._unavailable(origin, exc, previous)
        unavailable = response is not None and (response.status >= 500 or response.status == 429)
        if response is None or not (200 <= response.status < 300 or unavailable):
            logger.debug("robots.txt of %s: allow all (%s)", origin, response and response.status)
            self._stats.increment("robots/allow_all")
            return _Policy(_Verdict.ALLOW_ALL, retry_at=time.monotonic() + MAX_AGE)
        if unavailable:  # 429 too: a server asking us to slow down is not saying "allow all"
            status = HttpStatusError(f"HTTP {response.status}", url=response.url, status=response.status)
            return self._unavailable(origin, status, previous)
        rules = Protego.parse(self._decode(response.body))
        self._stats.increment("robots/fetched")
        delay = rules.crawl_delay(self._token)
        crawl_delay = min(delay, self._settings.robots.max_crawl_delay) if delay is not None else 0.0
        return _Policy(rules, retry_at=time.monotonic() + MAX_AGE, crawl_delay=crawl_delay)

    async def _fetch(self, url: str, handler: Handler) -> Response | None:
        """The final response after up to ``MAX_REDIRECTS`` hops, each through ``handler``;
        ``None`` when the redirects go on longer or lead somewhere not fetchable (no file, as RFC 9309
        treats a redirect maze)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = await handler(Request(url, meta=dict(self._robots_meta)))
            location = response.headers.get("Location")
            if not (300 <= response.status < 400 and location):
                return response
            try:
                target = URL(response.url).join(URL(location))
            except ValueError:
                return None
            if target.scheme not in ("http", "https") or not target.host:
                return None
            url = str(target)
        return None

    def _unavailable(self, origin: str, error: FetchError, previous: _Policy | None) -> _Policy:
        """Disallow the origin for ``unavailable_retry`` seconds; failures count only while consecutive.
        A file known before and due again (``MAX_AGE``) keeps its rules meanwhile, as RFC 9309 2.4 allows."""
        self._stats.increment("robots/unavailable")
        wait = self._settings.robots.unavailable_retry
        if previous is not None and previous.rules is not _Verdict.UNAVAILABLE:
            logger.info(
                "robots.txt of %s unavailable again (%s): its rules kept, asked again in %gs", origin, error, wait
            )
            return dataclasses.replace(previous, retry_at=time.monotonic() + wait)
        failures = previous.failures + 1 if previous is not None else 1
        if failures == 1:  # said once per origin: else a crawl waits minutes with its cause unseen
            logger.warning(
                "robots.txt of %s unavailable (%s): its requests wait %gs, then it is asked again "
                "(given up after %d failures in a row; robots.unavailable_retry sets the wait)",
                origin, error, wait, MAX_UNAVAILABLE,
            )  # fmt: skip
        else:
            logger.info("robots.txt of %s unavailable (%s), failure %d of %d", origin, error, failures, MAX_UNAVAILABLE)
        retry_at = time.monotonic() + wait
        return _Policy(_Verdict.UNAVAILABLE, failures=failures, retry_at=retry_at, error=error)

    def _decode(self, body: bytes) -> str:
        """The first ``max_bytes`` as UTF-8 (a BOM ignored). A cut line is dropped whole, so that
        ``Disallow: /private`` cut to ``Disallow: /`` cannot shut the whole site."""
        limit = self._settings.robots.max_bytes
        if len(body) > limit:
            body = body[:limit]
            body = body[: body.rfind(b"\n") + 1]
        return body.decode("utf-8-sig", errors="replace")


def _through_same_proxy(request: Request, handler: Handler) -> Handler:
    """A handler that sends robots.txt through the proxy ``request`` uses, if it names one:
    a spider that routes a site through a proxy must not reveal its own address there."""
    proxy = (request.meta or {}).get("proxy")
    if not proxy:
        return handler

    async def via_proxy(robots_request: Request) -> Response:
        return await handler(robots_request.replace(meta={**(robots_request.meta or {}), "proxy": proxy}))

    return via_proxy
