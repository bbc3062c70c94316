"""How the benchmarks read a product page: the reference loop and the benchmark spider share
this code, so a comparison between them measures everything but the parsing. Kept apart from
``reference_loop.py`` so that importing it (in a parse process, say) costs no aiohttp."""

from __future__ import annotations

import re
from decimal import Decimal

from selectolax.lexbor import LexborHTMLParser

_PRICE = re.compile(r"([£€$])\s*([\d,]+(?:\.\d+)?)")
_IN_STOCK = re.compile(r"in stock\s*\(\s*(\d+)\s+available\s*\)", re.IGNORECASE)
_CURRENCIES = {"£": "GBP", "€": "EUR", "$": "USD"}
Row = tuple[str, str, float, str, int, int, int, str, str, str]


def _text(tree: LexborHTMLParser, selector: str) -> str:
    node = tree.css_first(selector)
    if node is None:
        raise ValueError(f"no {selector!r}")
    return node.text()


def parse_product(url: str, tree: LexborHTMLParser) -> Row:
    if (price := _PRICE.search(_text(tree, "p.price"))) is None:
        raise ValueError(f"no price in {url}")
    stock_match = _IN_STOCK.search(_text(tree, "p.stock"))
    stock = int(stock_match.group(1)) if stock_match else 0
    rating = tree.css_first("p.rating")
    return (
        url,
        _text(tree, "h1"),
        float(Decimal(price.group(2).replace(",", "")).quantize(Decimal("0.01"))),
        _CURRENCIES[price.group(1)],
        int(rating.attributes["data-rating"] or 0) if rating is not None else 0,
        int(stock > 0),
        stock,
        _text(tree, "table.product-info td.category"),
        _text(tree, "table.product-info td.sku"),
        _text(tree, "p.description"),
    )
