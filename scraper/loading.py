"""Resolves the ``"module:name"`` strings of config.yaml to Python objects, with errors that
name the setting and the string."""

from __future__ import annotations

import importlib
from typing import Any

from scraper.errors import ConfigError


def load_object(path: str, *, setting: str) -> Any:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{setting}: {path!r} must look like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting}: cannot import {module_name!r} for {path!r}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{setting}: module {module_name!r} has no {attribute!r}") from None
