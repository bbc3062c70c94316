"""Resolves the ``"module:name"`` strings of config.yaml to Python objects, and builds them,
with errors that name the setting and the string."""

from __future__ import annotations

import importlib
from typing import Any

from scraper.errors import ConfigError, describe


def load_object(path: str, *, setting: str) -> Any:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        ours = colon_form(path)
        hint = f" ({ours}?)" if ours != path else ""
        raise ConfigError(f"{setting}: {path!r} must look like 'package.module:Name'{hint}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting}: cannot import {module_name!r} for {path!r}: {exc}") from None
    except Exception as exc:  # a SyntaxError, or what the module raises as it runs: one line, not a traceback
        raise ConfigError(f"{setting}: importing {module_name!r} for {path!r} failed: {describe(exc)}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{setting}: module {module_name!r} has no {attribute!r}") from None


def colon_form(path: str) -> str:
    """``package.module.Class``, Scrapy's way to name an object, as ours: ``package.module:Class``."""
    module, dot, name = path.rpartition(".")
    return f"{module}:{name}" if ":" not in path and dot and module and name else path


def build_object(path: str, *, setting: str, **arguments: Any) -> Any:
    """``path``'s object called with ``arguments`` (a class: an instance of it); an object that
    cannot be called is returned as it is, for the caller to judge. Whatever the call raises
    is a ``ConfigError`` naming the setting and the path (a function named by mistake, a
    constructor that fails): the crawl must not start, and the user needs one line, not a
    traceback."""
    target = load_object(path, setting=setting)
    if not callable(target):
        return target
    try:
        return target(**arguments)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{setting}: {path} could not be created: {describe(exc)}") from None
