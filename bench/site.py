"""The demo shop as a deterministic static site, a server for it in other processes, and the
server's own ceiling: what the benchmark harness needs so that the site is never what it
measures.

Why static files: the aiohttp demo app renders each page in Python, in one process, so on a
fast crawler the site, not the crawler, becomes the limit. Here ``write_site`` writes every
page once (the bytes of ``scraper.demo_site.static_pages``, identical to what the app serves)
and ``serve_static`` serves them with nginx when it is installed (``worker_processes``
``processes``, sendfile, no access log), else with a fallback of ``processes`` aiohttp
processes that hold the files in memory and share one port (``SO_REUSEPORT``).

``measure_ceiling`` asks the server for pages as fast as a fetch-only client can (aiohttp,
N workers, body read, nothing parsed), in a subprocess so it does not share this process's
CPU, and reports requests/s with the CPU per request of the client and of the server (read
from ``/proc``). A crawler cannot go faster than that row; when the client is busy about
1.0 it is the client, not the server, that sets the ceiling (then the server has headroom).

Run from the repository root: ``python bench/site.py [--products 2000] [--padding 20000]
[--seconds 3] [--server all|auto|nginx|python] [--processes 1,2]`` prints the site summary and
one ceiling row per server (nginx and the Python fallback, each when available). Linux only
(``/proc``). Importing this module has no side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ServerKind = Literal["nginx", "python"]

_THIS = Path(__file__).resolve()
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_START_TIMEOUT = 15.0  # seconds for a server to answer its first request
_STOP_TIMEOUT = 10.0  # seconds for a server to stop after the polite signal
_CONTENT_TYPES = {".html": ("text/html", "utf-8"), ".txt": ("text/plain", "utf-8")}
_MB = 1024 * 1024
_SATURATED = 0.85  # busy fraction of a CPU from which a process counts as the limit
_UNITS = {"nginx": ("worker", "workers"), "python": ("process", "processes")}


# -- the site on disk ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What ``write_site`` wrote. ``pages`` and ``bytes`` count what a full crawl fetches (home,
    listings, products; robots.txt is written but not counted: the crawls run without it);
    ``paths`` are those pages' URL paths, for ``measure_ceiling``."""

    directory: Path
    products: int
    pages: int
    bytes: int
    paths: tuple[str, ...] = field(repr=False)


def write_site(directory: Path, *, products: int, padding: int, seed: int = 7) -> SiteInfo:
    """Write the demo shop (``build_catalog(products, seed=seed, padding=padding)``) under
    ``directory`` as static files: ``/`` and ``/category/x/`` as ``index.html`` in their
    directory, every other page at its own path. The same arguments always give the same
    bytes. Files already in ``directory`` that the shop does not have are left alone."""
    from scraper.demo_site import build_catalog, static_pages  # here: the module stays light to import

    directory = Path(directory)
    paths: list[str] = []
    total = 0
    for url_path, body in static_pages(build_catalog(products, seed=seed, padding=padding)):
        target = directory / _file_for(url_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        if url_path != "/robots.txt":
            paths.append(url_path)
            total += len(body)
    return SiteInfo(directory=directory, products=products, pages=len(paths), bytes=total, paths=tuple(paths))


def _file_for(url_path: str) -> str:
    """The file, relative to the site root, that a static server answers ``url_path`` with."""
    relative = url_path.lstrip("/")
    return relative + "index.html" if url_path.endswith("/") else relative


def load_files(directory: Path) -> dict[str, tuple[bytes, str, str | None]]:
    """Every file under ``directory`` by the URL paths a static server answers with it (an
    ``index.html`` also as its directory), with content type and charset."""
    files: dict[str, tuple[bytes, str, str | None]] = {}
    root = Path(directory)
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        content_type, charset = _CONTENT_TYPES.get(path.suffix, ("application/octet-stream", None))
        entry = (path.read_bytes(), content_type, charset)
        files["/" + relative] = entry
        if path.name == "index.html":
            files["/" + relative.removesuffix("index.html")] = entry
    return files


# -- processes' CPU, from /proc --------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name (which may hold spaces and parentheses):
    index 0 is the state, 1 the parent pid, 11 utime, 12 stime."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (0.0 once it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS if fields else 0.0


def machine_cpu_seconds() -> float:
    """CPU seconds all CPUs have been busy since boot (``/proc/stat``: user, nice, system, irq,
    softirq, steal), to tell how much of a run's CPU went to processes other than ours."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def child_pids(parent: int) -> list[int]:
    """The live children of ``parent`` (nginx's workers are its master's children)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) and int(fields[1]) == parent:
            children.append(int(entry))
    return sorted(children)


# -- the servers -----------------------------------------------------------------------------


class StaticServer:
    """A running static server: its base URL, kind, and processes (for their CPU)."""

    def __init__(self, kind: ServerKind, base_url: str, roots: Sequence[subprocess.Popen[Any]], processes: int) -> None:
        self.kind: ServerKind = kind
        self.base_url = base_url
        self.processes = processes
        self._roots = list(roots)

    @property
    def pids(self) -> list[int]:
        """Every server process: the ones started here and their children (nginx workers),
        looked up now, so a respawned worker is counted too."""
        pids = [root.pid for root in self._roots]
        return pids + [child for pid in pids for child in child_pids(pid)]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of all server processes (master and workers)."""
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    def __repr__(self) -> str:
        return f"StaticServer(kind={self.kind!r}, base_url={self.base_url!r}, pids={self.pids})"


_RUNNING: dict[str, StaticServer] = {}  # base URL -> server, for measure_ceiling's server CPU


def nginx_binary() -> str | None:
    """The nginx executable, also when ``/usr/sbin`` is not on PATH (non-root shells)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


@contextmanager
def serve_static(directory: Path, *, server: str = "auto", processes: int = 1) -> Iterator[StaticServer]:
    """Serve ``directory`` on 127.0.0.1 (a free port) until the block ends, whatever way it
    ends. ``server``: ``"nginx"``, ``"python"``, or ``"auto"`` (nginx when installed).
    ``processes``: nginx ``worker_processes``, or the number of Python server processes."""
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if server == "auto":
        server = "nginx" if nginx_binary() else "python"
    if server == "nginx":
        starter = _serve_nginx
    elif server == "python":
        starter = _serve_python
    else:
        raise ValueError(f"server must be auto, nginx or python, not {server!r}")
    with starter(Path(directory).resolve(), processes) as running:
        _RUNNING[running.base_url] = running
        try:
            yield running
        finally:
            _RUNNING.pop(running.base_url, None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _status(base_url: str) -> int | None:
    """The status ``GET /`` answers with (200: up and serving the site), None if no answer."""
    try:
        with urllib.request.urlopen(base_url + "/", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:  # URLError too: refused, reset, timed out
        return None


def _stop(process: subprocess.Popen[Any], polite: signal.Signals) -> None:
    """Ask with ``polite``, then SIGTERM, then SIGKILL; always reaps the process."""
    for sig, wait in ((polite, _STOP_TIMEOUT), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)


# nginx


def _nginx_build(binary: str) -> tuple[tuple[int, ...], str]:
    """nginx's version and configure arguments (``nginx -V`` prints them on stderr)."""
    output = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", output)
    return (tuple(int(part) for part in match.groups()) if match else (0, 0, 0)), output


def nginx_config(root: Path, port: int, workdir: Path, *, workers: int = 1, configure: str = "") -> str:
    """A minimal nginx.conf serving ``root`` on 127.0.0.1:``port``: foreground, every file it
    writes (pid, error log, temp paths) in ``workdir`` so it runs as any user; as root the
    workers keep this user, so they can read a private temporary directory."""

    def quoted(path: Path) -> str:
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    temp_paths = "".join(
        f"    {module}_temp_path {quoted(workdir / module)};\n"
        for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        if f"--without-http_{module}_module" not in configure
    )
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd

        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    return f"""# written by bench/site.py
daemon off;
master_process on;
worker_processes {workers};
pid {quoted(workdir / "nginx.pid")};
error_log {quoted(workdir / "error.log")} warn;
{user}
worker_rlimit_nofile 16384;
events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    log_not_found off;
    types {{
        text/html html;
        text/plain txt;
    }}
    default_type application/octet-stream;
    charset utf-8;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 65;
    open_file_cache max=1000 inactive=20s;  # each cached file holds a descriptor: a big site would run out
{temp_paths}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        server_name localhost;
        root {quoted(root)};
        index index.html;
    }}
}}
"""


@contextmanager
def _serve_nginx(root: Path, processes: int) -> Iterator[StaticServer]:
    """nginx in the foreground with ``processes`` workers; tries another port if the free one
    was taken before nginx bound it."""
    workers = processes
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx), use server='python'")
    version, configure = _nginx_build(binary)
    workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    try:
        for _attempt in range(3):  # the free port may be taken before nginx binds it
            port = _free_port()
            config = workdir / "nginx.conf"
            config.write_text(nginx_config(root, port, workdir, workers=workers, configure=configure))
            command = [binary, "-p", f"{workdir}/", "-c", str(config)]
            if version >= (1, 19, 5):  # -e: no alert about the default error log at start-up
                command[1:1] = ["-e", str(workdir / "error.log")]
            with open(workdir / "stderr.log", "wb") as stderr:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                base_url = f"http://127.0.0.1:{port}"
                if (status := _wait_until_up(process, base_url)) == 200:
                    _wait_for_children(process.pid, workers)
                    yield StaticServer("nginx", base_url, [process], workers)
                    return
            finally:
                _stop(process, signal.SIGQUIT)
            if status is not None:
                raise RuntimeError(f"nginx answers GET / with {status}: is {root} the site (index.html)?")
            log = _tail(workdir / "error.log") + _tail(workdir / "stderr.log")
            if "Address already in use" not in log:
                raise RuntimeError(f"nginx did not start:\n{log}")
        raise RuntimeError("nginx did not start: no free port after 3 attempts")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_up(process: subprocess.Popen[Any], base_url: str) -> int | None:
    """The first status ``GET /`` answers with, None if the server exits or stays silent."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if (status := _status(base_url)) is not None:
            return status
        time.sleep(0.05)
    return None


def _wait_for_children(pid: int, count: int) -> None:
    """Wait (briefly) until nginx has all its workers, so ``pids`` is complete at once."""
    deadline = time.monotonic() + 5
    while len(child_pids(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# the Python fallback


@contextmanager
def _serve_python(root: Path, processes: int) -> Iterator[StaticServer]:
    """``processes`` copies of ``python bench/site.py --serve ROOT``: the first binds a free
    port, the others the same one (SO_REUSEPORT: the kernel spreads connections)."""
    started: list[subprocess.Popen[str]] = []
    try:
        port = 0
        for _ in range(processes):
            process = subprocess.Popen(
                [sys.executable, str(_THIS), "--serve", str(root), "--port", str(port)],
                stdin=subprocess.PIPE,  # the server ends when this closes (we went away)
                stdout=subprocess.PIPE,
                text=True,
            )
            started.append(process)
            line = _read_line(process, _START_TIMEOUT)
            if not line.startswith("listening "):
                raise RuntimeError(f"the Python static server did not start: {line!r}")
            port = int(line.split()[1])
        base_url = f"http://127.0.0.1:{port}"
        if (status := _status(base_url)) != 200:
            raise RuntimeError(f"the Python static server answers GET {base_url}/ with {status}: is {root} the site?")
        yield StaticServer("python", base_url, started, processes)
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in started:
            _stop(process, signal.SIGTERM)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line from the child's stdout, or "" if it exits or says nothing in time. Only for
    one-line-then-wait exchanges (the text wrapper's buffer then holds at most that line)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


async def _python_server(root: Path, port: int) -> None:
    """One server process: answer from the preloaded files until SIGTERM or stdin closes."""
    from aiohttp import web

    files = load_files(root)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        entry = files.get(request.path) if request.method in ("GET", "HEAD") else None
        if entry is None:
            if request.path + "/" in files:  # a directory without its slash, as nginx answers it
                raise web.HTTPMovedPermanently(request.path + "/")
            return web.Response(status=404, text="not found")
        body, content_type, charset = entry
        return web.Response(body=body, content_type=content_type, charset=charset)

    runner = web.ServerRunner(web.Server(handle, access_log=None))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
        print(f"listening {runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)

        def on_stdin() -> None:
            with contextlib.suppress(BlockingIOError):
                if not os.read(stdin, 4096):  # end of file: the parent is gone
                    stop.set()

        loop.add_reader(stdin, on_stdin)
        await stop.wait()
        loop.remove_reader(stdin)
    finally:
        await runner.cleanup()


# -- the ceiling: a fetch-only client in its own process -------------------------------------


@dataclass(frozen=True, slots=True)
class Ceiling:
    """One fetch-only run: requests answered in ``seconds``, with the client's and (when the
    server was started by ``serve_static`` here) the server's CPU seconds over that time."""

    requests: int
    errors: int
    bytes: int
    seconds: float
    concurrency: int
    client_cpu: float
    server_cpu: float | None
    server: str | None
    server_processes: int | None
    machine_cpu: float | None = None

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / _MB / self.seconds if self.seconds else 0.0

    @property
    def client_ms_per_request(self) -> float:
        return 1000 * self.client_cpu / self.requests if self.requests else float("nan")

    @property
    def server_ms_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests:
            return None
        return 1000 * self.server_cpu / self.requests

    @property
    def client_busy(self) -> float:
        """Fraction of one CPU the (single-threaded) client used: near 1.0, it was the limit."""
        return self.client_cpu / self.seconds if self.seconds else 0.0

    @property
    def server_busy(self) -> float | None:
        """Fraction of one CPU per server process (nginx: per worker)."""
        if self.server_cpu is None or not self.seconds:
            return None
        return self.server_cpu / self.seconds / (self.server_processes or 1)

    @property
    def other_busy(self) -> float | None:
        """CPUs' worth of work by processes other than the client and the server meanwhile:
        well above 0, the machine was shared and the rate is low for that reason."""
        if self.machine_cpu is None or self.server_cpu is None or not self.seconds:
            return None
        return max(0.0, (self.machine_cpu - self.client_cpu - self.server_cpu) / self.seconds)

    @property
    def limit(self) -> str:
        """What most likely set the rate: "client" or "server" (its process(es) near a full
        CPU), "cpus" (every CPU busy, other processes' included), else "?"."""
        if self.client_busy >= _SATURATED:
            return "client"
        if self.server_busy is not None and self.server_busy >= _SATURATED:
            return "server"
        if self.machine_cpu is not None and self.machine_cpu / self.seconds >= _SATURATED * (os.cpu_count() or 1):
            return "cpus"
        return "?"


def measure_ceiling(
    base_url: str,
    paths: list[str],
    *,
    seconds: float = 3.0,
    concurrency: int = 32,
    warmup: float = 0.5,
    server: StaticServer | None = None,
) -> Ceiling:
    """Fetch ``paths`` (cycled) from ``base_url`` as fast as ``concurrency`` aiohttp workers
    can for ``seconds``, after ``warmup`` seconds uncounted, reading each body and parsing
    nothing, in a subprocess (its CPU is not this process's). The server's CPU is read when
    ``server`` is given or ``base_url`` is a server ``serve_static`` is running here."""
    if not paths:
        raise ValueError("measure_ceiling needs at least one path")
    server = server or _RUNNING.get(base_url.rstrip("/"))
    process = subprocess.Popen(
        [sys.executable, str(_THIS), "--fetch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    try:
        job = {"base_url": base_url.rstrip("/"), "paths": paths, "seconds": seconds, "concurrency": concurrency}
        process.stdin.write(json.dumps({**job, "warmup": warmup}) + "\n")
        process.stdin.flush()
        if (line := _read_line(process, 60 + warmup)) != "ready":
            raise RuntimeError(f"the fetch client did not start: {line!r}")
        server_before, machine_before = (server.cpu_seconds() if server else 0.0), machine_cpu_seconds()
        process.stdin.write("go\n")
        process.stdin.flush()
        line = _read_line(process, 60 + 2 * seconds)
        server_cpu = server.cpu_seconds() - server_before if server else None
        machine_cpu = machine_cpu_seconds() - machine_before
        if not line.startswith("{"):
            raise RuntimeError(f"the fetch client failed: {line!r}")
        result = json.loads(line)
    finally:
        _stop(process, signal.SIGTERM)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
    return Ceiling(
        requests=result["requests"],
        errors=result["errors"],
        bytes=result["bytes"],
        seconds=result["seconds"],
        concurrency=concurrency,
        client_cpu=result["cpu"],
        server_cpu=server_cpu,
        server=server.kind if server else None,
        server_processes=server.processes if server else None,
        machine_cpu=machine_cpu or None,
    )


async def _fetch_only(job: dict[str, Any]) -> dict[str, Any]:
    """The client (in its own process): warm up, say "ready", wait for "go", then fetch."""
    import aiohttp

    paths = [job["base_url"] + path for path in job["paths"]]
    concurrency = int(job["concurrency"])
    counter = itertools.count()
    totals = {"requests": 0, "errors": 0, "bytes": 0}

    async def worker(session: aiohttp.ClientSession, deadline: float, counted: bool) -> None:
        while time.perf_counter() < deadline:
            url = paths[next(counter) % len(paths)]
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    ok = response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                body, ok = b"", False
            if counted:
                totals["requests"] += 1
                totals["bytes"] += len(body)
                totals["errors"] += not ok

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm_until = time.perf_counter() + float(job["warmup"])
        await asyncio.gather(*(worker(session, warm_until, False) for _ in range(concurrency)))
        print("ready", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
            raise SystemExit(1)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu, started = usage.ru_utime + usage.ru_stime, time.perf_counter()
        deadline = started + float(job["seconds"])
        await asyncio.gather(*(worker(session, deadline, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**totals, "seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime - cpu}


# -- the command -----------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [" | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [headers, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def ceiling_row(label: str, ceiling: Ceiling) -> list[str]:
    """One results-table row: the "fetch only, no parse (aiohttp)" line for one server."""

    def number(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    return [
        label,
        f"{ceiling.rate:,.0f}",
        number(ceiling.mb_per_second, 1),
        number(ceiling.client_ms_per_request, 3),
        number(ceiling.client_busy),
        number(ceiling.server_ms_per_request, 3),
        number(ceiling.server_busy),
        number(ceiling.other_busy),
        ceiling.limit,
        f"{ceiling.errors:,}",
    ]


CEILING_HEADERS = (
    "fetch only, no parse (aiohttp)",
    "requests/s",
    "MB/s",
    "client CPU ms/req",
    "client busy",
    "server CPU ms/req",
    "server busy",
    "other CPUs",
    "limit",
    "errors",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write the demo shop as static files, serve it, and measure the server's ceiling "
        "with a fetch-only client.",
        epilog="Run from the repository root. 'busy' is CPU seconds per second (per process for the server); "
        "'other CPUs' is what other processes used meanwhile (a shared machine lowers the rate).",
    )
    parser.add_argument("--products", type=int, default=2000, help="products in the demo shop (default 2000)")
    parser.add_argument("--padding", type=int, default=20000, help="filler characters per product page (default 20000)")
    parser.add_argument("--seed", type=int, default=7, help="catalog seed (default 7)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per server (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="fetch workers and connections (default 32)")
    parser.add_argument(
        "--server",
        choices=("all", "auto", "nginx", "python"),
        default="all",
        help="all: each available (default); auto: nginx if installed, else python",
    )
    parser.add_argument(
        "--processes",
        default="1",
        help="comma-separated counts of nginx workers / Python server processes to measure (default 1)",
    )
    parser.add_argument("--directory", type=Path, help="write the site here and keep it (default: a temporary one)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # internal: one Python server process
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fetch", action="store_true", help=argparse.SUPPRESS)  # internal: the fetch-only client
    args = parser.parse_args(argv)
    try:
        args.process_counts = [int(part) for part in args.processes.split(",") if part.strip()]
    except ValueError:
        parser.error("--processes must be comma-separated integers, e.g. 1,2")
    if not args.process_counts or min(args.process_counts) < 1 or args.products < 0 or args.seconds <= 0:
        parser.error("--processes must be >= 1, --products >= 0, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(_python_server(args.serve, args.port))
        return 0
    if args.fetch:
        # measure_ceiling ends this client with SIGTERM once it has its figures: its normal
        # end, not an interruption to report (run_main's handler would print a line)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        result = asyncio.run(_fetch_only(json.loads(sys.stdin.readline())))
        print(json.dumps(result), flush=True)
        return 0
    kinds = {"all": ["nginx", "python"], "auto": ["nginx" if nginx_binary() else "python"]}.get(
        args.server, [args.server]
    )
    if "nginx" in kinds and not nginx_binary():
        print("nginx: not installed, skipped (apt-get install nginx)\n")
        kinds.remove("nginx")
    directory = args.directory or Path(tempfile.mkdtemp(prefix="bench-site-"))
    try:
        started = time.perf_counter()
        info = write_site(directory, products=args.products, padding=args.padding, seed=args.seed)
        print(
            f"site: {info.products:,} products (padding {args.padding:,}, seed {args.seed}), {info.pages:,} pages, "
            f"{info.bytes / _MB:,.1f} MB, written in {time.perf_counter() - started:.1f} s to {directory}"
        )
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {sys.platform}\n")
        rows = []
        for kind in kinds:
            for count in args.process_counts:
                with serve_static(directory, server=kind, processes=count) as server:
                    label = f"{kind} ({count} {_UNITS[kind][count > 1]})"
                    print(f"{label}: {server.base_url}, pids {server.pids}")
                    ceiling = measure_ceiling(
                        server.base_url, list(info.paths), seconds=args.seconds, concurrency=args.concurrency
                    )
                    rows.append(ceiling_row(label, ceiling))
        print(
            f"\nceiling: {args.seconds:g} s per server, concurrency {args.concurrency}, paths cycled in crawl order\n"
        )
        print(_table(CEILING_HEADERS, rows))
    finally:
        if args.directory is None:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(_THIS.parent.parent))  # the repository root, for scraper.demo_site and bench
    from bench._common import run_main

    run_main(main)
