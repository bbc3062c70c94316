"""What an installed copy of the package carries besides its modules."""

from __future__ import annotations

import importlib.resources


def test_the_package_says_it_is_typed() -> None:
    """PEP 561: without py.typed, mypy took every class of an installed copy for Any, so a
    spider's wrong code type-checked."""
    assert (importlib.resources.files("scraper") / "py.typed").is_file()
