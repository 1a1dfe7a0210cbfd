"""Calibrating a bundle: score held-out images through ``edge`` and write the thresholds in.

What is calibrated is what is deployed: scores come from :class:`edge.model.inspector.Inspector` on the
bundle's own graph, never from the torch model. Good images the model was trained on are excluded
(matched by content hash against the bundle's training manifest), because their scores are
optimistically low and would set a threshold that rejects good parts on the line. Images that do
not decode, or whose size differs wildly from the others' (a 4x4 thumbnail once set a threshold
to 4.49), are listed and left out, never silently used; and a set too small for the strategy (a
1 % false-reject quantile of one image is not a calibration) is refused unless ``allow_few``.

Thresholds stay editable outside the graph, but through :func:`set_threshold`, which records
the value as ``manual``, who set it and when, and the false-reject rate it implies on the same
held-out images, instead of a hand edit of ``bundle.yaml`` that nobody can trace.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calibration.thresholds import (
    DEFAULT_TARGET_FRR,
    MANUAL,
    MIN_GOOD_IMAGES,
    image_threshold,
    min_good_images,
    rates_at,
)
from edge.model.bundle import Bundle, BundleError, load_bundle, sha256_file, write_bundle_yaml
from edge.model.imageio import ImageReadError, image_size, list_images, read_image
from edge.model.inspector import Inspector
from edge.model.manifest import SAME_AS_IMAGE, CalibrationRecord, ScoreStats, Thresholds

log = logging.getLogger(__name__)

# An image whose width or height is more than this factor away from the median of the set is left out.
MAX_SIZE_RATIO = 4.0


class CalibrationError(Exception):
    """Calibration cannot produce a trustworthy threshold; the message says why."""


@dataclass
class Scored:
    """Scores of one image set, and the images left out of it with the reason for each."""

    scores: np.ndarray
    left_out: dict[str, str] = field(default_factory=dict)  # path -> why
    unreadable: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)


def training_hashes(bundle: Bundle) -> set[str]:
    """sha256 of every image the model was fitted on, from the bundle's training manifest."""
    manifest = bundle.manifest.training.train_manifest if bundle.manifest.training else None
    if not manifest:
        return set()
    path = bundle.root / manifest
    if not path.is_file():
        raise BundleError(f"{path}: training manifest named in bundle.yaml is missing")
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


@contextmanager
def codec_messages() -> Iterator[list[str]]:
    """Collect what the image codecs print on file descriptor 2 (libpng's errors) instead of letting it through.

    OpenCV's decoders write straight to the process's stderr, which tears the progress bar; the
    lines are kept and reported with the image they belong to. Only for single-threaded tools:
    while it runs, anything else written to fd 2 is collected too.
    """
    collected: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield collected
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield collected
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            collected.extend(line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The decoded image, or None and why (the codec's own words when it printed any)."""
    with codec_messages() as printed:
        try:
            return read_image(path), None
        except ImageReadError as exc:
            error = str(exc).removeprefix(f"{path}: ")
    return None, error + (f" ({printed[-1]})" if printed else "")


def size_outliers(sizes: dict[Path, tuple[int, int]]) -> dict[Path, str]:
    """Images whose width or height is more than MAX_SIZE_RATIO from the median's, with the reason."""
    if len(sizes) < 3:
        return {}
    median_w = float(np.median([w for w, _ in sizes.values()]))
    median_h = float(np.median([h for _, h in sizes.values()]))
    out = {}
    for path, (w, h) in sizes.items():
        ratios = (w / median_w, h / median_h)
        if any(r > MAX_SIZE_RATIO or r < 1.0 / MAX_SIZE_RATIO for r in ratios):
            out[path] = f"{w}x{h}, the others about {median_w:.0f}x{median_h:.0f}"
    return out


def score_images(inspector: Inspector, paths: list[Path], desc: str) -> Scored:
    """Image scores for ``paths``; unreadable and wildly differently sized images are left out and listed."""
    sizes: dict[Path, tuple[int, int]] = {}
    for path in paths:
        try:
            size = image_size(path.read_bytes()[:65536])
        except OSError:
            size = None
        if size is not None:
            sizes[path] = size
    result = Scored(np.empty(0))
    outliers = size_outliers(sizes)
    scores = []
    with tqdm(paths, desc=desc, unit="img") as bar:
        for path in bar:
            if path in outliers:
                result.left_out[str(path)] = f"size {outliers[path]}"
                result.wrong_size.append(str(path))
                continue
            image, error = _read(path)
            if image is None:
                result.left_out[str(path)] = error or "unreadable"
                result.unreadable.append(str(path))
                continue
            scores.append(inspector.run(image).score)
    result.scores = np.asarray(scores, dtype=np.float64)
    for path, why in result.left_out.items():
        log.debug("left out %s: %s", path, why)
    return result


def held_out_good(bundle: Bundle, good_dir: str | Path | None) -> tuple[list[Path], str, int]:
    """The good images to calibrate on, where they came from, and how many training images were excluded."""
    if good_dir is not None:
        good_paths = list_images(good_dir)
        good_source = str(Path(good_dir).resolve())
    else:
        training = bundle.manifest.training
        good_paths = [Path(p) for p in (training.validation_images if training else None) or []]
        good_source = "validation split recorded in bundle.yaml"
        missing = [p for p in good_paths if not p.is_file()]
        if missing:
            raise CalibrationError(f"{missing[0]}: validation image recorded in the bundle is gone; pass --good DIR")
    trained = training_hashes(bundle)
    held_out = [p for p in good_paths if sha256_file(p) not in trained]
    if len(held_out) < len(good_paths):
        log.warning("excluded %d good image(s) the model was trained on", len(good_paths) - len(held_out))
    if not held_out:
        raise CalibrationError(f"no held-out good images: all {len(good_paths)} were used in training")
    return held_out, good_source, len(good_paths) - len(held_out)


def _record(good: Scored, defects: Scored | None, source: str, excluded: int, threshold: float,
            allow_few: bool) -> CalibrationRecord:
    scores = good.scores
    rates = rates_at(threshold, scores, defects.scores if defects is not None else None)
    return CalibrationRecord(
        created=_now(),
        good_source=source,
        n_good=int(scores.size),
        n_defects=0 if defects is None else int(defects.scores.size),
        excluded_training_images=excluded,
        skipped_unreadable=good.unreadable + (defects.unreadable if defects else []),
        skipped_size=(good.wrong_size + (defects.wrong_size if defects else [])) or None,
        allow_few=allow_few or None,
        good_scores=ScoreStats(min=float(scores.min()), max=float(scores.max()), mean=float(scores.mean()),
                               std=float(scores.std())),
        false_reject_rate=rates["false_reject_rate"],
        escape_rate=rates.get("escape_rate"),
    )


def _score_sets(bundle: Bundle, good_dir: str | Path | None, defects_dir: str | Path | None,
                threads: int | None, backend: str | None) -> tuple[Scored, Scored | None, str, int]:
    held_out, source, excluded = held_out_good(bundle, good_dir)
    inspector = Inspector(bundle, threads=threads, backend=backend)
    good = score_images(inspector, held_out, "good")
    defects = score_images(inspector, list_images(defects_dir), "defects") if defects_dir is not None else None
    if good.scores.size == 0:
        raise CalibrationError(f"every good image was left out: {_listing(good.left_out)}")
    return good, defects, source, excluded


def calibrate(
    bundle_dir: str | Path,
    good_dir: str | Path | None = None,
    defects_dir: str | Path | None = None,
    strategy: str = "quantile",
    target_frr: float = DEFAULT_TARGET_FRR,
    k: float | None = None,
    threads: int | None = None,
    backend: str | None = None,
    allow_few: bool = False,
) -> dict[str, Any]:
    """Compute thresholds for the bundle and write them into its ``bundle.yaml``; return them as plain data.

    The returned data has the thresholds' fields plus ``left_out`` (path -> why) for the images not used.
    """
    bundle = load_bundle(bundle_dir, require_thresholds=False)
    good, defects, source, excluded = _score_sets(bundle, good_dir, defects_dir, threads, backend)
    needed = min_good_images(strategy, target_frr)
    if good.scores.size < needed and not allow_few:
        why = (f"a false-reject target of {target_frr:g} needs at least {needed} (1/target, and never fewer than "
               f"{MIN_GOOD_IMAGES})" if strategy == "quantile" and target_frr > 0
               else f"strategy {strategy} needs at least {needed}")
        left = f" ({len(good.left_out)} more left out: {_listing(good.left_out)})" if good.left_out else ""
        raise CalibrationError(f"{good.scores.size} usable held-out good image(s){left}, but {why}: add good images "
                               "with --good DIR" + (", raise --target-frr" if strategy == "quantile" else "") +
                               ", or pass --allow-few to calibrate on them anyway (recorded in bundle.yaml)")
    threshold, params = image_threshold(strategy, good.scores, defects.scores if defects else None, target_frr, k)
    if not threshold > 0:
        raise CalibrationError(f"threshold {threshold:g} from the {strategy} strategy is not positive")
    thresholds = Thresholds(
        image=threshold,
        # Regions are the map above the image threshold: an NG part always has a region and an OK part none.
        pixel=threshold,
        strategy=strategy,
        pixel_strategy=SAME_AS_IMAGE,
        params=params,
        calibration=_record(good, defects, source, excluded, threshold, allow_few and good.scores.size < needed),
    )
    write_bundle_yaml(bundle.root, bundle.manifest.model_copy(update={"thresholds": thresholds}))
    load_bundle(bundle.root)  # what was written must load as a deployable bundle
    left_out = {**good.left_out, **(defects.left_out if defects else {})}
    return {**thresholds.model_dump(mode="json"), "left_out": left_out}


def set_threshold(
    bundle_dir: str | Path,
    image: float,
    pixel: float | None = None,
    good_dir: str | Path | None = None,
    defects_dir: str | Path | None = None,
    threads: int | None = None,
    backend: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Set the thresholds by hand, recorded as ``manual`` with who, when and the figures they imply.

    The held-out good images (and defects, if given) are scored as for :func:`calibrate`, so the
    record says what false-reject (and escape) rate the chosen value means on them.
    """
    if not image > 0 or (pixel is not None and not pixel > 0):
        raise CalibrationError("thresholds must be positive numbers")
    bundle = load_bundle(bundle_dir, require_thresholds=False)
    good, defects, source, excluded = _score_sets(bundle, good_dir, defects_dir, threads, backend)
    previous = bundle.thresholds
    pixel_value = image if pixel is None else pixel
    thresholds = Thresholds(
        image=image,
        pixel=pixel_value,
        strategy=MANUAL,
        pixel_strategy=SAME_AS_IMAGE if pixel_value == image else MANUAL,
        params={
            "set_by": user or _user(),
            "set_at": _now(),
            "previous": None if previous is None else {"image": previous.image, "pixel": previous.pixel,
                                                       "strategy": previous.strategy},
        },
        calibration=_record(good, defects, source, excluded, image, allow_few=False),
    )
    write_bundle_yaml(bundle.root, bundle.manifest.model_copy(update={"thresholds": thresholds}))
    load_bundle(bundle.root)
    left_out = {**good.left_out, **(defects.left_out if defects else {})}
    return {**thresholds.model_dump(mode="json"), "left_out": left_out}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _listing(left_out: dict[str, str]) -> str:
    return "; ".join(f"{Path(path).name}: {why}" for path, why in left_out.items())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a container)
        return f"uid {os.getuid()}"
