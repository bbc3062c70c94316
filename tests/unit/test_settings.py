"""Tests for the settings model: defaults, layered loading, -s overrides and error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from scraper.errors import ConfigError, SettingsError
from scraper.settings import (
    SCRAPY_SETTINGS,
    SCRAPY_WITHOUT_SETTING,
    HostPolicy,
    Settings,
    load_settings,
    parse_overrides,
    read_config,
)
from tests.conftest import make_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.spiders == ["spiders"]
    assert settings.database == "data/{spider}.db"
    assert settings.concurrency == 32
    assert settings.per_host == HostPolicy(concurrency=8, delay=0.0)
    assert (settings.retry.times, settings.retry.backoff, settings.retry.max_backoff) == (
        3,
        0.5,
        60,
    )
    assert settings.timeout == 30
    assert settings.max_response_bytes == 16 * 1024 * 1024
    assert settings.max_depth == 0
    assert settings.close.max_items == settings.close.max_pages == 0
    assert settings.user_agent.startswith("scraper/")
    assert settings.hosts == {}


def test_make_settings_helper() -> None:
    settings = make_settings(concurrency=4)
    assert (settings.concurrency, settings.retry.backoff, settings.pipelines) == (4, 0.0, [])


def test_layer_precedence() -> None:
    settings = load_settings(
        config={"concurrency": 10, "timeout": 5, "max_depth": 3},
        spider={"concurrency": 20, "timeout": 7},
        overrides=["concurrency=30"],
    )
    assert (settings.concurrency, settings.timeout, settings.max_depth) == (30, 7, 3)


def test_nested_keys_merge_deeply() -> None:
    settings = load_settings(
        config={"per_host": {"concurrency": 2, "delay": 1.0}, "retry": {"times": 5}},
        spider={"per_host": {"delay": 2.0}},
        overrides=["retry.backoff=0"],
    )
    assert settings.per_host == HostPolicy(concurrency=2, delay=2.0)
    assert (settings.retry.times, settings.retry.backoff, settings.retry.max_backoff) == (5, 0, 60)


@pytest.mark.parametrize(
    ("override", "path", "value"),
    [
        ("per_host.delay=1.5", ("per_host", "delay"), 1.5),
        ("close.max_items=10", ("close", "max_items"), 10),
        ("spiders=[a, b.c]", ("spiders",), ["a", "b.c"]),
        ("database=out/{spider}.sqlite", ("database",), "out/{spider}.sqlite"),
        ("user_agent=", ("user_agent",), ""),
        (
            "user_agent=bot/1.0 (+https://x.org/?a=b)",
            ("user_agent",),
            "bot/1.0 (+https://x.org/?a=b)",
        ),
        # '#' is text on the command line, not a YAML comment: the agent was cut to 'bot'
        ("user_agent=bot #1", ("user_agent",), "bot #1"),
        ("user_agent=#1 bot", ("user_agent",), "#1 bot"),
        ('default_headers={"X-Tag": "a #b"}', ("default_headers",), {"X-Tag": "a #b"}),
        ("retry.times=2 ", ("retry", "times"), 2),
    ],
)
def test_dotted_overrides_parse_values_as_yaml(override: str, path: tuple[str, ...], value: Any) -> None:
    node: Any = load_settings(overrides=[override])
    for part in path:
        node = getattr(node, part)
    assert node == value
    assert type(node) is type(value)


def test_parse_overrides_builds_nested_dicts() -> None:
    assert parse_overrides(["per_host.delay=1", "per_host.concurrency=2", "timeout=3"]) == {
        "per_host": {"delay": 1, "concurrency": 2},
        "timeout": 3,
    }


def test_a_host_pattern_keeps_its_dots_in_a_dotted_override() -> None:
    overrides = ["hosts.127.0.0.1.delay=0.5", "hosts.*.example.com.concurrency=2", "hosts.localhost.delay=1"]
    settings = load_settings(overrides=overrides)
    assert settings.policy_for("127.0.0.1").delay == 0.5
    assert settings.policy_for("shop.example.com").concurrency == 2
    assert settings.policy_for("localhost").delay == 1.0
    assert settings.policy_for("example.org") == settings.per_host


def test_an_ipv6_host_pattern_is_taken() -> None:
    assert load_settings(config={"hosts": {"::1": {"delay": 2}}}).policy_for("::1").delay == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overrides": ["concurrency=abc"]}, "'concurrency'"),
        ({"config": {"per_host": {"delay": -1}}}, "'per_host.delay'"),
        ({"spider": {"close": {"max_items": "many"}}}, "'close.max_items'"),
        ({"config": {"no_such_key": 1}}, "unknown setting 'no_such_key'"),
        ({"overrides": ["per_host.dealy=1"]}, "'per_host.dealy' (did you mean 'delay'?)"),
        ({"config": {"retry": {"tims": 1}}}, "'retry.tims' (did you mean 'times'?)"),
        ({"config": {"hosts": {"a.test": {"dealy": 1}}}}, "'hosts.a.test.dealy' (did you mean 'delay'?)"),
        (  # the pattern keeps its dots: this read as pattern 'a.test.dealy', "should be a mapping"
            {"overrides": ["hosts.a.test.dealy=1"]},
            "setting 'hosts.a.test.dealy': 'dealy' is not a host's setting (did you mean 'delay'? a host takes "
            "concurrency, delay, max_delay, adaptive, max_pages: hosts.a.test.delay=1)",
        ),
        ({"overrides": ["hosts.localhost=1"]}, "setting 'hosts.localhost': input should be a mapping of settings"),
        # a pattern's last part read as a misspelt setting ("'com' is not a host's setting")
        (
            {"config": {"hosts": {"*.x.com": 5}}},
            "setting 'hosts.*.x.com': '*.x.com' needs settings, not 5 (a host takes concurrency, delay, max_delay, "
            "adaptive, max_pages: hosts.*.x.com.delay=1)",
        ),
        ({"config": {"hosts": {"[a-": {"delay": 1}}}}, "setting 'hosts': '[a-': not a host or a glob of hosts"),
        ({"spider": {"DOWNLOAD_DELAY": 1}}, "'DOWNLOAD_DELAY' (Scrapy's DOWNLOAD_DELAY is 'per_host.delay' here)"),
        ({"overrides": ["download_delay=1"]}, "(Scrapy's DOWNLOAD_DELAY is 'per_host.delay' here)"),
        ({"config": {"ITEM_PIPELINES": {}}}, "is 'pipelines' here (an ordered list of 'module:Class'))"),
        (
            {"config": {"pipelines": {"pipelines.dedup.DedupByKey": 500, "pipelines.clean:Normalize": 100}}},
            "setting 'pipelines': an ordered list of 'module:Class', not Scrapy's {path: order} mapping: "
            "[pipelines.clean:Normalize, pipelines.dedup:DedupByKey]",
        ),
        ({"spider": {"middlewares": {"m.Retry": 1}}}, "setting 'middlewares': an ordered list of 'module:Class'"),
        ({"overrides": ["concurrency"]}, "expected KEY=VALUE"),
        ({"overrides": ["=5"]}, "expected KEY=VALUE"),
        (
            {"config": {"database": "data/{name}.db"}},
            "setting 'database': unknown placeholder {name} (the one known is {spider}), got 'data/{name}.db'",
        ),
        ({"config": {"database": "data/{spider.db"}}, "setting 'database': not a path template (expected '}'"),
        ({"overrides": ["database=data/{spider}/"]}, "setting 'database': a database file path is needed"),
        ({"config": {"database": " "}}, "setting 'database': a database file path is needed"),
        (  # matched against the host alone, it never applied, without a word
            {"overrides": ['hosts={"127.0.0.1:8903": {"delay": 1}}']},
            "setting 'hosts': '127.0.0.1:8903': a pattern matches a host without its port or brackets; "
            "write '127.0.0.1'",
        ),
        ({"config": {"hosts": {"[::1]:80": {"delay": 1}}}}, "without its port or brackets; write '::1'"),
        # a scheme, a path, spaces, an empty pattern: each matched nothing, while the policy line said it applied
        (
            {"config": {"hosts": {"http://127.0.0.1": {"delay": 2}}}},
            "setting 'hosts': 'http://127.0.0.1': a pattern matches a host alone, without a scheme, path or "
            "spaces; write '127.0.0.1'",
        ),
        ({"config": {"hosts": {"https://*.example.com:8443/shop": {"delay": 2}}}}, "spaces; write '*.example.com'"),
        ({"config": {"hosts": {"127.0.0.*/shop": {"delay": 2}}}}, "spaces; write '127.0.0.*'"),
        ({"config": {"hosts": {" 127.0.0.1": {"delay": 2}}}}, "spaces; write '127.0.0.1'"),
        ({"config": {"hosts": {"": {"delay": 2}}}}, "setting 'hosts': '': an empty pattern matches no host"),
        ({"config": {"hosts": {"*[": {"delay": 2}}}}, "setting 'hosts': '*[': not a host or a glob of hosts"),
        ({"config": {"hosts": {"shop example.com": {"delay": 2}}}}, "'shop example.com': not a host or a glob"),
        # a typo, not a crawl: 20,000,000 workers took 8 GB in 24 s, 100,000 processes were forked
        ({"overrides": ["concurrency=20000000"]}, "setting 'concurrency': input should be less than or equal to 50000"),
        ({"config": {"parse_processes": 100_000}}, "setting 'parse_processes': input should be less than or equal"),
        # in a settings file's words, not pydantic's ("a valid frozenset", "instance of hostpolicy")
        ({"overrides": ["retry.statuses=abc"]}, "setting 'retry.statuses': input should be a list, got 'abc'"),
        ({"config": {"per_host": 3}}, "setting 'per_host': input should be a mapping of settings, got 3"),
        ({"overrides": ["retry.statuses=[600]"]}, "input should be less than or equal to 599, got 600"),
        ({"overrides": ["timeout=.inf"]}, "setting 'timeout': input should be a finite number, got inf"),
        # every request failed with a ValueError that did not name the setting
        ({"config": {"user_agent": "a\r\nX-Evil: 1"}}, "setting 'user_agent': a header value cannot hold a line break"),
        ({"spider": {"default_headers": {"X-A": "b\nc"}}}, "setting 'default_headers': header 'X-A': a header cannot"),
        # accepted, it read "back-off 5s..1s" and waited 1 s
        (
            {"overrides": ["retry.backoff=5", "retry.max_backoff=1"]},
            "setting 'retry': backoff 5 is above max_backoff 1: raise max_backoff",
        ),
    ],
)
def test_settings_errors_name_the_key(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**kwargs)
    assert message in str(caught.value)


def test_settings_error_is_a_config_error() -> None:
    assert issubclass(SettingsError, ConfigError)


def test_read_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("concurrency: 4\nper_host: {delay: 0.5}\n", encoding="utf-8")
    assert read_config(path) == {"concurrency": 4, "per_host": {"delay": 0.5}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hosts:\n  b.test: &slow {delay: 2}\n  a.test:\n    <<: *slow\n    delay: 3\n", {"delay": 3}),
        (  # a merge inside an anchor, used again: merging had rewritten it, and it read as a repeat
            "hosts:\n  b.test:\n    <<: &a\n      <<: {concurrency: 8}\n      concurrency: 2\n    delay: 1\n"
            "  a.test: *a\n",
            {"concurrency": 2},
        ),
    ],
)
def test_read_config_merges_a_yaml_anchor_without_calling_it_a_repeat(
    tmp_path: Path, text: str, expected: dict[str, int]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert read_config(path)["hosts"]["a.test"] == expected


def test_read_config_empty_file_is_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# only comments\n", encoding="utf-8")
    assert read_config(path) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("concurrency: [1, 2\n", "is not valid YAML at line 2, column 1: expected ',' or ']'"),
        ("per_host: a: b\n", "is not valid YAML at line 1, column 12: mapping values are not allowed here"),
        ("- concurrency\n- timeout\n", "must hold a mapping of settings, not list"),
        # the last had won in silence
        ("concurrency: 4\nper_host: {delay: 1}\nconcurrency: 8\n", "at line 3, column 1: 'concurrency' is given twice"),
        ("per_host:\n  delay: 1\n  delay: 2\n", "at line 3, column 3: 'delay' is given twice \\(first at line 2\\)"),
    ],
)
def test_read_config_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match=message):
        read_config(path)


def test_read_config_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    """It was a traceback ending in UnicodeDecodeError."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b'user_agent: "caf\xe9"\n')
    with pytest.raises(SettingsError, match=r"config\.yaml is not UTF-8 text: byte 0xe9 at offset 16$"):
        read_config(path)


def test_read_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(SettingsError, match=r"cannot read .*missing\.yaml"):
        read_config(path)


def test_policy_for_host_globs() -> None:
    settings = load_settings(
        config={
            "per_host": {"concurrency": 4, "delay": 0.25},
            "hosts": {"*.example.com": {"delay": 1.0}, "api.*": {"concurrency": 1}},
        }
    )
    assert settings.policy_for("shop.example.com") == HostPolicy(concurrency=4, delay=1.0)
    assert settings.policy_for("api.example.org") == HostPolicy(concurrency=1, delay=0.25)
    assert settings.policy_for("example.com") == HostPolicy(concurrency=4, delay=0.25)
    assert settings.policy_for("example.org") is settings.per_host


def test_every_matching_pattern_applies_the_most_specific_winning_a_field_two_set() -> None:
    """The first matching pattern alone applied: with -s 'hosts.127.0.0.*.delay=0' -s
    'hosts.127.0.0.2.concurrency=1', 127.0.0.2 had 8 requests in flight, while the policy
    printed at the start said 1; and config.yaml's entries came before -s's."""
    settings = load_settings(
        config={"hosts": {"*": {"delay": 2.0}, "*.example.com": {"delay": 1.0, "concurrency": 3}}},
        overrides=["hosts.shop.example.com.delay=9", "hosts.*.com.max_pages=5"],
    )
    assert settings.policy_for("shop.example.com") == HostPolicy(concurrency=3, delay=9.0, max_pages=5)
    assert settings.policy_for("www.example.com") == HostPolicy(concurrency=3, delay=1.0, max_pages=5)
    assert settings.policy_for("example.org") == HostPolicy(delay=2.0)


def test_host_glob_pattern_is_case_insensitive() -> None:
    settings = load_settings(config={"hosts": {"*.EXAMPLE.com": {"concurrency": 2}}})
    assert settings.policy_for("shop.example.com").concurrency == 2


@pytest.mark.parametrize("path", [("concurrency",), ("per_host", "delay"), ("retry", "times")])
def test_settings_are_frozen(path: tuple[str, ...]) -> None:
    settings = load_settings()
    *parents, leaf = path
    target: Any = settings
    for part in parents:
        target = getattr(target, part)
    with pytest.raises(pydantic.ValidationError):
        setattr(target, leaf, 1)


def test_database_path() -> None:
    assert load_settings().database_path("quotes") == Path("data/quotes.db")
    custom = load_settings(overrides=["database=/tmp/crawls/{spider}-main.db"])
    assert custom.database_path("books") == Path("/tmp/crawls/books-main.db")


def test_robots_txt_is_a_setting() -> None:
    assert load_settings().robots_txt is True
    assert load_settings(overrides=["robots_txt=false"]).robots_txt is False


def test_settings_model_forbids_extra_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings.model_validate({"nope": 1})


@pytest.mark.parametrize(
    ("override", "advice"),
    [
        ("LOG_LEVEL=INFO", "(Scrapy's LOG_LEVEL: give --log-level LEVEL)"),
        ("jobdir=crawls/q", "(Scrapy's JOBDIR: nothing to set: with the sqlite frontier every run resumes"),
        ("FEEDS=x", "(Scrapy's FEEDS: items are stored in the crawl's SQLite file, read with 'query'"),
        ("BOT_NAME=shop", "(Scrapy's BOT_NAME: nothing to set: the User-Agent is user_agent)"),  # startproject's
        ("TWISTED_REACTOR=x", "(Scrapy's TWISTED_REACTOR: nothing to set: the crawl runs on asyncio"),
        ("HTTPERROR_ALLOWED_CODES=[404]", "(Scrapy's HTTPERROR_ALLOWED_CODES: a request's meta={'allow_statuses'"),
        (
            "DOWNLOADER_MIDDLEWARES={}",
            "(Scrapy's DOWNLOADER_MIDDLEWARES is 'middlewares' here (an ordered list of 'module:factory'))",
        ),
    ],
)
def test_a_scrapy_setting_with_no_setting_here_says_what_to_do_instead(override: str, advice: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides=[override])
    assert f"unknown setting '{override.split('=')[0]}' {advice}" in str(raised.value)


def test_each_scrapy_setting_without_one_here_is_not_also_mapped_to_one() -> None:
    assert not SCRAPY_SETTINGS.keys() & SCRAPY_WITHOUT_SETTING.keys()


@pytest.mark.parametrize(("scrapy", "ours"), sorted(SCRAPY_SETTINGS.items()))
def test_each_scrapy_setting_hint_names_a_setting_that_exists(scrapy: str, ours: str) -> None:
    model: Any = Settings
    for part in ours.split("."):
        assert part in model.model_fields, f"{scrapy} -> {ours}"
        model = model.model_fields[part].annotation


@pytest.mark.parametrize("proxy", ["notaurl", "http://", "socks5://proxy:1080"])
def test_a_proxy_that_is_no_http_url_is_refused_before_the_crawl(proxy: str) -> None:
    """It stalled the crawl at its first request (robots.txt), with nothing said."""
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides=[f"proxy={proxy}"])
    assert str(raised.value) == (
        f"setting 'proxy': a proxy is an http:// or https:// URL with a host, like http://proxy:3128, got {proxy!r}"
    )
    assert load_settings(overrides=["proxy=http://user:pw@proxy:3128"]).proxy == "http://user:pw@proxy:3128"


@pytest.mark.parametrize("override", ["close.max_items=true", "timeout=false", "per_host.concurrency=yes"])
def test_true_or_false_is_no_number(override: str) -> None:
    """pydantic took true for 1: close.max_items=true stored one item."""
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides=[override])
    assert f"setting '{override.split('=')[0]}': a number, not true or false, got " in str(raised.value)


def test_a_spider_s_settings_take_dotted_keys_as_s_does() -> None:
    from scraper.settings import expand_dotted_keys

    own = {"per_host": {"delay": 2}, "per_host.concurrency": 3, "hosts.127.0.0.1.delay": 1, "close.max_items": 5}
    settings = load_settings(config={"per_host": {"max_delay": 9}}, spider=expand_dotted_keys(own))
    assert (settings.per_host.delay, settings.per_host.concurrency, settings.per_host.max_delay) == (2, 3, 9)
    assert settings.hosts["127.0.0.1"].delay == 1 and settings.close.max_items == 5
    assert own["per_host"] == {"delay": 2}  # the class's own dict is left as it was
    hosts = load_settings(spider=expand_dotted_keys({"hosts.shop.example.com": {"delay": 3}, "hosts.a.b.max_pages": 4}))
    assert hosts.hosts["shop.example.com"].delay == 3 and hosts.hosts["a.b"].max_pages == 4


def test_a_database_path_under_the_home_folder_is_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """database: ~/crawls/{spider}.db made a folder named '~' in the project."""
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(config={"database": "~/crawls/{spider}.db"})
    assert settings.database_path("shop") == tmp_path / "crawls" / "shop.db"


def test_a_spider_layer_takes_dotted_keys_as_the_project_gives_it() -> None:
    """A program embedding the engine built settings from a spider's {"per_host.delay": 1}:
    the project's loader read it as per_host's delay, load_settings as an unknown key."""
    settings = load_settings(spider={"per_host.delay": 1.5, "close": {"max_items": 3}})
    assert (settings.per_host.delay, settings.close.max_items) == (1.5, 3)
