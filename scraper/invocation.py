"""How to run this program again from the user's shell: the words that start the commands the
framework prints for pasting (a summary's "look" and "resume", a suggested query, how to
finish another crawl)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys
from pathlib import Path


@functools.cache
def command_prefix() -> str:
    """``python -m scraper`` when ``python`` on PATH is this interpreter (an activated venv);
    else this interpreter's own path, relative to the current folder when inside it
    (``.venv/bin/python -m scraper``, as the README's quick start runs it). Printed as
    ``python``, the command found another Python, without this one's packages."""
    executable = sys.executable
    if not executable:  # an embedded interpreter: nothing better to say
        return "python -m scraper"
    for name in ("python", "python3"):
        found = shutil.which(name)
        if found is not None and os.path.abspath(found) == os.path.abspath(executable):
            return f"{name} -m scraper"
    path = Path(os.path.abspath(executable))
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return f"{shlex.quote(shown)} -m scraper"
