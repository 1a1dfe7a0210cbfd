"""``edge-inspect view-bench``: what the live view costs and how fast it is, measured on the real processes.

Three figures an integrator asks before putting a view on a line PC, each a subcommand that
starts the real daemon (:mod:`edge.tools.harness`), the real view process and real headless
Chromium pages (:mod:`edge.tools.view_harness`), and prints JSON:

- ``latency``: phases with N browsers open alternate with phases with none, in one daemon run, so
  the daemon's inference p95 with and without viewers comes from the same process and machine
  state; in the browser phases each page measures publish-to-screen latency itself (the
  verdict's ``t_publish`` against the time it drew the part).
- ``rss``: the view process's memory over a long run while a browser connects and disconnects
  (alternately closing cleanly and being killed) every period.
- ``image``: what ``publish.send_image`` costs the daemon per frame: daemon runs with it off and
  on, alternated, compared by CPU time per verdict and by the publish stage's latency.

The machine's load (``os.getloadavg``) is recorded beside every figure: on a shared machine the
wall-clock figures are inflated by everyone else, CPU time per verdict much less so.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from edge.ops.latency import percentiles
from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, RunningDaemon
from edge.tools.soak import rss_mb
from edge.tools.view_harness import CLOCK_TICKS, Pages, RunningView, SocketViewers, chromium_path, cpu_ticks

STATION = "bench"
STDERR = sys.stderr  # progress bars there; the JSON goes to stdout


class VerdictLog:
    """A subscriber thread keeping each verdict's timing only (not its images): t_publish, latencies, size."""

    def __init__(self, endpoint: str) -> None:
        import zmq

        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"verdict.")
        self._socket.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name="verdict-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            parts = self._socket.recv_multipart()
            message = json.loads(parts[1])
            self.rows.append({"t": message["t_publish"], "seq": message["seq"], **{
                f"{k}_ms": message["latency_ms"][k] for k in ("inference", "publish", "total")},
                "bytes": sum(len(p) for p in parts[2:])})

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [r for r in list(self.rows) if start <= r["t"] < end]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._context.destroy(linger=0)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stage_stats(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {**percentiles(r[key] for r in rows), "n": len(rows)}


@contextmanager
def station(workdir: Path, fps: float, source: Path, send_image: bool = True,
            extra: dict[str, Any] | None = None,
            cpus: str | None = None) -> Iterator[tuple[RunningDaemon, VerdictLog]]:
    """The daemon on the demo bundle replaying ``source`` at ``fps`` (on ``cpus``, taskset's list, if given),
    and a timing-only subscriber."""
    config = {"station": STATION, "bundle": str(DEMO_BUNDLE), "log_level": "WARNING",
              "camera": {"type": "sim", "source": str(source.resolve()), "loop": True, "fps": fps},
              "publish": {"send_map": True, "send_image": send_image, "heartbeat_s": 1.0, "sndhwm": 200},
              **(extra or {})}
    command = ["taskset", "-c", cpus, sys.executable, "-m", "edge"] if cpus else None
    with RunningDaemon(workdir, config, topics=(b"event.",), command=command) as daemon:
        verdicts = VerdictLog(daemon.endpoint)
        try:
            deadline = time.monotonic() + 120
            while len(verdicts.rows) < 20:  # warm-up: the engine's first runs are slow
                if time.monotonic() > deadline or daemon.proc.poll() is not None:
                    raise click.ClickException(f"the daemon published no verdicts:\n{daemon.log_tail()}")
                time.sleep(0.2)
            yield daemon, verdicts
        finally:
            verdicts.close()
            daemon.terminate()


def need_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise click.ClickException("needs playwright: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 pip install "
                                   "'edge-inspect[view,dev]'") from None
    if chromium_path() is None:
        raise click.ClickException("needs Chromium: apt-get install chromium")
    return sync_playwright


def emit(result: dict[str, Any], json_path: Path | None) -> None:
    text = json.dumps(result, indent=2)
    click.echo(text)
    if json_path is not None:
        json_path.write_text(text + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def view_bench() -> None:
    """Benches of the live view (edge-inspect view) with the real daemon, view and Chromium; JSON out."""


json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write the figures to this file.")
source_option = click.option("--source", type=click.Path(exists=True, path_type=Path), default=DEMO_IMAGES,
                             show_default="the demo images", help="Images the sim camera replays in a loop.")


@view_bench.command()
@click.option("--fps", default=20.0, show_default=True, type=click.FloatRange(min=1), help="Verdicts per second.")
@click.option("--browsers", default=3, show_default=True, type=click.IntRange(1, 8), help="Viewers in a viewer phase.")
@click.option("--viewers", "kind", type=click.Choice(["chromium", "sockets"]), default="chromium", show_default=True,
              help="chromium: headless Chromium pages on this machine, latency measured in the page when drawn; "
                   "sockets: WebSocket clients without a browser (the view's and the daemon's side of remote "
                   "browsers), latency measured on arrival.")
@click.option("--phase-s", default=30.0, show_default=True, type=click.FloatRange(min=5), help="Seconds per phase.")
@click.option("--pairs", default=3, show_default=True, type=click.IntRange(min=1),
              help="Pairs of phases (none, then viewers), interleaved in one run.")
@click.option("--settle-s", default=3.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds left out at the start of each phase (viewers starting or closing).")
@click.option("--browser-nice", default=0, show_default=True, type=click.IntRange(0, 19),
              help="Run the Chromium pages under nice N: a browser on the station PC itself (a kiosk panel) "
                   "that yields the CPU to the daemon, as docs/view.md advises; 0 = same priority.")
@click.option("--browser-boost", is_flag=True,
              help="Let Chromium raise its compositor threads to nice -8, above the daemon, as it does when it runs "
                   "as root. By default a bench run as root starts it without CAP_SYS_NICE, as an operator's "
                   "account would.")
@click.option("--daemon-cpus", help="Run the daemon on these CPUs only (taskset's list, e.g. 0), as systemd's "
              "CPUAffinity= would; with --browser-cpus, a station PC whose kiosk browser keeps to its own core.")
@click.option("--browser-cpus", help="Run the Chromium pages on these CPUs only (taskset's list, e.g. 1).")
@click.option("--threads", type=click.IntRange(min=1),
              help="The daemon's runtime.threads (default: the engine's, one per core).")
@click.option("--spin", type=click.Choice(["on", "off"]),
              help="The daemon's runtime.spin: onnxruntime workers busy-wait between operators (default: off).")
@source_option
@json_option
def latency(fps: float, browsers: int, kind: str, phase_s: float, pairs: int, settle_s: float, browser_nice: int,
            browser_boost: bool, daemon_cpus: str | None, browser_cpus: str | None, threads: int | None,
            spin: str | None, source: Path, json_path: Path | None) -> None:
    """Publish-to-screen latency in N viewers, and the daemon's inference p95 with N viewers vs none."""
    sync_playwright = need_browser()
    phases: list[dict[str, Any]] = []
    per_viewer: list[list[float]] = [[] for _ in range(browsers)]
    by_kind: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    runtime: dict[str, Any] = {**({"threads": threads} if threads else {}), **({"spin": spin == "on"} if spin else {})}
    with tempfile.TemporaryDirectory(prefix="edge-view-bench-") as tmp, station(
            Path(tmp), fps, source, extra={"runtime": runtime} if runtime else None, cpus=daemon_cpus) as (
            daemon, verdicts), RunningView([daemon.endpoint], Path(tmp) / "view") as view, sync_playwright() as pw:
        with click.progressbar(range(2 * pairs), label=f"view-bench latency ({kind}): phases", file=STDERR) as bar:
            for index in bar:
                group: Pages | SocketViewers | None = None
                if index % 2:
                    group = (Pages(pw, Path(tmp), view.url(f"/station/{STATION}"), browsers, str(index), browser_nice,
                                   browser_boost, browser_cpus)
                             if kind == "chromium" else SocketViewers(view, STATION, browsers))
                time.sleep(settle_s)  # a bench, not a test: leave out the viewers' start-up
                pids = group.pids() if group else []
                if group:
                    group.drain()
                ticks = {"view": cpu_ticks(view.pid) or 0, "daemon": cpu_ticks(daemon.pid) or 0,
                         "browsers": sum(cpu_ticks(p) or 0 for p in pids)}
                start, load_start = time.time(), load()
                time.sleep(phase_s)
                end = time.time()
                spent = {"view": (cpu_ticks(view.pid) or 0) - ticks["view"],
                         "daemon": (cpu_ticks(daemon.pid) or 0) - ticks["daemon"],
                         "browsers": sum(cpu_ticks(p) or 0 for p in pids) - ticks["browsers"]}
                if group:
                    for number, values in enumerate(group.drain()):
                        per_viewer[number].extend(values)
                    group.close()
                rows = verdicts.between(start, end)
                by_kind[group is not None].extend(rows)
                phases.append({"viewers": browsers if group else 0, "verdicts": len(rows),
                               "inference_ms": stage_stats(rows, "inference_ms"),
                               **{f"{k}_cpu_s_per_s": round(v / CLOCK_TICKS / (end - start), 4)
                                  for k, v in spent.items()},
                               "daemon_cpu_ms_per_verdict": round(1000 * spent["daemon"] / CLOCK_TICKS
                                                                  / max(1, len(rows)), 2),
                               "load_start": load_start, "load_end": load()})
    none = [p for p in phases if p["viewers"] == 0]
    with_viewers = [p for p in phases if p["viewers"] > 0]

    def pooled(group: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
        weights = sum(p["verdicts"] for p in group)
        return {"phases": len(group), "verdicts": weights, "inference_ms": stage_stats(rows, "inference_ms"),
                "inference_p95_ms_per_phase": [p["inference_ms"]["p95"] for p in group],
                **{f"{k}_cpu_s_per_s": round(sum(p[f"{k}_cpu_s_per_s"] for p in group) / len(group), 4)
                   for k in ("view", "daemon", "browsers")},
                "daemon_cpu_ms_per_verdict": round(sum(p["daemon_cpu_ms_per_verdict"] * p["verdicts"]
                                                       for p in group) / max(1, weights), 2)}

    every = [v for values in per_viewer for v in values]
    result: dict[str, Any] = {
        "fps": fps, "viewers": kind, "count": browsers, "browser_nice": browser_nice if kind == "chromium" else None,
        "browser_boost": browser_boost if kind == "chromium" else None,
        "daemon_cpus": daemon_cpus, "browser_cpus": browser_cpus if kind == "chromium" else None,
        "daemon_runtime": runtime or "default",
        "phase_s": phase_s, "pairs": pairs, "source": str(source),
        "latency_ms": {"measured": "in the page, when drawn" if kind == "chromium" else "on arrival at the client",
                       **percentiles(every), "n": len(every),
                       "per_viewer": [{**percentiles(v), "n": len(v)} for v in per_viewer]},
        "none": pooled(none, by_kind[False]), "with_viewers": pooled(with_viewers, by_kind[True]),
        "phases": phases,
    }
    a, b = result["none"]["inference_ms"]["p95"], result["with_viewers"]["inference_ms"]["p95"]
    result["inference_p95_change"] = {"pooled": round(b / a - 1.0, 4) if a else None,
                                      "median_of_phases": _change(phases)}
    emit(result, json_path)


def _change(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the per-phase inference p95 with viewers against without, and the relative change."""
    import statistics

    none = [p["inference_ms"]["p95"] for p in phases if p["viewers"] == 0]
    viewers = [p["inference_ms"]["p95"] for p in phases if p["viewers"] > 0]
    a, b = statistics.median(none), statistics.median(viewers)
    return {"none_ms": a, "viewers_ms": b, "relative": round(b / a - 1.0, 4) if a else None}


@view_bench.command()
@click.option("--minutes", default=10.0, show_default=True, type=click.FloatRange(min=0.5))
@click.option("--fps", default=20.0, show_default=True, type=click.FloatRange(min=1), help="Verdicts per second.")
@click.option("--period-s", default=30.0, show_default=True, type=click.FloatRange(min=5),
              help="A browser connects, stays this long, and disconnects (cleanly, or killed, alternately).")
@source_option
@json_option
def rss(minutes: float, fps: float, period_s: float, source: Path, json_path: Path | None) -> None:
    """The view process's RSS over a long run while a browser comes and goes every period."""
    sync_playwright = need_browser()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    cycles: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-view-bench-") as tmp, station(Path(tmp), fps, source) as (
            daemon, verdicts), RunningView([daemon.endpoint], Path(tmp) / "view") as view, sync_playwright() as pw:
        sampler = threading.Thread(target=_sample, args=(view.pid, samples, stop), daemon=True)
        t0, load_start, ticks0 = time.monotonic(), load(), cpu_ticks(view.pid) or 0
        sampler.start()
        count = max(1, round(minutes * 60 / period_s))
        with click.progressbar(range(count), label="view-bench rss: browser cycles",
                               file=STDERR) as bar:
            for index in bar:
                browser = Pages(pw, Path(tmp), view.url(f"/station/{STATION}"), 1, str(index)).browsers[0]
                started = time.monotonic()
                time.sleep(max(0.0, period_s - (started - t0 - index * period_s)))  # keep the period
                drawn = browser.page.evaluate("window.edgeView.drawn")
                if index % 2:
                    browser.kill()
                browser.close()
                cycles.append({"t_s": round(started - t0, 1), "drawn": drawn, "ended": "killed" if index % 2 else
                               "closed", "rss_mb": round(samples[-1][1], 1) if samples else None})
        view.wait_state(lambda s: not s["clients"], timeout_s=60, what="every page closed")
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - t0
        cpu_s = ((cpu_ticks(view.pid) or 0) - ticks0) / CLOCK_TICKS
        published = len(verdicts.rows)
    # "start": the first sample once the first page had drawn (the server's first client, its buffers, warm).
    warm = [mb for t, mb in samples if t >= cycles[0]["t_s"]] or [samples[0][1]]
    start_mb, end_mb = warm[0], samples[-1][1]
    half = [mb for t, mb in samples if t >= samples[-1][0] / 2]
    emit({"minutes": minutes, "fps": fps, "period_s": period_s, "cycles": len(cycles), "verdicts": published,
          "rss_mb": {"before_any_page": round(samples[0][1], 1), "start": round(start_mb, 1),
                     "end": round(end_mb, 1), "growth": round(end_mb - start_mb, 1),
                     "max": round(max(mb for _, mb in samples), 1),
                     "second_half_growth": round(half[-1] - half[0], 1), "samples": len(samples)},
          "view_cpu_s_per_s": round(cpu_s / elapsed, 4), "load_start": load_start, "load_end": load(),
          "per_cycle": cycles}, json_path)


def _sample(pid: int, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    t0 = time.monotonic()
    while not stop.wait(1.0 if samples else 0.0):
        value = rss_mb(pid)
        if value is not None:
            samples.append((time.monotonic() - t0, value))


@view_bench.command()
@click.option("--frames", default=400, show_default=True, type=click.IntRange(min=50), help="Verdicts per run.")
@click.option("--fps", default=20.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--pairs", default=2, show_default=True, type=click.IntRange(min=1),
              help="Pairs of daemon runs (send_image off, then on), interleaved.")
@click.option("--max-side", default=640, show_default=True, type=click.IntRange(min=16), help="publish.image_max_side.")
@click.option("--quality", default=80, show_default=True, type=click.IntRange(1, 100), help="publish.image_quality.")
@source_option
@json_option
def image(frames: int, fps: float, pairs: int, max_side: int, quality: int, source: Path,
          json_path: Path | None) -> None:
    """What publish.send_image costs the daemon per frame: runs with it off and on, alternated."""
    runs: list[dict[str, Any]] = []
    extra = {"publish": {"send_map": True, "heartbeat_s": 1.0, "sndhwm": 200, "image_max_side": max_side,
                         "image_quality": quality}}
    with click.progressbar(range(2 * pairs), label="view-bench image: daemon runs",
                           file=STDERR) as bar:
        for index in bar:
            send_image = index % 2 == 1
            extra["publish"]["send_image"] = send_image
            with tempfile.TemporaryDirectory(prefix="edge-view-bench-") as tmp:
                runs.append(_image_run(Path(tmp), fps, source, send_image, frames, extra))
    by = {flag: [r for r in runs if r["send_image"] is flag] for flag in (False, True)}

    def mean(flag: bool, key: str) -> float:
        return round(sum(r[key] for r in by[flag]) / len(by[flag]), 3)

    emit({"frames": frames, "fps": fps, "max_side": max_side, "quality": quality, "source": str(source),
          "encode_in_process": _encode_cost(source, max_side, quality),
          "cost_per_frame": {
              "daemon_cpu_ms": round(mean(True, "daemon_cpu_ms_per_verdict") - mean(False,
                                                                                     "daemon_cpu_ms_per_verdict"), 3),
              "publish_p50_ms": round(mean(True, "publish_p50_ms") - mean(False, "publish_p50_ms"), 3),
              "bytes": round(mean(True, "bytes_per_verdict") - mean(False, "bytes_per_verdict"))},
          "runs": runs}, json_path)


def _encode_cost(source: Path, max_side: int, quality: int, rounds: int = 5) -> dict[str, Any]:
    """The daemon's own encoder (:func:`~edge.model.imageio.encode_jpeg`) on the source images, in this process."""
    from edge.model.imageio import encode_jpeg, list_images, read_image

    paths = list_images(source) if source.is_dir() else [source]
    images = [read_image(path) for path in paths[:100]]
    wall, cpu0 = [], time.process_time()
    for _ in range(rounds):
        for image in images:
            t0 = time.perf_counter()
            encode_jpeg(image, max_side, quality)
            wall.append(1000 * (time.perf_counter() - t0))
    return {"images": len(images), "size": list(images[0].shape), "wall_ms": percentiles(wall),
            "cpu_ms_mean": round(1000 * (time.process_time() - cpu0) / len(wall), 3)}


def _image_run(workdir: Path, fps: float, source: Path, send_image: bool, frames: int,
               extra: dict[str, Any]) -> dict[str, Any]:
    with station(workdir, fps, source, send_image, {"publish": dict(extra["publish"])}) as (daemon, verdicts):
        first, ticks, load_start = len(verdicts.rows), cpu_ticks(daemon.pid) or 0, load()
        _wait(lambda: len(verdicts.rows) >= first + frames, daemon)
        spent = ((cpu_ticks(daemon.pid) or 0) - ticks) / CLOCK_TICKS
        rows = verdicts.rows[first:first + frames]
    publish = percentiles(r["publish_ms"] for r in rows)
    return {"send_image": send_image, "verdicts": len(rows), "daemon_cpu_ms_per_verdict": round(
        1000 * spent / len(rows), 3), "publish_p50_ms": publish["p50"], "publish_p95_ms": publish["p95"],
        "inference_ms": percentiles(r["inference_ms"] for r in rows), "bytes_per_verdict": round(
            sum(r["bytes"] for r in rows) / len(rows)), "load_start": load_start, "load_end": load()}


def _wait(predicate: Callable[[], bool], daemon: RunningDaemon, timeout_s: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline or daemon.proc.poll() is not None:
            raise click.ClickException(f"the daemon stopped or stalled:\n{daemon.log_tail()}")
        time.sleep(0.2)
