"""The user's project as the command line sees it: the folder holding ``config.yaml``, its
spiders, and the settings of one spider with every layer applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scraper.errors import SettingsError
from scraper.registry import find_spiders, load_spider_class
from scraper.settings import Settings, expand_dotted_keys, load_settings, read_config
from scraper.spider import Spider

CONFIG_FILE = "config.yaml"


@dataclasses.dataclass(frozen=True)
class Project:
    directory: Path
    config: dict[str, Any]
    overrides: Sequence[str] = ()

    @classmethod
    def load(cls, config_path: Path | None = None, overrides: Sequence[str] = ()) -> Project:
        """The project around ``config_path`` (default: the nearest config.yaml, which may be
        absent: see ``nearest_config``)."""
        if config_path is not None and not config_path.exists():
            raise SettingsError(f"config file {config_path} does not exist")
        path = config_path or nearest_config(Path.cwd())
        # a config.yaml that is a folder is an error (read_config's), not the defaults in silence
        config = read_config(path) if path.exists() else {}
        project = cls(path.parent.resolve(), config, tuple(overrides))
        project.settings()  # a bad config.yaml or -s fails here, before anything else
        return project

    def settings(self, spider_class: type[Spider] | None = None) -> Settings:
        spider_settings = {}
        if spider_class is not None:
            if not isinstance(spider_class.settings, Mapping):
                kind = type(spider_class.settings).__name__
                raise SettingsError(f"{spider_class.__name__}.settings must be a dict of settings, not {kind}")
            spider_settings = expand_dotted_keys(spider_class.settings)
            if "spiders" in spider_settings:  # the spiders are found before any spider's settings are read
                raise SettingsError(
                    f"{spider_class.__name__}.settings: 'spiders' says where spiders are found, so it has no "
                    "effect in a spider's own settings; set it in config.yaml"
                )
        try:
            return load_settings(config=self.config, spider=spider_settings, overrides=self.overrides)
        except SettingsError as exc:
            where = f" (with {spider_class.__name__}.settings)" if spider_settings and spider_class else ""
            raise SettingsError(f"{exc}{where}") from None

    def spiders(self) -> dict[str, type[Spider]]:
        return find_spiders(self.settings().spiders, project_dir=self.directory)

    def spider_class(self, name: str) -> type[Spider]:
        return load_spider_class(name, self.settings().spiders, project_dir=self.directory)

    def database(self, spider_class: type[Spider]) -> Path:
        path = self.settings(spider_class).database_path(spider_class.name)
        return path if path.is_absolute() else self.directory / path


def nearest_config(folder: Path) -> Path:
    """``config.yaml`` in ``folder`` or in the nearest folder above it that has one, as Scrapy
    finds its scrapy.cfg: a command works from anywhere inside a project (from spiders/, it
    found no spiders). Without one anywhere, ``folder``'s (absent: the defaults apply there)."""
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_FILE).exists():
            return candidate / CONFIG_FILE
    return folder / CONFIG_FILE
