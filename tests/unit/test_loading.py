"""Resolving config.yaml's "module:name" strings: every way it fails is one line naming the
setting, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.errors import ConfigError
from scraper.loading import load_object


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("def stage(:\n    pass\n", r"SyntaxError: .*\(broken_stage\.py, line 1\)"),
        ("raise RuntimeError('no database configured')\n", r"RuntimeError: no database configured"),
    ],
    ids=["syntax error", "raises on import"],
)
def test_a_module_that_fails_to_import_is_one_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, said: str
) -> None:
    """A pipeline module with a SyntaxError, or one raising as it is imported, stopped the
    run with a 36-line traceback (a spider module's gets one line)."""
    (tmp_path / "broken_stage.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ConfigError, match=rf"^pipelines: importing 'broken_stage' for 'broken_stage:Stage' failed: {said}"
    ):
        load_object("broken_stage:Stage", setting="pipelines")
