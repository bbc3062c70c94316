"""The benchmark harness's choice of kinds: a clone set up by the README's quick start has no
uvloop (the ``fast`` extra is optional), and ``bench/run.py`` must still run there."""

from __future__ import annotations

import pytest

from bench import run, throughput
from scraper import runtime


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "uvloop_available", lambda: False)


@pytest.mark.usefixtures("without_uvloop")
def test_without_uvloop_the_default_kinds_leave_the_uvloop_comparison_out() -> None:
    assert throughput.parse_args([]).kinds == ["reference", "sqlite", "memory", "scrapy", "crawlee"]
    assert "asyncio's loop (uvloop is not installed" in run._event_loop()


@pytest.mark.usefixtures("without_uvloop")
def test_without_uvloop_asking_for_the_uvloop_comparison_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        throughput.parse_args(["--kinds", "reference,reference+uvloop"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "reference+uvloop needs uvloop, which is not installed (pip install -e '.[fast]')" in error


def test_with_uvloop_the_default_kinds_compare_the_reference_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "uvloop_available", lambda: True)
    assert throughput.parse_args([]).kinds == list(throughput.DEFAULT_KINDS)
    assert "reference+uvloop" in throughput.DEFAULT_KINDS
    assert run._event_loop() == "uvloop"
