"""The benchmark harness: its choice of kinds (a clone set up by the README's quick start has
no uvloop, and ``bench/run.py`` must still run there), and what it computes and prints without
timing anything: medians of the correct runs only, verdicts only where the targets apply,
options checked before any work, a clean exit on SIGTERM. No test asserts a timing."""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import NoReturn

import pytest

from bench import calls, durability, instructions, latency, run, site, throughput
from bench._common import ab_rounds, plural
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


# -- medians of the correct runs only (throughput.summarise, paired, run.py's summary) ---------


def _run(
    round_: str, kind: str, seconds: float = 2.0, *, products: int = 100, status: str = "finished"
) -> throughput.RunResult:
    """A run of ``kind`` that crawled 110 pages (100 products) in ``seconds``, 0.1 s CPU."""
    return throughput.RunResult(round_, kind, status, 110, products, products, seconds, 0.1, 50.0, 0.5)


def _timed_out(round_: str, kind: str) -> throughput.RunResult:
    return throughput.RunResult.failed(round_, kind, "exit timeout")


def test_summarise_takes_its_medians_of_the_correct_runs_only() -> None:
    results = [
        _run("warm-up 1", "reference", 1.0),
        *(_run(str(n), "reference", 2.0) for n in range(1, 5)),
        _run("1", "sqlite", 4.0),
        *(_timed_out(str(n), "sqlite") for n in range(2, 5)),
        _run("1", "memory", 4.0, products=99),  # a product missing: not a correct run
        *(_timed_out(str(n), "memory") for n in range(2, 5)),
    ]
    summaries = throughput.summarise(results, 100)
    assert summaries["reference"].rate == 55.0
    assert (summaries["reference"].runs, summaries["reference"].measured) == (4, 4)
    sqlite = summaries["sqlite"]
    assert (sqlite.rate, sqlite.runs, sqlite.measured) == (27.5, 1, 4)
    assert sqlite.cpu_ms_per_page == pytest.approx(1000 * 0.1 / 110)
    memory = summaries["memory"]
    assert (memory.rate, memory.cpu_ms_per_page, memory.peak_rss, memory.runs) == (None, None, None, 0)
    against = throughput.paired(results, "sqlite", "reference", expected=100)
    assert against is not None and against.ratios == (0.5,)
    assert throughput.paired(results, "memory", "reference", expected=100) is None


def test_a_kind_without_a_correct_run_shows_dashes_and_fails_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = throughput.parse_args(["--kinds", "reference,sqlite", "--products", "100"])
    results = [_run("1", "reference"), _timed_out("1", "sqlite")]
    assert throughput.report(args, results) == 1
    out = capsys.readouterr().out
    medians = out.split("medians of the correct measured runs", 1)[1]
    sqlite_row = next(line for line in medians.splitlines() if line.strip().startswith("sqlite"))
    assert "nan" not in sqlite_row and "0.00" not in sqlite_row
    assert "0/1" in sqlite_row


def test_run_summary_shows_a_kind_without_a_correct_run_as_dashes() -> None:
    results = [_run("1", "reference"), _timed_out("1", "sqlite"), _run("1", "memory", 4.0)]
    summary = _render(results)
    sqlite_row = next(line for line in summary.splitlines() if "durable SQLite frontier" in line)
    assert sqlite_row.count("| - ") >= 4 and "nan" not in sqlite_row
    assert "sqlite frontier: pages/s" not in summary  # no verdict without a correct pair
    assert "memory frontier: pages/s >= 0.95x the reference | 0.50x | no |" in summary


def _render(results: list[throughput.RunResult], rounds: int = 1) -> str:
    return run.render_summary(
        server="nginx (1 worker)",
        ceiling=None,
        crawlers=throughput.summarise(results, 100),
        crawler_runs=results,
        heavy={},
        heavy_runs=[],
        heavy_products=100,
        big=[],
        big_products=100,
        latency_args=argparse.Namespace(pages=10, concurrency=5),
        latency_runs=[],
        rounds=rounds,
        products=100,
    )


# -- wording ---------------------------------------------------------------------------------


def test_counts_are_pluralised_properly() -> None:
    assert plural(1, "round") == "1 round"
    assert plural(0, "warm-up round") == "0 warm-up rounds"
    assert plural(2_000, "page") == "2,000 pages"
    assert "of 1 A/B round (" in _render([_run("1", "reference")], rounds=1)
    assert "of 3 A/B rounds (" in _render([_run("1", "reference")], rounds=3)


def test_the_summary_has_an_x_scrapy_column_only_when_scrapy_ran() -> None:
    without = _render([_run("1", "reference"), _run("1", "sqlite")])
    assert "x Scrapy" not in without
    assert all(line.count("|") == 6 for line in without.split("\n\n")[1].splitlines())
    with_scrapy = _render([_run("1", "reference"), _run("1", "sqlite"), _run("1", "scrapy", 8.0)])
    assert "| x Scrapy |" in with_scrapy
    sqlite_row = next(line for line in with_scrapy.splitlines() if "durable SQLite frontier" in line)
    assert sqlite_row.endswith("| 4.0 |")


def test_kinds_that_store_no_products_are_not_shown_as_checked() -> None:
    assert throughput.RunResult("1", "nowrite", "finished", 110, 0, 0, 1.0, 0.1, 50.0, None).check(100) == "not checked"
    assert _run("1", "reference-nowrite", products=0).check(100) == "not checked"
    assert _run("1", "sqlite").check(100) == "ok"
    assert _timed_out("1", "nowrite").check(100) == "status exit timeout"


def test_latency_help_describes_the_site_choices_in_their_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        latency.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{aiohttp,raw}" in help_text
    assert help_text.index("aiohttp, an aiohttp app") < help_text.index("raw, a bare asyncio protocol")


# -- verdicts only where the targets apply -------------------------------------------------------


def test_latency_targets_are_judged_for_our_crawler_only() -> None:
    assert latency.verdict("reference", 60.0, 500.0) == "-"
    assert latency.verdict("fetch", 60.0, 500.0) == "-"
    assert latency.verdict("sqlite", 60.0, 500.0) == "NOT met"
    assert latency.verdict("memory", 2.5, 50.0) == "met"


def test_latency_accepts_no_delay_and_shows_no_ratio_to_a_zero_ideal() -> None:
    assert latency.parse_args(["--delay", "0"]).delay == 0
    assert latency.times_ideal(1.5, 0.0) == "-"
    assert latency.times_ideal(3.0, 2.0) == "1.50x"


def test_with_the_heavy_spider_the_reference_targets_are_not_judged() -> None:
    slow = throughput.Paired((0.5,), (1.0,))
    assert "NOT met" in throughput.target_verdict("sqlite", slow, "bench")
    heavy = throughput.target_verdict("sqlite", slow, "heavy")
    assert "NOT met" not in heavy and "met" not in heavy.replace("does not apply", "")
    assert throughput.target_verdict("reference", throughput.Paired((1.0,), (0.0,)), "bench") == "-"


def test_the_pool_speedup_is_printed_with_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    results = [
        _run("1", "sqlite", 4.0),
        _run("1", "pool", 2.0),
        _run("2", "pool", 2.0),
        _run("2", "sqlite", 3.0),
        _run("3", "sqlite", 4.0),
        _timed_out("3", "pool"),
    ]
    line = throughput.pool_speedup_line(results, 100, "heavy")
    assert line is not None
    assert "1.750x" in line and ">= 1.6x: met" in line  # the median of 2.0 and 1.5; round 3 failed
    assert "target >=" not in (throughput.pool_speedup_line(results, 100, "bench") or "")
    args = throughput.parse_args(["--spider", "heavy", "--kinds", "sqlite,pool", "--products", "100"])
    assert throughput.report(args, results) == 1  # round 3's pool timed out
    assert "pool over one process (sqlite): 1.750x" in capsys.readouterr().out


# -- bad option values, refused before anything runs ----------------------------------------------


def _refused(parse: Callable[[], object], capsys: pytest.CaptureFixture[str], option: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in error and option in error


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--per-host", "0"], "--per-host"),
        (["--padding", "-1"], "--padding"),
        (["--rounds", "0"], "--rounds"),
        (["--warmup", "-1"], "--warmup"),
        (["--products", "0"], "--products"),
        (["--timeout", "0"], "--timeout"),
        (["--kinds", ","], "--kinds"),
        (["--kinds", "pool", "--parse-processes", "0"], "--parse-processes"),
        (["--kinds", "sqlite,pool", "--parse-processes", "-1"], "--parse-processes"),
    ],
)
def test_throughput_refuses_bad_values(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(lambda: throughput.parse_args(argv), capsys, option)


def test_throughput_ignores_parse_processes_without_the_pool() -> None:
    assert throughput.parse_args(["--kinds", "sqlite", "--parse-processes", "0"]).parse_processes == 0


@pytest.mark.parametrize(
    ("argv", "option"), [(["--concurrency", "0"], "--concurrency"), (["--padding", "-5"], "--padding")]
)
def test_durability_refuses_bad_values(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(lambda: durability.parse_args(argv), capsys, option)


@pytest.mark.parametrize(
    ("argv", "option"),
    [(["--kinds", ","], "--kinds"), (["--products", "0"], "--products"), (["--padding", "-1"], "--padding")],
)
def test_calls_refuses_bad_values_before_writing_a_site(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(site, "write_site", _must_not_run)
    _refused(lambda: calls.main(argv), capsys, option)


@pytest.mark.parametrize(("argv", "option"), [(["--kinds", ","], "--kinds"), (["--pages", "0"], "--pages")])
def test_instructions_refuses_bad_values_before_running_valgrind(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(instructions, "slow_site_in_process", _must_not_run)
    _refused(lambda: instructions.main(argv), capsys, option)


def test_latency_refuses_a_negative_delay(capsys: pytest.CaptureFixture[str]) -> None:
    _refused(lambda: latency.parse_args(["--delay", "-1"]), capsys, "--delay")


def test_run_checks_its_rounds_before_anything_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throughput, "measure", _must_not_run)
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--rounds", "0"])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # not even a section header
    assert err.strip().splitlines()[-1].endswith("error: --rounds must be at least 1, not 0")
    assert "--kinds" not in err  # run.py's own usage, not throughput.py's


class _Started(Exception):
    """Raised by a stand-in for throughput.measure: the arguments are what the test needs."""


@pytest.mark.parametrize(
    ("argv", "rounds", "products"),
    [(["--quick"], 1, 300), (["--quick", "--rounds", "3"], 3, 300), ([], 9, 2000)],  # 9: the default,
)
def test_run_quick_honours_an_explicit_rounds(
    argv: list[str], rounds: int, products: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[argparse.Namespace] = []

    def measure(args: argparse.Namespace, *, ceiling: bool = False) -> None:
        seen.append(args)
        raise _Started

    monkeypatch.setattr(throughput, "measure", measure)
    with pytest.raises(_Started):
        run.main([*argv, "--no-competitors"])
    assert (seen[0].rounds, seen[0].products) == (rounds, products)


def _must_not_run(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("ran before its options were checked")


# -- calls.py: site-packages grouped by package, wherever the venv is -------------------------------


def test_module_of_groups_site_packages_by_package_also_inside_the_repository() -> None:
    venv = f"{calls.ROOT}/.venv/lib/python3.11/site-packages"
    assert calls.module_of(f"{venv}/aiohttp/client_reqrep.py") == "aiohttp"
    assert calls.module_of(f"{venv}/yarl/_url.py") == "yarl"
    assert calls.module_of("/opt/venv/lib/python3.11/site-packages/selectolax/__init__.py") == "selectolax"
    assert calls.module_of(f"{calls.ROOT}/scraper/engine.py") == "scraper/engine.py"
    assert calls.module_of("/usr/lib/python3.11/asyncio/events.py") == "stdlib events"
    assert calls.module_of("<string>") == "<string>"


# -- durability.py: alternating order, median of the per-round ratios --------------------------------


def _backend_run(round_: str, backend: str, seconds: float, products: int = 100) -> durability.RunResult:
    return durability.RunResult(round_, backend, 110, products, products, 0, "finished", seconds, 0.1)


def test_durability_alternates_the_order_of_its_measured_rounds() -> None:
    rounds = dict(ab_rounds(durability.BACKENDS, rounds=3, warmup=1))  # what durability.py runs
    assert rounds["warm-up 1"] == ("sqlite", "memory")
    assert rounds["1"] == ("sqlite", "memory")
    assert rounds["2"] == ("memory", "sqlite")
    assert rounds["3"] == ("sqlite", "memory")


def test_durability_judges_the_median_of_the_per_round_ratios() -> None:
    # per round sqlite / memory: 1.0, 0.8, 0.8; of the medians: 55 / 55 = 1.0
    results = [
        _backend_run("1", "sqlite", 2.0),
        _backend_run("1", "memory", 2.0),
        _backend_run("2", "memory", 1.6),
        _backend_run("2", "sqlite", 2.0),
        _backend_run("3", "sqlite", 1.0),
        _backend_run("3", "memory", 0.8),
        _backend_run("4", "sqlite", 1.0),
        _backend_run("4", "memory", 1.0, products=99),  # wrong: round 4 has no ratio
    ]
    ratios = durability.per_round_ratios(results, 100)
    assert ratios == pytest.approx([1.0, 0.8, 0.8])
    line = durability.ratio_line(ratios)
    assert "median of the per-round ratios): 0.800" in line and "NOT met" in line
    assert "no round with both runs correct" in durability.ratio_line([])


# -- SIGTERM and Ctrl-C: a clean exit that runs the cleanup ------------------------------------------


@pytest.mark.parametrize(("stop", "code", "said"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_stopped_script_cleans_up_and_exits_with_one_line(
    stop: str, code: int, said: str, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "cleanup-ran"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(calls.ROOT)!r})
        from bench._common import run_main

        def main() -> int:
            try:
                os.kill(os.getpid(), signal.{stop})
                signal.pause() if hasattr(signal, "pause") else None
                return 0
            finally:
                open({str(marker)!r}, "w").close()

        run_main(main)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == code
    assert marker.exists()
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and said in done.stderr
