"""When a failed fetch is worth another attempt, and how long the request waits first.

Retries never hold a worker: the worker parks the request in the frontier with a not-before
time and moves on. ``Retry-After`` (seconds or an HTTP date) on 429/503 pauses the whole host.
"""

from __future__ import annotations

import email.utils
import math
import random
import time

from scraper.errors import ConnectionFailed, FetchError, FetchTimeout, HttpStatusError
from scraper.settings import RetryPolicy

PAUSING_STATUSES = frozenset({429, 503})


def is_retryable(error: FetchError, policy: RetryPolicy) -> bool:
    """Transport failures, timeouts, truncated bodies and the policy's statuses."""
    if isinstance(error, (ConnectionFailed, FetchTimeout)):
        return True
    return isinstance(error, HttpStatusError) and error.status in policy.statuses


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """``backoff * 2**(attempt-1)`` capped at ``max_backoff``, with jitter (half to all of it)."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date), or None for
    a missing or garbage value. A date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_delay(error: FetchError, policy: RetryPolicy) -> float | None:
    """The host pause a 429/503 asks for, capped at ``max_retry_after``; None if it asks none."""
    if not isinstance(error, HttpStatusError) or error.status not in PAUSING_STATUSES:
        return None
    seconds = parse_retry_after(error.retry_after)
    return None if seconds is None else min(seconds, policy.max_retry_after)
