"""The next hop of a redirect, made from the response alone: no sockets."""

from __future__ import annotations

import pytest

from scraper.errors import RedirectRefused
from scraper.http import Request, Response
from scraper.redirect import next_hop
from tests.conftest import make_settings

SETTINGS = make_settings()


def redirect(location: str, url: str = "http://shop.test/old") -> Response:
    return Response(url=url, status=302, headers={"Location": location}, body=b"", request=Request(url))


def test_a_location_with_bytes_that_are_not_utf8_is_percent_encoded() -> None:
    """aiohttp keeps a Latin-1 byte of a header as a lone surrogate, which yarl dropped: a
    redirect to /caf\\xe9 fetched /caf, and stored it as the page."""
    hop = next_hop(redirect("/caf\udce9?q=\udce9t\u00e9"), SETTINGS.redirect, SETTINGS.links)
    assert hop.url == "http://shop.test/caf%E9?q=%E9t%C3%A9"


@pytest.mark.parametrize(
    ("location", "reason"),
    [("/" + "x" * 3000, "url_too_long"), ("/a/a/a/a/a/a", "repeated_segments"), ("mailto:a@shop.test", None)],
)
def test_a_redirect_to_a_url_the_crawl_does_not_fetch_is_refused(location: str, reason: str | None) -> None:
    """As a link, such a target was counted and dropped: the page it stood for was lost, its
    request 'done', the summary saying no error."""
    with pytest.raises(RedirectRefused) as caught:
        next_hop(redirect(location), SETTINGS.redirect, SETTINGS.links)
    assert caught.value.url == "http://shop.test/old"
    if reason is not None:  # (a mailto: target is refused as before, as not http(s))
        assert str(caught.value).startswith(f"redirect to a URL not fetched ({reason}): http://shop.test/")
