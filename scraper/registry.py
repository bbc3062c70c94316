"""Finds spiders by ``name`` in the modules that ``settings.spiders`` lists (and their
submodules). Two spiders with one name is an error when that name is asked for, not a silent
pick.

A submodule that fails to import (a spider being written, with a syntax error) does not hide
the spiders of the others: they are listed and run, and the failure is a warning. Only when
the spider asked for is not found among them is the failure the error, as that spider may be
the broken module's. Two spiders sharing a name are the same: a warning, unless that name is
the one asked for (a copy of the tutorial's spider beside the repository's stopped every
command, ``demo`` and ``list`` included)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

from scraper import habits
from scraper.errors import ConfigError, SpiderNotFound, describe, notes_of
from scraper.spider import Spider

logger = logging.getLogger(__name__)


def find_spiders(modules: Iterable[str], *, project_dir: Path | None = None) -> dict[str, type[Spider]]:
    """Every named ``Spider`` subclass defined in ``modules``, by name; a submodule that
    cannot be imported is a warning."""
    spiders, broken, _ = _scan(modules, project_dir)
    for _, failure in broken:
        logger.warning("%s (its spiders are left out)", failure)
    for name, classes in _clashes(spiders).items():
        logger.warning("%s (left out until one is renamed)", _clash(name, classes))
        del spiders[name]
    return {name: classes[0] for name, classes in spiders.items()}


def load_spider_class(name: str, modules: Iterable[str], *, project_dir: Path | None = None) -> type[Spider]:
    modules = list(modules)
    found, broken, nameless = _scan(modules, project_dir)
    if len(found.get(name, ())) > 1:
        raise ConfigError(f"{_clash(name, found[name])}: rename one")
    if name in found:
        for _, failure in broken:
            logger.warning("%s (not the module of spider %r, which runs)", failure, name)
        for other, classes in _clashes(found).items():
            logger.warning("%s (not spider %r, which runs)", _clash(other, classes), name)
        return found[name][0]
    spiders = {name: classes[0] for name, classes in found.items()}
    if broken:  # the spider may be a broken module's: that is the error to fix
        raise ConfigError(_broken_for(name, broken))
    if not modules:
        raise SpiderNotFound(
            f"no spider named {name!r}: setting 'spiders' lists no module (list those holding your spiders: "
            "spiders: [spiders])"
        )
    known = ", ".join(sorted(spiders)) or "none"
    raise SpiderNotFound(
        f"no spider named {name!r} in {', '.join(modules)} (known: {known}){_what_was_meant(name, spiders, nameless)}"
    )


def _clashes(found: dict[str, list[type[Spider]]]) -> dict[str, list[type[Spider]]]:
    return {name: classes for name, classes in found.items() if len(classes) > 1}


def _clash(name: str, classes: list[type[Spider]]) -> str:
    where = [_where(spider_class) for spider_class in classes]
    return f"spiders {', '.join(where[:-1])} and {where[-1]} are {'both' if len(where) == 2 else 'all'} named {name!r}"


def _broken_for(name: str, broken: list[tuple[str, str]]) -> str:
    """The failure to show when the spider ``name`` is in no module that imports: that of the
    broken module whose source names it (as a string), else every one. The first failure
    alone was shown, and it could be another spider's module than the one asked for."""
    suspects = [failure for module, failure in broken if _names(module, name)] or [failure for _, failure in broken]
    if len(suspects) == 1:
        return f"{suspects[0]} (no other module defines a spider named {name!r})"
    return f"no module that imports defines a spider named {name!r}, and {len(suspects)} fail: " + "; ".join(suspects)


def _names(module: str, name: str) -> bool:
    """Whether the source of ``module`` holds ``name`` as a string literal."""
    try:
        spec = importlib.util.find_spec(module)
        source = Path(spec.origin).read_text(encoding="utf-8", errors="replace") if spec and spec.origin else ""
    except (ImportError, ValueError, OSError):
        return False
    return f'"{name}"' in source or f"'{name}'" in source


def _what_was_meant(name: str, spiders: dict[str, type[Spider]], nameless: list[type[Spider]]) -> str:
    """A class that would be the spider asked for but has no ``name`` (such a class is not a
    spider, as a base class is not: it was left out silently), or a spider's name a typo away."""
    for spider_class in nameless:
        if name.lower() in {spider_class.__name__.lower(), spider_class.__name__.lower().removesuffix("spider")}:
            return f": the class {_where(spider_class)} has no name; add name = {name.lower()!r} to it"
    close = difflib.get_close_matches(name, spiders, n=1)
    return f": did you mean {close[0]!r}?" if close else ""


def _scan(
    modules: Iterable[str], project_dir: Path | None
) -> tuple[dict[str, list[type[Spider]]], list[tuple[str, str]], list[type[Spider]]]:
    """The spiders of ``modules`` by name (more than one where names clash), what failed in
    the submodules that could not be imported, and the ``Spider`` subclasses with no name
    there. A listed module that cannot be imported is an error: nothing can be found."""
    _ensure_importable(project_dir or Path.cwd())
    found: dict[str, list[type[Spider]]] = {}
    broken: list[tuple[str, str]] = []  # (module, why it failed to import)
    nameless: list[type[Spider]] = []
    for module in _walk(modules, broken):
        for spider_class in _spider_classes_in(module):
            if not spider_class.name:
                nameless.append(spider_class)
                continue
            named = found.setdefault(spider_class.name, [])
            if spider_class not in named:  # a module walked twice finds its classes again
                named.append(spider_class)
    return found, broken, nameless


def _ensure_importable(project_dir: Path) -> None:
    """Make the project's own folders (spiders/, pipelines/) importable, as ``python -m`` does."""
    path = str(project_dir.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def _walk(modules: Iterable[str], broken: list[tuple[str, str]]) -> Iterator[ModuleType]:
    """Each of ``modules`` and their submodules; a submodule's import failure goes to ``broken``."""
    for name in modules:
        module = _import(name)
        yield module
        # onerror: a package that fails is reported by the import below, not by the walk
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}.", onerror=_skip):
            try:
                yield _import(info.name)
            except ConfigError as exc:
                broken.append((info.name, str(exc)))


def _skip(name: str) -> None:
    return None


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
        habits.annotate(exc)  # a Scrapy spider's 'yield from', carried into an async def
        raise ConfigError(f"spiders: importing {name!r} failed: {describe(exc)}{notes_of(exc)}") from None


def _spider_classes_in(module: ModuleType) -> Iterator[type[Spider]]:
    """The ``Spider`` subclasses defined in ``module``, named or not (a base class has no name)."""
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, Spider) and value.__module__ == module.__name__:
            yield value


def _where(spider_class: type[Spider]) -> str:
    return f"{spider_class.__module__}.{spider_class.__qualname__}"
