"""The daemon harness shared by the benches and the integration tests: the real daemon as a subprocess.

A bench figure or a test is only worth something if it comes from the process a line runs, so
both start ``python -m edge`` (or any launcher of it) on a config, subscribe to everything it
publishes on a real ZeroMQ socket, and read its state from those messages: verdicts, ``status``,
heartbeats and events, above all ``stopped``, the last message of a run, which carries the final
accounting and the camera's counters. Nothing here parses the daemon's log; the log file is kept
only so that an error report can show its tail. Waits are for a condition on the messages (or
the process's exit) with a deadline, never a bare sleep. :class:`RunningDaemon` is for acting on a
daemon while it runs (signals, control commands, kill -9); :func:`run_daemon` runs one to its exit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # edge/
REPO = PACKAGE_DIR.parent
DEMO_BUNDLE = PACKAGE_DIR / "demo" / "bundle"
DEMO_IMAGES = PACKAGE_DIR / "demo" / "images"
EXIT_STARTUP = 2
# After the process has exited without its ``stopped`` event (killed, crashed), how long messages
# already on their way may still arrive before a wait gives up. Spent only on such runs.
EXIT_GRACE_S = 5.0
LOG_TAIL_CHARS = 3000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a daemon subprocess that imports this checkout's ``edge``, unbuffered."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def seq_gaps(messages: Iterable[Mapping[str, Any]]) -> list[list[int]]:
    """Pairs of consecutive verdict seqs that are not n, n+1 (a lost verdict)."""
    seqs = [int(m["seq"]) for m in messages]
    return [[a, b] for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` after ``timeout_s``.

    For conditions no message announces (a file appearing, a subprocess reaching a state).
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(interval_s)


class DaemonError(RuntimeError):
    """The daemon did not do what the harness waited for; the message ends with its log tail."""

    def __init__(self, message: str, daemon: RunningDaemon | None = None) -> None:
        tail = daemon.log_tail() if daemon is not None else ""
        super().__init__(f"{message}\n--- daemon log (tail) ---\n{tail}" if tail else message)


@dataclass(frozen=True)
class Received:
    """One message as the subscriber got it."""

    t: float  # time.monotonic() at arrival, in this process
    kind: str  # the topic's first word: verdict, status, heartbeat, event
    payload: dict[str, Any]
    attachment: bytes | None = None  # a verdict's anomaly-map PNG (third frame), when sent


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with what every harness run needs: an endpoint, a wait for our subscriber.

    Station, bundle and runtime threads default to a test station, the demo bundle and one thread.
    """
    config = copy.deepcopy(dict(config))
    publish = config.setdefault("publish", {})
    publish.setdefault("endpoint", f"tcp://127.0.0.1:{free_port()}")
    publish.setdefault("wait_subscriber_s", 10)  # the collecting subscriber connects before the first frame
    config.setdefault("station", "t1")
    config.setdefault("bundle", str(DEMO_BUNDLE))
    config.setdefault("runtime", {"threads": 1})
    return config


class RunningDaemon:
    """A daemon subprocess and a subscriber thread collecting every message it publishes, in order.

    Give a ``config`` (written to ``workdir/<name>.yaml`` after :func:`with_defaults`), or only
    command-line ``args`` and the ``endpoint`` they publish on. ``command`` replaces
    ``python -m edge`` (e.g. the ``edge-inspect`` console script, or a launcher script).
    """

    def __init__(self, workdir: Path, config: Mapping[str, Any] | None = None, *, args: Sequence[str] = (),
                 endpoint: str | None = None, command: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, name: str = "edge",
                 topics: Sequence[bytes] = (b"",), cwd: Path | None = None) -> None:
        import yaml
        import zmq

        workdir.mkdir(parents=True, exist_ok=True)
        argv = list(command) if command is not None else [sys.executable, "-m", "edge"]
        self.config_path: Path | None = None
        if config is not None:
            self.config = with_defaults(config)
            endpoint = self.config["publish"]["endpoint"]
            self.config_path = workdir / f"{name}.yaml"
            self.config_path.write_text(yaml.safe_dump(self.config))
            argv += ["--config", str(self.config_path)]
        elif endpoint is None:
            raise ValueError("without a config, give the endpoint that args publish on")
        self.endpoint: str = str(endpoint)
        self.log_path = workdir / f"{name}.log"
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._context = zmq.Context()
        self._sub = self._context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 0)  # this subscriber must never be the one that drops
        for topic in topics:
            self._sub.setsockopt(zmq.SUBSCRIBE, topic)
        self._sub.connect(self.endpoint)
        with open(self.log_path, "w") as log_file:
            self.proc = subprocess.Popen([*argv, *args], cwd=cwd, env=daemon_env(env),
                                         stdout=subprocess.DEVNULL, stderr=log_file)
        self._thread = threading.Thread(target=self._collect, name=f"{name}-subscriber", daemon=True)
        self._thread.start()

    def __enter__(self) -> RunningDaemon:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _collect(self) -> None:
        while not self._closing.is_set():
            if not self._sub.poll(50):
                continue
            parts = self._sub.recv_multipart()
            item = Received(time.monotonic(), parts[0].decode("utf-8").split(".", 1)[0], json.loads(parts[1]),
                            parts[2] if len(parts) > 2 else None)
            with self._changed:
                self.received.append(item)
                self._changed.notify_all()

    # ----------------------------------------------------------------- what arrived

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Payloads of every message of ``kind`` received so far, in arrival order."""
        return [r.payload for r in list(self.received) if r.kind == kind]

    def events(self, name: str) -> list[dict[str, Any]]:
        """``detail`` of every ``event.<station>`` message named ``name`` (started, reload, ...)."""
        return [m["detail"] for m in self.of("event") if m["event"] == name]

    def has_stopped(self) -> bool:
        return bool(self.events("stopped"))

    def stopped(self) -> dict[str, Any]:
        """The ``stopped`` event's detail (counters, last_seq, balanced, failure, camera, ...)."""
        found = self.events("stopped")
        if len(found) != 1:
            raise DaemonError(f"expected one stopped event, got {len(found)}", self)
        return found[0]

    # ----------------------------------------------------------------- waiting

    def wait_for(self, predicate: Callable[[RunningDaemon], bool], timeout_s: float = 60.0,
                 what: str = "the condition") -> None:
        """Return once ``predicate(self)`` holds; DaemonError if the deadline passes or the daemon ends first.

        The predicate is evaluated on every message that arrives. Once the process has exited, it is
        given one last chance when nothing more can come (its ``stopped`` event arrived, or it failed
        to start, or the grace for messages still on their way is over).
        """
        deadline = time.monotonic() + timeout_s
        exited_at: float | None = None
        with self._changed:
            while not predicate(self):
                now = time.monotonic()
                if now > deadline:
                    raise DaemonError(f"{what}: not within {timeout_s:.0f} s", self)
                code = self.proc.poll()
                if code is not None:
                    exited_at = exited_at if exited_at is not None else now
                    if self.has_stopped() or code == EXIT_STARTUP or now - exited_at > EXIT_GRACE_S:
                        if predicate(self):
                            return
                        raise DaemonError(f"daemon exited {code} before {what}", self)
                self._changed.wait(min(0.1, max(0.0, deadline - now)))

    def poll_exit(self, timeout_s: float) -> int | None:
        """The exit code if the process ends within ``timeout_s``, else None."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout_s: float = 60.0, require_stopped: bool = True) -> int:
        """Wait for the exit, then (exit 0 or 1) for the ``stopped`` event; the exit code.

        DaemonError if the process is still running at the deadline, or (``require_stopped``) if a run
        that ended 0 or 1 never published its ``stopped`` event.
        """
        deadline = time.monotonic() + timeout_s
        code = self.poll_exit(timeout_s)
        if code is None:
            raise DaemonError(f"daemon still running after {timeout_s:.0f} s", self)
        if code in (0, 1):
            try:
                self.wait_for(RunningDaemon.has_stopped, max(EXIT_GRACE_S, deadline - time.monotonic()),
                              "its stopped event")
            except DaemonError:
                if require_stopped:
                    raise
        return code

    # ----------------------------------------------------------------- acting on it

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then :meth:`wait`: the exit code, with the ``stopped`` event received."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> int:
        """SIGKILL: no clean-up at all; the (negative) exit code."""
        self.proc.kill()
        return self.proc.wait(timeout=30)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the daemon's log, for error reports only (never to read its state from)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        """Kill the process if it still runs, stop the subscriber, free the socket."""
        if self.proc.poll() is None:
            self.kill()
        self._closing.set()
        self._thread.join(timeout=10)
        self._context.destroy(linger=0)


@dataclass(frozen=True)
class DaemonRun:
    """What :func:`run_daemon` saw: exit code, every message, the ``stopped`` event, the log tail."""

    exit_code: int
    received: list[Received]
    stopped: dict[str, Any] | None
    log_tail: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.received if r.kind == kind]


def run_daemon(config: Mapping[str, Any], *, workdir: Path | None = None, deadline_s: float = 600.0,
               topics: Sequence[bytes] = (b"",), command: Sequence[str] | None = None,
               env: Mapping[str, str] | None = None,
               on_tick: Callable[[RunningDaemon], None] | None = None) -> DaemonRun:
    """Run the daemon on ``config`` until it exits by itself; everything it published.

    ``on_tick(daemon)`` is called about every 0.1 s while it runs. DaemonError if it is still running
    after ``deadline_s`` (it is stopped then). A run that ends 0 or 1 is waited for until its
    ``stopped`` event has arrived; ``stopped`` is None only for a run that never sent one.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-harness-")))
        daemon = stack.enter_context(RunningDaemon(workdir, config, topics=topics, command=command, env=env))
        deadline = time.monotonic() + deadline_s
        while daemon.poll_exit(0.1) is None:
            if on_tick is not None:
                on_tick(daemon)
            if time.monotonic() > deadline:
                daemon.signal(signal.SIGTERM)
                if daemon.poll_exit(10) is None:
                    daemon.kill()
                raise DaemonError(f"daemon still running after {deadline_s:.0f} s; stopped it", daemon)
        code = daemon.wait(max(EXIT_GRACE_S, deadline - time.monotonic()), require_stopped=False)
        found = daemon.events("stopped")
        return DaemonRun(code, list(daemon.received), found[0] if found else None, daemon.log_tail())
