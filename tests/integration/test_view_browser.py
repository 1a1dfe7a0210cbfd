"""The live view end to end: a real daemon with images on, the view process, and real headless Chromium.

The daemon runs on the demo bundle (sim camera, frames on demand through the control socket, so
the test decides when each part comes), publishing maps and frame JPEGs; the view subscribes to
it; Chromium (Debian's, driven by Playwright, never a downloaded one) opens the pages. What the
page shows is read from the page itself: its DOM, its canvases' pixels, and ``window.edgeView``.
Screenshots go to ``$EDGE_VIEW_SCREENSHOTS`` when set (to keep and look at), else to tmp_path.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from edge.control.server import request
from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, RunningDaemon, free_port
from edge.tools.view_harness import Browser, RunningView, chromium_path, cpu_ticks
from tests.unit.edge.control.curve_keys import make_keys

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
pytest.importorskip("aiohttp", reason="the view extra (pip install '.[view]') is not installed")
if chromium_path() is None:
    pytest.skip("no Chromium (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

WAIT_MS = 60_000
CHECKSUM = """(id) => { const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) % 2147483647; return s; }"""
PIXEL = """([id, x, y]) => Array.from(document.getElementById(id).getContext('2d').getImageData(x, y, 1, 1).data)"""
TEXT = "(id) => document.getElementById(id).textContent"


def shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("EDGE_VIEW_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save(page, directory: Path, name: str) -> Path:
    """A screenshot once every thumbnail is drawn (a part the page skipped comes by HTTP, a moment after)."""
    page.wait_for_function("[...document.querySelectorAll('.thumb canvas')].every((c) => c.dataset.filled)",
                           timeout=WAIT_MS)
    path = directory / name
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    return path


@pytest.fixture
def playwright():
    with sync_api.sync_playwright() as handle:
        yield handle


def station_config(tmp_path: Path, bundle: Path, **camera) -> dict:
    return {"bundle": str(bundle), "state_dir": str(tmp_path / "state"), "log_level": "WARNING",
            "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, **camera},
            "publish": {"heartbeat_s": 0.5, "send_map": True, "send_image": True, "image_max_side": 256}}


def test_station_page_follows_the_daemon_part_by_part_and_shows_a_dead_station_stale(tmp_path, playwright):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle, ignore=shutil.ignore_patterns(".cache"))
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    control = f"tcp://127.0.0.1:{free_port()}"
    config = station_config(tmp_path, bundle)
    config["pipeline"] = {"acquisition": "on_demand"}  # a part only when the test triggers one
    config["control"] = {"enabled": True, "endpoint": control, "curve": {
        "secret_key": str(keys.server_secret), "allowed_clients": str(keys.allowed_clients)}}
    shots = shots_dir(tmp_path)

    def trigger() -> None:
        reply = request(control, "trigger", server_key=keys.server_public, client_key=keys.client_secret,
                        timeout_s=30)
        assert reply["ok"], reply

    # A second station, free-running slowly, for the overview (and the view's several --connect).
    other_station = {**station_config(tmp_path / "t2", DEMO_BUNDLE, fps=2), "station": "t2"}
    with RunningDaemon(tmp_path, config) as daemon, RunningDaemon(tmp_path / "t2", other_station) as second:
        daemon.wait_for(lambda d: bool(d.of("heartbeat")), what="the daemon's first heartbeat")
        second.wait_for(lambda d: bool(d.of("verdict")), what="the second station's first verdict")
        with RunningView([daemon.endpoint, second.endpoint], tmp_path / "view", ["--heartbeat-s", "0.5"]) as view:
            view.wait_state(lambda s: {"t1", "t2"} <= set(s["states"]), what="both stations heard from")
            browser = Browser(playwright, tmp_path / "profile-a")
            try:
                page = browser.open(view.url("/station/t1"))
                page.wait_for_function("window.edgeView.state !== null", timeout=WAIT_MS)
                # No part yet, but heartbeats: "no parts", not "station dead".
                page.wait_for_selector("#freshness[data-state='idle']", timeout=WAIT_MS)
                seen, frames, heats = [], set(), set()
                while not any(m["verdict"] == "OK" for m in seen):  # the demo starts with defects, then good parts
                    trigger()
                    wanted = len(seen) + 1
                    daemon.wait_for(lambda d, n=wanted: len(d.of("verdict")) >= n, what="the verdict")
                    seen = daemon.of("verdict")
                    page.wait_for_function(f"window.edgeView.lastDrawnPart >= {len(seen)}", timeout=WAIT_MS)
                    assert page.get_attribute("#frame", "data-seq") == str(seen[-1]["seq"])
                    frames.add(page.evaluate(CHECKSUM, "frame"))
                    heats.add(page.evaluate(CHECKSUM, "heat"))
                    if len(seen) == 1:  # an NG with regions: its boxes are drawn where the verdict says
                        ng = seen[0]
                        assert ng["verdict"] == "NG" and ng["regions"] and ng["has_image"] and ng["has_map"]
                        assert page.get_attribute("#boxes", "data-boxes") == str(len(ng["regions"]))
                        width = page.evaluate("document.getElementById('boxes').width")
                        region = ng["regions"][0]
                        x = round(region["x"] * width / ng["image_width"])  # on the box's left edge
                        y = round((region["y"] + region["h"] / 2) * width / ng["image_width"])
                        assert page.evaluate(PIXEL, ["boxes", x, y]) == [255, 0, 255, 255]  # BOX_COLOR, opaque
                        assert page.evaluate(TEXT, "verdict").startswith("NG")
                        save(page, shots, "station-ng.png")
                assert len(frames) == len(heats) == len(seen)  # each verdict changed the frame and the heatmap
                assert page.evaluate(TEXT, "verdict").startswith("OK")
                save(page, shots, "station-ok.png")
                ok = sum(m["verdict"] == "OK" for m in seen)
                page.wait_for_function(f"document.getElementById('count-ok').textContent === '{ok}'", timeout=WAIT_MS)
                counts = {key: int(page.evaluate(TEXT, f"count-{key}")) for key in ("ok", "ng", "errors")}
                assert counts == {"ok": ok, "ng": len(seen) - ok,
                                  "errors": sum(bool(m["error"]) for m in seen)}  # what the plain subscriber counted

                overview = browser.context.new_page()
                overview.goto(view.url("/"))
                overview.wait_for_selector("#tile-t1 .verdict.OK", timeout=WAIT_MS)
                overview.wait_for_selector("#tile-t2 .verdict.OK, #tile-t2 .verdict.NG", timeout=WAIT_MS)
                assert overview.get_attribute("#tile-t1", "href") == "/station/t1"
                save(overview, shots, "overview.png")

                # A reload to another bundle: the page shows the new id and that it came by reload.
                meta = yaml.safe_load((bundle / "bundle.yaml").read_text())
                new_id = meta["bundle_id"] + "-reloaded"
                other = tmp_path / "bundle-b"
                shutil.copytree(bundle, other)
                meta["bundle_id"] = new_id
                (other / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
                assert daemon.config_path is not None
                daemon.config_path.write_text(yaml.safe_dump({**daemon.config, "bundle": str(other)}))
                daemon.signal(signal.SIGHUP)
                page.wait_for_function(f"document.getElementById('bundle-id').textContent === '{new_id}'",
                                       timeout=WAIT_MS)
                assert "(reload)" in page.evaluate(TEXT, "bundle-loaded")

                daemon.kill()  # no stopped event: silence, then stale
                page.wait_for_selector("#freshness[data-state='stale']", timeout=WAIT_MS)
                save(page, shots, "station-stale.png")
                assert browser.errors == []
            finally:
                browser.close()


def view_cpu_per_verdict(daemon: RunningDaemon, view: RunningView, verdicts: int) -> float:
    """The view process's CPU ticks per verdict over the next ``verdicts`` verdicts the daemon publishes."""
    start, ticks = len(daemon.of("verdict")), cpu_ticks(view.pid)
    daemon.wait_for(lambda d: len(d.of("verdict")) >= start + verdicts, what=f"{verdicts} more verdicts")
    end_ticks = cpu_ticks(view.pid)
    assert ticks is not None and end_ticks is not None
    return (end_ticks - ticks) / verdicts


def test_two_browsers_keep_updating_when_a_third_dies_mid_stream(tmp_path, playwright):
    config = station_config(tmp_path, DEMO_BUNDLE, fps=10)
    window = 80  # verdicts per CPU measurement
    with RunningDaemon(tmp_path, config) as daemon, RunningView([daemon.endpoint], tmp_path / "view") as view:
        browsers = [Browser(playwright, tmp_path / f"profile-{name}") for name in "abc"]
        try:
            pages = [b.open(view.url("/station/t1")) for b in browsers[:2]]
            for page in pages:
                page.wait_for_function("window.edgeView.drawn > 3", timeout=WAIT_MS)
            baseline = view_cpu_per_verdict(daemon, view, window)  # two pages open
            doomed = browsers[2].open(view.url("/station/t1"))
            doomed.wait_for_function("window.edgeView.drawn > 3", timeout=WAIT_MS)
            view.wait_state(lambda s: len(s["clients"]) == 3, what="three pages connected")
            browsers[2].kill()  # mid-stream: its sockets die with the process, no WebSocket close
            killed_at = daemon.of("verdict")[-1]["seq"]
            view.wait_state(lambda s: len(s["clients"]) == 2, what="the dead page's socket closed")
            after = view_cpu_per_verdict(daemon, view, window)
            for page in pages:  # the others kept drawing, well past the kill
                page.wait_for_function(f"Number(document.getElementById('frame').dataset.seq) > {killed_at + 20}",
                                       timeout=WAIT_MS)
            assert len(view.state()["clients"]) == 2
        finally:
            for browser in browsers:
                browser.close()
    # CPU time per verdict (not wall time) back to the two-page figure: nothing is left spinning or
    # sending for the dead page. The slack covers the 10 ms tick of /proc accounting over one window.
    assert after <= baseline * 1.5 + 5 / window, (baseline, after)


ANIMATION = """<canvas id=c width=600 height=400></canvas><script>window.frames_drawn = 0;
const c = document.getElementById('c').getContext('2d');
(function draw() { c.fillStyle = `hsl(${window.frames_drawn++ % 360} 80% 50%)`; c.fillRect(0, 0, 600, 400);
  requestAnimationFrame(draw); })();</script>"""


def thread_nices(pids: list[int]) -> dict[str, int]:
    """The lowest nice value of each thread name in these processes (from /proc/PID/task/TID/stat)."""
    lowest: dict[str, int] = {}
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue  # the thread ended
            name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            lowest[name] = min(lowest.get(name, 99), int(fields[16]))
    return lowest


def test_a_browser_the_tools_start_never_runs_a_thread_above_the_daemons_priority(tmp_path, playwright):
    # Chromium lifts its compositor threads to nice -8 where it may (root): above the daemon, whatever nice it was
    # started under. The benches start it as an operator's account would, without that right.
    browsers = {"plain": Browser(playwright, tmp_path / "plain"), "niced": Browser(playwright, tmp_path / "n", nice=5),
                "boost": Browser(playwright, tmp_path / "boost", boost=True)}
    try:
        nices = {}
        for name, browser in browsers.items():
            page = browser.page
            page.set_content(ANIMATION)
            page.wait_for_function("window.frames_drawn > 30", timeout=WAIT_MS)
            nices[name] = thread_nices(browser.pids())
    finally:
        for browser in browsers.values():
            browser.close()
    assert "Compositor" in nices["plain"] and min(nices["plain"].values()) >= 0, nices["plain"]
    assert min(nices["niced"].values()) >= 5, nices["niced"]
    if os.geteuid() == 0:  # where Chromium may raise them, it does: the case the default guards against
        assert nices["boost"]["Compositor"] < 0, nices["boost"]
