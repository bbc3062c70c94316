"""Page-parsing helpers the shop spiders share: required nodes, prices (via price-parser) and
stock texts. They live here so each spider keeps only what its own site does differently."""

from __future__ import annotations

import re
from decimal import Decimal

from price_parser import Price
from selectolax.lexbor import LexborNode

from scraper import Response

_IN_STOCK = re.compile(r"in stock\s*\(\s*(\d+)\s+available\s*\)", re.IGNORECASE)
_CENTS = Decimal("0.01")


def first_node(root: Response | LexborNode, selector: str) -> LexborNode:
    """The first match; ValueError naming the selector and the page (or element) when none."""
    node = root.css_first(selector)
    if node is None:
        where = root.url if isinstance(root, Response) else f"<{root.tag}>"
        raise ValueError(f"no {selector!r} in {where}")
    return node


def text_of(root: Response | LexborNode, selector: str) -> str:
    """The text of the first match, as the page has it; ValueError when nothing matches."""
    return first_node(root, selector).text()


def attribute_of(root: Response | LexborNode, selector: str, name: str) -> str:
    value = first_node(root, selector).attributes.get(name)
    if value is None:
        raise ValueError(f"{selector!r} has no {name!r} attribute")
    return value


def parse_amount(text: str) -> Decimal:
    """``"\\n £1,234.5 "`` → ``Decimal("1234.50")``, ``"1.234,56 €"`` → ``Decimal("1234.56")``;
    tolerates a mis-decoded ``Â£``. ValueError naming the text when it has no amount."""
    return _amount(Price.fromstring(text), text)


def parse_amount_and_symbol(text: str) -> tuple[Decimal, str]:
    """``"12.5 $"`` → ``(Decimal("12.50"), "$")``: the amount and the one currency symbol, as
    written. ValueError naming the text when either is missing or it names two currencies."""
    price = Price.fromstring(text)
    amount = _amount(price, text)
    if price.currency is None:
        raise ValueError(f"no currency in price {text!r}")
    # price-parser takes the first symbol it finds; a second one left over makes it ambiguous
    if Price.fromstring(text.replace(price.currency, " ")).currency is not None:
        raise ValueError(f"more than one currency in price {text!r}")
    return amount, price.currency


def _amount(price: Price, text: str) -> Decimal:
    # price-parser reads "free" as 0; only a text with digits has an amount here
    if price.amount is None or not any(char.isdigit() for char in text):
        raise ValueError(f"no amount in price {text!r}")
    return price.amount.quantize(_CENTS)


def parse_stock(text: str) -> tuple[bool, int]:
    """``"In stock (22 available)"`` → ``(True, 22)``; ``"Out of stock"`` → ``(False, 0)``.

    "In stock" without a count (as on some listings) is in stock with an unknown count, 0.
    """
    if (match := _IN_STOCK.search(text)) is not None:
        count = int(match.group(1))
        return count > 0, count
    return text.strip().lower().startswith("in stock"), 0
