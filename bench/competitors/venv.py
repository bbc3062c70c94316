"""The separate virtual environment the competitor crawlers (Scrapy, Crawlee) run in, so the
project's own environment never gets their dependencies.

``ensure_venv()`` creates ``bench/competitors/.venv`` (``python -m venv`` with the running
interpreter, then ``pip install -q -r requirements.txt``) when it is missing or when
``requirements.txt`` changed since it was installed (a hash of the file is kept inside the
venv), and returns the venv's python. ``python bench/competitors/venv.py`` does the same and
prints that path. The repository's ``.gitignore`` already ignores ``.venv/``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = "requirements.txt"
VENV = ".venv"
STAMP = "requirements.sha256"  # inside the venv: the hash of the requirements it was built from


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def ensure_venv(root: Path | None = None) -> Path:
    """Create or refresh the competitors' venv under ``root`` (default: this folder) when needed;
    return the path of its python."""
    root = Path(root) if root is not None else HERE
    requirements, venv = root / REQUIREMENTS, root / VENV
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    python, stamp = venv_python(venv), venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text(encoding="ascii").strip() == digest:
        return python
    print(f"installing the competitors' venv in {venv} (Scrapy, Crawlee; takes a minute or two) …",
          file=sys.stderr, flush=True)  # fmt: skip
    started = time.perf_counter()
    if venv.exists():  # stale: rebuild from scratch so removed pins do not linger
        shutil.rmtree(venv)
    # -I: isolated, so that the stdlib's venv runs, not this file (same name) from the current directory
    subprocess.run([sys.executable, "-I", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(digest + "\n", encoding="ascii")  # last: a failed install is retried next time
    print(f"competitors' venv ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return python


if __name__ == "__main__":
    print(ensure_venv())
