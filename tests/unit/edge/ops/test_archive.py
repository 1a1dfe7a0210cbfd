"""The NG archive keeps complete records within its cap, cleans up after crashes and never raises disk errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.cameras import Frame
from edge.model.inspector import Inspection
from edge.ops.archive import Archive, ArchiveConfig, ArchiveWriter
from edge.tools.harness import wait_until
from edge.wire.verdict import build_verdict

REPO = Path(__file__).resolve().parents[4]
RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def inspection(verdict: str) -> Inspection:
    return Inspection(
        score=4.0 if verdict == "NG" else 1.0, normalized_score=0.6 if verdict == "NG" else 0.2, verdict=verdict,
        image_threshold=3.0, pixel_threshold=2.5, regions=[],
        anomaly_map=np.linspace(0, 5, 64, dtype=np.float32).reshape(8, 8), timings_ms={},
    )


def verdict(seq: int, result: str = "NG", t_capture: float | None = None) -> tuple[dict, bytes]:
    """A real verdict message and its real anomaly-map PNG."""
    frame = Frame(image=IMAGE, frame_id=seq, source=f"/imgs/{seq}.png", t_capture=t_capture or time.time())
    found = inspection(result)
    message = build_verdict(station="line3", seq=seq, frame=frame, bundle_id="b1", counters={"frames": seq},
                            inspection=found, has_map=True)
    return message, found.map_png()


def with_image(message_and_map: tuple[dict, bytes]) -> tuple[dict, np.ndarray, bytes]:
    return message_and_map[0], IMAGE, message_and_map[1]


def config(directory: Path, **fields) -> ArchiveConfig:
    return ArchiveConfig.model_validate({"enabled": True, "directory": str(directory), **fields})


def records(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.json"))


def all_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def assert_complete(json_path: Path) -> dict:
    """The JSON parses and every file it names exists and decodes."""
    record = json.loads(json_path.read_text(encoding="utf-8"))
    for key in ("image", "map", "overlay"):
        assert record["archive"][key], f"{json_path.name} has no {key}"
        data = np.fromfile(json_path.parent / record["archive"][key], dtype=np.uint8)
        assert cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None, f"{record['archive'][key]} does not decode"
    return record


def test_ng_record_has_image_map_and_json_named_by_station_seq_and_verdict(tmp_path):
    archive = Archive(config(tmp_path))
    message, map_png = verdict(7)
    written = archive.save(message, IMAGE, map_png)
    day = time.strftime("%Y%m%d", time.localtime(message["t_capture"]))
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        f"{day}/line3-0000000007-NG.png", f"{day}/line3-0000000007-NG-map.png",
        f"{day}/line3-0000000007-NG-overlay.jpg", f"{day}/line3-0000000007-NG.json",
    ]
    record = assert_complete(written[-1])
    assert record["seq"] == 7 and record["verdict"] == "NG" and record["station"] == "line3"
    assert np.array_equal(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED), IMAGE)  # png is lossless
    assert written[1].read_bytes() == map_png
    assert archive.stats()["records"] == 1
    assert archive.stats()["bytes"] == sum(p.stat().st_size for p in written)


def test_jpg_image_format_and_switched_off_parts(tmp_path):
    archive = Archive(config(tmp_path, image_format="jpg", save_map=False, save_overlay=False))
    message, map_png = verdict(1)
    written = archive.save(message, IMAGE, map_png)
    assert [p.suffix for p in written] == [".jpg", ".json"]
    assert cv2.imread(str(written[0])).shape == IMAGE.shape
    assert json.loads(written[-1].read_text())["archive"] == {"image": written[0].name, "map": None, "overlay": None}


def test_overlay_is_written_beside_the_frame_and_coloured_where_the_map_is_high(tmp_path):
    archive = Archive(config(tmp_path))
    message, map_png = verdict(3)
    grey = np.full_like(IMAGE, 128)
    json_path = archive.save(message, grey, map_png)[-1]
    record = assert_complete(json_path)
    overlay = cv2.imread(str(json_path.parent / record["archive"]["overlay"]))
    assert overlay.shape[1] == grey.shape[1] and overlay.shape[0] > grey.shape[0]  # the caption band under it
    change = np.abs(overlay[: grey.shape[0]].astype(int) - grey).mean(axis=(1, 2))
    # The test map rises from 0 (top rows) to 5 (bottom rows) against a pixel threshold of 2.5:
    # the frame shows through where the map is low and is coloured where it is high.
    assert change[:4].max() < 3 and change[-4:].min() > 30


def test_no_overlay_without_an_image(tmp_path):
    archive = Archive(config(tmp_path, save_image=False))
    message, map_png = verdict(4)
    written = archive.save(message, None, map_png)
    assert [p.name.endswith(s) for p, s in zip(written, ("-map.png", ".json"), strict=True)] == [True, True]


def test_ok_frames_are_not_archived_unless_sampled(tmp_path):
    archive = Archive(config(tmp_path))
    assert archive.save(verdict(1, "OK")[0], IMAGE, None) == []
    assert records(tmp_path) == []


def test_ok_frames_are_sampled_one_in_n_while_every_ng_is_kept(tmp_path):
    every = 3
    archive = Archive(config(tmp_path, ok_sample_every=every))
    ok_seqs = list(range(1, 3 * every + 1))
    for seq in ok_seqs:
        archive.save(verdict(seq, "OK")[0], IMAGE, None)
        archive.save(verdict(100 + seq, "NG")[0], IMAGE, None)
    kept = [json.loads(p.read_text()) for p in records(tmp_path)]
    assert len([r for r in kept if r["verdict"] == "OK"]) == len(ok_seqs) // every
    assert len([r for r in kept if r["verdict"] == "NG"]) == len(ok_seqs)


def test_cap_removes_the_oldest_whole_records_first(tmp_path):
    probe = Archive(config(tmp_path / "probe"))
    one_record = sum(p.stat().st_size for p in probe.save(*with_image(verdict(1))))
    cap = 3 * one_record
    archive = Archive(config(tmp_path / "archive", max_bytes=cap))
    for seq in range(1, 11):
        message, map_png = verdict(seq)
        archive.save(message, IMAGE, map_png)
        on_disk = sum(p.stat().st_size for p in all_files(tmp_path / "archive"))
        assert on_disk == archive.stats()["bytes"] <= cap
    kept = [json.loads(p.read_text())["seq"] for p in records(tmp_path / "archive")]
    assert 1 < len(kept) < 10
    assert kept == list(range(11 - len(kept), 11))  # the newest, with no gaps
    assert len(all_files(tmp_path / "archive")) == 4 * len(kept)  # no image, map or overlay without its JSON
    assert archive.stats()["removed"] == 10 - len(kept)


def test_cap_applies_at_start_up_and_empty_day_folders_go(tmp_path):
    days = [time.time() - 86400 * n for n in (30, 20, 10)]  # far apart: no DST shift can merge two days
    first = Archive(config(tmp_path))
    for seq, t in enumerate(days, 1):
        first.save(verdict(seq, t_capture=t)[0], IMAGE, None)
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == len(days)
    newest = sum(p.stat().st_size for p in (tmp_path / folders[-1]).iterdir())
    reopened = Archive(config(tmp_path, max_bytes=newest))
    assert sorted(p.name for p in tmp_path.iterdir()) == folders[-1:]
    assert reopened.stats()["records"] == 1


def test_start_up_removes_temp_and_orphan_files_but_keeps_complete_records(tmp_path, caplog):
    archive = Archive(config(tmp_path))
    complete = archive.save(*with_image(verdict(1)))
    day = complete[0].parent
    leftovers = [day / ".line3-0000000002-NG.png.tmp-4242", day / "line3-0000000002-NG.png",
                 day / "line3-0000000002-NG-map.png"]
    for path in leftovers:
        path.write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger="edge.ops.archive"):
        reopened = Archive(config(tmp_path))
    assert all_files(tmp_path) == sorted(complete)
    assert reopened.stats()["records"] == 1
    assert "removed 1 temp and 2 orphan files" in caplog.text


def test_a_restarted_daemon_does_not_overwrite_the_last_runs_records(tmp_path):
    message, map_png = verdict(1)
    Archive(config(tmp_path)).save(message, IMAGE, map_png)
    Archive(config(tmp_path)).save(message, IMAGE, map_png)  # seq starts at 1 again after a restart
    assert len(records(tmp_path)) == 2
    for path in records(tmp_path):
        assert_complete(path)


def test_a_disk_error_is_counted_not_raised(tmp_path):
    directory = tmp_path / "archive"
    archive = Archive(config(directory))
    shutil.rmtree(directory)
    directory.write_text("not a folder")  # unlike chmod, this stops root too
    assert archive.save(*with_image(verdict(1))) == []
    assert archive.save(*with_image(verdict(2))) == []
    assert archive.stats()["failures"] == 2
    assert archive.stats()["written"] == 0


def test_an_image_that_cannot_be_encoded_is_counted_and_leaves_no_files(tmp_path):
    archive = Archive(config(tmp_path))
    assert archive.save(verdict(1)[0], np.zeros((4, 4, 7), np.uint8), verdict(1)[1]) == []
    assert archive.stats()["failures"] == 1
    assert all_files(tmp_path) == []


def test_writer_writes_submitted_records_on_its_thread_and_drains_on_close(tmp_path):
    writer = ArchiveWriter(Archive(config(tmp_path)))
    writer.start()
    message, map_png = verdict(1)
    assert writer.submit(message, IMAGE, map_png) is True
    message["verdict"] = "changed after submit"
    assert writer.close(deadline_s=30) == 0
    assert [assert_complete(p)["verdict"] for p in records(tmp_path)] == ["NG"]
    assert writer.stats()["written"] == 1


def test_writer_skips_unsampled_ok_frames_without_queueing(tmp_path):
    writer = ArchiveWriter(Archive(config(tmp_path)), maxsize=1)
    assert writer.submit(verdict(1, "OK")[0], IMAGE) is False
    assert writer.stats()["queued"] == 0 and writer.stats()["dropped"] == 0


def test_writer_with_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    writer = ArchiveWriter(Archive(config(tmp_path)), maxsize=2)  # not started yet: nothing takes from the queue
    accepted = [writer.submit(verdict(seq)[0], IMAGE) for seq in range(1, 6)]
    assert accepted == [True, True, False, False, False]
    assert writer.stats()["dropped"] == 3
    writer.start()
    assert writer.close(deadline_s=30) == 0
    assert len(records(tmp_path)) == 2


def test_config_needs_a_directory_when_enabled_and_resolves_it_against_the_config_file(tmp_path):
    with pytest.raises(ValidationError, match="directory is required"):
        ArchiveConfig.model_validate({"enabled": True})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ArchiveConfig.model_validate({"enabled": False, "dir": "x"})
    resolved = ArchiveConfig.model_validate({"enabled": True, "directory": "ng"}, context={"base_dir": tmp_path})
    assert resolved.directory == tmp_path / "ng"


SIDE = 512  # large enough that a kill often lands inside a write
WRITE_FOREVER = textwrap.dedent(f"""
    import sys, time
    import cv2
    import numpy as np
    from edge.ops.archive import Archive, ArchiveConfig
    config = ArchiveConfig(enabled=True, directory=sys.argv[1], max_bytes=int(sys.argv[2]))
    archive = Archive(config)
    image = np.random.default_rng(1).integers(0, 256, ({SIDE}, {SIDE}, 3), dtype=np.uint8)
    map_png = cv2.imencode(".png", image[:, :, 0])[1].tobytes()
    seq = 0
    while True:
        seq += 1
        archive.save({{"station": "line3", "seq": seq, "verdict": "NG", "t_capture": time.time()}}, image, map_png)
""")


def trimmed(directory: Path) -> bool:
    """Whether the cap has removed the first record yet (the writer started at seq 1)."""
    names = [p.name for p in records(directory)]
    return bool(names) and all("-0000000001-" not in name for name in names)


def test_kill_9_while_writing_leaves_no_partial_records_after_restart(tmp_path):
    """A subprocess archives large records in a loop (cap forcing removals too) and is SIGKILLed mid-stream."""
    directory = tmp_path / "archive"
    cap = 8 * SIDE * SIDE * 3  # a few records: the writer is also removing old ones when it dies
    proc = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(directory), str(cap)], cwd=REPO)
    try:
        # Wait until the cap is removing old records, so the kill may land there too.
        wait_until(lambda: trimmed(directory) or proc.poll() is not None, 120, "the cap removing the first record")
        assert proc.poll() is None, "the writer process died on its own"
        for _ in range(200):  # best effort: kill while a temp file is being written
            if any(".tmp-" in p.name for p in directory.rglob(".*")):
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    Archive(config(directory, max_bytes=cap))  # the start-up clean-up
    kept = records(directory)
    assert kept
    named = set()
    for json_path in kept:
        record = json.loads(json_path.read_text(encoding="utf-8"))
        for key in ("image", "map", "overlay"):
            named.add(json_path.parent / record["archive"][key])
        image = cv2.imread(str(json_path.parent / record["archive"]["image"]), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (SIDE, SIDE, 3)
        heat = cv2.imread(str(json_path.parent / record["archive"]["map"]), cv2.IMREAD_UNCHANGED)
        assert heat is not None and heat.shape == (SIDE, SIDE)
    assert set(all_files(directory)) == named | set(kept)  # no temp files, no orphans
