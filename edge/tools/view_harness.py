"""The live view as the benches and tests run it: ``edge-inspect view`` as a subprocess, and real browsers.

Like :mod:`edge.tools.harness` for the daemon: a figure or a test is only worth something if it
comes from the process an operator runs, so :class:`RunningView` starts ``python -m edge view``,
waits for its "serving" line, and reads its state from ``/api/state`` and its CPU time and RSS
from ``/proc``. Browsers are Debian's Chromium driven by Playwright (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``
installs; ``playwright install`` downloads a browser and fails offline, so it is never used);
:func:`launch_browser` starts one as its own process so that it can be killed like a browser
whose machine lost power.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.tools.harness import daemon_env, free_port

log = logging.getLogger(__name__)

CHROMIUM = os.environ.get("EDGE_CHROMIUM", "/usr/bin/chromium")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60.0


class ViewError(RuntimeError):
    """The view process did not start or answer; the message ends with its log."""


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when it is not installed."""
    found = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    return found if found and os.access(found, os.X_OK) else None


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (None once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


    return None


class RunningView:
    """``python -m edge view --connect ...`` on a free loopback port, until :meth:`close`."""

    def __init__(self, endpoints: Sequence[str], workdir: Path, args: Sequence[str] = (),
                 token: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = workdir / "view.log"
        argv = [sys.executable, "-m", "edge", "view", "--listen", f"127.0.0.1:{self.port}", *args]
        for endpoint in endpoints:
            argv += ["--connect", endpoint]
        env = daemon_env({"EDGE_LOG_FORMAT": "text", **({"EDGE_VIEW_TOKEN": token} if token else {})})
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read_log, name="view-log", daemon=True)
        self._reader.start()
        if not self._serving.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.close()
            raise ViewError(f"the view did not start within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            if "edge-inspect view: serving" in line:
                self._serving.set()
        self._serving.set()  # ended: let the constructor see the exit

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/") -> str:
        return self.base + path

    def state(self) -> dict[str, Any]:
        """``/api/state``: stations, clients, counts of messages received."""
        request = urllib.request.Request(self.url("/api/state"))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_state(self, predicate: Any, timeout_s: float = 60.0, what: str = "the condition") -> dict[str, Any]:
        """Poll ``/api/state`` until ``predicate(state)`` holds; ViewError after the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise ViewError(f"view: {what} not within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> RunningView:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Browser:
    """One Chromium process (Playwright persistent context) with its own profile folder, so it can be killed.

    Chromium raises its compositor, display and IO threads to nice -8 whenever it is allowed to
    (CAP_SYS_NICE, which root has), above the daemon at nice 0, and that setting overrides any
    ``nice`` it was started under. A browser on a plant PC runs as an operator's account, which may
    not; so when these tools run as root, Chromium is started without CAP_SYS_NICE
    (``setpriv``), as that account would start it, unless ``boost`` asks for root's behaviour.
    """

    def __init__(self, playwright: Any, profile: Path, viewport: tuple[int, int] = (1400, 900),
                 nice: int = 0, boost: bool = False, cpus: str | None = None) -> None:
        executable = chromium_path()
        if executable is None:
            raise ViewError(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        self.profile = profile
        prefix: list[str] = []
        if not boost and os.geteuid() == 0 and shutil.which("setpriv"):
            prefix += ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
        if nice:  # every Chromium process inherits it: a kiosk browser that yields the CPU to the daemon
            prefix += ["nice", "-n", str(int(nice))]
        if cpus:  # ... or that keeps to its own cores
            prefix += ["taskset", "-c", cpus]
        if prefix:
            profile.mkdir(parents=True, exist_ok=True)
            wrapper = profile.parent / f"{profile.name}-chromium.sh"
            wrapper.write_text(f'#!/bin/sh\nexec {" ".join(prefix)} "{executable}" "$@"\n')
            wrapper.chmod(0o755)
            executable = str(wrapper)
        self.context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True,
            viewport={"width": viewport[0], "height": viewport[1]}, args=["--disable-gpu"])
        self.errors: list[str] = []
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        return self.page

    def pids(self) -> list[int]:
        """The browser's processes: those whose command line names this profile folder, and their descendants."""
        parents: dict[int, int] = {}
        roots = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if str(self.profile).encode() in (entry / "cmdline").read_bytes():
                    roots.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        found = set(roots)
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process of this browser: its sockets close without a WebSocket goodbye."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        try:
            self.context.close()
        except Exception as exc:  # noqa: BLE001 - a killed browser cannot be closed politely; it is gone anyway
            log.debug("browser %s: %s", self.profile, exc)


class SocketViewers:
    """``count`` pages' WebSockets without a browser: what remote browsers cost the view, not their drawing.

    Each client reads every update the view sends it (latest-only, as a page gets them) and keeps,
    per new part, the time from the verdict's ``t_publish`` to its arrival here (ms).
    """

    def __init__(self, view: RunningView, station: str, count: int) -> None:
        import asyncio

        self.latencies: list[list[float]] = [[] for _ in range(count)]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._done: Any = None
        self._thread = threading.Thread(target=self._run, args=(view.url(f"/ws?station={station}"), count),
                                        name="socket-viewers", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise ViewError("the socket viewers did not connect within 60 s")

    def _run(self, url: str, count: int) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)
        self._done = asyncio.Event()
        self._loop.run_until_complete(self._main(url, count))

    async def _main(self, url: str, count: int) -> None:
        import asyncio

        import aiohttp

        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(count)]
            self._ready.set()
            readers = [asyncio.ensure_future(self._read(ws, self.latencies[i])) for i, ws in enumerate(sockets)]
            await self._done.wait()
            for reader in readers:
                reader.cancel()
            for ws in sockets:
                await ws.close()

    @staticmethod
    async def _read(ws: Any, out: list[float]) -> None:
        import struct

        import aiohttp

        last = 0
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            (length,) = struct.unpack_from(">I", message.data, 0)
            latest = json.loads(message.data[4:4 + length])["state"]["latest"]
            if latest and latest["part"] != last:
                last = latest["part"]
                out.append(1000.0 * (time.time() - latest["t_publish"]))

    def pids(self) -> list[int]:
        return []  # in this process: no browser of its own

    def drain(self) -> list[list[float]]:
        taken = [list(values) for values in self.latencies]
        for values, seen in zip(self.latencies, taken, strict=True):
            del values[:len(seen)]
        return taken

    def close(self) -> None:
        if self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(timeout=30)


class Pages:
    """``count`` Chromium pages on ``url``, each its own browser process, once each has drawn a part."""

    def __init__(self, playwright: Any, workdir: Path, url: str, count: int, tag: str, nice: int = 0,
                 boost: bool = False, cpus: str | None = None) -> None:
        self.browsers = [Browser(playwright, workdir / f"profile-{tag}-{i}", nice=nice, boost=boost, cpus=cpus)
                         for i in range(count)]
        for browser in self.browsers:
            browser.open(url)
        for browser in self.browsers:
            browser.page.wait_for_function("window.edgeView.drawn > 0", timeout=120_000)

    def pids(self) -> list[int]:
        return [pid for browser in self.browsers for pid in browser.pids()]

    def drain(self) -> list[list[float]]:
        """Each page's publish-to-screen latencies (ms) measured since the last drain."""
        return [[1000.0 * x for x in b.page.evaluate("window.edgeView.latencies.splice(0)")] for b in self.browsers]

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()
