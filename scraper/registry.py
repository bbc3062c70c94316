"""Finds spiders by ``name`` in the modules that ``settings.spiders`` lists (and their
submodules). Two spiders with one name is an error, not a silent pick."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

from scraper.errors import ConfigError, SpiderNotFound, describe
from scraper.spider import Spider


def find_spiders(modules: Iterable[str], *, project_dir: Path | None = None) -> dict[str, type[Spider]]:
    """Every named ``Spider`` subclass defined in ``modules``, by name."""
    _ensure_importable(project_dir or Path.cwd())
    found: dict[str, type[Spider]] = {}
    for module in _walk(modules):
        for spider_class in _spiders_in(module):
            other = found.setdefault(spider_class.name, spider_class)
            if other is not spider_class:
                raise ConfigError(
                    f"two spiders are named {spider_class.name!r}: {_where(other)} and {_where(spider_class)}"
                )
    return found


def load_spider_class(name: str, modules: Iterable[str], *, project_dir: Path | None = None) -> type[Spider]:
    modules = list(modules)
    spiders = find_spiders(modules, project_dir=project_dir)
    if name not in spiders:
        known = ", ".join(sorted(spiders)) or "none"
        raise SpiderNotFound(f"no spider named {name!r} in {', '.join(modules)} (known: {known})")
    return spiders[name]


def _ensure_importable(project_dir: Path) -> None:
    """Make the project's own folders (spiders/, pipelines/) importable, as ``python -m`` does."""
    path = str(project_dir.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def _walk(modules: Iterable[str]) -> Iterator[ModuleType]:
    for name in modules:
        module = _import(name)
        yield module
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}."):
            yield _import(info.name)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name or name.startswith(f"{exc.name}."):
            raise ConfigError(
                f"spiders: module {name!r} not found (setting 'spiders'; commands run in the project's folder, "
                "the one holding config.yaml or the spiders, or in a folder below config.yaml's)"
            ) from None
        raise ConfigError(f"spiders: importing {name!r} failed: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"spiders: importing {name!r} failed: {describe(exc)}") from None


def _spiders_in(module: ModuleType) -> Iterator[type[Spider]]:
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, Spider) and value.__module__ == module.__name__ and value.name:
            yield value


def _where(spider_class: type[Spider]) -> str:
    return f"{spider_class.__module__}.{spider_class.__qualname__}"
