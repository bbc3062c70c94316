"""The commands the framework prints for pasting start with what runs this interpreter."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scraper import invocation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_answer() -> Iterator[None]:
    invocation.command_prefix.cache_clear()
    yield
    invocation.command_prefix.cache_clear()


def fake_interpreter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    python = folder / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python


def test_the_paths_python_is_named_as_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = fake_interpreter(tmp_path / "venv" / "bin")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(python.parent))
    assert invocation.command_prefix() == "python -m scraper"


def test_another_interpreter_is_named_by_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Printed as 'python', the summary's commands ran the system's Python, which lacked the
    venv's packages (ModuleNotFoundError: No module named 'multidict')."""
    python = fake_interpreter(tmp_path / "my project" / ".venv" / "bin")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path / "my project")
    assert invocation.command_prefix() == ".venv/bin/python -m scraper"
    invocation.command_prefix.cache_clear()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")  # not inside the interpreter's folder: its whole path, quoted
    assert invocation.command_prefix() == f"'{tmp_path}/my project/.venv/bin/python' -m scraper"


def test_the_demos_look_command_runs_as_printed_without_an_activated_venv(tmp_path: Path) -> None:
    folder = os.path.dirname(sys.executable)
    path = os.pathsep.join(part for part in os.environ["PATH"].split(os.pathsep) if part != folder)
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    database = tmp_path / "demo.db"
    demo = subprocess.run(
        [sys.executable, "-m", "scraper", "demo", "--products", "2", "--db", str(database)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    look = next(line for line in demo.stdout.splitlines() if line.lstrip().startswith("look"))
    command = look.split("look", 1)[1].strip()
    assert not command.startswith("python ")
    pasted = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert pasted.returncode == 0, pasted.stderr
    assert "2 rows" in pasted.stdout
